"""Benchmark: bursts on the whole stack (embedded PostgreSQL and Redis, gateway pool, dialer workers,
daphne, recorder, webhooks worker, beat) with SIPp as the carrier, beside the gateway pool's own
figure in the same run.

    .venv/bin/python bench/burst.py [--hold 60] [--rates 100,150,200] [--pool-rates 150,200,250]
                                    [--parts pool,hold,step,tenants]

1. pool: originate commands pushed straight into Redis (bench/gateway_capacity.py), before the Django
   processes start: the highest rate with < 0.1% failed.
2. hold: one campaign per rate for --hold seconds; held when the INVITE rate is within 5% of the
   configured CPS with < 0.1% failed. CPU seconds per call of each process kind during the run.
3. step: 0 -> --step-rate API calls/s (POST /api/v1/calls over HTTP) for --step-s seconds: request
   latency p50/p99, setup latency (POST -> INVITE) p50/p99, time until the last INVITE, calls lost.
   The Twilio-compatible create is measured the same way at the same rate (request latency).
4. tenants: two tenants' campaigns start at --step-rate CPS each at once; each one's wait
   (call recorded -> INVITE) p50/p99.
The load average is recorded beside each figure (the machine may be shared). ``--parts`` runs some of
them (``--parts step --step-rate 100``: the API alone); every process starts whatever the parts.
Results: JSON on stdout and in bench/results/burst-<time>.json.
"""
from __future__ import annotations

import argparse
import base64
import datetime as dt
import http.client
import json
import logging
import os
import queue
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "platform"), str(ROOT)]

from bench.dialer import SCENARIO, percentile, start, stop_all  # noqa: E402
from bench.report import save as save_report  # noqa: E402
from tests.support import free_media_port, free_udp_port  # noqa: E402
from voiceplatform.processes import shared_listening_socket  # noqa: E402


