"""Answering-machine detection on real calls: SIPp answers (SIP), and this test is the far end's
phone line (RTP): after the answer it plays a generated answer (bench/amd_corpus.py: espeak-ng speech
over line noise, a beep, a fax tone, silence) and records everything the gateway sends back.

* a person's "Hello?" → ``human``; the agent's stream starts after the decision, with
  ``AnsweredBy`` in ``start.customParameters``;
* a voicemail greeting ending in a beep, with the voicemail action → ``machine_end_beep``; the
  voicemail message is played after the beep (checked in the recorded audio), then the call ends;
* a fax tone, with the hang-up action → ``fax``, hung up, the agent never called;
* silence → ``unknown`` after the silence timeout, the agent gets the call;
* asynchronous detection: the stream starts at once and gets an ``answeredBy`` message.
"""
from __future__ import annotations

import random
import re
import socket
import struct
import threading
import time

import pytest

from bench.amd_corpus import make_answer
from telephony.gateway import client
from telephony.gateway import events as ev
from tests.gateway.gwhelpers import SCENARIOS, dumps, leg, wait_event, wait_final, wait_for
from tests.gateway.test_media_bridge import AgentServer, find_run, originate, pattern_frames


@pytest.fixture(scope="module")
def agents():
    srv = AgentServer()
    yield srv
    srv.stop()


class PhoneLine:
    """The callee's RTP: sends ``frames`` (mu-law, 20 ms apart on an absolute schedule) to the
    gateway once ``play`` is called, and records what the gateway sends (arrival, payload)."""

    def __init__(self, frames: list[bytes]):
        self.frames = frames
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.05)
        self.port = self.sock.getsockname()[1]
        self.sent_at: list[float] = []
        self.heard: list[tuple[float, bytes]] = []
        self.packets: list[bytes] = []  # whole, headers included
        self.remote_port = 0  # where the gateway's RTP comes from (its port for this line)
        self.running = True
        self.receiver = threading.Thread(target=self._receive, daemon=True)
        self.receiver.start()

    def play(self, gateway_port: int) -> None:
        threading.Thread(target=self._send, args=(gateway_port,), daemon=True).start()

    def _send(self, port: int) -> None:
        t0 = time.monotonic()
        for k, frame in enumerate(self.frames):
            if not self.running:
                return
            delay = t0 + k * 0.02 - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            packet = struct.pack("!BBHII", 0x80, 0x80 if k == 0 else 0, k & 0xFFFF, (k * 160) & 0xFFFFFFFF,
                                 0x5EED) + frame
            self.sent_at.append(time.monotonic())
            try:
                self.sock.sendto(packet, ("127.0.0.1", port))
            except OSError:
                return

    def _receive(self) -> None:
        while self.running:
            try:
                packet, (_, self.remote_port) = self.sock.recvfrom(2048)
            except (TimeoutError, OSError):
                continue
            self.packets.append(packet)
            self.heard.append((time.monotonic(), packet[12:]))

    def audio(self) -> bytes:
        return b"".join(payload for _, payload in self.heard)

    def arrival_of(self, offset: int) -> float:
        """When the received byte at ``offset`` of audio() arrived."""
        pos = 0
        for at, payload in self.heard:
            pos += len(payload)
            if pos > offset:
                return at
        raise AssertionError("offset beyond the received audio")

    def stop(self) -> None:
        self.running = False
        self.receiver.join(1)
        self.sock.close()


def answered_by_sipp(sipp, line: PhoneLine):
    """A SIPp callee whose SDP points the gateway's RTP at ``line``."""
    scenario = SCENARIOS.parent / f"uas_line_{line.port}.xml"
    scenario.write_text((SCENARIOS / "uas_media.xml").read_text()
                        .replace("m=audio [media_port]", f"m=audio {line.port}")
                        .replace("@PLAY@", "").replace("@CODEC_PT@", "0").replace("@CODEC@", "PCMU"))
    try:
        return sipp(str(scenario), ["-m", "1"])
    finally:
        scenario.unlink()


def call(r, sipp, frames: list[bytes], amd: dict, stream_url: str) -> tuple[str, PhoneLine]:
    """Place a call answered by SIPp; once answered, the line plays ``frames`` to the gateway."""
    line = PhoneLine(frames)
    uas = answered_by_sipp(sipp, line)
    call_id = originate(r, [leg(uas.uri_host, "c1")], stream_url=stream_url, machine_detection=amd)
    wait_event(r, call_id, ev.ANSWERED)
    invite = wait_for(lambda: re.search(r"m=audio (\d+)", uas.messages()), 5, what="the INVITE's SDP")
    line.play(int(invite.group(1)))
    return call_id, line


