"""The shared media host: workers hand their bridged calls' audio to one host process.

The supervisor runs one host per core and links each worker to one of them (media/host.py says
why). Here two workers share one host: both carry audio both ways, and the host's figures reach the
final events. A host that dies ends its calls with ``media_error`` (BYE to the callee), and the
supervisor starts a new one, to which the worker sends its next call.
"""
from __future__ import annotations

import os
import re
import signal

import pytest
import redis as redis_lib

from core import keys
from telephony.gateway import client
from telephony.gateway import events as ev
from tests.gateway.gwhelpers import (
    GatewayProc,
    MediaHostProc,
    SupervisorProc,
    dumps,
    leg,
    wait_event,
    wait_final,
    wait_for,
)
from tests.gateway.test_media_bridge import find_run, media_uas, originate, pattern_frames


def test_two_workers_share_one_media_host(r, redis_server, sipp, agents, tmp_path):
    host = MediaHostProc(tmp_path, "media-0")
    # one call slot each: two calls land on two workers
    workers = [GatewayProc(redis_server.url, f"test-gw-host-{i}", tmp_path / f"w{i}.log",
                           [*host.worker_args, "--capacity", "1"]) for i in range(2)]
    try:
        for w in workers:
            w.wait_alive(redis_lib.Redis.from_url(redis_server.url))
        calls = []
        for _ in workers:
            uas = media_uas(sipp, echo=True)
            calls.append((originate(r, [leg(uas.uri_host, "c1")], stream_url=agents.url("/record")), uas))
        frames = pattern_frames(50, seed=3)
        for call_id, _uas in calls:
            conn = agents.conn_for(call_id)
            wait_for(lambda c=conn: len(c.media()) >= 5, 10, what="caller frames at the agent")
            agents.send_audio(conn, b"".join(frames))  # played to SIPp, which echoes it back to the agent
        assert {client.call_state(r, c)["gateway"] for c, _ in calls} == {w.gateway_id for w in workers}
        for call_id, _uas in calls:
            conn = agents.conn_for(call_id)
            wait_for(lambda c=conn: c.payload().find(frames[-1]) >= 0, 10, what="the agent's audio echoed back")
            find_run(conn.payload(), frames)
            client.hangup(r, call_id)
        for call_id, uas in calls:
            done = wait_final(r, call_id)[-1]
            assert done["type"] == ev.COMPLETED and done["reason"] == ev.REASON_HANGUP_REQUESTED, done
            assert done["frames_from_agent"] >= 50 and done["frames_to_agent"] > 50, done
            assert done["loss_percent"] == 0 and "bridge_in_p99_ms" in done, done
            assert uas.wait(10) == 0
        for call_id, _uas in calls:
            assert agents.conn_for(call_id).msgs[-1]["event"] == "stop"
    finally:
        for w in workers:
            assert w.stop() == 0, w.log_path.read_text()[-3000:]
        host.stop()
    assert "media host listening" in host.log_path.read_text()


@pytest.fixture
def pool_with_media_host(redis_server, tmp_path, r):
    sup = SupervisorProc(redis_server.url, tmp_path / "supervisor.log",
                         ["--processes", "1", "--media-hosts", "1", "--node", "mh", "--base-rtp-port", "27000",
                          "--rtp-ports-per-worker", "100"])
    wait_for(lambda: r.exists(keys.gw_alive_key("mh-0")), 20, what="pool heartbeat")
    yield sup.log_path
    sup.stop()


def media_host_pid(log_path) -> int:
    """The pid of the media host that last said it is listening."""
    return int(re.findall(r"media host listening on \S+ \(pid (\d+)\)", log_path.read_text(errors="replace"))[-1])


def test_a_dead_media_host_ends_its_calls_and_is_replaced(r, pool_with_media_host, sipp, agents):
    log_path = pool_with_media_host
    uas = media_uas(sipp, echo=True)
    call_id = originate(r, [leg(uas.uri_host, "c1")], stream_url=agents.url("/record"))
    wait_event(r, call_id, ev.STREAM_STARTED)
    conn = agents.conn_for(call_id)
    wait_for(lambda: len(conn.media()) >= 5, 10, what="caller frames at the agent")
    old = media_host_pid(log_path)
    os.kill(old, signal.SIGKILL)
    evs = wait_final(r, call_id, timeout=10)
    done = evs[-1]
    assert done["type"] == ev.COMPLETED and done["reason"] == ev.REASON_MEDIA_ERROR, dumps(evs)
    assert done["hangup_by"] == ev.BY_PLATFORM
    assert uas.wait(10) == 0 and "BYE sip:" in uas.messages()  # the callee was hung up on
    wait_for(lambda: media_host_pid(log_path) != old, 20, what="a new media host")

    # the next call is bridged again, audio both ways
    uas2 = media_uas(sipp, echo=True)
    call2 = originate(r, [leg(uas2.uri_host, "c1")], stream_url=agents.url("/record"))
    conn2 = agents.conn_for(call2)
    frames = pattern_frames(25, seed=5)
    wait_for(lambda: len(conn2.media()) >= 5, 10, what="caller frames at the agent")
    agents.send_audio(conn2, b"".join(frames))
    wait_for(lambda: conn2.payload().find(frames[-1]) >= 0, 10, what="the agent's audio echoed back")
    client.hangup(r, call2)
    assert wait_final(r, call2)[-1]["reason"] == ev.REASON_HANGUP_REQUESTED

    def carried_by_the_new_host():  # not by a host in the worker: the worker went back to the process
        return any(line.startswith("mh-media-0 | ") and call2 in line
                   for line in log_path.read_text(errors="replace").splitlines())
    wait_for(carried_by_the_new_host, 10, what="the new host's log line about the call")
