"""Helpers shared by the tests (fixtures live in conftest.py)."""
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def project_env(**extra):
    """Environment for a child process of the project (celery, manage.py) in this test run."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "platform"), str(ROOT)])
    env.update(extra)
    return env


def run_manage(*args, env=None, timeout=120):
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=env or project_env(),
        capture_output=True, text=True, timeout=timeout,
    )


def free_udp_port() -> int:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def free_media_port() -> int:
    """An even UDP port for SIPp's media (-mp), with the three above it free too (SIPp binds RTP at
    the port and more next to it). Drawn from 10000-19999: the kernel's ephemeral ports (32768 and
    up, see free_udp_port) and the gateways' RTP ranges in the tests (20000 and up) never reach it,
    so another suite running beside this one cannot take it between this probe and SIPp's bind."""
    import random
    import socket

    while True:
        port = random.randrange(10000, 19996, 2)
        probes = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(4)]
        try:
            for offset, probe in enumerate(probes):
                probe.bind(("127.0.0.1", port + offset))
            return port
        except OSError:
            continue
        finally:
            for probe in probes:
                probe.close()


def free_tcp_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_until(predicate, timeout: float, interval: float = 0.05, what: str = "condition"):
    import time

    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


def stop_process(proc: subprocess.Popen, timeout: float = 20.0) -> int:
    """SIGTERM, then SIGKILL after `timeout`; returns the exit code."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode


def max_overlap(intervals) -> int:
    """The most (start, end) intervals open at one moment (an end and a start at the same time do
    not overlap): e.g. the most calls a carrier had at once."""
    import itertools

    edges = sorted(itertools.chain.from_iterable(((start, 1), (end, -1)) for start, end in intervals))
    level = peak = 0
    for _, step in edges:
        level += step
        peak = max(peak, level)
    return peak


async def asgi_request(app, method: str, path: str, headers: list[tuple[bytes, bytes]],
                       body: bytes = b"") -> tuple[int, bytes]:
    """One HTTP request to an ASGI application in this process, as daphne hands it over (the client
    stays connected until the answer): its status and body."""
    import asyncio

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method,
             "scheme": "http", "path": path, "raw_path": path.encode(), "query_string": b"", "root_path": "",
             "headers": [*headers, (b"content-length", str(len(body)).encode())],
             "client": ("127.0.0.1", 40000), "server": ("127.0.0.1", 8000)}
    delivered, status, parts = False, [], []

    async def receive():
        nonlocal delivered
        if not delivered:
            delivered = True
            return {"type": "http.request", "body": body, "more_body": False}
        await asyncio.Event().wait()

    async def send(message):
        if message["type"] == "http.response.start":
            status.append(message["status"])
        else:
            parts.append(message.get("body", b""))

    await app(scope, receive, send)
    return status[0], b"".join(parts)
