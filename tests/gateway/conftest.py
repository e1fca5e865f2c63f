"""Fixtures for the gateway tests: an embedded Redis, SIPp carriers/callers, gateway processes.

Everything is started here and stopped at teardown; nothing is assumed to be running.
"""
from __future__ import annotations

import socket
import time

import pytest
import redis as redis_lib

from tests.gateway.gwhelpers import SCENARIOS, GatewayProc, Sipp, free_udp_port
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


@pytest.fixture
def callee(sipp, tmp_path):
    """A callee that answers and sends its RTP to us; `hear()` collects what the platform played."""
    rtp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rtp.bind(("127.0.0.1", 0))
    rtp.settimeout(0.2)
    scenario = tmp_path / "uas_media_to_test.xml"
    scenario.write_text((SCENARIOS / "uas_media.xml").read_text()
                        .replace("m=audio [media_port]", f"m=audio {rtp.getsockname()[1]}")
                        .replace("@PLAY@", "").replace("@CODEC_PT@", "0").replace("@CODEC@", "PCMU"))
    uas = sipp(str(scenario), ["-m", "1"])

    def hear(seconds: float = 20) -> list[bytes]:
        """The RTP packets the platform sent, until it stops sending (headers included)."""
        heard, deadline = [], time.monotonic() + seconds
        while time.monotonic() < deadline:
            try:
                heard.append(rtp.recv(2048))
            except TimeoutError:
                if heard:
                    break
        return heard

    uas.hear = hear
    yield uas
    rtp.close()
