"""One gateway worker against SIPp carriers (UAS) and SIPp callers (UAC)."""
from __future__ import annotations

import json

from core import keys
from telephony.gateway import client
from telephony.gateway import events as ev
from telephony.gateway.store import Store
from tests.gateway.gwhelpers import call_events, dumps, leg, types, wait_event, wait_final, wait_for


def originate(r, legs, **kw):
    cmd = {"from": "+15550001111", "to": "+15550002222", "ring_timeout": 10, "max_duration": 60,
           "tenant": "acme", "legs": legs, **kw}
    return client.originate(r, cmd)


def test_answered_call_platform_hangup(r, gateway, sipp):
    uas = sipp("uas_answer.xml", ["-m", "1"])
    call_id = originate(r, [leg(uas.uri_host, "c1")], headers={"X-Campaign": "spring"})
    wait_event(r, call_id, ev.ANSWERED)
    assert client.call_state(r, call_id)["state"] == "answered"
    assert call_id.encode() in r.smembers(keys.gw_calls_key(gateway.gateway_id))
    assert client.hangup(r, call_id) == gateway.gateway_id
    evs = wait_final(r, call_id)
    assert types(evs) == ["initiated", "leg_started", "ringing", "answered", "completed"], dumps(evs)
    ringing, answered, done = evs[2], evs[3], evs[4]
    assert ringing["sip_code"] == 180 and ringing["pdd_ms"] >= 0
    assert answered["setup_ms"] >= ringing["pdd_ms"]
    assert done["outcome"] == ev.OUTCOME_ANSWERED
    assert done["hangup_by"] == ev.BY_PLATFORM and done["reason"] == ev.REASON_HANGUP_REQUESTED
    assert done["duration"] >= 0
    assert all(e["gateway_id"] == gateway.gateway_id and e["tenant"] == "acme" for e in evs)
    assert all(e["carrier_id"] == "c1" and e["leg"] == 0 for e in evs[1:])
    assert uas.wait(10) == 0  # SIPp got our BYE and answered it: its one call succeeded
    msgs = uas.messages()
    assert "BYE sip:" in msgs and "X-Campaign: spring" in msgs
    assert "From: sip:+15550001111@127.0.0.1;tag=" in msgs
    assert call_id.encode() not in r.smembers(keys.gw_calls_key(gateway.gateway_id))
    assert client.call_state(r, call_id)["final"] == ev.COMPLETED


def test_callee_hangs_up(r, gateway, sipp):
    uas = sipp("uas_answer_bye.xml", ["-m", "1", "-d", "300"])
    call_id = originate(r, [leg(uas.uri_host, "c1")])
    evs = wait_final(r, call_id)
    assert types(evs) == ["initiated", "leg_started", "ringing", "answered", "completed"], dumps(evs)
    assert evs[-1]["hangup_by"] == ev.BY_CALLEE
    assert uas.wait(10) == 0


def test_503_fails_over_to_second_carrier(r, gateway, sipp):
    bad = sipp("uas_reject.xml", ["-m", "1"], subst={"CODE": 503, "PHRASE": "Service Unavailable"})
    good = sipp("uas_answer_bye.xml", ["-m", "1", "-d", "200"])
    call_id = originate(r, [leg(bad.uri_host, "bad"), leg(good.uri_host, "good")])
    evs = wait_final(r, call_id)
    assert types(evs) == ["initiated", "leg_started", "leg_failed", "leg_started", "ringing", "answered",
                          "completed"], dumps(evs)
    failed = evs[2]
    assert failed["leg"] == 0 and failed["carrier_id"] == "bad"
    assert failed["sip_code"] == 503 and failed["failover"] is True
    assert evs[3]["leg"] == 1 and evs[3]["carrier_id"] == "good"
    assert evs[-1]["carrier_id"] == "good" and evs[-1]["outcome"] == ev.OUTCOME_ANSWERED
    assert bad.wait(10) == 0 and good.wait(10) == 0


