"""Digits to the far end: an agent navigating an IVR. SIPp answers (SIP) and this test is the callee's
phone line (RTP): it records every packet the gateway sends and decodes the RFC 4733 telephone-events
among them, checking they are the digits asked for and well formed (marker on the first packet, one
timestamp per event, the end packet three times, sequence numbers and SSRC continuous with the audio).

* ``send_digits`` on the originate command: sent once the call is answered, ``w`` a half-second pause;
* mid-call (client.send_digits, what POST /api/v1/calls/{sid}/digits uses): sent while the agent streams;
* a call already ended: the request is refused, nothing is queued.
"""
from __future__ import annotations

import itertools
import re
import struct

from media.rtp import EVENT_DIGITS, parse_rtp
from telephony.gateway import client
from telephony.gateway import events as ev
from tests.gateway.gwhelpers import dumps, leg, wait_event, wait_final, wait_for
from tests.gateway.test_amd import PhoneLine, answered_by_sipp
from tests.gateway.test_media_bridge import originate

EVENT_PT = 101  # the telephone-event payload type of the SIPp callee's SDP (scenarios/uas_media.xml)
SILENCE = b"\xff" * 160


def decode_events(packets: list[bytes]) -> list[dict]:
    """The telephone-events in the packets: [{digit, ts, packets, ends, duration, marker}], checking
    on the way that audio and events form one stream (one SSRC, sequence numbers without a gap)."""
    parsed = [parse_rtp(p) for p in packets]
    assert all(parsed)
    assert len({ssrc for *_, ssrc, _payload in parsed}) == 1, "events and audio in one stream"
    seqs = [seq for _pt, _m, seq, *_ in parsed]
    assert all((b - a) & 0xFFFF == 1 for a, b in itertools.pairwise(seqs)), "sequence numbers run on"
    events: list[dict] = []
    for pt, marker, _seq, ts, _ssrc, payload in parsed:
        if pt != EVENT_PT:
            continue
        code, flags, duration = struct.unpack("!BBH", payload[:4])
        if not events or events[-1]["ts"] != ts:
            events.append({"digit": EVENT_DIGITS[code], "ts": ts, "marker": bool(marker), "packets": 0,
                           "ends": 0, "duration": 0})
        event = events[-1]
        assert EVENT_DIGITS[code] == event["digit"], "one event per timestamp"
        assert duration >= event["duration"], "an event's duration only grows"
        event["packets"] += 1
        event["ends"] += bool(flags & 0x80)
        event["duration"] = duration
    return events


def answered_call(r, sipp, agents, **command) -> tuple[str, PhoneLine]:
    line = PhoneLine([SILENCE] * 400)  # 8 s of the callee's silence: the line is alive
    uas = answered_by_sipp(sipp, line)
    call_id = originate(r, [leg(uas.uri_host, "c1")], stream_url=agents.url("/record"), **command)
    wait_event(r, call_id, ev.ANSWERED)
    invite = wait_for(lambda: re.search(r"m=audio (\d+)", uas.messages()), 5, what="the INVITE's SDP")
    line.play(int(invite.group(1)))
    return call_id, line


def sent(line: PhoneLine, count: int) -> list[dict]:
    """The line's telephone-events once ``count`` of them have ended (their end packets all heard)."""
    def done():
        if not line.packets:  # the first packet may not be in yet
            return None
        events = decode_events(line.packets)
        return events if len(events) == count and events[-1]["ends"] == 3 else None
    return wait_for(done, 10, what=f"{count} telephone-events")


def well_formed(event: dict) -> bool:
    # 100 ms of tone (800 samples at 8 kHz), its first packet marked, the end packet sent three times
    return event["marker"] and event["ends"] == 3 and event["duration"] == 800 and event["packets"] == 7


def test_digits_given_at_create_reach_the_callee_after_the_answer(r, gateway, sipp, agents):
    call_id, line = answered_call(r, sipp, agents, send_digits="1w2#")
    try:
        events = sent(line, 3)
        assert [e["digit"] for e in events] == ["1", "2", "#"]
        assert all(well_formed(e) for e in events), events
        # event starts on the stream's clock: a digit, 100 ms of audio, then the next digit; the
        # 'w' adds half a second
        gap = (events[2]["ts"] - events[1]["ts"]) & 0xFFFFFFFF
        assert gap == (7 + 5) * 160
        assert (events[1]["ts"] - events[0]["ts"]) & 0xFFFFFFFF == gap + 25 * 160
        client.hangup(r, call_id)
        final = wait_final(r, call_id)[-1]
        assert final["dtmf_digits_sent"] == "12#", dumps(final)
    finally:
        line.stop()


def test_an_agent_navigates_an_ivr_mid_call(r, gateway, sipp, agents):
    call_id, line = answered_call(r, sipp, agents)
    try:
        wait_event(r, call_id, ev.STREAM_STARTED)
        assert not decode_events(line.packets)  # nothing before the agent asks
        assert client.send_digits(r, call_id, "3") == "test-gw-1"
        assert client.send_digits(r, call_id, "*9") == "test-gw-1"  # queued behind the first
        events = sent(line, 3)
        assert [e["digit"] for e in events] == ["3", "*", "9"]
        assert all(well_formed(e) for e in events), events
        client.hangup(r, call_id)
        assert wait_final(r, call_id)[-1]["dtmf_digits_sent"] == "3*9"
        assert client.send_digits(r, call_id, "1") == "ended"  # a call over takes no digits
    finally:
        line.stop()
