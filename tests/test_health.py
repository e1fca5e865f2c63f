"""/healthz tells the truth about each part of the platform, and the call recorder rides out outages.

Each test runs the platform's processes against a PostgreSQL and Redis of its own, which it stops:
the run's shared servers stay up for the other tests."""
from __future__ import annotations

import json
import os
import signal
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
import redis

from telephony.gateway import events as gw
from telephony.gateway.store import Store
from tests.stack import Process
from tests.support import free_tcp_port, free_udp_port, project_env, run_manage, wait_until
from voiceplatform.embedded import EmbeddedPostgres, RedisServer, stop_postgres


@dataclass
class Platform:
    """Acme's platform on its own PostgreSQL and Redis, and the processes started for the test."""

    postgres: EmbeddedPostgres
    database_url: str
    redis_server: RedisServer
    log_dir: Path
    processes: list
    web_port: int = 0

    @property
    def env(self) -> dict:
        return {"DATABASE_URL": self.database_url, "REDIS_URL": self.redis_server.url}

    def start(self, name: str, argv: list[str]) -> Process:
        process = Process(name, argv, self.log_dir, **self.env)
        self.processes.append(process)
        return process

    def web(self) -> Process:
        self.web_port = free_tcp_port()
        return self.start("web", [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(self.web_port),
                                  "voiceplatform.asgi:application"])

    def recorder(self) -> Process:
        return self.start("recorder", [sys.executable, "manage.py", "record_calls"])

    def celery_worker(self, name: str, queue: str) -> Process:
        return self.start(name, [sys.executable, "-m", "celery", "-A", "voiceplatform", "worker", "-Q", queue,
                                 "--pool", "threads", "--concurrency", "2", "-l", "WARNING", "-n", f"{name}@%h"])

    def gateway_pool(self) -> Process:
        return self.start("gateways", [sys.executable, "-m", "telephony.gateway.supervisor", "--processes", "1",
                                       "--media-hosts", "1", "--bind", "127.0.0.1", "--public-ip", "127.0.0.1",
                                       "--base-rtp-port", str(30000 + free_udp_port() % 20000)])

    def health(self) -> tuple[int, dict, float]:
        """(HTTP status, JSON report, seconds the answer took)."""
        started = time.monotonic()
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.web_port}/healthz", timeout=10) as response:
                status, body, content_type = response.status, response.read(), response.headers["Content-Type"]
        except urllib.error.HTTPError as error:
            status, body, content_type = error.code, error.read(), error.headers["Content-Type"]
        assert content_type == "application/json", body[:300]
        return status, json.loads(body), time.monotonic() - started

    def health_when(self, predicate, timeout: float = 60, what: str = "health") -> tuple[int, dict, float]:
        def answered():
            try:
                answer = self.health()
            except OSError:
                return None
            return answer if predicate(answer[1]) else None

        try:
            return wait_until(answered, timeout, 0.3, what=what)
        except AssertionError:
            raise AssertionError(f"{what}; last report: {self.health()[1]}\n"
                                 + "\n".join(f"--- {p.name}\n{p.tail(1500)}" for p in self.processes)) from None

    def sql(self, query: str, *args):
        with psycopg.connect(self.database_url, connect_timeout=3) as conn:
            return conn.execute(query, args).fetchall()


@pytest.fixture
def platform(tmp_path, server_dir):
    postgres = EmbeddedPostgres(server_dir / "postgres")
    database_url = postgres.start()
    redis_server = RedisServer(tmp_path / "redis").start()
    acme = Platform(postgres, database_url, redis_server, tmp_path, [])
    env = project_env(**acme.env)
    for command in (["migrate_schemas", "--shared", "-v", "0"], ["create_tenant", "acme", "--domain", "acme.localhost"]):
        result = run_manage(*command, env=env)
        assert result.returncode == 0, result.stderr
    yield acme
    for process in acme.processes:
        process.stop()
    redis_server.stop()
    stop_postgres(server_dir / "postgres")


def test_health_reports_each_part_and_a_webhooks_worker_does_not_stand_in_for_the_dialer(platform):
    platform.web()
    platform.recorder()
    platform.gateway_pool()
    webhooks = platform.celery_worker("webhooks", "webhooks")

    # Only the webhooks worker runs: it answers for its own queue, and the dialer is reported down.
    status, report, _ = platform.health_when(
        lambda r: all(r["services"][part]["ok"] for part in ("postgres", "redis", "channel_layer", "recorder",
                                                            "gateways", "webhooks")),
        what="every part but the dialer to be up")
    assert status == 503 and report["ok"] is False
    services = report["services"]
    assert services["dialer"]["ok"] is False
    assert "no Celery worker consumes the 'celery' queue" in services["dialer"]["error"]
    assert services["webhooks"]["workers"] == [f"webhooks@{os.uname().nodename}"]

    platform.celery_worker("dialer", "celery")
    status, report, _ = platform.health_when(lambda r: r["ok"], what="the platform to be healthy")
    assert status == 200
    services = report["services"]
    assert services["dialer"]["workers"] == [f"dialer@{os.uname().nodename}"]
    assert services["gateways"]["alive"] == 1 and services["gateways"]["free_slots"] == 4
    assert services["recorder"]["alive"] and services["recorder"]["undelivered"] == 0
    hosts = services["media_hosts"]  # the pool's supervisor runs one media host (gateway_pool)
    assert hosts["ok"] and hosts["alive"] == 1 and "required" not in hosts, hosts
    assert services["runner"]["running"] is False and services["runner"]["required"] is False

    # The webhooks worker dies: the dialer's worker does not make it look alive.
    webhooks.kill()
    status, report, _ = platform.health_when(lambda r: not r["services"]["webhooks"]["ok"], what="webhooks down")
    assert status == 503 and report["services"]["dialer"]["ok"] is True