def test_busy_does_not_fail_over(r, gateway, sipp):
    busy = sipp("uas_reject.xml", ["-m", "1"], subst={"CODE": 486, "PHRASE": "Busy Here"})
    other = sipp("uas_answer.xml")
    call_id = originate(r, [leg(busy.uri_host, "c1"), leg(other.uri_host, "c2")])
    evs = wait_final(r, call_id)
    assert types(evs) == ["initiated", "leg_started", "leg_failed", "failed"], dumps(evs)
    assert evs[2]["failover"] is False and evs[2]["sip_code"] == 486
    final = evs[-1]
    assert final["outcome"] == ev.OUTCOME_BUSY and final["sip_code"] == 486 and final["legs_tried"] == 1
    assert busy.wait(10) == 0
    assert "INVITE sip:" not in other.messages()


def test_ring_timeout_is_no_answer(r, gateway, sipp):
    uas = sipp("uas_ring_noanswer.xml", ["-m", "1"])
    other = sipp("uas_answer.xml")
    call_id = originate(r, [leg(uas.uri_host, "c1"), leg(other.uri_host, "c2")], ring_timeout=3)
    evs = wait_final(r, call_id, timeout=15)
    assert types(evs) == ["initiated", "leg_started", "ringing", "leg_failed", "failed"], dumps(evs)
    final = evs[-1]
    assert final["outcome"] == ev.OUTCOME_NO_ANSWER and final["reason"] == ev.REASON_RING_TIMEOUT
    assert final["sip_code"] == 487
    assert evs[3]["failover"] is False
    assert final["ts"] - evs[1]["ts"] >= 3
    assert uas.wait(10) == 0  # SIPp saw the CANCEL
    assert "CANCEL sip:" in uas.messages()
    assert "INVITE sip:" not in other.messages()


def test_no_provisional_response_fails_over(r, gateway, sipp):
    dead = sipp("uas_silent.xml")
    good = sipp("uas_answer_bye.xml", ["-m", "1", "-d", "200"])
    call_id = originate(r, [leg(dead.uri_host, "dead"), leg(good.uri_host, "good")], provisional_timeout=1)
    evs = wait_final(r, call_id)
    assert types(evs) == ["initiated", "leg_started", "leg_failed", "leg_started", "ringing", "answered",
                          "completed"], dumps(evs)
    assert evs[2]["reason"] == ev.REASON_NO_PROVISIONAL and evs[2]["failover"] is True
    assert good.wait(10) == 0


def test_all_carriers_down_is_carrier_error(r, gateway, sipp):
    a = sipp("uas_reject.xml", ["-m", "1"], subst={"CODE": 500, "PHRASE": "Server Internal Error"})
    b = sipp("uas_reject.xml", ["-m", "1"], subst={"CODE": 408, "PHRASE": "Request Timeout"})
    call_id = originate(r, [leg(a.uri_host, "a"), leg(b.uri_host, "b")])
    evs = wait_final(r, call_id)
    assert types(evs) == ["initiated", "leg_started", "leg_failed", "leg_started", "leg_failed", "failed"]
    assert [e.get("failover") for e in evs if e["type"] == "leg_failed"] == [True, False]
    assert evs[-1]["outcome"] == ev.OUTCOME_CARRIER_ERROR and evs[-1]["sip_code"] == 408


def test_hangup_while_ringing_cancels(r, gateway, sipp):
    uas = sipp("uas_ring_noanswer.xml", ["-m", "1"])
    call_id = originate(r, [leg(uas.uri_host, "c1")], ring_timeout=30)
    wait_event(r, call_id, ev.RINGING)
    client.hangup(r, call_id)
    evs = wait_final(r, call_id)
    assert types(evs) == ["initiated", "leg_started", "ringing", "leg_failed", "failed"], dumps(evs)
    assert evs[-1]["outcome"] == ev.OUTCOME_CANCELLED and evs[-1]["reason"] == ev.REASON_HANGUP_REQUESTED
    assert uas.wait(10) == 0


