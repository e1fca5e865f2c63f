"""Benchmark: what one call create costs the web process, and where it goes.

    flock /work/bench.lock .venv/bin/python bench/api_cost.py [--calls 300] [--profile 40]

Set-up: an embedded PostgreSQL and Redis, one tenant with a number, one carrier. ``--calls`` creates
of each kind (`POST /api/v1/calls` with a bearer key, Twilio's `Calls.json` with basic auth) go
through Django's whole request path in this process (middleware, tenant lookup, API key, DRF,
serializers, the call record, the originate pushed to Redis), one after the other; then as many
`POST /api/v1/calls` through the web processes' ASGI application (``asgi``: the request handler of
voiceplatform/sync_handler.py and its request threads, as daphne calls it).

Measured per create: CPU ms (the process's), the SQL queries and Redis commands it made. Then
``--profile`` more creates of each kind under cProfile: the functions with the most cumulative time,
to see where the milliseconds go (``asgi`` only the event loop's side: the request threads are not
profiled). The HTTP server (daphne) is not in these figures: bench/burst.py (``--parts step``)
measures the whole process at a request rate.
"""
from __future__ import annotations

import argparse
import asyncio
import base64
import cProfile
import io
import json
import os
import pstats
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "platform"), str(ROOT)]

from bench.metrics_cost import setup_platform, stop_platform  # noqa: E402
from bench.report import save as save_report  # noqa: E402
from tests.support import asgi_request  # noqa: E402

CALLER_ID = "+14155550123"


def redis_commands(r) -> int:
    return sum(stat["calls"] for stat in r.info("commandstats").values())


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=300)
    parser.add_argument("--profile", type=int, default=40)
    parser.add_argument("--top", type=int, default=45)
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="vp-bench-api-"))
    os.environ["DATABASE_POOL_SIZE"] = "20"  # as `run` starts web
    redis_server = setup_platform(work)
    from django.db import connection
    from django.test import Client
    from django_tenants.utils import schema_context

    from core.redis_client import get_redis
    from telephony.models import Carrier, Number
    from tenants.models import Tenant

    tenant = Tenant.objects.get(schema_name="bench")
    tenant.max_concurrent_calls = 100_000
    tenant.save(update_fields=["max_concurrent_calls"])
    Number.objects.create(e164=CALLER_ID, tenant=tenant)
    Carrier.objects.create(name="Carrier", host="127.0.0.1", port=5099, max_cps=1000, max_concurrent=2000)
    from tenants.accounts.services import issue_api_key

    with schema_context("bench"):
        api_key = issue_api_key(tenant.account_sid, "bench")
    connection.set_schema_to_public()
    r = get_redis()

    bearer = Client(HTTP_AUTHORIZATION=f"Bearer {api_key}", HTTP_HOST="localhost")
    basic = Client(HTTP_AUTHORIZATION="Basic " + base64.b64encode(f"{tenant.account_sid}:{api_key}".encode()).decode(),
                   HTTP_HOST="localhost")
    counter = iter(range(10 ** 9))

    def api_create():
        response = bearer.post("/api/v1/calls", json.dumps({"to": f"+1415{8000000 + next(counter):07d}",
                                                            "from": CALLER_ID}), content_type="application/json")
        assert response.status_code == 201, response.content

    from voiceplatform.asgi import django_asgi_app

    loop = asyncio.new_event_loop()
    asgi_headers = [(b"host", b"localhost"), (b"authorization", f"Bearer {api_key}".encode()),
                    (b"content-type", b"application/json")]

    def asgi_create():
        body = json.dumps({"to": f"+1415{8000000 + next(counter):07d}", "from": CALLER_ID}).encode()
        status, _ = loop.run_until_complete(asgi_request(django_asgi_app, "POST", "/api/v1/calls", asgi_headers, body))
        assert status == 201

    def twilio_create():
        response = basic.post(f"/2010-04-01/Accounts/{tenant.account_sid}/Calls.json",
                              f"To=%2B1415{8500000 + next(counter):07d}&From=%2B14155550123"
                              "&Twiml=%3CResponse%3E%3CHangup%2F%3E%3C%2FResponse%3E",
                              content_type="application/x-www-form-urlencoded")
        assert response.status_code == 201, response.content

    report = {"load_before": round(os.getloadavg()[0], 2)}
    for name, create in (("api", api_create), ("twilio", twilio_create), ("asgi", asgi_create)):
        for _ in range(20):  # warm up: lazy imports, URL resolver, connections
            create()
        queries: list[str] = []

        def counted(execute, sql, params, many, context, queries=queries):
            queries.append(sql)
            return execute(sql, params, many, context)

        with connection.execute_wrapper(counted):
            create()
        commands = redis_commands(r)
        create()
        redis_per_create = redis_commands(r) - commands - 1  # the INFO itself
        cpu, wall = time.process_time(), time.perf_counter()
        for _ in range(args.calls):
            create()
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        profile = cProfile.Profile()
        profile.enable()
        for _ in range(args.profile):
            create()
        profile.disable()
        out = io.StringIO()
        pstats.Stats(profile, stream=out).sort_stats("cumulative").print_stats(args.top)
        report[name] = {"calls": args.calls, "cpu_ms_per_create": round(cpu * 1000 / args.calls, 2),
                        "wall_ms_per_create": round(wall * 1000 / args.calls, 2),
                        # asgi: its queries run in the request threads, on connections of theirs (not counted)
                        "queries_per_create": len(queries) if name != "asgi" else None,
                        "queries": [sql[:100] for sql in queries],
                        "redis_commands_per_create": redis_per_create, "load": round(os.getloadavg()[0], 2)}
        print(f"--- {name}: cProfile of {args.profile} creates (cumulative) ---\n{out.getvalue()}", flush=True)

    stop_platform(work, redis_server)
    save_report("api_cost", report)


if __name__ == "__main__":
    main()
