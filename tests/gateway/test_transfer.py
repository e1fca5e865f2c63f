"""Transfers to a person: a call bridged to its agent is handed to a second leg the gateway dials.

SIPp answers both legs (SIP); this test is both phone lines (RTP, tests/gateway/test_amd.PhoneLine).
The callee of the call says a 400 Hz tone, the person the call is transferred to a 1000 Hz tone,
the agent (when it speaks) 700 Hz: each party must hear exactly the others once the legs are joined.
"""
from __future__ import annotations

import array
import re

from media import codec
from telephony.gateway import client
from telephony.gateway import events as ev
from tests.gateway.gwhelpers import call_events, dumps, leg, wait_event, wait_final, wait_for
from tests.gateway.test_amd import PhoneLine, answered_by_sipp
from tests.gateway.test_media_bridge import originate
from tests.gateway.test_recording import BLOCK, power, tone_frames

CALLEE_HZ, PERSON_HZ, AGENT_HZ = 400, 1000, 700
PERSON = "+15550003333"


def blocks_with(audio: bytes, hz: float, share: float = 0.3) -> int:
    """How many 20 ms blocks of mu-law ``audio`` carry ``hz`` with at least ``share`` of their energy."""
    pcm = array.array("h", codec.ulaw_to_lin16(audio))
    count = 0
    for b in range(len(pcm) // BLOCK):
        block = pcm[b * BLOCK:(b + 1) * BLOCK]
        energy = sum(x * x for x in block) * BLOCK / 2
        if energy > 1e6 and power(block, hz) > share * energy:
            count += 1
    return count


def heard_since(line: PhoneLine, since: int) -> bytes:
    return b"".join(payload for _, payload in line.heard[since:])


def talking_line(hz: float) -> PhoneLine:
    return PhoneLine(tone_frames(hz, 30.0))


def answered_call(r, sipp, agents, path="/record"):
    """A call answered by a callee who keeps saying CALLEE_HZ, bridged to an agent."""
    callee = talking_line(CALLEE_HZ)
    uas = answered_by_sipp(sipp, callee)
    call_id = originate(r, [leg(uas.uri_host, "c1")], stream_url=agents.url(path))
    wait_event(r, call_id, ev.ANSWERED)
    invite = wait_for(lambda: re.search(r"m=audio (\d+)", uas.messages()), 5, what="the INVITE's SDP")
    callee.play(int(invite.group(1)))
    return call_id, callee, agents.conn_for(call_id)


def transfer(r, call_id: str, uri_host: str, mode: str = "cold", on_fail: str = "agent", ring_timeout=10) -> str:
    leg_id = f"{call_id}-t1"
    where = client.transfer(r, {
        "call_id": call_id, "transfer_sid": leg_id, "mode": mode, "on_fail": on_fail,
        "leg": {"call_id": leg_id, "from": "+15550001111", "to": PERSON, "ring_timeout": ring_timeout,
                "max_duration": 60, "tenant": "acme", "legs": [leg(uri_host, "c1", number=PERSON)]},
    })
    assert where not in ("ended", "unheld", "orphan"), where
    return leg_id


def test_cold_transfer_joins_the_callee_and_the_person_and_ends_the_agents_stream(r, gateway, sipp, agents):
    call_id, callee, agent = answered_call(r, sipp, agents)
    person = talking_line(PERSON_HZ)
    uas = answered_by_sipp(sipp, person)
    try:
        wait_for(lambda: blocks_with(agent.payload(), CALLEE_HZ) > 10, 10, what="the agent hearing the callee")
        leg_id = transfer(r, call_id, uas.uri_host)
        wait_event(r, leg_id, ev.ANSWERED)
        invite = wait_for(lambda: re.search(r"m=audio (\d+)", uas.messages()), 5, what="the transfer INVITE's SDP")
        person.play(int(invite.group(1)))
        joined = wait_event(r, call_id, ev.TRANSFERRED)
        assert joined["transfer_sid"] == leg_id
        wait_for(agent.closed.is_set, 5, what="the agent's stream closing")
        assert agent.events("stop"), "cold: the agent gets stop"
        callee_from, person_from = len(callee.heard), len(person.heard)
        wait_for(lambda: blocks_with(heard_since(person, person_from), CALLEE_HZ) >= 50, 10,
                 what="the person hearing the callee")
        wait_for(lambda: blocks_with(heard_since(callee, callee_from), PERSON_HZ) >= 50, 10,
                 what="the callee hearing the person")
        assert blocks_with(heard_since(person, person_from), PERSON_HZ) == 0  # no echo of their own voice
        assert blocks_with(heard_since(callee, callee_from), CALLEE_HZ) == 0

        client.hangup(r, leg_id)  # the person hangs up: the callee is hung up too
        leg_final = wait_final(r, leg_id)[-1]
        final = wait_final(r, call_id)[-1]
        assert leg_final["type"] == ev.COMPLETED and leg_final["transfer_of"] == call_id, dumps(leg_final)
        assert final["type"] == ev.COMPLETED and final["reason"] == ev.REASON_TRANSFER_LEG_ENDED, dumps(final)
        assert final["duration"] > leg_final["duration"] > 1.0
        started = next(e for e in call_events(r, call_id) if e["type"] == ev.TRANSFER_STARTED)
        assert (started["transfer_sid"], started["to"], started["mode"]) == (leg_id, PERSON, "cold")
    finally:
        callee.stop()
        person.stop()


def test_a_busy_person_gives_the_call_back_to_its_agent(r, gateway, sipp, agents):
    call_id, callee, agent = answered_call(r, sipp, agents)
    busy = sipp("uas_reject.xml", ["-m", "1"], subst={"CODE": 486, "PHRASE": "Busy Here"})
    try:
        leg_id = transfer(r, call_id, busy.uri_host, on_fail="agent")
        failed = wait_event(r, call_id, ev.TRANSFER_FAILED)
        assert (failed["transfer_sid"], failed["outcome"], failed["then"]) == (leg_id, ev.OUTCOME_BUSY, "agent")
        assert wait_final(r, leg_id)[-1]["outcome"] == ev.OUTCOME_BUSY
        told = wait_for(lambda: agent.events("transfer"), 5, what="the agent told of the failure")
        assert told[0]["transfer"] == {"transferSid": leg_id, "status": "failed", "outcome": "busy", "then": "agent"}
        # the stream goes on: the agent still hears the callee and the callee still hears the agent
        heard_by_agent, callee_from = len(agent.payload()), len(callee.heard)
        agents.send_audio(agent, b"".join(tone_frames(AGENT_HZ, 1.0)))
        wait_for(lambda: blocks_with(agent.payload()[heard_by_agent:], CALLEE_HZ) > 25, 10,
                 what="the agent hearing the callee after the failed transfer")
        wait_for(lambda: blocks_with(heard_since(callee, callee_from), AGENT_HZ) > 25, 10,
                 what="the callee hearing the agent after the failed transfer")
        assert not agent.closed.is_set()
        client.hangup(r, call_id)
        assert wait_final(r, call_id)[-1]["reason"] == ev.REASON_HANGUP_REQUESTED
    finally:
        callee.stop()


def test_a_busy_person_with_hangup_configured_ends_the_call(r, gateway, sipp, agents):
    call_id, callee, agent = answered_call(r, sipp, agents)
    busy = sipp("uas_reject.xml", ["-m", "1"], subst={"CODE": 486, "PHRASE": "Busy Here"})
    try:
        transfer(r, call_id, busy.uri_host, on_fail="hangup")
        final = wait_final(r, call_id)[-1]
        assert final["reason"] == ev.REASON_TRANSFER_FAILED, dumps(final)
        assert wait_event(r, call_id, ev.TRANSFER_FAILED)["then"] == "hangup"
    finally:
        callee.stop()


def test_warm_transfer_the_agent_hears_both_and_leaves_them_talking(r, gateway, sipp, agents):
    call_id, callee, agent = answered_call(r, sipp, agents)
    person = talking_line(PERSON_HZ)
    uas = answered_by_sipp(sipp, person)
    try:
        leg_id = transfer(r, call_id, uas.uri_host, mode="warm")
        wait_event(r, leg_id, ev.ANSWERED)
        invite = wait_for(lambda: re.search(r"m=audio (\d+)", uas.messages()), 5, what="the transfer INVITE's SDP")
        person.play(int(invite.group(1)))
        wait_event(r, call_id, ev.TRANSFERRED)
        told = wait_for(lambda: agent.events("transfer"), 5, what="the agent told the person is on the line")
        assert told[0]["transfer"] == {"transferSid": leg_id, "status": "joined"}
        heard_by_agent = len(agent.payload())
        wait_for(lambda: blocks_with(agent.payload()[heard_by_agent:], PERSON_HZ, 0.2) > 25, 10,
                 what="the agent hearing the person")
        assert blocks_with(agent.payload()[heard_by_agent:], CALLEE_HZ, 0.2) > 25  # and the callee, mixed
        callee_from, person_from = len(callee.heard), len(person.heard)
        agents.send_audio(agent, b"".join(tone_frames(AGENT_HZ, 1.0)))
        wait_for(lambda: blocks_with(heard_since(person, person_from), AGENT_HZ, 0.2) > 25, 10,
                 what="the person hearing the agent")
        wait_for(lambda: blocks_with(heard_since(callee, callee_from), AGENT_HZ, 0.2) > 25, 10,
                 what="the callee hearing the agent")

        agents.loop.call_soon_threadsafe(lambda: agents.loop.create_task(agent.ws.close()))
        wait_for(agent.closed.is_set, 5, what="the agent leaving")
        person_from = len(person.heard)
        wait_for(lambda: blocks_with(heard_since(person, person_from), CALLEE_HZ) >= 50, 10,
                 what="the person still hearing the callee after the agent left")
        assert not any(ev.is_final(e) for e in call_events(r, call_id))
        client.hangup(r, call_id)  # the callee's side ends: the person is hung up too
        assert wait_final(r, leg_id)[-1]["reason"] == ev.REASON_TRANSFER_LEG_ENDED
        assert wait_final(r, call_id)[-1]["reason"] == ev.REASON_HANGUP_REQUESTED
    finally:
        callee.stop()
        person.stop()


def test_a_call_that_is_not_answered_cannot_be_transferred(r, gateway, sipp, agents):
    ringing = sipp("uas_ring_noanswer.xml", ["-m", "1"])
    call_id = originate(r, [leg(ringing.uri_host, "c1")], stream_url=agents.url("/record"), ring_timeout=5)
    wait_event(r, call_id, ev.RINGING)
    transfer(r, call_id, ringing.uri_host)
    failed = wait_event(r, call_id, ev.TRANSFER_FAILED)
    assert failed["outcome"] == "refused" and failed["reason"] == "the call is not in progress"
    client.hangup(r, call_id)
    wait_final(r, call_id)


def blind(r, call_id: str, refer_to: str, on_fail: str = "agent") -> str:
    transfer_sid = f"{call_id}-b1"
    assert client.transfer(r, {"call_id": call_id, "transfer_sid": transfer_sid, "mode": "blind",
                               "on_fail": on_fail, "refer_to": refer_to}) == "test-gw-1"
    return transfer_sid


def test_blind_transfer_the_carrier_takes_the_refer_and_the_platform_leaves(r, gateway, sipp, agents):
    carrier = sipp("uas_refer_accept.xml", ["-m", "1"])
    call_id = originate(r, [leg(carrier.uri_host, "c1")], stream_url=agents.url("/record"))
    agent = agents.conn_for(call_id)
    desk = f"sip:{PERSON}@{carrier.uri_host}"
    transfer_sid = blind(r, call_id, desk)
    done = wait_event(r, call_id, ev.TRANSFERRED)
    assert (done["transfer_sid"], done["notify_code"]) == (transfer_sid, 200)
    final = wait_final(r, call_id)[-1]
    assert (final["type"], final["reason"], final["hangup_by"]) == (ev.COMPLETED, ev.REASON_TRANSFERRED, "platform")
    assert re.search(rf"REFER .*\n(.*\n)*Refer-To: <?{re.escape(desk)}>?", carrier.messages()), carrier.messages()[-3000:]
    wait_for(agent.closed.is_set, 5, what="the agent's stream ending")
    assert carrier.wait(10) == 0  # SIPp saw its scenario through: REFER, NOTIFY answered, our BYE


def test_a_refused_refer_gives_the_call_back_to_its_agent(r, gateway, sipp, agents):
    carrier = sipp("uas_refer_refuse.xml", ["-m", "1"])
    call_id = originate(r, [leg(carrier.uri_host, "c1")], stream_url=agents.url("/record"))
    agent = agents.conn_for(call_id)
    transfer_sid = blind(r, call_id, f"sip:{PERSON}@{carrier.uri_host}")
    failed = wait_event(r, call_id, ev.TRANSFER_FAILED)
    assert (failed["transfer_sid"], failed["sip_code"], failed["then"]) == (transfer_sid, 403, "agent")
    assert failed["outcome"] == ev.outcome_for_code(403)
    assert not any(ev.is_final(e) for e in call_events(r, call_id)) and not agent.closed.is_set()
    client.hangup(r, call_id)
    assert wait_final(r, call_id)[-1]["reason"] == ev.REASON_HANGUP_REQUESTED
    assert carrier.wait(10) == 0


def test_a_whisper_is_heard_by_the_person_alone_before_the_legs_are_joined(r, gateway, sipp, agents):
    call_id, callee, agent = answered_call(r, sipp, agents)
    whisper_hz = 1500
    r.set("test:whisper", b"".join(tone_frames(whisper_hz, 1.0)))
    person = talking_line(PERSON_HZ)
    uas = answered_by_sipp(sipp, person)
    try:
        leg_id = f"{call_id}-t1"
        client.transfer(r, {
            "call_id": call_id, "transfer_sid": leg_id, "mode": "warm", "on_fail": "agent", "whisper_key": "test:whisper",
            "leg": {"call_id": leg_id, "from": "+15550001111", "to": PERSON, "ring_timeout": 10, "max_duration": 60,
                    "tenant": "acme", "legs": [leg(uas.uri_host, "c1", number=PERSON)]}})
        wait_event(r, leg_id, ev.ANSWERED)
        invite = wait_for(lambda: re.search(r"m=audio (\d+)", uas.messages()), 5, what="the transfer INVITE's SDP")
        person.play(int(invite.group(1)))
        wait_for(lambda: blocks_with(person.audio(), CALLEE_HZ) >= 25, 10, what="the person hearing the callee")
        heard = person.audio()
        whispered, joined = blocks_with(heard, whisper_hz), blocks_with(heard, CALLEE_HZ)
        assert 45 <= whispered <= 50, (whispered, joined)
        first_callee = next(b for b in range(len(heard) // BLOCK) if blocks_with(heard[b * BLOCK:(b + 1) * BLOCK], CALLEE_HZ))
        last_whisper = max(b for b in range(len(heard) // BLOCK) if blocks_with(heard[b * BLOCK:(b + 1) * BLOCK], whisper_hz))
        assert last_whisper < first_callee  # the whisper, then the callee
        assert blocks_with(callee.audio(), whisper_hz) == 0  # the callee never hears it
        client.hangup(r, call_id)
        wait_final(r, leg_id)
    finally:
        callee.stop()
        person.stop()



def test_a_list_of_numbers_is_tried_in_turn_until_one_answers(r, gateway, sipp, agents):
    call_id, callee, agent = answered_call(r, sipp, agents)
    busy = sipp("uas_reject.xml", ["-m", "1"], subst={"CODE": 486, "PHRASE": "Busy Here"})
    person = talking_line(PERSON_HZ)
    uas = answered_by_sipp(sipp, person)
    first, second = f"{call_id}-t1", f"{call_id}-t2"

    def person_leg(leg_id, host):
        return {"call_id": leg_id, "from": "+15550001111", "to": PERSON, "ring_timeout": 10, "max_duration": 60,
                "tenant": "acme", "legs": [leg(host, "c1", number=PERSON)]}
    try:
        client.transfer(r, {"call_id": call_id, "transfer_sid": first, "mode": "cold", "on_fail": "hangup",
                            "leg": person_leg(first, busy.uri_host), "next": [person_leg(second, uas.uri_host)]})
        failed = wait_event(r, call_id, ev.TRANSFER_FAILED)
        assert (failed["transfer_sid"], failed["outcome"], failed["then"]) == (first, ev.OUTCOME_BUSY, "next")
        wait_event(r, second, ev.ANSWERED)
        invite = wait_for(lambda: re.search(r"m=audio (\d+)", uas.messages()), 5, what="the second INVITE's SDP")
        person.play(int(invite.group(1)))
        assert wait_event(r, call_id, ev.TRANSFERRED)["transfer_sid"] == second
        callee_from = len(callee.heard)
        wait_for(lambda: blocks_with(heard_since(callee, callee_from), PERSON_HZ) >= 25, 10,
                 what="the callee hearing the second number's person")
        assert not agent.events("transfer")  # the first number's failure was not the transfer's
        client.hangup(r, call_id)
        assert wait_final(r, second)[-1]["reason"] == ev.REASON_TRANSFER_LEG_ENDED
    finally:
        callee.stop()
        person.stop()