def test_hangup_before_pickup_is_never_dialed(r, gateway, sipp, redis_server):
    uas = sipp("uas_answer.xml")
    cmd = {"call_id": client.new_call_id(), "to": "+15550002222", "legs": [leg(uas.uri_host, "c1")]}
    # queued behind a hangup: simulate by asking for the hangup before the gateway can pop it
    with r.pipeline(transaction=True) as p:
        p.hset(keys.call_key(cmd["call_id"]), "hangup_requested", 1)
        p.execute()
    client.originate(r, cmd)
    evs = wait_final(r, cmd["call_id"])
    assert types(evs) == ["initiated", "failed"]
    assert evs[-1]["outcome"] == ev.OUTCOME_CANCELLED
    assert "INVITE sip:" not in uas.messages()


def test_max_duration(r, gateway, sipp):
    uas = sipp("uas_answer.xml", ["-m", "1"])
    call_id = originate(r, [leg(uas.uri_host, "c1")], max_duration=1)
    evs = wait_final(r, call_id)
    assert types(evs)[-1] == "completed", dumps(evs)
    assert evs[-1]["reason"] == ev.REASON_MAX_DURATION and evs[-1]["hangup_by"] == ev.BY_PLATFORM
    assert evs[-1]["duration"] >= 1
    assert uas.wait(10) == 0


def test_originates_are_picked_up_on_their_wake_token_not_by_polling(r, gateway, sipp):
    """The worker's fallback look at the queue comes once a second; the token wakes it at once."""
    uas = sipp("uas_answer_bye.xml", ["-d", "100"])
    call_ids = []
    for _ in range(5):
        call_ids.append(originate(r, [leg(uas.uri_host, "c1")]))
        wait_event(r, call_ids[-1], ev.INITIATED)
    waits = [wait_event(r, call_id, ev.INITIATED)["queue_ms"] for call_id in call_ids]
    assert max(waits) < 300, waits
    for call_id in call_ids:
        wait_final(r, call_id)
    assert r.llen(keys.ORIGINATE_WAKE) == 0  # no token left over once the queue is empty


def test_invalid_command(r, gateway):
    call_id = client.new_call_id()
    Store(r).push_originate(json.dumps({"type": "originate", "call_id": call_id, "legs": [{"carrier_id": "x"}]}), "acme")
    evs = wait_final(r, call_id)
    assert evs[-1]["type"] == "failed" and evs[-1]["outcome"] == ev.OUTCOME_INVALID


def test_inbound_from_unknown_address_is_403(r, gateway, sipp):
    r.delete(keys.CARRIER_ADDRESSES)
    before = int(r.get(keys.INBOUND_REJECTED) or 0)
    uac = sipp("uac_expect_reject.xml", [f"127.0.0.1:{gateway.sip_port}", "-s", "+15550003333", "-m", "1"])
    assert uac.wait(15) == 0, uac.messages()
    assert "SIP/2.0 403" in uac.messages()
    assert int(r.get(keys.INBOUND_REJECTED)) == before + 1


def test_inbound_unknown_number_is_404(r, gateway, sipp):
    r.sadd(keys.CARRIER_ADDRESSES, "127.0.0.1")
    try:
        uac = sipp("uac_expect_reject.xml", [f"127.0.0.1:{gateway.sip_port}", "-s", "+15550004444", "-m", "1"])
        assert uac.wait(15) == 0, uac.messages()
        assert "SIP/2.0 404" in uac.messages()
    finally:
        r.srem(keys.CARRIER_ADDRESSES, "127.0.0.1")


