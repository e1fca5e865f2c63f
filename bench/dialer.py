"""Benchmark: the campaign dialer's achieved rate against its configured CPS, and the time from
`POST /api/v1/calls` to the INVITE leaving the gateway, on the whole stack (embedded PostgreSQL and
Redis, gateway pool, recorder, Celery worker and beat) with SIPp as the carrier.

    .venv/bin/python bench/dialer.py [--duration 20] [--rates 5,20,50,100] [--gateways 6]

INVITE times come from the gateway's events (ringing ts - post-dial delay: the INVITE actually sent).
Results: JSON on stdout and in bench/results/dialer-<time>.json.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.report import save as save_report

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "platform"), str(ROOT)]
from tests.support import free_media_port, free_udp_port  # noqa: E402

SCENARIO = ROOT / "tests" / "gateway" / "scenarios" / "uas_answer_bye.xml"


def start(argv, log_dir: Path, name: str, pass_fds: tuple[int, ...] = (), **extra_env: str) -> subprocess.Popen:
    # No carrier health checks: the SIPp scenario answers INVITEs, not OPTIONS.
    env = dict(os.environ, PYTHONPATH=f"{ROOT / 'platform'}{os.pathsep}{ROOT}", CARRIER_HEALTH_INTERVAL="3600",
               **extra_env)
    return subprocess.Popen(argv, cwd=ROOT, env=env, stdin=subprocess.DEVNULL, pass_fds=pass_fds,
                            stdout=open(log_dir / f"{name}.log", "wb"), stderr=subprocess.STDOUT)


def stop_all(processes: list[subprocess.Popen]) -> None:
    for proc in processes:
        proc.send_signal(signal.SIGTERM)
    for proc in processes:
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()


def percentile(values, q):
    values = sorted(values)
    return round(values[min(len(values) - 1, int(q * len(values)))], 1) if values else None


def invite_times(r, call_ids: set[str], timeout: float, pickup: dict | None = None) -> dict[str, float]:
    """INVITE time of each call; `pickup` (optional) gets each call's time in the originate queue (ms)."""
    from telephony.gateway import client

    times, finals, last = {}, set(), "0"
    deadline = time.monotonic() + timeout
    while len(finals) < len(call_ids) and time.monotonic() < deadline:
        for entry_id, event in client.read_events(r, last, block_ms=500, count=5000):
            last = entry_id
            if event["call_id"] not in call_ids:
                continue
            if event["type"] == "initiated" and pickup is not None:
                pickup[event["call_id"]] = event.get("queue_ms")
            if event["type"] == "ringing":
                times[event["call_id"]] = event["ts"] - event.get("pdd_ms", 0) / 1000
            if event["type"] in ("completed", "failed"):
                finals.add(event["call_id"])
    return times


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--duration", type=float, default=20)
    parser.add_argument("--rates", default="5,20,50,100")
    parser.add_argument("--gateways", type=int, default=12)
    parser.add_argument("--post-rate", type=float, default=20)
    args = parser.parse_args()

    run_dir = Path(tempfile.mkdtemp(prefix="vp-bench-dialer-"))
    os.environ["VOICEPLATFORM_VAR_DIR"] = str(run_dir)
    for name in ("DATABASE_URL", "REDIS_URL"):
        os.environ.pop(name, None)
    os.environ["DJANGO_SETTINGS_MODULE"] = "voiceplatform.settings"
    os.environ["DEBUG"] = "false"
    from voiceplatform.startup import prepare_process

    prepare_process()
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection
    from django.test import Client
    from django_tenants.utils import schema_context

    from campaigns import services
    from campaigns.models import Campaign, Contact, ContactList
    from core import keys
    from core.redis_client import get_redis
    from telephony.calls.models import Call
    from telephony.models import Carrier, Number
    from tenants.models import Tenant
    from tenants.services import create_tenant, ensure_public_tenant

    call_command("migrate_schemas", shared=True, interactive=False, verbosity=0)
    ensure_public_tenant()
    credentials = create_tenant("bench", "bench.localhost")
    sipp_port = free_udp_port()
    sipp = start([shutil.which("sipp"), "-sf", str(SCENARIO), "-i", "127.0.0.1", "-p", str(sipp_port), "-nostdin",
                  "-mp", str(free_media_port()), "-d", "200", "-max_socket", "5000"], run_dir, "sipp")
    Carrier.objects.create(name="SIPp", host="127.0.0.1", port=sipp_port, max_cps=1000, max_concurrent=1000)
    caller_id = "+14155550123"
    Number.objects.create(e164=caller_id, tenant=Tenant.objects.get(schema_name="bench"))
    py = sys.executable
    processes = [
        start([py, "-m", "telephony.gateway.supervisor", "--processes", str(args.gateways), "--bind", "127.0.0.1",
               "--public-ip", "127.0.0.1", "--log-level", "WARNING"], run_dir, "gateways"),
        start([py, str(ROOT / "manage.py"), "record_calls"], run_dir, "recorder"),
        start([py, "-m", "celery", "-A", "voiceplatform", "worker", "-Q", "celery", "--pool", "threads",
               "--concurrency", "8", "-l", "WARNING"], run_dir, "worker"),
        start([py, "-m", "celery", "-A", "voiceplatform", "beat", "-l", "WARNING", "-s",
               str(run_dir / "beat-schedule")], run_dir, "beat"),
    ]
    r = get_redis()
    report = {"cpus": os.cpu_count(), "gateways": args.gateways, "duration_s": args.duration, "campaigns": []}
    try:
        time.sleep(5)  # pool and workers up
        for rate in [float(x) for x in args.rates.split(",")]:
            n = int(rate * args.duration)
            with schema_context("bench"):
                contacts = ContactList.objects.create(name=f"rate {rate}")
                Contact.objects.bulk_create(Contact(contact_list=contacts, phone=f"+1415{5550000 + i:07d}",
                                                    time_zone="UTC") for i in range(n))
                campaign = Campaign.objects.create(
                    name=f"rate {rate}", contact_list=contacts, caller_ids=[caller_id], stream_url="", cps=rate,
                    max_concurrent=1000, window_start=dt.time(0), window_end=dt.time(23, 59, 59),
                    weekdays=list(range(7)))
                services.campaign_start(campaign.pk)
            deadline = time.monotonic() + args.duration * 3 + 60
            while time.monotonic() < deadline:
                with schema_context("bench"):
                    if Campaign.objects.get(pk=campaign.pk).state == Campaign.State.COMPLETED:
                        break
                time.sleep(0.5)
            with schema_context("bench"):
                sids = set(Call.objects.filter(campaign_id=campaign.pk).values_list("sid", flat=True))
                state = Campaign.objects.get(pk=campaign.pk).state
            times = sorted(invite_times(r, sids, timeout=30).values())
            achieved = (len(times) - 1) / (times[-1] - times[0]) if len(times) > 1 else 0
            report["campaigns"].append({
                "configured_cps": rate, "contacts": n, "calls": len(sids), "invites": len(times),
                "achieved_cps": round(achieved, 2), "ratio": round(achieved / rate, 3), "state": state})
            print(json.dumps(report["campaigns"][-1]), flush=True)

        api = Client(HTTP_AUTHORIZATION=f"Bearer {credentials.api_key}")
        # not measured: the process's first request pays for lazy imports and URL resolver set-up
        api.post("/api/v1/calls", {"to": "+14155569999", "from": caller_id}, content_type="application/json")
        connection.set_schema_to_public()
        posted: dict[str, float] = {}
        handled: list[float] = []
        total = int(args.post_rate * args.duration)
        started = time.monotonic()
        for i in range(total):
            delay = started + i / args.post_rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            sent = time.time()
            response = api.post("/api/v1/calls", {"to": f"+1415{5560000 + i:07d}", "from": caller_id},
                                content_type="application/json")
            connection.set_schema_to_public()
            handled.append((time.time() - sent) * 1000)
            posted[response.json()["sid"]] = sent
        pickup: dict[str, float] = {}
        times = invite_times(r, set(posted), timeout=60, pickup=pickup)
        latency = [(times[sid] - posted[sid]) * 1000 for sid in posted if sid in times]
        queued = [ms for ms in pickup.values() if ms is not None]
        report["post_to_invite_ms"] = {"rate": args.post_rate, "calls": total, "measured": len(latency),
                                       "p50": percentile(latency, 0.5), "p99": percentile(latency, 0.99),
                                       "mean": round(statistics.fmean(latency), 1) if latency else None,
                                       # parts: the request itself, then the command's wait in gw:originate
                                       "request_p50": percentile(handled, 0.5), "request_p99": percentile(handled, 0.99),
                                       "pickup_p50": percentile(queued, 0.5), "pickup_p99": percentile(queued, 0.99)}
        print(json.dumps(report["post_to_invite_ms"]), flush=True)
        r.delete(keys.EVENTS_STREAM)
    finally:
        stop_all(processes + [sipp])
        connection.close()
    save_report("dialer", report)
    shutil.rmtree(run_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
