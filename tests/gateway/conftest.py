"""Fixtures for the gateway tests: an embedded Redis, SIPp carriers/callers, gateway processes.

Everything is started here and stopped at teardown; nothing is assumed to be running.
"""
from __future__ import annotations

import pytest
import redis as redis_lib

from tests.gateway.gwhelpers import GatewayProc, Sipp, free_udp_port
from voiceplatform.embedded import RedisServer


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory):
    srv = RedisServer(tmp_path_factory.mktemp("redis")).start()
    yield srv
    srv.stop()


@pytest.fixture
def r(redis_server):
    client = redis_lib.Redis.from_url(redis_server.url)
    yield client
    client.close()


@pytest.fixture
def sipp(tmp_path):
    started: list[Sipp] = []

    def start(scenario: str, args=(), subst=None, port: int | None = None) -> Sipp:
        s = Sipp(tmp_path, scenario, port or free_udp_port(), args, subst)
        started.append(s)
        return s

    yield start
    for s in started:
        s.stop()


@pytest.fixture(scope="module")
def gateway(redis_server, tmp_path_factory):
    """One worker process shared by a module's tests (each test uses its own call ids)."""
    gw = GatewayProc(redis_server.url, "test-gw-1", tmp_path_factory.mktemp("gw") / "worker.log")
    gw.wait_alive(redis_lib.Redis.from_url(redis_server.url))
    yield gw
    rc = gw.stop()
    assert rc == 0, gw.log_path.read_text()[-3000:]


@pytest.fixture
def new_gateway(redis_server, tmp_path):
    started: list[GatewayProc] = []

    def start(gateway_id: str, extra=()) -> GatewayProc:
        gw = GatewayProc(redis_server.url, gateway_id, tmp_path / f"{gateway_id}.log", extra)
        started.append(gw)
        gw.wait_alive(redis_lib.Redis.from_url(redis_server.url))
        return gw

    yield start
    for gw in started:
        gw.stop()


@pytest.fixture(scope="module")
def agents():
    """Twilio-protocol agents in a thread of the test process (tests/gateway/test_media_bridge.py)."""
    from tests.gateway.test_media_bridge import AgentServer

    srv = AgentServer()
    yield srv
    srv.stop()
