"""Debian's PostgreSQL and Redis servers, started in a folder of their own on free ports: the
shared state of a test cluster (the embedded servers stay the single-machine default). On 127.0.0.1,
or on an address of a network namespace the test made."""
from __future__ import annotations

import glob
import os
import shutil
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING

from tests.support import free_tcp_port, stop_process, wait_until

if TYPE_CHECKING:
    from tests.cluster.netns import Namespace


def _pg_bin(name: str) -> str:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    if not found:
        raise RuntimeError("Debian's postgresql package is not installed (apt-get install postgresql)")
    return found[-1]


def _as_postgres(argv: list[str]) -> list[str]:
    """PostgreSQL refuses to run as root: as root, run it as the package's `postgres` user."""
    return ["runuser", "-u", "postgres", "--", *argv] if os.geteuid() == 0 else argv


def _inside(namespace: Namespace | None, argv: list[str]) -> list[str]:
    return namespace.run(argv) if namespace else argv


class PostgresServer:
    def __init__(self, folder: Path, host: str = "127.0.0.1", namespace: Namespace | None = None):
        self.folder, self.host, self.namespace = folder, host, namespace
        self.data = folder / "data"
        self.port = free_tcp_port()
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"postgresql://postgres@{self.host}:{self.port}/voice"

    def start(self) -> PostgresServer:
        self.folder.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            shutil.chown(self.folder, "postgres", "postgres")
        subprocess.run(_as_postgres([_pg_bin("initdb"), "-D", str(self.data), "-U", "postgres", "-A", "trust",
                                     "-E", "UTF8", "--no-sync"]), check=True, capture_output=True)
        if self.host != "127.0.0.1":  # initdb trusts loopback only: trust the namespace's link too
            with open(self.data / "pg_hba.conf", "a") as hba:
                hba.write("host all all samenet trust\n")
        self.log = open(self.folder / "postgres.log", "wb")
        self.proc = subprocess.Popen(
            _inside(self.namespace, _as_postgres([
                _pg_bin("postgres"), "-D", str(self.data), "-h", self.host, "-p", str(self.port), "-k", str(self.folder),
                "-c", "fsync=off", "-c", "max_connections=300"])),
            stdout=self.log, stderr=subprocess.STDOUT)
        wait_until(self._ready, 30, 0.2, what="PostgreSQL to accept connections")
        subprocess.run(_inside(self.namespace, [_pg_bin("createdb"), "-h", self.host, "-p", str(self.port),
                                                "-U", "postgres", "voice"]), check=True, capture_output=True)
        return self

    def _ready(self) -> bool:
        return subprocess.run(_inside(self.namespace, [_pg_bin("pg_isready"), "-h", self.host, "-p", str(self.port)]),
                              capture_output=True).returncode == 0

    def stop(self) -> None:
        if self.proc:
            stop_process(self.proc, 20)
            self.log.close()


class RedisServer:
    def __init__(self, folder: Path, host: str = "127.0.0.1", namespace: Namespace | None = None):
        self.folder, self.host, self.namespace = folder, host, namespace
        self.port = free_tcp_port()
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://{self.host}:{self.port}/0"

    def start(self) -> RedisServer:
        self.folder.mkdir(parents=True, exist_ok=True)
        self.log = open(self.folder / "redis.log", "wb")
        self.proc = subprocess.Popen(
            _inside(self.namespace, [
                shutil.which("redis-server") or "/usr/bin/redis-server", "--bind", self.host, "--port", str(self.port),
                "--dir", str(self.folder), "--save", "", "--appendonly", "no", "--protected-mode", "no"]),
            stdout=self.log, stderr=subprocess.STDOUT)
        wait_until(lambda: b"Ready to accept" in (self.folder / "redis.log").read_bytes(), 20, 0.1,
                   what="Redis to accept connections")
        return self

    def stop(self) -> None:
        if self.proc:
            stop_process(self.proc, 10)
            self.log.close()
