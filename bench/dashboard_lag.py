"""Event -> dashboard push lag of the tenant dashboard socket, at steady event rates.

For each rate a producer thread records one final (`completed`) gateway event per new call at that
rate with telephony.metrics.services.record_call_event, as the recorder does; the tenant dashboard
consumer (the real one, through channels' WebsocketCommunicator) pushes snapshots; the lag of an
event is the time from just before record_call_event until the first push whose latest-calls table
holds that call. Also reported: the cost of record_call_event itself (one Redis round trip).

    .venv/bin/python bench/dashboard_lag.py [--seconds 20] [--rates 10,50]

Uses REDIS_URL if set, otherwise starts an embedded Redis in a temporary folder. No database.
Prints one JSON document.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from types import SimpleNamespace

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "platform"), str(ROOT)]


def setup_django() -> object | None:
    server = None
    if not os.environ.get("REDIS_URL"):
        from voiceplatform.embedded import RedisServer

        server = RedisServer(Path(tempfile.mkdtemp(prefix="vp-bench-")) / "redis").start()
        os.environ["REDIS_URL"] = server.url
    os.environ.setdefault("DATABASE_URL", "postgresql://bench@/unused")  # never connected to
    os.environ["DJANGO_SETTINGS_MODULE"] = "voiceplatform.settings"
    import django

    django.setup()
    return server


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


class Signed:
    """Puts a tenant and a signed-in user into the scope (the bench has no database for sessions)."""

    def __init__(self, inner, schema):
        self.inner, self.schema = inner, schema

    async def __call__(self, scope, receive, send):
        user = SimpleNamespace(is_authenticated=True, is_staff=False)
        return await self.inner(dict(scope, schema_name=self.schema, tenant=None, user=user), receive, send)


async def measure(rate: float, seconds: float) -> dict:
    from channels.testing import WebsocketCommunicator

    from telephony.gateway import events as gw
    from telephony.metrics.consumers import TenantDashboardConsumer
    from telephony.metrics.services import record_call_event

    schema = "bench_" + uuid.uuid4().hex[:8]
    communicator = WebsocketCommunicator(Signed(TenantDashboardConsumer.as_asgi(), schema), "/ws/dashboard")
    connected, _ = await communicator.connect()
    assert connected
    await communicator.receive_json_from(timeout=5)

    sent: dict[str, float] = {}
    record_costs: list[float] = []
    done = threading.Event()

    def produce():
        interval, start = 1.0 / rate, time.monotonic()
        for i in range(int(rate * seconds)):
            delay = start + i * interval - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            sid = f"CA{uuid.uuid4().hex}"
            event = gw.make_event(sid, gw.COMPLETED, outcome="answered", duration=30.0, setup_ms=800,
                                  carrier_id=1, leg=0)
            t0 = time.monotonic()
            sent[sid] = t0
            record_call_event(schema, event, {"sid": sid, "region": "eu"})
            record_costs.append(time.monotonic() - t0)
        done.set()

    lags: list[float] = []
    seen: set[str] = set()
    pushes = 0
    producer = threading.Thread(target=produce, daemon=True)
    producer.start()
    while not (done.is_set() and len(seen) >= len(sent)):
        try:
            message = await communicator.receive_json_from(timeout=3)
        except TimeoutError:
            break
        arrived = time.monotonic()
        pushes += 1
        for call in message["data"]["latest_calls"]:
            sid = call["sid"]
            if sid in sent and sid not in seen:
                seen.add(sid)
                lags.append(arrived - sent[sid])
    producer.join()
    await communicator.disconnect()
    ms = [lag * 1000 for lag in lags]
    costs = [c * 1e6 for c in record_costs]
    return {
        "events_per_s": rate,
        "events": len(sent),
        "events_seen_on_socket": len(seen),
        "pushes": pushes,
        "lag_ms": {"p50": round(percentile(ms, 0.5), 1), "p99": round(percentile(ms, 0.99), 1),
                   "max": round(max(ms), 1), "mean": round(statistics.fmean(ms), 1)},
        "record_call_event_us": {"p50": round(percentile(costs, 0.5)), "p99": round(percentile(costs, 0.99))},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--rates", default="10,50")
    args = parser.parse_args()
    server = setup_django()
    try:
        from telephony.metrics.consumers import TenantDashboardConsumer

        results = [asyncio.run(measure(float(rate), args.seconds)) for rate in args.rates.split(",")]
        print(json.dumps({
            "bench": "dashboard_lag",
            "push_policy": {"poll_s": TenantDashboardConsumer.POLL_S, "min_push_s": TenantDashboardConsumer.MIN_PUSH_S,
                            "heartbeat_s": TenantDashboardConsumer.HEARTBEAT_S},
            "seconds_per_rate": args.seconds,
            "results": results,
        }, indent=2))
    finally:
        if server is not None:
            server.stop()


if __name__ == "__main__":
    main()
