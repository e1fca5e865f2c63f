"""Benchmark: what one run of the dispatcher (campaigns.tasks.dispatch_dialers, every second on beat)
costs with many tenants, only one of which has a campaign.

    flock /work/bench.lock .venv/bin/python bench/dispatch.py [--idle-tenants 30] [--runs 20]

Set-up: an embedded PostgreSQL and Redis, ``--idle-tenants`` tenants without campaigns (each one's
schema is created and migrated: ~1-2 s apiece) and one, ``bench``, with a running campaign. Then
``--runs`` dispatches of each kind, in this process: the usual one (the tenants with campaign
activity, from the Redis registry of campaigns/activity.py) and the full scan that visits every tenant
(as every dispatch did before the registry, and one does every DIALER_FULL_SCAN_S), forced by deleting
its key before each run. Measured per run: CPU ms (time.process_time), wall ms and SQL statements
(schema switches included). The tasks dispatch enqueues (dial_campaign, reconcile_campaign) are
counted, not sent: both kinds enqueue the same.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "platform"), str(ROOT)]

from bench.metrics_cost import setup_platform, stop_platform  # noqa: E402
from bench.report import save as save_report  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--idle-tenants", type=int, default=30)
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="vp-bench-dispatch-"))
    redis_server = setup_platform(work)  # tenant "bench"
    import datetime as dt

    from django.db import connection
    from django_tenants.utils import schema_context

    from campaigns import services, tasks
    from campaigns.models import Campaign, Contact, ContactList
    from core import keys
    from core.redis_client import get_redis
    from tenants.services import create_tenant

    started = time.perf_counter()
    for n in range(args.idle_tenants):
        create_tenant(f"idle{n:03d}", f"idle{n:03d}.localhost")
    setup_s = time.perf_counter() - started
    with schema_context("bench"):
        contacts = ContactList.objects.create(name="Bench")
        Contact.objects.create(contact_list=contacts, phone="+14155550142", name="Ada")
        campaign = Campaign.objects.create(name="Bench", contact_list=contacts, caller_ids=["+14155550123"],
                                           stream_url="wss://agent.example", cps=1, window_start=dt.time(0),
                                           window_end=dt.time(23, 59, 59), weekdays=list(range(7)))
        services.campaign_start(campaign.pk)  # marks "bench" active
    connection.set_schema_to_public()

    enqueued = []
    tasks.dial_campaign.delay = lambda *args: enqueued.append(args)
    tasks.reconcile_campaign.delay = lambda *args: enqueued.append(args)
    r = get_redis()

    def measure(full_scan: bool) -> dict:
        statements: list[str] = []

        def counted(execute, sql, params, many, context):
            statements.append(sql)
            return execute(sql, params, many, context)

        def once():
            if full_scan:
                r.delete(keys.CAMPAIGN_FULL_SCAN)
            else:
                r.set(keys.CAMPAIGN_FULL_SCAN, 1, px=600_000)
            tasks.dispatch_dialers()

        for _ in range(3):  # warm up: lazy imports, connections, registered scripts
            once()
        enqueued.clear()
        with connection.execute_wrapper(counted):
            once()
        per_run_enqueued = len(enqueued)
        cpu, wall = time.process_time(), time.perf_counter()
        for _ in range(args.runs):
            once()
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        return {"cpu_ms_per_run": round(cpu * 1000 / args.runs, 2), "wall_ms_per_run": round(wall * 1000 / args.runs, 2),
                "sql_statements_per_run": len(statements), "tasks_enqueued_per_run": per_run_enqueued}

    registry, full_scan = measure(full_scan=False), measure(full_scan=True)
    report = {
        "idle_tenants": args.idle_tenants, "tenants_with_a_running_campaign": 1, "runs": args.runs,
        "tenant_setup_s": round(setup_s, 1),
        "registry": registry, "full_scan": full_scan,
        "full_scan_over_registry_cpu": round(full_scan["cpu_ms_per_run"] / registry["cpu_ms_per_run"], 1),
        "active_schemas": sorted(m.decode() for m in r.zrange(keys.CAMPAIGN_ACTIVITY, 0, -1)),
        "cpus": os.cpu_count(), "load": round(os.getloadavg()[0], 2),
    }
    stop_platform(work, redis_server)
    save_report("dispatch", report)


if __name__ == "__main__":
    main()
