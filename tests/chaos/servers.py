"""PostgreSQL and Redis owned by the chaos harness: processes it can SIGKILL and start again on the
same data folder and socket, as a process manager (or the runner) would after a crash.

Redis is the platform's own embedded server (voiceplatform.embedded.RedisServer: same options, so
whatever it persists is what is tested); PostgreSQL is the pgserver binaries run as a child of ours
(pgserver's pg_ctl daemonises the server, which then cannot be killed as one process group).
"""
from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

from tests.support import wait_until
from voiceplatform.embedded import RedisServer


def _pg_bin(name: str) -> str:
    from pgserver._commands import POSTGRES_BIN_PATH

    return str(POSTGRES_BIN_PATH / name)


class Postgres:
    """postgres on a unix socket in its data folder; as root it runs as pgserver's system user."""

    def __init__(self, data_dir: Path):
        self.data_dir = data_dir
        self.log_path = data_dir.parent / "postgres.log"
        self.process: subprocess.Popen | None = None
        self.user = None
        if os.geteuid() == 0:  # postgres refuses to run as root
            from pgserver.utils import ensure_user_exists

            self.user = ensure_user_exists("pgserver").pw_name

    @property
    def url(self) -> str:
        return f"postgresql://postgres:@/postgres?host={self.data_dir}"

    def _initdb(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if self.user:
            import pwd

            entry = pwd.getpwnam(self.user)
            os.chown(self.data_dir, entry.pw_uid, entry.pw_gid)
        done = subprocess.run([_pg_bin("initdb"), "-D", str(self.data_dir), "--auth=trust", "--encoding=utf8",
                               "-U", "postgres"], capture_output=True, text=True, user=self.user)
        assert done.returncode == 0, f"initdb failed: {done.stderr[-2000:]}"

    def start(self) -> Postgres:
        if not (self.data_dir / "PG_VERSION").exists():
            self._initdb()
        log = open(self.log_path, "ab")
        # fsync off: a killed server loses nothing the kernel has (only a crashed machine would)
        self.process = subprocess.Popen(
            [_pg_bin("postgres"), "-D", str(self.data_dir), "-k", str(self.data_dir), "-h", "",
             "-c", "fsync=off", "-c", "max_connections=300"],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, user=self.user,
            start_new_session=True)
        wait_until(self.is_up, 60, 0.1, what="PostgreSQL to accept connections")
        return self

    def is_up(self) -> bool:
        if self.process is not None and self.process.poll() is not None:
            raise AssertionError(f"postgres exited: {self.log_path.read_text(errors='replace')[-2000:]}")
        import psycopg

        try:
            with psycopg.connect(self.url, connect_timeout=2) as conn:
                conn.execute("SELECT 1")
            return True
        except psycopg.OperationalError:
            return False

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill(self) -> None:
        """SIGKILL the postmaster and every backend at once (they share its process group)."""
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)  # fast shutdown
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.kill()


class Redis:
    """The platform's embedded Redis server, killed and started again on the same socket."""

    def __init__(self, data_dir: Path):
        self.server = RedisServer(data_dir)

    @property
    def url(self) -> str:
        return self.server.url

    def start(self) -> Redis:
        self.server.start()
        return self

    def running(self) -> bool:
        return self.server.process is not None and self.server.process.poll() is None

    def kill(self) -> None:
        os.killpg(self.server.process.pid, signal.SIGKILL)
        self.server.process.wait()

    def stop(self) -> None:
        self.server.stop()


def restart_after(server, outage_s: float) -> None:
    """The server stays down `outage_s`, then comes back on the same socket and data."""
    time.sleep(outage_s)
    server.start()