def _call_events(sid: str, answered_at: float) -> list[dict]:
    return [
        gw.make_event(sid, gw.INITIATED, ts=answered_at - 2, gateway_id="gw-test", tenant="acme"),
        gw.make_event(sid, gw.ANSWERED, ts=answered_at, leg=0, setup_ms=1900, tenant="acme"),
        gw.make_event(sid, gw.COMPLETED, ts=answered_at + 5, leg=0, outcome=gw.OUTCOME_ANSWERED, duration=5.0,
                      hangup_by="callee", tenant="acme"),
    ]


def _queue_call(platform: Platform, sid: str) -> None:
    result = run_manage("shell", "-c", (
        "from django_tenants.utils import schema_context\n"
        "from telephony.calls.models import Call\n"
        "with schema_context('acme'):\n"
        f"    Call.objects.create(sid='{sid}', from_number='+15550100', to_number='+15550199')\n"
    ), env=project_env(**platform.env))
    assert result.returncode == 0, result.stderr


def test_postgresql_down_is_a_503_within_2_s_and_the_recorder_records_the_outage_once_it_is_back(platform):
    web, recorder = platform.web(), platform.recorder()
    _queue_call(platform, "CAoutage")
    _queue_call(platform, "CAredisgone")
    platform.health_when(lambda r: r["services"]["postgres"]["ok"] and r["services"]["recorder"]["ok"],
                         what="PostgreSQL and the recorder up")

    # PostgreSQL hangs (stopped, not gone): health does not hang with it.
    os.kill(platform.postgres.pid, signal.SIGSTOP)
    try:
        status, report, took = platform.health()
    finally:
        os.kill(platform.postgres.pid, signal.SIGCONT)
    assert status == 503 and took < 2.0
    assert report["services"]["postgres"] == {"ok": False, "error": "no answer within 1.5 s", "ms": 1500.0}
    platform.health_when(lambda r: r["services"]["postgres"]["ok"], what="PostgreSQL answering again")

    os.kill(platform.postgres.pid, signal.SIGKILL)
    status, report, took = platform.health_when(lambda r: not r["services"]["postgres"]["ok"], what="postgres down")
    assert status == 503 and report["ok"] is False
    assert took < 2.0
    assert report["services"]["redis"]["ok"] is True
    # Asked again while PostgreSQL stays down: still JSON, still within 2 s.
    status, report, took = platform.health()
    assert (status, report["services"]["postgres"]["ok"]) == (503, False) and took < 2.0

    # A call ends while PostgreSQL is down: its events wait in the stream, the recorder keeps running.
    store = Store(redis.Redis.from_url(platform.redis_server.url))
    for event in _call_events("CAoutage", time.time()):
        store.publish(event)
    wait_until(lambda: "PostgreSQL unavailable" in recorder.tail(), 30, 0.2, what="the recorder to notice")
    _, report, _ = platform.health_when(lambda r: r["services"]["recorder"]["pending"]
                                        + r["services"]["recorder"]["undelivered"] >= 3, what="the recorder's lag")
    assert report["services"]["recorder"]["ok"] is True  # alive, behind
    assert recorder.proc.poll() is None

    wait_until(lambda: _restarted(platform.postgres), 30, 0.5, what="PostgreSQL to start again")
    rows = wait_until(lambda: platform.sql(
        "SELECT status, outcome, duration_s, hangup_by FROM acme.calls_call WHERE sid = %s AND status = 'completed'",
        "CAoutage"), 20, 0.3, what="the outage's events to be recorded")
    assert rows == [("completed", "answered", 5.0, "callee")]
    assert recorder.proc.poll() is None
    platform.health_when(lambda r: r["services"]["postgres"]["ok"] and r["services"]["recorder"]["pending"] == 0,
                         what="web back on PostgreSQL and the recorder caught up")

    # Redis goes away too, and comes back with what it had: the recorder rides it out as well.
    os.kill(platform.redis_server.pid, signal.SIGKILL)
    platform.health_when(lambda r: not r["services"]["redis"]["ok"], what="redis down")
    platform.redis_server.restart()
    for event in _call_events("CAredisgone", time.time()):
        store.publish(event)
    rows = wait_until(lambda: platform.sql(
        "SELECT status, outcome FROM acme.calls_call WHERE sid = %s AND status = 'completed'", "CAredisgone"),
        30, 0.3, what="events after the Redis restart to be recorded")
    assert rows == [("completed", "answered")]
    assert recorder.proc.poll() is None and web.proc.poll() is None


def _restarted(postgres: EmbeddedPostgres) -> bool:
    try:
        postgres.restart()
    except Exception:  # noqa: BLE001 - the killed postmaster is not reaped yet: try again
        return False
    return postgres.alive()