def test_inbound_call_answered(r, gateway, sipp):
    r.sadd(keys.CARRIER_ADDRESSES, "127.0.0.1")
    route = {"tenant": "acme"}  # no agent: answered and held (bridged inbound calls: test_media_bridge)
    r.hset(keys.NUMBER_ROUTES, "+15550005555", json.dumps(route))
    last = r.xrevrange(keys.EVENTS_STREAM, count=1)
    start = f"({last[0][0].decode()}" if last else "-"

    def inbound_events():
        return [e for _, e in ev.decode_entries(r.xrange(keys.EVENTS_STREAM, min=start))
                if e.get("direction") == "inbound" and e.get("to") == "+15550005555"]

    try:
        # SIPp's built-in UAC: INVITE, ACK the 200, hold 300 ms, BYE
        uac = sipp("@uac", [f"127.0.0.1:{gateway.sip_port}", "-s", "+15550005555", "-m", "1", "-d", "300"])
        assert uac.wait(20) == 0
        evs = wait_for(lambda: (lambda x: x if any(ev.is_final(e) for e in x) else None)(inbound_events()),
                       15, what="inbound call events")
        assert types(evs) == ["initiated", "answered", "completed"], dumps(evs)
        assert len({e["call_id"] for e in evs}) == 1
        assert all(e["tenant"] == "acme" and e["route"] == route for e in evs)
        assert evs[0]["from"] == "sipp" and evs[0]["source"] == "127.0.0.1"
        assert evs[-1]["hangup_by"] == ev.BY_CALLER
        assert call_events(r, evs[0]["call_id"]) == evs
    finally:
        r.srem(keys.CARRIER_ADDRESSES, "127.0.0.1")
        r.hdel(keys.NUMBER_ROUTES, "+15550005555")


def test_digest_credentials(r, gateway, sipp):
    uas = sipp("uas_digest.xml", ["-m", "1"])
    call_id = originate(r, [leg(uas.uri_host, "auth", username="trunkuser", password="s3cret")])
    wait_event(r, call_id, ev.ANSWERED)
    client.hangup(r, call_id)
    evs = wait_final(r, call_id)
    assert evs[-1]["type"] == "completed", dumps(evs)
    assert uas.wait(10) == 0
    assert "Authorization: Digest username=\"trunkuser\"" in uas.messages()


def test_wrong_digest_credentials_fail_over(r, gateway, sipp):
    uas = sipp("uas_digest.xml", ["-m", "1"])
    good = sipp("uas_answer_bye.xml", ["-m", "1", "-d", "100"])
    call_id = originate(r, [leg(uas.uri_host, "auth", username="trunkuser", password="wrong"),
                            leg(good.uri_host, "good")])
    evs = wait_final(r, call_id)
    assert types(evs)[:4] == ["initiated", "leg_started", "leg_failed", "leg_started"], dumps(evs)
    assert evs[2]["sip_code"] == 403 and evs[2]["failover"] is True
    assert evs[-1]["type"] == "completed" and evs[-1]["carrier_id"] == "good"


def test_failover_when_every_slot_is_busy(r, gateway, sipp):
    """4 calls fill the worker; each first leg fails: the second legs still get a slot."""
    bad = sipp("uas_reject.xml", ["-m", "4"], subst={"CODE": 503, "PHRASE": "Service Unavailable"})
    good = sipp("uas_answer_bye.xml", ["-m", "4", "-d", "500"])
    ids = [originate(r, [leg(bad.uri_host, "bad"), leg(good.uri_host, "good")]) for _ in range(4)]
    for call_id in ids:
        evs = wait_final(r, call_id)
        assert types(evs)[-1] == "completed" and evs[-1]["carrier_id"] == "good", dumps(evs)
    assert bad.wait(10) == 0 and good.wait(10) == 0


def test_dead_carrier_does_not_starve_slots(r, gateway, sipp):
    """4 calls whose first carrier never answers: the abandoned INVITEs hold pjsua slots only for
    the shortened transaction timeout (8 s), so the second legs still go out."""
    dead = sipp("uas_silent.xml")
    good = sipp("uas_answer_bye.xml", ["-m", "4", "-d", "200"])
    ids = [originate(r, [leg(dead.uri_host, "dead"), leg(good.uri_host, "good")], provisional_timeout=1)
           for _ in range(4)]
    for call_id in ids:
        evs = wait_final(r, call_id, timeout=25)
        assert types(evs)[-1] == "completed" and evs[-1]["carrier_id"] == "good", dumps(evs)
    assert good.wait(10) == 0