def answer(kind: str, seed: int):
    return make_answer(kind, random.Random(seed))


def test_a_person_saying_hello_is_human_and_the_agent_starts_after_the_decision(r, gateway, sipp, agents):
    hello = answer("human_short", 1)
    call_id, line = call(r, sipp, hello.frames, {"mode": "Enable", "on_machine": "hangup"}, agents.url("/record"))
    try:
        decided = wait_event(r, call_id, ev.AMD)
        assert decided["answered_by"] == "human", dumps(decided)
        assert decided["amd_evidence"]["greeting_ms"] < 1500
        conn = agents.conn_for(call_id)
        assert conn.events("start")[0]["start"]["customParameters"]["AnsweredBy"] == "human"
        started = wait_event(r, call_id, ev.STREAM_STARTED)
        assert started["ts"] >= decided["ts"]
        client.hangup(r, call_id)
        final = wait_final(r, call_id)[-1]
        assert final["answered_by"] == "human" and final["amd_ms"] == decided["amd_ms"], dumps(final)
    finally:
        line.stop()


def test_a_voicemail_greeting_ending_in_a_beep_gets_the_message_after_the_beep(r, gateway, sipp, agents):
    # a short greeting, then a 600 Hz beep (a greeting as short as "Please leave a message." followed by
    # a long pause may be taken for a person: the price of deciding people sooner, see bench/amd.py)
    greeting = answer("machine_beep", 5)
    message = pattern_frames(50, seed=3)  # one second of recognisable audio
    r.set("vm:test-message", b"".join(message))
    amd = {"mode": "Enable", "on_machine": "voicemail", "voicemail_key": "vm:test-message"}
    call_id, line = call(r, sipp, greeting.frames, amd, agents.url("/record"))
    try:
        evs = wait_final(r, call_id, timeout=30)
        final = evs[-1]
        assert final["reason"] == ev.REASON_VOICEMAIL_LEFT, dumps(evs)
        assert final["answered_by"] == "machine_end_beep" and final["hangup_by"] == ev.BY_PLATFORM
        audio = line.audio()
        start = find_run(audio, message)  # the whole message, in order, unaltered
        beep_last_frame = greeting.beep_end_ms // 20 - 1
        assert line.arrival_of(start) > line.sent_at[beep_last_frame]  # after the beep, never over it
        assert not any(c.call_sid == call_id for c in agents.conns)  # no agent for a machine
    finally:
        line.stop()


def test_a_fax_is_hung_up_on(r, gateway, sipp, agents):
    call_id, line = call(r, sipp, answer("fax", 1).frames, {"mode": "Enable", "on_machine": "hangup"},
                         agents.url("/record"))
    try:
        evs = wait_final(r, call_id)
        assert evs[-1]["reason"] == ev.REASON_MACHINE_DETECTED and evs[-1]["answered_by"] == "fax", dumps(evs)
        assert not any(c.call_sid == call_id for c in agents.conns)
    finally:
        line.stop()


def test_silence_is_unknown_and_the_agent_gets_the_call(r, gateway, sipp, agents):
    amd = {"mode": "Enable", "on_machine": "hangup", "silence_timeout_ms": 2000}
    call_id, line = call(r, sipp, answer("silence", 1).frames, amd, agents.url("/record"))
    try:
        decided = wait_event(r, call_id, ev.AMD)
        assert decided["answered_by"] == "unknown" and decided["amd_ms"] == 2000
        conn = agents.conn_for(call_id)
        assert conn.events("start")[0]["start"]["customParameters"]["AnsweredBy"] == "unknown"
        client.hangup(r, call_id)
        wait_final(r, call_id)
    finally:
        line.stop()


def test_asynchronous_detection_streams_at_once_and_tells_the_agent_later(r, gateway, sipp, agents):
    amd = {"mode": "Enable", "on_machine": "connect", "async": True}
    call_id, line = call(r, sipp, answer("human_short", 2).frames, amd, agents.url("/record"))
    try:
        conn = agents.conn_for(call_id)
        assert "AnsweredBy" not in conn.events("start")[0]["start"]["customParameters"]
        result = wait_for(lambda: conn.events("answeredBy"), 10, what="the answeredBy message")[0]
        assert result["answeredBy"]["answeredBy"] == "human"
        assert len(conn.media()) > 50  # the agent heard the caller from the start
        client.hangup(r, call_id)
        assert wait_final(r, call_id)[-1]["answered_by"] == "human"
    finally:
        line.stop()
