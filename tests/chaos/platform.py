"""The whole platform as `make run` runs it (`manage.py run`: web, dialer worker, webhooks worker, beat,
recorder, gateway supervisor with its workers and media hosts, demo agent), on free ports, against a
PostgreSQL and a Redis of its own that can be killed, with SIPp trunks as carriers; and what the chaos
suite needs to see it: its processes by role, its health, its records (read straight from PostgreSQL)
and its REST API (to run campaigns as a tenant would).
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path

import psutil

from tests.chaos.carrier import Carrier, tone_pcap
from tests.chaos.servers import Postgres, Redis
from tests.stack import Process
from tests.support import ROOT, free_tcp_port, free_udp_port, project_env

TENANT = "demo"  # the tenant `manage.py run` creates; its API key is in the demo credentials file
CALLER_ID = "+14155550100"  # the demo tenant's number


@dataclass(frozen=True)
class Scale:
    """How much traffic the chaos campaigns make (the suite's is sized for 2 shared cores)."""

    gateways: int = 5  # gateway worker processes, 4 calls each
    contacts: int = 40  # per campaign
    cps: float = 8.0
    max_concurrent: int = 16  # the campaign's cap, and each trunk's
    dialer_threads: int = 4
    web_processes: int = 2  # daphnes on the one HTTP port, as `run` starts them


# Which process plays which part, by its command line (the runner's children and the supervisor's).
ROLES = {
    "web": lambda argv: "daphne" in argv,
    "worker": lambda argv: "celery" in argv and "worker" in argv and _after(argv, "-Q") == "celery",
    "webhooks": lambda argv: "celery" in argv and "worker" in argv and _after(argv, "-Q") == "webhooks",
    "beat": lambda argv: "celery" in argv and "beat" in argv,
    "recorder": lambda argv: "record_calls" in argv,
    "gateways": lambda argv: "telephony.gateway.supervisor" in argv,
    "gateway worker": lambda argv: "telephony.gateway.worker" in argv,
    "media host": lambda argv: "media.host" in argv,
}


def _after(argv: list[str], flag: str) -> str | None:
    return argv[argv.index(flag) + 1] if flag in argv[:-1] else None


class ChaosPlatform:
    def __init__(self, scale: Scale = Scale(), work_dir: Path | None = None, log=print):
        self.scale, self.say = scale, log
        self.work_dir = work_dir or Path(tempfile.mkdtemp(prefix="vp-chaos-"))
        os.chmod(self.work_dir, 0o755)  # postgres runs as its own user and keeps its socket in here
        self.postgres = Postgres(self.work_dir / "postgres")
        self.redis = Redis(self.work_dir / "redis")
        pcap = tone_pcap(self.work_dir / "carrier-tone.pcap")
        # Trunk A takes the calls; Trunk B is the failover when A is down or does not answer.
        self.trunks = {"Trunk A": (Carrier("Trunk A", self.work_dir, pcap), 10),
                       "Trunk B": (Carrier("Trunk B", self.work_dir, pcap), 20)}
        self.port = free_tcp_port()
        self.agent_port = free_tcp_port()
        self.run: Process | None = None
        self.runs = 0
        self._api_key = None

    # --- lifecycle --------------------------------------------------------------------------------

    def env(self) -> dict[str, str]:
        return project_env(
            DATABASE_URL=self.postgres.url, REDIS_URL=self.redis.url, VOICEPLATFORM_VAR_DIR=str(self.work_dir / "var"),
            GATEWAY_PROCESSES=str(self.scale.gateways), CELERY_CONCURRENCY=str(self.scale.dialer_threads),
            WEB_PROCESSES=str(self.scale.web_processes),
            # carriers pinged every second, down after 2 failures, back after 1 answer
            CARRIER_HEALTH_INTERVAL="1", CARRIER_PING_TIMEOUT="1", CARRIER_DOWN_AFTER="2", CARRIER_UP_AFTER="1",
            # a contact claimed by a dialer that died is dialed again after 5 s (default 30 s)
            DIALER_UNPLACED_GRACE_S="5",
            # a call whose originate never reached Redis (down) ends as not_placed after 5 s (default 30 s)
            CALL_UNPLACED_GRACE_S="5",
            # a far end that sends no RTP for 5 s is dead (default 30 s)
            RTP_TIMEOUT_S="5",
            DEBUG="false", LOG_LEVEL="INFO",
        )

    def start(self) -> ChaosPlatform:
        self.postgres.start()
        self.redis.start()
        for carrier, _ in self.trunks.values():
            carrier.start()
        self.start_runner()
        return self

    def start_runner(self) -> None:
        """`manage.py run` (migrates, makes the demo tenant, starts every process), then the trunks."""
        self.runs += 1
        self.run = Process(f"run-{self.runs}", [
            sys.executable, "manage.py", "run", "--port", str(self.port), "--gateways", str(self.scale.gateways),
            "--workers", str(self.scale.dialer_threads), "--demo-carrier-port", str(free_udp_port()),
            "--demo-agent-port", str(self.agent_port)], self.work_dir, **self.env())
        deadline = time.monotonic() + 180
        while not self.whole():
            if self.run.proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"the platform did not come up:\n{self.run.tail(6000)}")
            time.sleep(0.5)
        self.seed_trunks()

    def seed_trunks(self) -> None:
        trunks = [{"name": name, "port": carrier.port, "priority": priority, "max_concurrent": self.scale.max_concurrent}
                  for name, (carrier, priority) in self.trunks.items()]
        result = subprocess.run([sys.executable, "-m", "tests.chaos.seed", json.dumps(trunks)], cwd=ROOT,
                                env=self.env(), capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, result.stderr[-3000:]

    def restart_runner(self, why: str) -> None:
        """A previous fault left the platform broken for good: start it again so the next fault is
        tried on a whole platform (and say so)."""
        self.say(f"restarting the whole platform: {why}")
        self.stop_runner()
        for server in (self.postgres, self.redis):
            if not server.running():
                server.start()
        self.start_runner()

    def stop_runner(self) -> None:
        if self.run is not None:
            tree = self.tree()
            self.run.stop(30)
            for proc in tree:  # anything the runner left behind
                try:
                    proc.kill()
                except psutil.NoSuchProcess:
                    pass

    def stop(self, remove: bool = True) -> None:
        self.stop_runner()
        for carrier, _ in self.trunks.values():
            carrier.stop()
        self.redis.stop()
        self.postgres.stop()
        if remove:
            shutil.rmtree(self.work_dir, ignore_errors=True)

    # --- processes --------------------------------------------------------------------------------

    def tree(self) -> list[psutil.Process]:
        try:
            return psutil.Process(self.run.proc.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            return []

    def processes(self, role: str) -> list[psutil.Process]:
        found = []
        for proc in self.tree():
            try:
                if proc.status() != psutil.STATUS_ZOMBIE and ROLES[role](proc.cmdline()):
                    found.append(proc)
            except psutil.NoSuchProcess:
                continue
        return found

    def expected(self) -> dict[str, int]:
        return {"web": self.scale.web_processes, "worker": 1, "webhooks": 1, "beat": 1, "recorder": 1, "gateways": 1,
                "gateway worker": self.scale.gateways, "media host": os.cpu_count() or 1}

    def missing(self) -> dict[str, int]:
        """Roles with fewer processes than the platform runs (role: how many are missing)."""
        counts = {role: len(self.processes(role)) for role in ROLES}
        return {role: want - counts[role] for role, want in self.expected().items() if counts[role] < want}

    # --- health -----------------------------------------------------------------------------------

    def healthz(self) -> tuple[int | None, dict | str]:
        """(HTTP status, JSON body) of /healthz; (None, why) when it does not answer in 3 s."""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/healthz", timeout=3) as response:
                return response.status, json.load(response)
        except urllib.error.HTTPError as error:
            body = error.read()
            try:
                return error.code, json.loads(body)
            except ValueError:
                return error.code, f"not JSON: {body[:200]!r}"
        except (OSError, ValueError) as error:
            return None, f"{type(error).__name__}: {error}"

    def gateway_room(self) -> int | None:
        """Free call slots of the live gateways, as the dialer sees them (None: Redis unreachable)."""
        import redis

        from telephony.gateway import client

        try:
            with redis.Redis.from_url(self.redis.url, socket_timeout=2, socket_connect_timeout=2) as r:
                capacity, _ = client.pool_capacity(r)
                return capacity
        except (redis.RedisError, OSError):
            return None

    def whole(self) -> bool:
        """Healthy as the platform says (/healthz 200), every process of every role running, every
        gateway worker alive in the pool."""
        status, _ = self.healthz()
        return status == 200 and self.all_running()

    def all_running(self) -> bool:
        return not self.missing() and self.gateway_room() == 4 * self.scale.gateways

    def notable_log(self, lines: int = 60) -> str:
        """The runner's output that tells what went wrong: exits, restarts, warnings, errors."""
        words = ("exited", "restart", "Traceback", "Error", "level=WARNING", "level=ERROR", "level=CRITICAL")
        found = [line for line in self.run.tail(2_000_000).splitlines() if any(word in line for word in words)]
        return "\n".join(found[-lines:])

    def why_not_whole(self) -> str:
        return f"healthz={self.healthz()} missing={self.missing()} pool capacity={self.gateway_room()}"

    # --- the tenant's side: REST API --------------------------------------------------------------

    def api_key(self) -> str:
        if self._api_key is None:
            saved = json.loads((self.work_dir / "var" / "demo-credentials.json").read_text())
            self._api_key = saved["demo_tenant"]["api_key"]
        return self._api_key

    def api(self, method: str, path: str, body: dict | None = None, data: bytes | None = None,
            content_type: str = "application/json") -> dict:
        if body is not None:
            data = json.dumps(body).encode()
        request = urllib.request.Request(f"http://127.0.0.1:{self.port}/api/v1/{path}", data=data, method=method,
                                         headers={"Authorization": f"Bearer {self.api_key()}",
                                                  "Content-Type": content_type})
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return json.load(response)
        except urllib.error.HTTPError as error:
            raise AssertionError(f"{method} {path}: {error.code} {error.read()[:2000]!r}") from None

    def start_campaign(self, name: str, phones: list[str]) -> int:
        """A campaign over a new contact list, started: every day, all day, one retry of a failed call."""
        contact_list = self.api("POST", "contact-lists", {"name": name})["id"]
        csv = "phone,name\n" + "".join(f"{phone},Customer {i}\n" for i, phone in enumerate(phones))
        boundary = uuid.uuid4().hex
        form = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"contacts.csv\"\r\n"
                f"Content-Type: text/csv\r\n\r\n{csv}\r\n--{boundary}--\r\n").encode()
        report = self.api("POST", f"contact-lists/{contact_list}/upload", data=form,
                          content_type=f"multipart/form-data; boundary={boundary}")
        assert report.get("imported") == len(phones), report
        campaign = self.api("POST", "campaigns", {
            "name": name, "contact_list": contact_list, "caller_ids": [CALLER_ID],
            "stream_url": f"ws://127.0.0.1:{self.agent_port}", "cps": self.scale.cps,
            "max_concurrent": self.scale.max_concurrent, "window_start": "00:00:00", "window_end": "23:59:59",
            "weekdays": list(range(7)), "ring_timeout": 15, "retry_failed_max_attempts": 2,
            "retry_failed_delay_s": 1,
        })["id"]
        self.api("POST", f"campaigns/{campaign}/start")
        return campaign

    # --- the records, read straight from PostgreSQL -----------------------------------------------

    def query(self, sql: str, *params) -> list[dict]:
        import psycopg
        from psycopg.rows import dict_row

        with psycopg.connect(self.postgres.url, connect_timeout=3, row_factory=dict_row) as conn:
            return conn.execute(sql, params).fetchall()

    def campaign_state(self, campaign_id: int) -> str | None:
        import psycopg

        try:
            rows = self.query(f"SELECT state FROM {TENANT}.campaigns_campaign WHERE id = %s", campaign_id)
        except psycopg.OperationalError:
            return None
        return rows[0]["state"] if rows else None

    def contacts(self, campaign_id: int) -> list[dict]:
        return self.query(
            f"SELECT cc.id, c.phone, cc.state, cc.attempts, cc.last_outcome FROM {TENANT}.campaigns_campaigncontact cc "
            f"JOIN {TENANT}.campaigns_contact c ON c.id = cc.contact_id WHERE cc.campaign_id = %s", campaign_id)

    def calls(self, campaign_id: int) -> list[dict]:
        return self.query(
            "SELECT sid, to_number, status, outcome, reason, hangup_by, gateway_id, carrier_name, created_at, "
            f"answered_at, ended_at, duration_s FROM {TENANT}.calls_call WHERE campaign_id = %s ORDER BY created_at",
            campaign_id)
