"""The cluster: how it scales from 1 to 3 nodes, and what Kamailio in front of the gateways adds to an
inbound call's setup.

scaling: Debian's PostgreSQL and Redis, a SIPp carrier and the demo agent stay outside any quota;
each node (`manage.py run --role worker,recorder,gateways`, beat on the first, on 127.0.0.2, .3, .4)
runs in a cgroup v1 CPU group of its own held to --cores of a core (bench/cpu_groups.py; root only).
For 1, 2 and 3 nodes:
- CPS held: as many campaigns as nodes at once (one campaign is dialed by one task at a time),
  each at the step's rate (--rates), for --step-s seconds, calls answered and hung up after
  --cps-hold-ms; a step is held when the campaigns' own paces add up to ≥ 95% of the step's CPS
  with < 0.1% failed. The figure: the highest total held (a floor when the top step held).
- bridged calls held: a campaign of as many contacts as the nodes' call slots (4 per gateway
  worker), each call streamed to the agent and held --bridge-hold-s seconds at the carrier; the
  figure is the most calls up at once (the gateways' live call sets in Redis), with 0 failed.
The load average is recorded with each figure; the groups are removed at the end, also on error.

latency: a gateway node (2 workers on 127.0.0.2) against Debian's Redis, Kamailio on 127.0.0.5
configured by the platform (telephony/balancer.py). SIPp callers place the same short calls (INVITE,
200, ACK, 100 ms, BYE) straight to one gateway worker, then through Kamailio, and SIPp's own
response-time trace gives INVITE → 200 OK per call (1 ms resolution), and the kernel's timestamps of
the SIP packets on lo (bench/sip_sniffer.py) give the time each INVITE and its 200 OK spent inside
Kamailio: what it adds to the setup, apart from the gateways' own variation between the two runs.

Results: JSON on stdout and in bench/results/cluster-<time>.json.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import redis

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "platform"), str(ROOT)]

from bench.cpu_groups import CpuGroup  # noqa: E402
from bench.report import save as save_report  # noqa: E402
from bench.sip_sniffer import SipSniffer  # noqa: E402
from core import keys  # noqa: E402
from telephony import balancer  # noqa: E402
from tests import stack  # noqa: E402
from tests.cluster.nodes import Cluster  # noqa: E402
from tests.cluster.servers import PostgresServer, RedisServer  # noqa: E402
from tests.support import free_media_port, free_tcp_port, free_udp_port, project_env, stop_process, wait_until  # noqa: E402

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


def latency(args) -> dict:
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
        return {"rate_cps": args.rate, "kamailio_children": args.children, "kamailio_nice": args.nice,
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


class Carrier:
    """SIPp answering every call and hanging up after `hold_ms`, always on the same port (the
    carrier's row in the database), restarted with another hold between phases."""

    def __init__(self, folder: Path):
        self.folder, self.port, self.process = folder, free_udp_port(), None

    def answer(self, hold_ms: int) -> None:
        self.stop()
        self.process = stack.Process(f"carrier-{hold_ms}", [
            shutil.which("sipp") or "/usr/bin/sipp", "-sf", str(stack.GATEWAY_SCENARIOS / "uas_answer_bye.xml"),
            "-i", "127.0.0.1", "-p", str(self.port), "-mp", str(free_media_port()), "-nostdin", "-d", str(hold_ms)],
            self.folder)
        time.sleep(0.5)

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()
            self.process = None


def finished(cluster: Cluster, campaign: int, timeout: float) -> dict:
    """The campaign's pace once every call is final (or as it stands after `timeout`)."""
    def done():
        pace = cluster.act("campaign_pace", campaign=campaign)
        return pace if pace["state"] == "completed" and not pace["non_final"] else None

    try:
        return wait_until(done, timeout, interval=3, what=f"campaign {campaign} to complete")
    except AssertionError:
        return {**cluster.act("campaign_pace", campaign=campaign), "timed_out": True}


def campaign_cps(pace: dict) -> float:
    span = (pace["last_start"] or 0) - (pace["first_start"] or 0)
    return (pace["started"] - 1) / span if span > 0 else 0.0


def cps_step(cluster: Cluster, campaigns: int, rate: float, seconds: float, name: str, first: int) -> dict:
    """`campaigns` campaigns at once at `rate` CPS each (one campaign is dialed by one task at a time);
    the CPS achieved is the sum of each one's own pace."""
    contacts = int(rate * seconds)
    started = cluster.act("start_campaigns", copies=campaigns, name=name, contacts=contacts, cps=rate,
                          max_concurrent=10_000, first=first)["campaigns"]
    load = os.getloadavg()
    paces = [finished(cluster, campaign, seconds * 3 + 60) for campaign in started]
    achieved = sum(campaign_cps(pace) for pace in paces)
    outcomes = sum((Counter(p["outcomes"]) for p in paces), Counter())
    offered = contacts * campaigns
    failed = offered - outcomes["answered"]
    non_final = sum(p["non_final"] for p in paces)
    return {"campaigns": campaigns, "offered_cps": rate * campaigns, "contacts": offered,
            "achieved_cps": round(achieved, 2), "failed": failed, "outcomes": dict(outcomes), "non_final": non_final,
            "timed_out": any(p.get("timed_out") for p in paces),
            "held": achieved >= 0.95 * rate * campaigns and failed < 0.001 * offered and not non_final,
            "load_average": load}


def bridged_calls(cluster: Cluster, shared: redis.Redis, prefix: str, slots: int, hold_s: float, rate: float, agent_url: str,
                  first: int) -> dict:
    """A campaign of `slots` contacts streamed to the agent; the most calls up at once."""
    campaign = cluster.act("start_campaign", name=f"Bridged {slots}", contacts=slots, cps=rate,
                           max_concurrent=slots, first=first, stream_url=agent_url)["campaign"]
    load, peak, until = os.getloadavg(), 0, time.monotonic() + slots / rate + hold_s + 60
    while time.monotonic() < until:
        keys = shared.keys(f"gw:{prefix}*:calls")
        peak = max(peak, sum(shared.scard(key) for key in keys))
        if peak == slots:
            break
        time.sleep(0.2)
    pace = finished(cluster, campaign, hold_s + 90)
    failed = pace["calls"] - pace["outcomes"].get("answered", 0) + (slots - pace["calls"])
    return {"offered": slots, "peak_concurrent": peak, "failed": failed, "outcomes": pace["outcomes"],
            "non_final": pace["non_final"], "timed_out": pace.get("timed_out", False),
            "held": peak if not failed and not pace["non_final"] else 0, "load_average": load}


def scaling(args) -> dict:
    folder = Path(tempfile.mkdtemp(prefix="vp-bench-cluster-"))
    folder.chmod(0o755)
    postgres = PostgresServer(folder / "postgres").start()
    server = RedisServer(folder / "redis").start()
    carrier, agent_port, groups, cluster, agent = Carrier(folder), free_tcp_port(), [], None, None
    figures, contacts_used = {}, 0  # each contact its own number (tests/cluster/actions.contact_number)
    try:
        agent = stack.Process("agent", [sys.executable, "-m", "demo.agent", "--port", str(agent_port)], folder)
        cluster = Cluster(folder, postgres.url, server.url, DIALER_UNPLACED_GRACE_S="3",
                          OUTBOUND_ALLOW=f"127.0.0.1:{agent_port}")
        cluster.act("prepare", carriers=[{"name": "Bench trunk", "port": carrier.port, "max_cps": 1000,
                                           "max_concurrent": 1000}])
        shared = redis.Redis.from_url(server.url)
        for count in args.nodes:
            groups = [CpuGroup(f"n{i}", args.cores) for i in range(1, count + 1)]
            prefix = f"c{count}n"  # new names each round: no old gateway is counted
            for i, group in enumerate(groups, 1):
                cluster.start_node(f"{prefix}{i}", f"127.0.0.{i + 1}", roles="worker,recorder,gateways,beat" if i == 1
                                   else "worker,recorder,gateways", gateways=args.gateways, namespace=group)
            wanted = count * args.gateways
            wait_until(lambda: sum(g.startswith(prefix) for g in cluster.act("live_gateways")["gateways"]) == wanted,  # noqa: B023
                       180, 2, what=f"{wanted} gateways")
            carrier.answer(args.cps_hold_ms)
            steps = []
            for per_node in args.rates:
                step = cps_step(cluster, count, per_node, args.step_s, f"{count} nodes at {per_node} CPS",
                                contacts_used)
                contacts_used += step["contacts"]
                steps.append(step)
                if not step["held"]:
                    break
            carrier.answer(int(args.bridge_hold_s * 1000))
            slots = count * args.gateways * 4
            bridged = bridged_calls(cluster, shared, prefix, slots, args.bridge_hold_s, args.bridge_rate * count,
                                    f"ws://127.0.0.1:{agent_port}/", contacts_used)
            contacts_used += slots
            throttled = {group.path.name: group.stat() for group in groups}
            cluster.stop()
            cluster.nodes.clear()
            for group in groups:
                group.remove()
            held = [s for s in steps if s["held"]]
            figures[count] = {"cps_held": max((s["offered_cps"] for s in held), default=0),
                              "cps_held_is_a_floor": len(held) == len(steps),  # the top step held: more may hold
                              "cps_steps": steps,
                              "bridged_held": bridged["held"], "bridged": bridged, "cpu_stat": throttled}
    finally:
        if cluster is not None:
            cluster.stop()
        for group in groups:
            group.remove()
        carrier.stop()
        if agent is not None:
            agent.stop()
        server.stop()
        postgres.stop()
        shutil.rmtree(folder, ignore_errors=True)
    one, most = figures.get(1), figures.get(max(figures, default=1))
    ratios = {}
    if one and most is not one:
        ratios = {"nodes": max(figures),
                  "cps": round(most["cps_held"] / one["cps_held"], 2) if one["cps_held"] else None,
                  "bridged": round(most["bridged_held"] / one["bridged_held"], 2) if one["bridged_held"] else None,
                  "target": 2.7}
    return {"cores_per_node": args.cores, "gateways_per_node": args.gateways, "step_s": args.step_s,
            "cps_hold_ms": args.cps_hold_ms, "bridge_hold_s": args.bridge_hold_s, "figures": figures,
            "ratio": ratios}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--parts", default="scaling,latency", help="scaling, latency or both")
    parser.add_argument("--nodes", default="1,2,3", type=lambda v: [int(n) for n in v.split(",")])
    parser.add_argument("--cores", type=float, default=0.5, help="CPU quota of each node, in cores")
    parser.add_argument("--gateways", type=int, default=8, help="gateway workers per node (4 calls each)")
    parser.add_argument("--rates", default="6,7,8,9,10", type=lambda v: [float(r) for r in v.split(",")],
                        help="CPS steps of each node's campaign")
    parser.add_argument("--step-s", type=float, default=20)
    parser.add_argument("--cps-hold-ms", type=int, default=500)
    parser.add_argument("--bridge-hold-s", type=float, default=20)
    parser.add_argument("--bridge-rate", type=float, default=4, help="CPS per node that fills the slots")
    parser.add_argument("--calls", type=int, default=300, help="latency: calls each way")
    parser.add_argument("--rate", type=float, default=10.0, help="latency: CPS")
    parser.add_argument("--children", type=int, default=2, help="Kamailio's UDP worker processes")
    parser.add_argument("--nice", type=int, default=0, help="Kamailio's niceness (-20..19; below 0: root)")
    args = parser.parse_args()
    # stopped (TERM, or INT where a background start ignores it): nodes stopped, groups removed
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: sys.exit(1))
    parts = args.parts.split(",")
    report = {"bench": "cluster"}
    if "scaling" in parts:
        report["scaling"] = scaling(args)
    if "latency" in parts:
        report["latency"] = latency(args)
    save_report("cluster", report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
