"""The process runner heals: a child killed with SIGKILL is started again, a crash loop backs off, and
the embedded PostgreSQL and Redis it watches come back on the same socket with their data. Every
restart is in the log and in the state file /healthz reads."""
from __future__ import annotations

import io
import os
import signal
import sys

import psycopg
import redis

from tests.support import wait_until
from voiceplatform.embedded import EmbeddedPostgres, RedisServer, stop_postgres
from voiceplatform.processes import ProcessGroup, ProcessSpec, read_state


def supervise_until(group: ProcessGroup, predicate, timeout: float = 30, what: str = "condition"):
    def step():
        group.supervise()
        return predicate()

    return wait_until(step, timeout, 0.1, what=what)


def said(out: io.StringIO) -> list[tuple[str, str]]:
    """The runner's log as (process name, line)."""
    return [tuple(part.strip() for part in line.split(" | ", 1)) for line in out.getvalue().splitlines()]


def python(name: str, code: str) -> ProcessSpec:
    return ProcessSpec(name, [sys.executable, "-c", code])


def test_each_child_killed_with_sigkill_is_started_again_and_counted(tmp_path):
    out = io.StringIO()
    state_file = tmp_path / "processes.json"
    group = ProcessGroup([
        python("ticker", "import time\nwhile True:\n    print('tick', flush=True)\n    time.sleep(0.2)"),
        python("sleeper", "import time; time.sleep(3600)"),
    ], out=out, state_path=state_file)
    group.start()
    try:
        for name in ("ticker", "sleeper"):
            first = group.children[name]
            os.kill(first.pid, signal.SIGKILL)
            supervise_until(group, lambda name=name, first=first: group.children[name] is not first, what=f"{name} back")
            assert group.children[name].poll() is None
            assert (name, "exited with code -9; restarting in 1 s") in said(out)
            assert (name, "restarted (restart 1)") in said(out)
            state = read_state(state_file)
            assert state["processes"][name] == {"kind": "child", "pid": group.children[name].pid, "alive": True,
                                                "restarts": 1, "last_exit": "exited with code -9"}
        wait_until(lambda: said(out).count(("ticker", "tick")) > 3, 10, what="the new ticker's output")
    finally:
        group.stop()
    assert read_state(state_file) is None  # the runner is gone: nothing for /healthz to report


def test_a_child_that_keeps_crashing_is_restarted_with_a_growing_pause(tmp_path):
    out = io.StringIO()
    group = ProcessGroup([python("crasher", "raise SystemExit(3)")], out=out, state_path=tmp_path / "processes.json")
    group.start()
    try:
        supervise_until(group, lambda: group.restarts.get("crasher", 0) >= 3, timeout=60, what="three restarts")
    finally:
        group.stop()
    pauses = [line.rsplit("restarting in ", 1)[1] for line in out.getvalue().splitlines() if "restarting in" in line]
    assert pauses[:3] == ["1 s", "2 s", "4 s"]


def test_the_embedded_redis_killed_comes_back_on_its_socket_with_what_it_had(tmp_path):
    server = RedisServer(tmp_path / "redis").start()
    out = io.StringIO()
    group = ProcessGroup([], out=out, watched=[server], state_path=tmp_path / "processes.json")
    group.start()
    client = redis.Redis.from_url(server.url)
    try:
        config = {**client.config_get("appendonly"), **client.config_get("appendfsync"), **client.config_get("save")}
        assert config == {"appendonly": "yes", "appendfsync": "everysec", "save": ""}
        client.rpush("gw:originate", "a call waiting for a gateway")
        client.xadd("calls:events", {"event": "{}"})
        # Written to the file, not yet fsynced: a SIGKILL does not lose it. (While an fsync is slow,
        # Redis holds writes back for up to 2 s; the README says so.)
        assert wait_until(lambda: _aof_written(client), 10, what="Redis to write its AOF")
        first_pid = server.pid
        os.kill(first_pid, signal.SIGKILL)
        supervise_until(group, lambda: server.alive() and server.pid != first_pid, what="Redis back")
        # The same client, on the same socket, reconnects and finds what Redis had written.
        assert wait_until(lambda: _answers(client), 10, what="the client to reconnect")
        assert client.lrange("gw:originate", 0, -1) == [b"a call waiting for a gateway"]
        assert client.xlen("calls:events") == 1
        assert ("redis", "is down; restarting in 1 s") in said(out)
        assert read_state(tmp_path / "processes.json")["processes"]["redis"] == {
            "kind": "embedded", "pid": server.pid, "alive": True, "restarts": 1, "last_exit": "is down"}
    finally:
        group.stop()
        server.stop()


def _aof_written(client: redis.Redis) -> bool:
    return client.info("persistence")["aof_buffer_length"] == 0


def _answers(client: redis.Redis) -> bool:
    try:
        return client.ping()
    except redis.ConnectionError:
        return False


def test_the_embedded_postgresql_killed_comes_back_on_its_socket_with_its_data(tmp_path, server_dir):
    postgres = EmbeddedPostgres(server_dir / "postgres")
    url = postgres.start()
    out = io.StringIO()
    group = ProcessGroup([], out=out, watched=[postgres], state_path=tmp_path / "processes.json")
    group.start()
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("CREATE TABLE calls (sid text PRIMARY KEY)")
            conn.execute("INSERT INTO calls VALUES ('CA1')")
        first_pid = postgres.pid
        os.kill(first_pid, signal.SIGKILL)
        supervise_until(group, lambda: postgres.alive() and postgres.pid != first_pid, timeout=60,
                        what="PostgreSQL back")
        with psycopg.connect(url) as conn:
            assert conn.execute("SELECT sid FROM calls").fetchall() == [("CA1",)]
        assert ("postgres", "is down; restarting in 1 s") in said(out)
        state = read_state(tmp_path / "processes.json")["processes"]["postgres"]
        assert state["alive"] is True and state["restarts"] >= 1
    finally:
        group.stop()
        stop_postgres(server_dir / "postgres")
