"""A gateway worker killed with calls on it: the supervisor hangs them up at the carrier (BYE for
answered calls, CANCEL for ringing ones) from the dialog the worker kept in Redis, holds their
carrier slots until the carrier has them over, and records each call's true end. A hangup request
for a call no live gateway holds finalises it at once."""
from __future__ import annotations

import json
import os
import re
import signal
import time
import uuid

import pytest

from core import keys
from telephony.gateway import client
from telephony.gateway import events as ev
from tests.gateway.gwhelpers import SupervisorProc, dumps, leg, wait_event, wait_final, wait_for


@pytest.fixture
def pool(redis_server, tmp_path, r):
    sup = SupervisorProc(redis_server.url, tmp_path / "supervisor.log",
                         ["--processes", "1", "--node", "dead", "--media-hosts", "0",
                          "--base-rtp-port", "25000", "--rtp-ports-per-worker", "100"])
    wait_for(lambda: r.exists(keys.gw_alive_key("dead-0")), 20, what="pool heartbeat")
    yield sup
    sup.stop()


def originate(r, legs, **kw):
    return client.originate(r, {"from": "+15550001111", "to": "+15550002222", "tenant": "acme",
                                "legs": legs, **kw})


def kill_worker(r, gateway_id: str) -> tuple[int, float]:
    pid = int(r.hget(keys.gw_key(gateway_id), "pid"))
    os.kill(pid, signal.SIGKILL)
    return pid, time.time()


def test_killed_worker_answered_calls_get_their_bye_and_keep_their_slots_until_it_is_answered(r, pool, sipp):
    carrier = f"slow-{uuid.uuid4().hex[:6]}"
    uas = sipp("uas_answer_slow_bye.xml", ["-m", "3"], subst={"BYE_DELAY": 6500})
    calls = [originate(r, [leg(uas.uri_host, carrier, max_concurrent=3)]) for _ in range(3)]
    answered = {c: wait_event(r, c, ev.ANSWERED) for c in calls}
    wait_for(lambda: all(client.call_state(r, c).get("dialog") for c in calls), 5, what="dialogs kept in Redis")
    assert r.zcard(keys.carrier_calls_key(carrier)) == 3

    _, killed_at = kill_worker(r, "dead-0")
    wait_for(lambda: len(re.findall(r"^BYE sip:", uas.messages(), re.M)) >= 3, 3,
             what="the carrier receiving a BYE for each call")
    bye_seen = time.time()
    assert bye_seen - killed_at < 2.5

    # the carrier answers the BYEs 6.5 s later: beyond the 5 s lease nobody renews any more, the
    # slots are still held (the carrier still has the calls)
    time.sleep(max(0.0, killed_at + 5.8 - time.time()))
    assert r.zcard(keys.carrier_calls_key(carrier)) == 3
    assert not any(client.call_state(r, c).get("final") for c in calls)

    for call_id in calls:
        final = wait_final(r, call_id, timeout=15)[-1]
        assert final["type"] == ev.COMPLETED and final["reason"] == ev.REASON_GATEWAY_DIED, dumps(final)
        assert final["hangup_by"] == ev.BY_PLATFORM
        # the call ended when the BYE went out, not when the carrier answered it
        assert killed_at <= final["ts"] < killed_at + 2.5
        assert final["duration"] == pytest.approx(final["ts"] - answered[call_id]["ts"], abs=0.05)
    assert r.zcard(keys.carrier_calls_key(carrier)) == 0
    assert uas.wait(15) == 0  # the carrier counts 3 calls, each ended by a BYE it accepted
    assert "closed out 3 calls" in pool.text()


