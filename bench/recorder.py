"""CPU of the call recorder per call, fed a burst of real-shaped gateway events.

    .venv/bin/python bench/recorder.py [--calls 3000] [--cps 150,0] [--callbacks 0.0]

Set-up (everything on this machine): an embedded PostgreSQL and Redis, one bench tenant, two carriers,
``--calls`` call records per run (as the dialer writes them). A feeder thread publishes each call's
events into the gateways' stream as a gateway worker does (telephony/gateway/worker.py `emit`:
initiated, leg_started, ringing, answered, stream_started and a completed event with the media
figures; one call in five fails over from the first carrier, one in ten is busy), the calls starting
``cps`` a second (0: all of them at once, a backlog). The recorder (telephony.calls.event_stream.consume,
what ``manage.py record_calls`` runs) records them in this process's main thread.

Measured per run: the recorder's CPU per call (this process's CPU, net of the feeder thread's: its
PostgreSQL and Redis clients and the thread that publishes dashboard notices included, the servers'
not), the share of it spent in the metrics aggregates, the CPU
per call of the Redis server and of the recorder's PostgreSQL backend, the blocks of events read,
and how long after the last event the recorder had caught up. Then every call is checked: final,
with the right outcome and duration, counted once in the metrics.

Target (issue 20): recorder and metrics together under 10 ms of CPU per call. Prints one JSON
document and writes it to bench/results/recorder-<time>.json.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "platform"), str(ROOT)]

from bench.metrics_cost import recorders_metrics_cpu, redis_cpu, setup_platform  # noqa: E402
from bench.procstat import proc_cpu  # noqa: E402
from bench.report import save as save_report  # noqa: E402

TENANT = "bench"


def call_events(sid: str, t0: float, k: int, primary: str, backup: str) -> list[dict]:
    """One call's events as a gateway worker emits them, from t0 on; the kth call of the run."""
    from telephony.gateway import events as gw

    common = {"tenant": TENANT, "gateway_id": f"node-1-{k % 40}", "direction": "outbound"}

    def event(type_, dt, **fields):
        return gw.make_event(sid, type_, ts=t0 + dt, **common, **fields)

    sip = f"{sid[2:18]}@127.0.0.1"
    events = [event(gw.INITIATED, 0.0, queue_ms=3.1, legs=2)]
    leg, carrier = 0, primary
    if k % 5 == 1:  # fails over
        events += [event(gw.LEG_STARTED, 0.005, leg=0, carrier_id=primary, uri="sip:+15550002222@127.0.0.1:5070"),
                   event(gw.LEG_FAILED, 0.05, leg=0, carrier_id=primary, sip_call_id=sip, sip_code=503,
                         sip_reason="Service Unavailable", reason="Service Unavailable", failover=True)]
        leg, carrier = 1, backup
    start = 0.06 * leg
    on_leg = {"leg": leg, "carrier_id": carrier}
    events.append(event(gw.LEG_STARTED, start + 0.005, **on_leg, uri="sip:+15550002222@127.0.0.1:5080"))
    events.append(event(gw.RINGING, start + 0.25, **on_leg, sip_call_id=sip, sip_code=180, pdd_ms=245.3))
    if k % 10 == 3:  # busy
        events.append(event(gw.FAILED, start + 1.5, **on_leg, sip_call_id=sip, outcome="busy", sip_code=486,
                            sip_reason="Busy Here", reason="Busy Here", legs_tried=leg + 1))
        return events
    answered = start + 1.8
    events += [
        event(gw.ANSWERED, answered, **on_leg, sip_call_id=sip, sip_code=200, setup_ms=1795.2, pdd_ms=245.3),
        event(gw.STREAM_STARTED, answered + 0.04, **on_leg, sip_call_id=sip, ai_connect_ms=38.5),
        event(gw.COMPLETED, answered + 5.0, **on_leg, sip_call_id=sip, outcome="answered", hangup_by="platform",
              sip_code=200, sip_reason="Normal call clearing", reason="hangup_requested", duration=5.0,
              setup_ms=1795.2, jitter_ms=1.2, loss_percent=0.0, rtt_ms=0.4, mos=4.4, bridge_in_p50_ms=0.1,
              bridge_in_p99_ms=0.3, bridge_out_p50_ms=0.1, bridge_out_p99_ms=0.2, frames_to_agent=250,
              frames_dropped=0, rtp_packets_in=250, rtp_packets_out=248, ai_response_ms=412.0,
              ai_response_turns=1, latency_ms=0.4),
    ]
    return events


