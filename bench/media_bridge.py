"""Media bridge load test: bridged calls with audio both ways, SIPp echoing the caller side.

    .venv/bin/python bench/media_bridge.py [--levels 1,10,40,80,120,160] [--hold 10] [--chunk-ms 20] [--record]

Set-up (everything on this machine): an embedded Redis, ``--media-hosts`` media hosts (one per core,
as the supervisor starts them; 0 = every worker bridges its own calls, the design before media
hosts) and ceil(level / 4) gateway workers linked to them, one SIPp callee answering every call
(tests/gateway/scenarios/uas_media.xml) with ``-rtp_echo`` (it sends our RTP straight back), and
one echo agent process (bench/echo_agent.py): per call it sends tagged mu-law frames at real-time
pace (``--chunk-ms`` of audio per message) and reads the caller audio, which is its own audio after
gateway -> SIPp echo -> gateway.

Per level: place the calls, wait for every stream, measure ``--hold`` seconds, hang up, read the
final events. Reported:

* bridge latency each way from the final events (per call p50/p99 histograms of the gateway:
  ``bridge_in`` = RTP frame in -> its WebSocket message sent; ``bridge_out`` = agent message
  arriving at an idle playout buffer -> its first frame sent as RTP, which includes waiting for the
  call's 20 ms clock tick): median of the calls' p50, median and max of the calls' p99;
* agent round trip (agent -> gateway -> SIPp echo -> gateway -> agent) p50/p99, and the same round
  trip of a plain RTP echo (a UDP client -> SIPp -rtp_echo) measured in this run: their ratio;
* frames late/lost: gateway playout ticks > 10 ms late, caller frames dropped, RTP lost, over all frames;
* CPU: gateway processes, workers and media hosts (minus their idle CPU measured first), SIPp, the
  agent, per bridged call.

With ``--record`` each level runs twice on the same processes, plain then every call recorded
(media/recording.py): ``recording_cost`` gives the extra CPU per recorded call (buffering during the
hold; the WAV is written in a thread after the hang-up, outside the measure) and the late frames.

Prints one JSON document and writes it to bench/results/media_bridge-<time>.json.
"""
from __future__ import annotations

import argparse
import json
import os
import socket
import struct
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "platform"), str(ROOT)]
# the echo agent listens on loopback, which the media hosts' outbound guard refuses unless allowed
os.environ.setdefault("OUTBOUND_ALLOW", "127.0.0.1")

import redis as redis_lib  # noqa: E402

from bench import report  # noqa: E402
from bench.echo_agent import EchoAgent  # noqa: E402
from bench.procstat import proc_cpu  # noqa: E402
from telephony.gateway import client  # noqa: E402
from telephony.gateway import events as ev  # noqa: E402
from tests.gateway.gwhelpers import GatewayProc, MediaHostProc, Sipp  # noqa: E402
from tests.support import free_media_port, free_udp_port  # noqa: E402


def pct(values, p):
    if not values:
        return None
    v = sorted(values)
    return round(v[min(len(v) - 1, int(round(p / 100 * (len(v) - 1))))], 3)


