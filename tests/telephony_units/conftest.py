"""Fixtures for the telephony building blocks: a real embedded Redis and a SIPp OPTIONS responder."""
from __future__ import annotations

import asyncio
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
import redis

from telephony.sip_options import ping
from voiceplatform.embedded import RedisServer

SCENARIOS = Path(__file__).parent / "scenarios"


@pytest.fixture(scope="session")
def redis_server():
    # A short directory: unix socket paths are limited to ~107 bytes and pytest's tmp paths can be long.
    data_dir = Path(tempfile.mkdtemp(prefix="vp-tel-"))
    server = RedisServer(data_dir).start()
    yield server
    server.stop()
    shutil.rmtree(data_dir, ignore_errors=True)


@pytest.fixture
def redis_url(redis_server):
    client = redis.Redis.from_url(redis_server.url)
    client.flushdb()
    client.close()
    return redis_server.url


@pytest.fixture
def redis_client(redis_url):
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


def find_free_port(kind: int = socket.SOCK_DGRAM) -> int:
    """A port free for both UDP and TCP on 127.0.0.1 right now."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, kind) as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        other = socket.SOCK_STREAM if kind == socket.SOCK_DGRAM else socket.SOCK_DGRAM
        try:
            with socket.socket(socket.AF_INET, other) as s:
                s.bind(("127.0.0.1", port))
        except OSError:
            continue
        return port
    raise RuntimeError("no free port found")


def start_sipp_options_uas(workdir: Path, transport: str = "udp"):
    """Run SIPp with the OPTIONS-answering scenario; returns (process, port) once it answers."""
    sipp = shutil.which("sipp")
    assert sipp, "sipp is not installed"
    port = find_free_port()
    args = [sipp, "-sf", str(SCENARIOS / "options_uas.xml"), "-i", "127.0.0.1", "-p", str(port), "-nostdin"]
    if transport == "tcp":
        args += ["-t", "t1"]
    proc = subprocess.Popen(args, cwd=workdir, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    deadline = time.monotonic() + 15
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"sipp exited with {proc.returncode}: {proc.stderr.read().decode()[-500:]}")
        if asyncio.run(ping("127.0.0.1", port, transport, timeout=0.5)).ok:
            return proc, port
        if time.monotonic() > deadline:
            stop_process(proc)
            raise RuntimeError("sipp did not answer OPTIONS within 15 s")
        time.sleep(0.1)


def stop_process(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    if proc.stderr:
        proc.stderr.close()


@pytest.fixture(name="free_port")
def free_port_fixture():
    """The function find_free_port(kind=SOCK_DGRAM) -> int."""
    return find_free_port


@pytest.fixture
def sipp_udp(tmp_path):
    proc, port = start_sipp_options_uas(tmp_path, "udp")
    yield port
    stop_process(proc)


@pytest.fixture
def sipp_tcp(tmp_path):
    proc, port = start_sipp_options_uas(tmp_path, "tcp")
    yield port
    stop_process(proc)