# Carriers that send 100 Trying before 180 and carriers that ring at once: either way the INVITE is kept.
@pytest.mark.parametrize("carrier", ["uas_ring_noanswer.xml", "uas_ring_at_once_noanswer.xml"])
def test_killed_worker_ringing_call_is_cancelled(r, pool, sipp, carrier):
    uas = sipp(carrier, ["-m", "1"])
    call_id = originate(r, [leg(uas.uri_host, "ring")], ring_timeout=60)
    wait_event(r, call_id, ev.RINGING)
    wait_for(lambda: client.call_state(r, call_id).get("early"), 5, what="the INVITE kept in Redis")
    _, killed_at = kill_worker(r, "dead-0")
    final = wait_final(r, call_id, timeout=15)[-1]
    assert final["type"] == ev.FAILED and final["outcome"] == ev.OUTCOME_GATEWAY_DIED, dumps(final)
    assert "CANCEL sip:" in uas.messages()
    assert uas.wait(10) == 0  # CANCEL, 487, ACK: the carrier's side of the call is over


def test_hangup_of_a_call_held_by_a_dead_gateway_finalises_it(r, new_gateway, sipp):
    gw = new_gateway("orphan-gw")
    uas = sipp("uas_answer.xml")
    call_id = originate(r, [leg(uas.uri_host, "c1")])
    answered = wait_event(r, call_id, ev.ANSWERED)
    time.sleep(1.2)  # a heartbeat after the answer
    gw.proc.kill()  # no supervisor: nobody closes its calls out
    gw.proc.wait()
    wait_for(lambda: not r.exists(keys.gw_alive_key("orphan-gw")), 10, what="the heartbeat to lapse")

    assert client.hangup(r, call_id) == "finalized"
    final = wait_final(r, call_id, timeout=1)[-1]
    assert final["type"] == ev.COMPLETED and final["reason"] == ev.REASON_NO_LIVE_GATEWAY, dumps(final)
    last_beat = float(r.hget(keys.gw_key("orphan-gw"), "updated_at"))
    assert final["ts"] == pytest.approx(last_beat, abs=0.01)  # the last moment it was known alive
    assert final["duration"] == pytest.approx(last_beat - answered["ts"], abs=0.05)
    assert client.hangup(r, call_id) == "ended"


def test_hangup_of_a_call_no_gateway_took_finalises_it_and_it_is_never_dialed(r, new_gateway, sipp):
    r.delete(keys.tenant_queue("", "acme"), keys.originate_ring(), keys.originate_depth(), keys.ORIGINATE_WAKE)
    uas = sipp("uas_answer.xml")
    call_id = originate(r, [leg(uas.uri_host, "c1")])  # no gateway is running: it stays queued
    assert client.hangup(r, call_id) == "finalized"
    final = wait_final(r, call_id, timeout=1)[-1]
    assert final["type"] == ev.FAILED and final["outcome"] == ev.OUTCOME_CANCELLED, dumps(final)
    new_gateway("late-gw")  # a gateway that starts now finds the command already ended
    wait_for(lambda: r.llen(keys.tenant_queue("", "acme")) == 0, 5, what="the queued command to be taken")
    time.sleep(0.5)
    assert "INVITE" not in uas.messages()


def test_killed_worker_inbound_call_gets_its_bye(r, pool, sipp):
    r.sadd(keys.CARRIER_ADDRESSES, "127.0.0.1")
    r.hset(keys.NUMBER_ROUTES, "+15550006666", json.dumps({"tenant": "acme"}))
    try:
        port = int(r.hget(keys.gw_key("dead-0"), "sip_port"))
        uac = sipp("uac_wait_bye.xml", [f"127.0.0.1:{port}", "-s", "+15550006666", "-m", "1"])
        call_id = wait_for(lambda: next((c.decode() for c in r.smembers(keys.gw_calls_key("dead-0"))), None), 10,
                           what="the inbound call")
        wait_for(lambda: client.call_state(r, call_id).get("dialog"), 5, what="its dialog kept in Redis")
        kill_worker(r, "dead-0")
        assert uac.wait(10) == 0  # the caller got a BYE it could match to its dialog, and accepted it
        final = wait_final(r, call_id, timeout=10)[-1]
        assert final["type"] == ev.COMPLETED and final["reason"] == ev.REASON_GATEWAY_DIED, dumps(final)
    finally:
        r.hdel(keys.NUMBER_ROUTES, "+15550006666")
        r.srem(keys.CARRIER_ADDRESSES, "127.0.0.1")