def plain_echo_rtt(port: int, seconds: float = 4.0) -> dict:
    """RTP-sized packets at 50/s to SIPp -rtp_echo from a UDP socket: round trip p50/p99 (ms)."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(0.2)
    rtts = []
    seq = 0
    end = time.monotonic() + seconds
    nxt = time.monotonic()
    while time.monotonic() < end:
        seq += 1
        pkt = struct.pack("!BBHII", 0x80, 0, seq, seq * 160, 1234) + b"\x55" * 160
        t0 = time.monotonic()
        s.sendto(pkt, ("127.0.0.1", port))
        try:
            data = s.recv(2048)
            if data[2:4] == pkt[2:4]:
                rtts.append((time.monotonic() - t0) * 1000)
        except TimeoutError:
            pass
        nxt += 0.02
        time.sleep(max(0, nxt - time.monotonic()))
    s.close()
    return {"p50_ms": pct(rtts, 50), "p99_ms": pct(rtts, 99), "samples": len(rtts)}


# ------------------------------------------------------------------------------------------------
def run_level(r, n, agent, gws, sipp, uas_host, hold, idle_cpu_per_gw, record=False):
    agent.reset()
    ids = []
    t_ramp = time.monotonic()
    for i in range(n):
        cmd = {"from": "+15550001111", "to": f"+1555{i:07d}", "ring_timeout": 10, "max_duration": 600,
               "tenant": "bench", "stream_url": f"ws://127.0.0.1:{agent.port}/",
               "legs": [{"carrier_id": "sipp", "uri": f"sip:+1555{i:07d}@{uas_host}"}], "record": record}
        ids.append(client.originate(r, cmd))
        if i % 25 == 24:
            time.sleep(0.2)  # ~100 CPS ramp
    deadline = time.monotonic() + 30
    while agent.conns < n and time.monotonic() < deadline:
        time.sleep(0.1)
    ramp_s = time.monotonic() - t_ramp
    time.sleep(2.0)
    pids = [g.proc.pid for g in gws]
    c0 = [proc_cpu(p) for p in pids]
    s0 = proc_cpu(sipp.proc.pid)
    a0 = agent.cpu_seconds()
    agent.reset()
    t0 = time.monotonic()
    time.sleep(hold)
    dt = time.monotonic() - t0
    gw_cpu = sum(proc_cpu(p) for p in pids) - sum(c0)
    sipp_cpu = proc_cpu(sipp.proc.pid) - s0
    st = agent.stats()
    agent_cpu = st["cpu"] - a0
    rtt = [x * 1000 for x in st["rtt"]]
    frames_in, gaps, sent = st["frames_in"], st["ts_gaps"], st["sent"]
    for c in ids:
        client.hangup(r, c)
    finals = {}
    deadline = time.monotonic() + 30
    last = "0-0"
    while len(finals) < n and time.monotonic() < deadline:
        for entry_id, e in client.read_events(r, last, block_ms=200):
            last = entry_id
            if ev.is_final(e) and e["call_id"] in ids:
                finals[e["call_id"]] = e
    while agent.conns and time.monotonic() < deadline:
        time.sleep(0.1)
    fs = list(finals.values())
    g = lambda k: [e[k] for e in fs if e.get(k) is not None]  # noqa: E731
    ticks = sum(g("rtp_packets_out"))
    to_agent = sum(g("frames_to_agent"))
    late = sum(g("late_frames"))
    dropped = sum(g("frames_dropped"))
    rtp_lost = sum(round(e.get("loss_percent", 0) / 100 * e.get("rtp_packets_in", 0)) for e in fs)
    total = ticks + to_agent
    bad = late + dropped + rtp_lost
    answered = sum(1 for e in fs if e["type"] == ev.COMPLETED)
    busy_gw = max(1, (n + 3) // 4)
    gw_cpu_net = gw_cpu - idle_cpu_per_gw * dt * len(gws)
    return {
        "recorded": record, "calls": n, "answered": answered, "streams_up": n - sum(1 for e in fs if "stream_sid" not in e),
        "ramp_s": round(ramp_s, 2), "hold_s": round(dt, 2),
        "bridge_in_ms": {"p50_median": pct(g("bridge_in_p50_ms"), 50), "p99_median": pct(g("bridge_in_p99_ms"), 50),
                         "p99_max": max(g("bridge_in_p99_ms"), default=None)},
        "bridge_out_ms": {"p50_median": pct(g("bridge_out_p50_ms"), 50),
                          "p99_median": pct(g("bridge_out_p99_ms"), 50),
                          "p99_max": max(g("bridge_out_p99_ms"), default=None)},
        "agent_round_trip_ms": {"p50": pct(rtt, 50), "p99": pct(rtt, 99), "samples": len(rtt)},
        "frames": {"total": total, "late_ticks": late, "dropped_to_agent": dropped, "rtp_lost": rtp_lost,
                   "bad_percent": round(100 * bad / total, 4) if total else None,
                   "agent_frames_in_per_call_s": round(frames_in / dt / n, 2) if n else None,
                   "agent_timestamp_gaps": gaps, "agent_frames_sent": sent},
        "cpu": {"gateways_percent_of_core": round(100 * gw_cpu / dt, 1),
                "gateways_idle_percent_of_core": round(100 * idle_cpu_per_gw * len(gws), 1),
                "per_call_percent_of_core": round(100 * gw_cpu_net / dt / n, 3),
                "per_call_percent_incl_idle_of_busy_gateways": round(
                    100 * (gw_cpu_net + idle_cpu_per_gw * dt * busy_gw) / dt / n, 3),
                "sipp_percent_of_core": round(100 * sipp_cpu / dt, 1),
                "agent_percent_of_core": round(100 * agent_cpu / dt, 1)},
        "loadavg": os.getloadavg()[0],
    }


def recording_cost(plain: dict, rec: dict, spool: Path, n: int) -> dict:
    """Recorded vs plain calls of one level: extra CPU per call, late frames, the WAVs written."""
    deadline = time.monotonic() + 30
    while len(list(spool.glob("*.wav"))) < n and time.monotonic() < deadline:
        time.sleep(0.2)
    wavs = list(spool.glob("*.wav"))
    for wav in wavs:
        wav.unlink()
    return {
        "per_call_percent_of_core_plain": plain["cpu"]["per_call_percent_of_core"],
        "per_call_percent_of_core_recorded": rec["cpu"]["per_call_percent_of_core"],
        "extra_per_recorded_call_percent_of_core": round(
            rec["cpu"]["per_call_percent_of_core"] - plain["cpu"]["per_call_percent_of_core"], 3),
        "late_ticks_plain": plain["frames"]["late_ticks"], "late_ticks_recorded": rec["frames"]["late_ticks"],
        "bad_percent_recorded": rec["frames"]["bad_percent"], "wavs_written": len(wavs),
    }


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--levels", default="1,10,20,30,40,60")
    ap.add_argument("--hold", type=float, default=10.0)
    ap.add_argument("--chunk-ms", type=int, default=20)
    ap.add_argument("--media-hosts", type=int, default=os.cpu_count() or 1,
                    help="media host processes, as the supervisor starts them (0 = each worker bridges its own)")
    ap.add_argument("--record", action="store_true", help="also run each level with every call recorded")
    args = ap.parse_args()
    levels = [int(x) for x in args.levels.split(",")]
    from voiceplatform.embedded import RedisServer

    work = Path(tempfile.mkdtemp(prefix="vp-mediabench-"))
    srv = RedisServer(work / "redis").start()
    r = redis_lib.Redis.from_url(srv.url)
    # the agents' sends spread over 4 instants per 20 ms, as independent agents would be
    agent = EchoAgent(args.chunk_ms, phases=4)
    echo_port = free_media_port()
    sipp = Sipp(work, "uas_media.xml", free_udp_port(), ["-rtp_echo", "-mp", echo_port, "-l", "1000"],
                subst={"PLAY": "", "CODEC": "PCMU", "CODEC_PT": 0})
    # Sipp() already passes an -mp; the last one on the command line wins (ours)
    result = {"machine": {"cpus": os.cpu_count()}, "chunk_ms": args.chunk_ms, "media_hosts": args.media_hosts,
              "levels": []}

    def start_gateways(n_gw, tag):
        """The level's gateway processes: its media hosts first, then the workers linked to them."""
        hosts = [MediaHostProc(work, f"media{tag}-{i}") for i in range(args.media_hosts)]

        def worker_args(i):
            return ["--log-level", "WARNING", "--recordings-dir", str(work / "spool"),
                    *(hosts[i % len(hosts)].worker_args if hosts else [])]
        gws = [GatewayProc(srv.url, f"mb{tag}-{i}", work / f"gw{tag}-{i}.log", worker_args(i))
               for i in range(n_gw)]
        for i, g in enumerate(gws):  # a SIP port picked free can be taken by the time it binds: retry
            for attempt in range(3):
                try:
                    g.wait_alive(r, 30)
                    break
                except AssertionError:
                    g.stop()
                    g = gws[i] = GatewayProc(srv.url, f"mb{tag}-{i}", work / f"gw{tag}-{i}-{attempt}.log",
                                             worker_args(i))
        return gws + hosts  # workers, then hosts: all are "gateway processes" for the CPU figures

    try:
        result["plain_rtp_echo_round_trip"] = plain_echo_rtt(echo_port)
        for n in levels:
            gws = start_gateways((n + 3) // 4, n)  # as many workers as the level needs (4 calls each)
            try:
                time.sleep(1)
                pids = [g.proc.pid for g in gws]
                c0 = sum(proc_cpu(p) for p in pids)
                time.sleep(3)
                idle = (sum(proc_cpu(p) for p in pids) - c0) / 3 / len(gws)
                res = run_level(r, n, agent, gws, sipp, sipp.uri_host, args.hold, idle)
                res["gateways"] = len(gws)  # workers and media hosts
                res["gateway_idle_percent_of_core_each"] = round(100 * idle, 3)
                if args.record:
                    rec = run_level(r, n, agent, gws, sipp, sipp.uri_host, args.hold, idle, record=True)
                    res["recording_cost"] = recording_cost(res, rec, work / "spool", n)
            finally:
                for g in gws:
                    g.stop()
            base = result["plain_rtp_echo_round_trip"]["p50_ms"]
            if base and res["agent_round_trip_ms"]["p50"]:
                res["round_trip_ratio_vs_plain_echo_p50"] = round(res["agent_round_trip_ms"]["p50"] / base, 1)
            result["levels"].append(res)
            print(json.dumps(res), file=sys.stderr, flush=True)
        ok = [x for x in result["levels"] if x["frames"]["bad_percent"] is not None
              and x["frames"]["bad_percent"] < 0.1 and x["streams_up"] == x["calls"]]
        result["max_calls_under_0.1pct_late_lost"] = max((x["calls"] for x in ok), default=0)
    finally:
        agent.stop()
        sipp.stop()
        srv.stop()
    report.save("media_bridge", result)


if __name__ == "__main__":
    main()
