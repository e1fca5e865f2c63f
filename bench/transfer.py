"""Transfer load test: CPU per bridged transfer leg beside plain bridged agent calls, in the same run.

    .venv/bin/python bench/transfer.py [--levels 4,8,16] [--hold 10]

Set-up (everything on this machine, as bench/media_bridge.py): an embedded Redis, one media host per
core, ceil(2 x level / 4) gateway workers linked to them (a transferred call holds two of a worker's
4 slots), one SIPp callee answering every call and leg with ``-rtp_echo``, one echo agent process.

Per level, on the same processes:

* ``agent_calls``: ``level`` calls bridged to the echo agent (RTP both ways, WebSocket both ways);
* ``transferred``: ``level`` calls bridged to the agent, each then transferred (cold) to a second leg
  on the same SIPp: once joined, 2 x level legs whose audio plays to each other (RTP both ways on each,
  no WebSocket; the two SIPp ends echo what they get, so every leg carries 50 packets a second each way).

CPU of the gateway processes (workers and media hosts) over ``--hold`` seconds, net of their idle CPU
measured first: per agent call, and per transfer leg. Target: a leg costs no more than an agent call.
Frames: late playout ticks of every leg (final events). Prints one JSON document and writes it to
bench/results/transfer-<time>.json.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

from core import keys

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "platform"), str(ROOT)]
os.environ.setdefault("OUTBOUND_ALLOW", "127.0.0.1")  # the echo agent listens on loopback

import redis as redis_lib  # noqa: E402

from bench import report  # noqa: E402
from bench.echo_agent import EchoAgent  # noqa: E402
from bench.procstat import proc_cpu  # noqa: E402
from telephony.gateway import client  # noqa: E402
from telephony.gateway import events as ev  # noqa: E402
from tests.gateway.gwhelpers import GatewayProc, MediaHostProc, Sipp, free_udp_port  # noqa: E402


def wait(predicate, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


class Events:
    """The calls:events stream read from where it was when made."""

    def __init__(self, r):
        self.r, self.last, self.seen = r, "$", []
        entries = r.xrevrange(keys.EVENTS_STREAM, count=1)
        self.last = entries[0][0].decode() if entries else "0-0"

    def poll(self) -> list[dict]:
        for entry_id, e in client.read_events(self.r, self.last, block_ms=100):
            self.last = entry_id
            self.seen.append(e)
        return self.seen

    def of(self, type_: str, ids) -> dict[str, dict]:
        return {e["call_id"]: e for e in self.poll() if e["type"] == type_ and e["call_id"] in ids}

    def finals(self, ids) -> dict[str, dict]:
        return {e["call_id"]: e for e in self.poll() if ev.is_final(e) and e["call_id"] in ids}


def place(r, n: int, agent: EchoAgent, uas_host: str, tag: str) -> list[str]:
    """One call after the other, each taken by a gateway before the next: idle workers wait on Redis in
    turn, so the calls spread over them and each worker keeps a free slot for a transfer leg."""
    ids = []
    for i in range(n):
        cmd = {"from": "+15550001111", "to": f"+1555{i:07d}", "ring_timeout": 10, "max_duration": 600,
               "tenant": "bench", "stream_url": f"ws://127.0.0.1:{agent.port}/{tag}",
               "legs": [{"carrier_id": "sipp", "uri": f"sip:+1555{i:07d}@{uas_host}"}]}
        call_id = client.originate(r, cmd)
        wait(lambda: r.hget(keys.call_key(call_id), "gateway"), 5)  # noqa: B023 - used at once
        ids.append(call_id)
    return ids


def measure(pids: list[int], hold: float, idle_per_process: float) -> tuple[float, float]:
    """Gateway CPU over ``hold`` s, net of idle: (seconds of CPU, seconds of wall time)."""
    c0 = sum(proc_cpu(p) for p in pids)
    t0 = time.monotonic()
    time.sleep(hold)
    dt = time.monotonic() - t0
    return sum(proc_cpu(p) for p in pids) - c0 - idle_per_process * dt * len(pids), dt


def hang_up(r, events: Events, ids: list[str]) -> dict[str, dict]:
    for call_id in ids:
        client.hangup(r, call_id)
    wait(lambda: len(events.finals(ids)) == len(ids), 30)
    return events.finals(ids)


def run_level(r, n: int, agent: EchoAgent, pids: list[int], uas_host: str, hold: float, idle: float) -> dict:
    # plain bridged agent calls
    events = Events(r)
    agent.reset()
    calls = place(r, n, agent, uas_host, "agent")
    wait(lambda: agent.conns >= n, 30)
    time.sleep(2.0)
    agent_cpu, agent_dt = measure(pids, hold, idle)
    agent_finals = hang_up(r, events, calls)
    wait(lambda: agent.conns == 0, 15)

    # the same number of calls, each transferred to a second leg
    events = Events(r)
    agent.reset()
    calls = place(r, n, agent, uas_host, "transfer")
    wait(lambda: agent.conns >= n, 30)
    legs = [f"{call_id}-t" for call_id in calls]
    for i, (call_id, leg_id) in enumerate(zip(calls, legs, strict=True)):
        client.transfer(r, {"call_id": call_id, "transfer_sid": leg_id, "mode": "cold", "on_fail": "hangup",
                            "leg": {"call_id": leg_id, "from": "+15550001111", "to": f"+1666{i:07d}",
                                    "tenant": "bench", "account_sid": "", "ring_timeout": 10, "max_duration": 600,
                                    "legs": [{"carrier_id": "sipp", "uri": f"sip:+1666{i:07d}@{uas_host}"}]}})
    joined = wait(lambda: len(events.of(ev.TRANSFERRED, calls)) == n, 30)
    time.sleep(2.0)
    transfer_cpu, transfer_dt = measure(pids, hold, idle)
    finals = hang_up(r, events, calls)
    wait(lambda: len(events.finals(legs)) == n, 15)
    leg_finals = list(finals.values()) + list(events.finals(legs).values())

    def late(fs) -> int:
        return sum(e.get("late_frames", 0) for e in fs)

    def packets(fs) -> int:
        return sum(e.get("rtp_packets_out", 0) for e in fs)

    per_call = 100 * agent_cpu / agent_dt / n
    per_leg = 100 * transfer_cpu / transfer_dt / (2 * n)
    return {
        "calls": n, "all_joined": joined, "hold_s": round(transfer_dt, 2),
        "transfers_refused": len(events.of(ev.TRANSFER_FAILED, calls)),
        "agent_calls": {"answered": sum(e["type"] == ev.COMPLETED for e in agent_finals.values()),
                        "per_call_percent_of_core": round(per_call, 3),
                        "late_ticks": late(agent_finals.values()), "rtp_packets_out": packets(agent_finals.values())},
        "transferred": {"legs": 2 * n, "legs_completed": sum(e["type"] == ev.COMPLETED for e in leg_finals),
                        "per_leg_percent_of_core": round(per_leg, 3),
                        "per_transferred_call_percent_of_core": round(2 * per_leg, 3),
                        "late_ticks": late(leg_finals), "rtp_packets_out": packets(leg_finals)},
        "leg_vs_agent_call": round(per_leg / per_call, 2) if per_call > 0 else None,
        "loadavg": os.getloadavg()[0],
    }


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--levels", default="4,8,16")
    ap.add_argument("--hold", type=float, default=10.0)
    ap.add_argument("--media-hosts", type=int, default=os.cpu_count() or 1)
    args = ap.parse_args()
    levels = [int(x) for x in args.levels.split(",")]
    hold = args.hold
    from voiceplatform.embedded import RedisServer

    work = Path(tempfile.mkdtemp(prefix="vp-transferbench-"))
    srv = RedisServer(work / "redis").start()
    r = redis_lib.Redis.from_url(srv.url)
    agent = EchoAgent(20, phases=4)
    sipp = Sipp(work, "uas_media.xml", free_udp_port(), ["-rtp_echo", "-l", "1000"],
                subst={"PLAY": "", "CODEC": "PCMU", "CODEC_PT": 0})
    result = {"machine": {"cpus": os.cpu_count()}, "media_hosts": args.media_hosts, "levels": []}
    try:
        for n in levels:
            hosts = [MediaHostProc(work, f"media{n}-{i}") for i in range(args.media_hosts)]
            gws = [GatewayProc(srv.url, f"tb{n}-{i}", work / f"gw{n}-{i}.log",
                               ["--log-level", "WARNING", *hosts[i % len(hosts)].worker_args])
                   for i in range((2 * n + 3) // 4)]
            procs = gws + hosts
            try:
                for g in gws:
                    g.wait_alive(r, 30)
                time.sleep(1)
                pids = [p.proc.pid for p in procs]
                c0 = sum(proc_cpu(p) for p in pids)
                time.sleep(3)
                idle = (sum(proc_cpu(p) for p in pids) - c0) / 3 / len(pids)
                res = run_level(r, n, agent, pids, sipp.uri_host, hold, idle)
                res["gateway_processes"] = len(procs)
                res["gateway_idle_percent_of_core_each"] = round(100 * idle, 3)
            finally:
                for p in procs:
                    p.stop()
            result["levels"].append(res)
            print(json.dumps(res), file=sys.stderr, flush=True)
    finally:
        agent.stop()
        sipp.stop()
        srv.stop()
    report.save("transfer", result)


if __name__ == "__main__":
    main()
