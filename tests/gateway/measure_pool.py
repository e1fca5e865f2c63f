"""Quick measurements of the gateway pool (not a test, not the formal benchmark).

    PYTHONPATH=platform:. .venv/bin/python tests/gateway/measure_pool.py [--processes 2] [--calls 400]

Starts its own Redis, SIPp carrier and supervisor; prints: per-process call limit seen, RSS of idle
and of full workers, and the calls per second the pool completes with short answered calls.
"""
from __future__ import annotations

import argparse
import collections
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import redis

from core import keys
from telephony.gateway import client
from telephony.gateway import events as ev
from tests.gateway.gwhelpers import ENV, ROOT, Sipp, free_udp_port, leg, wait_for
from voiceplatform.embedded import RedisServer


def rss_kb(pid: int) -> int:
    out = subprocess.run(["ps", "-o", "rss=", "-p", str(pid)], capture_output=True, text=True).stdout
    return int(out.strip() or 0)


class Finals:
    """Final events of a set of calls, read incrementally from the stream (cheap to poll)."""

    def __init__(self, r, ids, last_id="0"):
        self.r, self.ids, self.last, self.done = r, set(ids), last_id, {}

    def __call__(self):
        for entry_id, e in client.read_events(self.r, self.last, block_ms=None, count=5000):
            self.last = entry_id
            if e["call_id"] in self.ids and ev.is_final(e):
                self.done[e["call_id"]] = e
        return self.done if len(self.done) == len(self.ids) else None


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--processes", type=int, default=2)
    p.add_argument("--calls", type=int, default=400)
    p.add_argument("--hold-ms", type=int, default=0)
    p.add_argument("--rounds", type=int, default=1, help="repeat the throughput run (RSS growth)")
    a = p.parse_args()
    work = Path(tempfile.mkdtemp(prefix="gw-measure-"))
    srv = RedisServer(work / "redis").start()
    r = redis.Redis.from_url(srv.url)
    sup = subprocess.Popen(
        [sys.executable, "-m", "telephony.gateway.supervisor", "--processes", str(a.processes),
         "--redis-url", srv.url, "--node", "m", "--bind", "127.0.0.1", "--public-ip", "127.0.0.1"],
        cwd=ROOT, env=ENV, stdout=open(work / "supervisor.log", "wb"), stderr=subprocess.STDOUT)
    ids = [f"m-{i}" for i in range(a.processes)]
    hold = Sipp(work, "uas_answer.xml", free_udp_port())
    short = Sipp(work, "uas_answer_bye.xml", free_udp_port(), ["-d", str(a.hold_ms)])
    try:
        wait_for(lambda: all(r.exists(keys.gw_alive_key(g)) for g in ids), 20)
        time.sleep(1.5)
        pids = {g: int(r.hget(keys.gw_key(g), "pid")) for g in ids}
        print("idle RSS kB:", {g: rss_kb(pid) for g, pid in pids.items()})

        # fill the pool with held calls, plus extra that must wait in the queue
        cap = 4 * a.processes
        held = [client.originate(r, {"to": "+1555", "legs": [leg(hold.uri_host, "c")]}) for _ in range(cap + 2)]
        time.sleep(3)
        states = collections.Counter(client.call_state(r, c)["state"] for c in held)
        print("held calls by state (pool of", a.processes, "):", dict(states))
        print("active per gateway:", {g["gateway_id"]: g["active"] for g in client.pool_status(r)})
        print("full RSS kB:", {g: rss_kb(pid) for g, pid in pids.items()})
        for c in held:
            client.hangup(r, c)
        wait_for(Finals(r, held), 30)

        for _round in range(a.rounds):
            # throughput with short calls
            last = r.xrevrange(keys.EVENTS_STREAM, count=1)[0][0].decode()
            t0 = time.time()
            calls = {client.originate(r, {"to": "+1555", "legs": [leg(short.uri_host, "c")]}) for _ in range(a.calls)}
            done = wait_for(Finals(r, calls, last), 120, interval=0.2)
            elapsed = max(e["ts"] for e in done.values()) - t0
            outcomes = collections.Counter(e["type"] + ":" + e.get("outcome", "") for e in done.values())
            print(f"{a.calls} calls (hold {a.hold_ms} ms) in {elapsed:.2f}s = {a.calls / elapsed:.1f} CPS; {dict(outcomes)}")
            answered = [e for _, e in ev.decode_entries(r.xrange(keys.EVENTS_STREAM, min=f"({last}"))
                        if e["type"] == "answered" and e["call_id"] in calls]
            setups = sorted(e["setup_ms"] for e in answered)
            print(f"setup ms p50={setups[len(setups) // 2]} p95={setups[int(len(setups) * .95)]} max={setups[-1]}")
            print("RSS after load kB:", {g: rss_kb(pid) for g, pid in pids.items()})
    finally:
        sup.send_signal(signal.SIGTERM)
        print("supervisor exit code", sup.wait(30))
        hold.stop()
        short.stop()
        srv.stop()


if __name__ == "__main__":
    main()