def new_calls(n: int, callbacks: float) -> list[str]:
    from django_tenants.utils import schema_context

    from telephony.calls.models import Call

    every = round(1 / callbacks) if callbacks else 0
    with schema_context(TENANT):
        calls = [Call(from_number="+15550001111", to_number="+15550002222", stream_url="ws://127.0.0.1:9/agent",
                      status_callback="http://127.0.0.1:9/status" if every and k % every == 0 else "",
                      campaign_id=7) for k in range(n)]
        Call.objects.bulk_create(calls, batch_size=1000)
    return [call.sid for call in calls]


def feed(r, sids: list[str], cps: float, carriers: tuple[str, str]) -> dict:
    """Publish the calls' events in time order, at the calls' pace (cps 0: all at once)."""
    from core import keys
    from telephony.gateway import events as gw

    t0 = time.time()
    step = 1.0 / cps if cps else 0.0
    events = sorted((e for k, sid in enumerate(sids) for e in call_events(sid, t0 + k * step, k, *carriers)),
                    key=lambda e: e["ts"])
    state = {"published": 0, "last_ts": 0.0, "cpu_s": 0.0}

    def run():
        cpu0, i = time.thread_time(), 0
        while i < len(events):
            now = time.time()
            j = i
            while j < len(events) and (not cps or events[j]["ts"] <= now):
                j += 1
            if j > i:
                pipe = r.pipeline(transaction=False)
                for event in events[i:j]:
                    pipe.xadd(keys.EVENTS_STREAM, gw.encode(event), maxlen=gw.EVENTS_MAXLEN, approximate=True)
                pipe.execute()
                i = j
                state["published"], state["last_ts"] = i, time.time()
            state["cpu_s"] = time.thread_time() - cpu0
            if cps:
                time.sleep(0.02)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return {"events": events, "state": state, "thread": thread}


def run_once(r, n: int, cps: float, callbacks: float, carriers: tuple[str, str]) -> dict:
    from django.db import connection

    from core import keys
    from telephony.calls import event_stream

    sids = new_calls(n, callbacks)
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        backend = cursor.fetchone()[0]
    blocks, real_handle = [], event_stream.handle

    def counted(client, entries):
        blocks.append(len(entries))
        return real_handle(client, entries)

    event_stream.handle = counted
    group_start = r.xinfo_groups(keys.EVENTS_STREAM)[0]["pending"] if r.exists(keys.EVENTS_STREAM) else 0
    assert group_start == 0
    server0, attempted0, backend0 = redis_cpu(r), attempted_total(r), proc_cpu(backend)
    feeder = feed(r, sids, cps, carriers)
    total = len(feeder["events"])
    checked = {"at": 0.0, "done": False}

    def stop() -> bool:
        now = time.monotonic()
        if feeder["state"]["published"] < total or now - checked["at"] < 0.2:
            return False
        checked["at"] = now
        group = r.xinfo_groups(keys.EVENTS_STREAM)[0]
        last = r.xrevrange(keys.EVENTS_STREAM, count=1)[0][0]
        checked["done"] = group["pending"] == 0 and group["last-delivered-id"] == last
        return checked["done"]

    wall0, cpu0 = time.monotonic(), time.process_time()
    try:
        with recorders_metrics_cpu() as metrics_cpu:
            event_stream.consume(r, consumer="bench-recorder", block_ms=100, stop=stop)
    finally:
        event_stream.handle = real_handle
    cpu = time.process_time() - cpu0 - feeder["state"]["cpu_s"]
    postgres = proc_cpu(backend) - backend0
    caught_up_after_last_event_s = time.time() - feeder["state"]["last_ts"]
    wall = time.monotonic() - wall0
    redis_server = redis_cpu(r) - server0
    return {
        "cps": cps or "all at once", "calls": n, "events": total, "wall_s": round(wall, 2),
        "caught_up_after_last_event_s": round(caught_up_after_last_event_s, 2),
        "blocks_read": len(blocks), "events_per_block": round(sum(blocks) / max(1, len(blocks)), 1),
        "per_call_cpu_ms": {
            "recorder_total": round(cpu / n * 1000, 3),
            "metrics_client": round(metrics_cpu[0] / n * 1000, 3),
            "recorder_without_metrics": round((cpu - metrics_cpu[0]) / n * 1000, 3),
            "redis_server": round(redis_server / n * 1000, 3),
            "postgres_backend": round(postgres / n * 1000, 3),
        },
        "check": {**check(sids, feeder["events"]), "metrics_attempted": attempted_total(r) - attempted0},
    }


