"""What Kamailio in front of the gateways adds to an inbound call's setup.

A gateway node (2 workers on 127.0.0.2) against Debian's Redis, Kamailio on 127.0.0.5 configured by
the platform (telephony/balancer.py). SIPp callers place the same short calls (INVITE, 200, ACK,
100 ms, BYE) straight to one gateway worker, then through Kamailio, and SIPp's own response-time
trace gives INVITE → 200 OK per call (1 ms resolution), and the kernel's timestamps of the SIP packets
on lo (bench/sip_sniffer.py) give the time each INVITE and its 200 OK spent inside Kamailio: what it
adds to the setup, apart from the gateways' own variation between the two runs.

Not measured yet (docs/capacity.md): CPS held and concurrent bridged calls for 1, 2 and 3 nodes
under cgroup CPU quotas.

Results: JSON on stdout and in bench/results/cluster-<time>.json.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import redis

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "platform"), str(ROOT)]

from bench.sip_sniffer import SipSniffer  # noqa: E402
from core import keys  # noqa: E402
from telephony import balancer  # noqa: E402
from tests.cluster.servers import RedisServer  # noqa: E402
from tests.support import free_udp_port, project_env, stop_process, wait_until  # noqa: E402

NODE, BALANCER, NUMBER = "127.0.0.2", "127.0.0.5", "+15550001234"


def caller_scenario(folder: Path) -> Path:
    text = (ROOT / "tests" / "gateway" / "scenarios" / "uac_media.xml").read_text()
    path = folder / "uac_short.xml"
    path.write_text(text.replace("@PLAY@", "").replace('<pause milliseconds="2500"/>', '<pause milliseconds="100"/>'))
    return path


def setup_ms(folder: Path, scenario: Path, target: str, calls: int, rate: float) -> dict:
    """INVITE → 200 OK of each call as SIPp measured it (its rtt trace), in ms."""
    run = folder / target.replace(":", "_")
    run.mkdir()
    done = subprocess.run(
        [shutil.which("sipp") or "/usr/bin/sipp", "-sf", str(scenario), "-i", "127.0.0.1", "-p", str(free_udp_port()),
         "-nostdin", "-m", str(calls), "-r", str(rate), "-s", NUMBER, "-trace_rtt", "-rtt_freq", "1", target],
        cwd=run, capture_output=True, text=True, timeout=calls / rate + 60)
    samples = []
    for trace in run.glob("*_rtt.csv"):
        for line in trace.read_text().splitlines()[1:]:
            fields = line.split(";")
            if len(fields) >= 2:
                samples.append(float(fields[1]))
    samples.sort()
    if not samples:
        raise RuntimeError(f"no response times from SIPp (exit {done.returncode}): {done.stderr[-500:]}")
    return {"calls": calls, "measured": len(samples), "sipp_exit": done.returncode,
            "p50": round(statistics.median(samples), 2), "p99": round(samples[int(0.99 * (len(samples) - 1))], 2),
            "mean": round(statistics.fmean(samples), 2)}


def percentiles(values: list[float]) -> dict:
    values = sorted(values)
    if not values:
        return {"calls": 0}
    return {"calls": len(values), "p50": round(statistics.median(values), 3),
            "p99": round(values[int(0.99 * (len(values) - 1))], 3), "max": round(values[-1], 3)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=300)
    parser.add_argument("--rate", type=float, default=10.0)
    parser.add_argument("--children", type=int, default=2, help="Kamailio's UDP worker processes")
    parser.add_argument("--nice", type=int, default=0, help="Kamailio's niceness (-20..19; below 0: root)")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="vp-bench-cluster-"))
    server = RedisServer(folder / "redis").start()
    r = redis.Redis.from_url(server.url)
    r.sadd(keys.CARRIER_ADDRESSES, "127.0.0.1", BALANCER)
    r.hset(keys.NUMBER_ROUTES, NUMBER, json.dumps({"tenant": "bench"}))
    gateways = subprocess.Popen(
        [sys.executable, "-m", "telephony.gateway.supervisor", "--processes", "2", "--bind", NODE, "--public-ip", NODE,
         "--node", "bench", "--media-hosts", "0", "--log-level", "WARNING"],
        cwd=ROOT, env=project_env(REDIS_URL=server.url), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    kamailio = None
    try:
        live = wait_until(lambda: len(g := balancer.live_gateways(r)) == 2 and g, 60, 0.2, what="2 gateways")
        port = free_udp_port()
        (folder / "dispatcher.list").write_text(balancer.dispatcher_list(live))
        (folder / balancer.NUMBERS_TABLE).write_text(balancer.numbers_table(r, live))
        (folder / "kamailio.cfg").write_text(balancer.kamailio_cfg(BALANCER, port, folder / "dispatcher.list",
                                                                   folder / "kamailio.ctl", children=args.children))
        kamailio = subprocess.Popen(["nice", "-n", str(args.nice), "kamailio", "-f", str(folder / "kamailio.cfg"), "-DD", "-E", "-Y", str(folder),
                                     "-m", "32", "-M", "8"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(2)  # first OPTIONS probes
        scenario = caller_scenario(folder)
        direct = setup_ms(folder, scenario, f"{NODE}:{live[0]['sip_port']}", args.calls, args.rate)
        sniffer = SipSniffer()
        try:
            through = setup_ms(folder, scenario, f"{BALANCER}:{port}", args.calls, args.rate)
        finally:
            sniffer.stop()
        inside = {kind: percentiles(values) for kind, values in sniffer.proxy_ms(BALANCER).items()}
        report = {"bench": "cluster", "rate_cps": args.rate, "kamailio_children": args.children, "kamailio_nice": args.nice,
                  "load_average": os.getloadavg(), "direct_setup_ms": direct,
                  "through_kamailio_setup_ms": through, "inside_kamailio_ms": inside,
                  "kamailio_adds_ms": {"p50": round(through["p50"] - direct["p50"], 2),
                                       "p99": round(through["p99"] - direct["p99"], 2)},
                  "target_p99_ms": 5}
    finally:
        for proc in (kamailio, gateways):
            if proc is not None:
                stop_process(proc, 20)
        server.stop()
        shutil.rmtree(folder, ignore_errors=True)
    print(json.dumps(report, indent=1))
    out = ROOT / "bench" / "results" / f"cluster-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.write_text(json.dumps(report, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