def wait_listening(port: int, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise RuntimeError(f"daphne is not listening on {port}")


def per_second(times) -> list[int]:
    """How many of `times` (epoch seconds) fall in each second from the first."""
    times = sorted(times)
    counts = Counter(int(t - times[0]) for t in times) if times else Counter()
    return [counts[second] for second in range(max(counts, default=-1) + 1)]


def load() -> float:
    return round(os.getloadavg()[0], 2)


# psutil.cpu_times() fields that are not this machine's work: waiting, time the hypervisor took,
# and guest time (Linux counts it in user and nice already)
NOT_BUSY = ("idle", "iowait", "steal", "guest", "guest_nice")


def busy_cores(before, after, seconds: float) -> float:
    """Cores the whole machine kept busy between two psutil.cpu_times() (every process, the kernel's
    too): beside the stack's own figures, it shows CPU that no process kind accounts for."""
    busy = [field for field in after._fields if field not in NOT_BUSY]
    return round(sum(getattr(after, f) - getattr(before, f) for f in busy) / seconds, 2)


class Events:
    """Reads the call events stream from the start, in a thread: INVITE time, queue time and final
    type of every call (the stream is read as it grows, so nothing trimmed is missed)."""

    BLOCK = 20000  # entries per read; a full block is followed by the next read at once

    def __init__(self, r):
        self.r, self.invite, self.final, self.queue_ms = r, {}, {}, {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        from core import keys
        from telephony.gateway import events

        # The watcher shares the cores with the stack it measures: it reads the stream in large
        # blocks, at most twice a second, and decodes only the events it keeps.
        wanted = [f'"type":"{t}"'.encode() for t in (events.INITIATED, events.RINGING, *events.FINAL_TYPES)]
        last = "0"
        while not self._stop.is_set():
            started = time.monotonic()
            got = self.r.xread({keys.EVENTS_STREAM: last}, count=self.BLOCK, block=500)
            entries = got[0][1] if got else []
            if entries:
                last = entries[-1][0]
            for event in (events.decode(f) for _, f in entries if any(w in f[b"event"] for w in wanted)):
                call_id = event["call_id"]
                if event["type"] == events.INITIATED and event.get("queue_ms") is not None:
                    self.queue_ms[call_id] = event["queue_ms"]
                elif event["type"] == events.RINGING:
                    self.invite[call_id] = event["ts"] - event.get("pdd_ms", 0) / 1000
                elif events.is_final(event):
                    self.final[call_id] = event["type"]
            if len(entries) < self.BLOCK:
                self._stop.wait(max(0.0, 0.5 - (time.monotonic() - started)))

    def wait_finals(self, call_ids: set[str], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not call_ids <= self.final.keys():
            time.sleep(0.5)

    def stop(self) -> None:
        self._stop.set()


def servers(run_dir: Path) -> dict[str, list[psutil.Process]]:
    """The embedded PostgreSQL and Redis of the run (found by their data folder): the topmost
    process of each, so Kinds counts each process once."""
    found = {}
    for proc in psutil.process_iter(["cmdline"]):
        cmdline = " ".join(proc.info["cmdline"] or [])
        if str(run_dir) in cmdline:
            for kind in ("postgres", "redis"):
                if f"/{kind}" in cmdline.split(" -")[0] or cmdline.startswith(kind):
                    found[proc.pid] = (kind, proc)
    kinds: dict[str, list[psutil.Process]] = {"postgres": [], "redis": []}
    for kind, proc in found.values():
        if proc.ppid() not in found:
            kinds[kind].append(proc)
    return kinds


class Kinds:
    """CPU seconds of each process kind (a process and its children, with the children that have
    ended: PostgreSQL's backends and autovacuum workers, a gateway worker that died)."""

    def __init__(self, processes: dict[str, subprocess.Popen | psutil.Process | list]):
        self.processes = {kind: procs if isinstance(procs, list) else [procs] for kind, procs in processes.items()}

    def cpu(self) -> dict[str, float]:
        totals = {}
        for kind, procs in self.processes.items():
            total = 0.0
            for proc in procs:
                try:
                    root = psutil.Process(proc.pid)
                    for p in [root, *root.children(recursive=True)]:
                        times = p.cpu_times()  # children_*: its children that ended and were reaped
                        total += times.user + times.system + times.children_user + times.children_system
                except psutil.NoSuchProcess:
                    pass
            totals[kind] = total
        return totals

    @staticmethod
    def per_call(before: dict, after: dict, calls: int) -> dict[str, float]:
        return {kind: round((after[kind] - before[kind]) * 1000 / max(1, calls), 2) for kind in after}


def http_load(port: int, rate: float, seconds: float, request, threads: int = 256) -> list[dict]:
    """Open-loop load: request i is due at start + i / rate; `request(i)` gives (method, path, body,
    headers). Returns per request: due and sent wall times, latency from sending (ms), status, body."""
    total, due_q, results = int(rate * seconds), queue.Queue(), []
    lock = threading.Lock()

    def worker():
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        while (item := due_q.get()) is not None:
            i, due = item
            method, path, body, headers = request(i)
            delay = due - time.time()
            if delay > 0:
                time.sleep(delay)
            sent = time.time()
            try:
                conn.request(method, path, body=body, headers=headers)
                response = conn.getresponse()
                status, payload = response.status, response.read()
            except (OSError, http.client.HTTPException):
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
                status, payload = 0, b""
            with lock:
                results.append({"due": due, "sent": sent, "ms": (time.time() - sent) * 1000, "status": status,
                                "body": payload})
        conn.close()

    pool = [threading.Thread(target=worker, daemon=True) for _ in range(threads)]
    for t in pool:
        t.start()
    started = time.time() + 0.2
    for i in range(total):
        due_q.put((i, started + i / rate))
    for _ in pool:
        due_q.put(None)
    for t in pool:
        t.join()
    return results


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--hold", type=float, default=60)
    parser.add_argument("--rates", default="100,150,200")
    parser.add_argument("--pool-rates", default="150,200,250")
    parser.add_argument("--pool-s", type=float, default=15)
    parser.add_argument("--step-rate", type=float, default=200)
    parser.add_argument("--step-s", type=float, default=10)
    # 20, not 16: beside the rest of the stack each call holds its slot longer, and 64 slots (16 x 4)
    # capped the hold at ~130-135 CPS (docs/capacity.md, session 11)
    parser.add_argument("--gateways", type=int, default=20, help="gateway worker processes, 4 calls each")
    parser.add_argument("--dialers", type=int, default=2, help="dialer worker processes")
    parser.add_argument("--web-processes", type=int, default=2, help="daphnes sharing the HTTP port (as `run`)")
    parser.add_argument("--parts", default="pool,hold,step,tenants",
                        help="which parts to run (the hold ratio needs pool)")
    args = parser.parse_args()
    parts = set(args.parts.split(","))
    if unknown := parts - {"pool", "hold", "step", "tenants"}:
        parser.error(f"unknown parts: {', '.join(sorted(unknown))}")

    run_dir = Path(tempfile.mkdtemp(prefix="vp-bench-burst-"))
    os.environ["VOICEPLATFORM_VAR_DIR"] = str(run_dir)
    for name in ("DATABASE_URL", "REDIS_URL"):
        os.environ.pop(name, None)
    os.environ.update(DJANGO_SETTINGS_MODULE="voiceplatform.settings", DEBUG="false")
    web = shared_listening_socket("127.0.0.1", 0)  # shared by the web processes, as `run` does
    web_port = web.getsockname()[1]
    os.environ["MEDIA_RELAY_URL"] = f"ws://127.0.0.1:{web_port}"
    from voiceplatform.startup import prepare_process

    prepare_process()
    import django

    django.setup()
    logging.getLogger("gateway.client").setLevel(logging.WARNING)  # a line per call costs the load generator
    from django.core.management import call_command
    from django.db import connection
    from django_tenants.utils import schema_context

    from bench import gateway_capacity
    from campaigns import services
    from campaigns.models import Campaign, CampaignContact, Contact, ContactList
    from core import keys
    from core.redis_client import get_redis
    from telephony.calls.models import Call
    from telephony.models import Carrier, Number
    from tenants.models import Tenant
    from tenants.services import create_tenant, ensure_public_tenant

    call_command("migrate_schemas", shared=True, interactive=False, verbosity=0)
    ensure_public_tenant()
    caller_id = "+14155550123"
    tenants = {}
    for slug in ("alpha", "beta"):
        tenants[slug] = create_tenant(slug, f"{slug}.localhost")
        tenant = Tenant.objects.get(schema_name=slug)
        tenant.max_concurrent_calls = 2000
        tenant.save(update_fields=["max_concurrent_calls"])
        Number.objects.create(e164=caller_id if slug == "alpha" else "+14155550124", tenant=tenant)
    sipp_port = free_udp_port()
    sipp = start([shutil.which("sipp"), "-sf", str(SCENARIO), "-i", "127.0.0.1", "-p", str(sipp_port), "-nostdin",
                  "-mp", str(free_media_port()), "-d", "200", "-max_socket", "5000"], run_dir, "sipp")
    Carrier.objects.create(name="SIPp", host="127.0.0.1", port=sipp_port, max_cps=1000, max_concurrent=2000)
    py = sys.executable
    processes = {"gateway": start([py, "-m", "telephony.gateway.supervisor", "--processes", str(args.gateways),
                                   "--bind", "127.0.0.1", "--public-ip", "127.0.0.1", "--log-level", "WARNING"],
                                  run_dir, "gateways")}
    r = get_redis()
    events = Events(r)
    report = {"cpus": os.cpu_count(), "gateways": args.gateways, "dialer_workers": args.dialers,
              "web_processes": args.web_processes}

    class PoolView:  # what gateway_capacity.gateway_rate reads of a pool
        def cpu_seconds(self):
            return Kinds({"gateway": processes["gateway"]}).cpu()["gateway"]

        def rss_mb(self):
            return []

    def campaign(slug: str, name: str, cps: float, n: int, offset: int) -> int:
        with schema_context(slug):
            contacts = ContactList.objects.create(name=name)
            Contact.objects.bulk_create(Contact(contact_list=contacts, phone=f"+1415{offset + i:07d}", time_zone="UTC")
                                        for i in range(n))
            return Campaign.objects.create(
                name=name, contact_list=contacts, caller_ids=[caller_id if slug == "alpha" else "+14155550124"],
                stream_url="", cps=cps, max_concurrent=2000, window_start=dt.time(0),
                window_end=dt.time(23, 59, 59), weekdays=list(range(7))).pk

    def campaign_calls(slug: str, campaign_id: int) -> dict[str, float]:
        with schema_context(slug):
            return {sid: created.timestamp() for sid, created in
                    Call.objects.filter(campaign_id=campaign_id).values_list("sid", "created_at")}

    def wait_completed(slug: str, campaign_id: int, timeout: float) -> dict:
        """The campaign's state when it completed or the time ran out, and its contacts' states."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with schema_context(slug):
                state = Campaign.objects.get(pk=campaign_id).state
            if state == Campaign.State.COMPLETED:
                break
            time.sleep(0.5)
        with schema_context(slug):
            contacts = Counter(CampaignContact.objects.filter(campaign_id=campaign_id).values_list("state", flat=True))
        return {"state": state, "contacts_by_state": dict(contacts)}

    try:
        time.sleep(5)
        pool_ladder, pool_best = [], 0
        for rate in [int(x) for x in args.pool_rates.split(",")] if "pool" in parts else []:
            result = gateway_capacity.gateway_rate(r, PoolView(), f"127.0.0.1:{sipp_port}", rate, args.pool_s)
            # the rate the commands really went in at (this process may not keep up with the ladder)
            offered = round(result["calls"] / max(result["push_s"], args.pool_s), 1)
            result.update(load=load(), offered_cps=offered, held=result["failed"] <= result["calls"] * 0.001)
            pool_ladder.append(result)
            if not result["held"]:
                break
            pool_best = max(pool_best, offered)
        report["pool"] = {"ladder": pool_ladder, "best_cps": pool_best}
        r.delete(keys.EVENTS_STREAM)  # its calls belong to no tenant: the recorder need not read them
        print(json.dumps(report["pool"]), flush=True)

        processes.update(
            dialer=[start([py, "-m", "celery", "-A", "voiceplatform", "worker", "-Q", "celery", "--pool", "threads",
                           "--concurrency", "6", "-l", "WARNING", "-n", f"dialer{i}@%h"], run_dir, f"dialer{i}")
                    for i in range(args.dialers)],
            webhooks=start([py, "-m", "celery", "-A", "voiceplatform", "worker", "-Q", "webhooks", "--pool", "threads",
                            "--concurrency", "16", "-l", "WARNING", "-n", "webhooks@%h"], run_dir, "webhooks"),
            recorder=start([py, str(ROOT / "manage.py"), "record_calls"], run_dir, "recorder"),
            web=[start([py, "-m", "daphne", "--fd", str(web.fileno()), "voiceplatform.asgi:application"],
                       run_dir, f"web{i}", pass_fds=(web.fileno(),), DATABASE_POOL_SIZE="20")
                 for i in range(args.web_processes)],
            beat=start([py, "-m", "celery", "-A", "voiceplatform", "beat", "-l", "WARNING", "-s",
                        str(run_dir / "beat-schedule")], run_dir, "beat"),
        )
        kinds = Kinds({**processes, "sipp": sipp, **servers(run_dir)})
        wait_listening(web_port)
        time.sleep(5)

        report["hold"] = []
        offset = 5_000_000
        for rate in [float(x) for x in args.rates.split(",")] if "hold" in parts else []:
            n = int(rate * args.hold)
            cpu_before, machine_before, started = kinds.cpu(), psutil.cpu_times(), time.monotonic()
            campaign_id = campaign("alpha", f"hold {rate}", rate, n, offset)
            offset += n
            with schema_context("alpha"):
                services.campaign_start(campaign_id)
            state = wait_completed("alpha", campaign_id, args.hold * 2 + 40)
            created = campaign_calls("alpha", campaign_id)
            sids = set(created)
            events.wait_finals(sids, 60)
            cpu = Kinds.per_call(cpu_before, kinds.cpu(), len(sids))
            elapsed = time.monotonic() - started
            times = sorted(events.invite[sid] for sid in sids if sid in events.invite)
            achieved = (len(times) - 1) / (times[-1] - times[0]) if len(times) > 1 else 0.0
            failed = sum(1 for sid in sids if events.final.get(sid) != "completed")
            queued = [events.queue_ms[sid] for sid in sids if sid in events.queue_ms]
            result = {"configured_cps": rate, "contacts": n, "calls": len(sids), "invites": len(times),
                      "achieved_cps": round(achieved, 1), "failed_pct": round(100 * failed / max(1, n), 3),
                      "held": achieved >= 0.95 * rate and failed < 0.001 * n and len(sids) == n,
                      "pool_queue_ms_p50": percentile(queued, 0.5), "pool_queue_ms_p99": percentile(queued, 0.99),
                      **state, "cpu_ms_per_call": cpu, "load": load(),
                      "stack_cores": round(sum(cpu.values()) * len(sids) / 1000 / elapsed, 2),
                      "busy_cores": busy_cores(machine_before, psutil.cpu_times(), elapsed),
                      # where the pace was lost: calls recorded by the dialer, and INVITEs, in each second
                      "recorded_per_s": per_second(created.values()), "invites_per_s": per_second(times)}
            report["hold"].append(result)
            print(json.dumps(result), flush=True)
            if not result["held"]:
                break
        held = [x["configured_cps"] for x in report["hold"] if x["held"]]
        report["held_cps"] = max(held, default=0)
        report["ratio_to_pool"] = round(report["held_cps"] / pool_best, 3) if pool_best else None

        alpha = tenants["alpha"]
        bearer = {"Authorization": f"Bearer {alpha.api_key}", "Host": "localhost",
                  "Content-Type": "application/json"}

        def api_call(i):
            return "POST", "/api/v1/calls", json.dumps({"to": f"+1415{8000000 + i:07d}", "from": caller_id}), bearer

        basic = base64.b64encode(f"{alpha.account_sid}:{alpha.api_key}".encode()).decode()
        twilio_headers = {"Authorization": f"Basic {basic}", "Host": "localhost",
                          "Content-Type": "application/x-www-form-urlencoded"}

        def twilio_call(i):
            body = f"To=%2B1415{8500000 + i:07d}&From=%2B14155550123&Twiml=%3CResponse%3E%3CHangup%2F%3E%3C%2FResponse%3E"
            return "POST", f"/2010-04-01/Accounts/{alpha.account_sid}/Calls.json", body, twilio_headers

        if "step" in parts:
            http_load(web_port, 5, 1, api_call)  # warm up: lazy imports, URL resolver
        for name, request in (("api", api_call), ("twilio", twilio_call)) if "step" in parts else ():
            cpu_before = kinds.cpu()
            results = http_load(web_port, args.step_rate, args.step_s, request)
            posted = {json.loads(x["body"])["sid"]: x["sent"] for x in results if x["status"] == 201}
            events.wait_finals(set(posted), 90)
            setup = [(events.invite[sid] - at) * 1000 for sid, at in posted.items() if sid in events.invite]
            lost = [sid for sid in posted if sid not in events.final]
            last_invite = max((events.invite[sid] for sid in posted if sid in events.invite), default=None)
            first_due = min(x["due"] for x in results)
            request_ms = [x["ms"] for x in results]
            result = {"rate": args.step_rate, "seconds": args.step_s, "requests": len(results),
                      "created": len(posted), "errors": sorted({x["status"] for x in results if x["status"] != 201}),
                      "request_ms_p50": percentile(request_ms, 0.5), "request_ms_p99": percentile(request_ms, 0.99),
                      "late_start_ms_p99": percentile([(x["sent"] - x["due"]) * 1000 for x in results], 0.99),
                      "setup_ms_p50": percentile(setup, 0.5), "setup_ms_p99": percentile(setup, 0.99),
                      "drained_after_s": round(last_invite - first_due, 1) if last_invite else None,
                      "lost": len(lost), "failed": sum(1 for sid in posted if events.final.get(sid) not in (None, "completed")),
                      "cpu_ms_per_call": Kinds.per_call(cpu_before, kinds.cpu(), len(posted)), "load": load()}
            report[f"step_{name}"] = result
            print(json.dumps({name: result}), flush=True)

        if "tenants" in parts:
            n = int(args.step_rate * args.step_s)
            ids = {slug: campaign(slug, f"burst {slug}", args.step_rate, n, 9_000_000 + k * n)
                   for k, slug in enumerate(("alpha", "beta"))}
            for slug, campaign_id in ids.items():
                with schema_context(slug):
                    services.campaign_start(campaign_id)
            report["tenants"] = {}
            for slug, campaign_id in ids.items():
                state = wait_completed(slug, campaign_id, args.step_s * 4 + 40)
                created = campaign_calls(slug, campaign_id)
                events.wait_finals(set(created), 60)
                waits = [(events.invite[sid] - at) * 1000 for sid, at in created.items() if sid in events.invite]
                queued = [events.queue_ms[sid] for sid in created if sid in events.queue_ms]
                invites = [events.invite[sid] for sid in created if sid in events.invite]
                report["tenants"][slug] = {
                    "cps": args.step_rate, "contacts": n, "calls": len(created), **state,
                    "wait_ms_p50": percentile(waits, 0.5), "wait_ms_p99": percentile(waits, 0.99),
                    "pool_queue_ms_p99": percentile(queued, 0.99),
                    "achieved_cps": round((len(invites) - 1) / (max(invites) - min(invites)), 1) if len(invites) > 1 else 0,
                    "lost": sum(1 for sid in created if sid not in events.final), "load": load()}
            print(json.dumps({"tenants": report["tenants"]}), flush=True)
    finally:
        events.stop()
        stop_all([proc for procs in Kinds(processes).processes.values() for proc in procs] + [sipp])
        connection.close()
    save_report("burst", report)
    shutil.rmtree(run_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