def attempted_total(r) -> int:
    from core import keys

    return int(r.hget(keys.METRICS_TOTALS, f"{TENANT}|attempted") or 0)


def check(sids: list[str], events: list[dict]) -> dict:
    """Every call final with its outcome and duration; metrics counted each call once."""
    from django_tenants.utils import schema_context

    from telephony.calls.models import Call, CallLeg

    finals = {e["call_id"]: e for e in events if e["type"] in ("completed", "failed")}
    with schema_context(TENANT):
        rows = {c["sid"]: c for c in Call.objects.filter(sid__in=sids).values(
            "sid", "status", "outcome", "duration_s", "ended_at", "answered_at", "carrier_name", "abandoned")}
        legs = CallLeg.objects.filter(call__sid__in=sids).count()
    wrong = []
    for sid in sids:
        row, final = rows[sid], finals[sid]
        expected = ("completed", "answered", 5.0) if final["type"] == "completed" else ("busy", "busy", None)
        if (row["status"], row["outcome"], row["duration_s"]) != expected or row["ended_at"] is None \
                or not row["carrier_name"] or row["abandoned"]:
            wrong.append(sid)
    return {"calls_wrong": len(wrong), "legs": legs,
            "expected_legs": sum(1 for e in events if e["type"] == "leg_started")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=3000, help="calls per run")
    parser.add_argument("--cps", default="150,0", help="call rates to run, comma-separated (0: a backlog)")
    parser.add_argument("--callbacks", type=float, default=0.0,
                        help="share of calls with a status callback (each event then queues a Celery task)")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="vp-recorderbench-"))
    redis_server = setup_platform(work)
    import redis as redis_lib

    from telephony.models import Carrier
    from voiceplatform.embedded import stop_postgres

    r = redis_lib.Redis.from_url(redis_server.url)
    carriers = tuple(str(Carrier.objects.create(name=name, host="127.0.0.1", region="eu").pk)
                     for name in ("Primary", "Backup"))
    runs = []
    try:
        for cps in [float(x) for x in args.cps.split(",")]:
            runs.append(run_once(r, args.calls, cps, args.callbacks, carriers))
            print(json.dumps(runs[-1]), file=sys.stderr, flush=True)
    finally:
        from django.db import connections

        connections.close_all()
        redis_server.stop()
        stop_postgres(work / "postgres")
    worst = max(run["per_call_cpu_ms"]["recorder_total"] for run in runs)
    result = {"bench": "recorder", "machine": {"cpus": os.cpu_count()}, "callbacks": args.callbacks, "runs": runs,
              "target_ms": 10, "meets_target": worst < 10 and all(run["check"]["calls_wrong"] == 0 for run in runs)}
    save_report("recorder", result)


if __name__ == "__main__":
    main()
