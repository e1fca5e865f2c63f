"""Media host: the frame path of bridged calls, RTP <-> the tenant agent's WebSocket (Twilio Media
Streams protocol), for the calls of one or many gateway workers.

Why a process of its own (measured, docs/gateway.md "Media bridge"): on this kind of VM every
sleep -> wake of a thread costs about 100 us of CPU, whatever the thread then does. A gateway
worker holds at most 4 calls (the pjsua2 wheel's limit), so a bridge inside each worker wakes for
almost every packet: about 275 wake-ups per second per worker, most of its CPU. One host serving
the calls of many workers finds many packets ready per wake-up and sends every call's frame in the
same 20 ms clock tick. The supervisor starts one host per core; a worker started on its own (tests,
development) runs a host in a thread of its own process. Both speak the same link protocol.

pjsua2 keeps SIP and SDP negotiation in the worker; the audio of a bridged call never enters
pjsua's media stack (see telephony/gateway/media_bridge.py for the worker side). The worker binds the call's RTP and
RTCP sockets (so it can write their port into the SDP at once) and passes them to the host.

Link (one Unix SOCK_SEQPACKET connection per worker; one JSON object per packet):

* worker -> host: ``open`` {call, cfg} with the RTP and RTCP sockets attached (SCM_RIGHTS);
  ``remote`` {call, addr, rtcp, codec, tx_pt, rx_pt, event_pts} (negotiated stream); ``start``
  {call, answered_mono} (answered: clock, then the agent stream); ``dtmf`` {call, digit} (SIP
  INFO); ``digits`` {call, digits} (send them to the callee as RFC 4733 events); ``twiml`` {call, steps} (run
  a TwiML program from now on, media/twiml_player.py); ``join`` {call, leg,
  mode} (a transfer: the call's and its transfer leg's audio play to each other, media/bridge_legs.py;
  ``fallback_audio`` sent for the leg first is whispered to the person before); ``transfer`` {call,
  transfer} (how the agent's transfer went: the agent gets a ``transfer`` message); ``fallback_audio`` {call, audio} (base64 parts) then ``fallback`` {call, reason, detail, label};
  ``announcement_audio`` {call, audio} (base64 parts, before ``start``: the recording announcement);
  ``close`` {call, report} (the call is over: ``stop`` to the agent; with ``report`` true the host
  answers ``report`` first).
* host -> worker: ``started`` {call, ai_connect_ms, stream_sid}; ``ended`` {call, reason, detail,
  want_fallback, want_voicemail} (the agent stream ended first, or answering-machine detection found a
  machine: hang up, or play the fallback / voicemail message); ``amd`` {call, answered_by, amd_ms,
  amd_evidence} (answering-machine detection decided); ``redirect`` {call, url, method} (the call's TwiML
  reached <Redirect>); ``report``
  {call, report} (quality and stream figures for the final event).

Frame path (one asyncio loop, one thread, for all calls of the host):

* caller -> agent: ``datagram_received`` parses the RTP header, updates RFC 3550 jitter/loss
  (media/quality.py), and pushes the G.711 payload to the call's ``StreamSession``; the session's
  sender task sends the ``media`` message. RFC 4733 telephone-events become ``dtmf`` messages.
* agent -> caller: one host-wide 20 ms clock (absolute schedule, no drift) pulls one frame per call
  from its playout buffer (silence when empty) and sends it as RTP with continuous sequence numbers
  and timestamps. Agent audio that finds the buffer idle goes out at once (``_play_now``).

A worker that goes away (crash, restart) takes its calls with it: the host sends them ``stop``.
"""
from __future__ import annotations

import argparse
import asyncio
import base64
import collections
import logging
import os
import random
import socket
import sys
import threading
import time

import uvloop

from core import cli, egress
from media import codec, twiml_player
from media.amd_call import END_CALL, PLAY_VOICEMAIL, STREAM, AmdCall
from media.announcement import Announcement
from media.bridge_legs import JoinedLegs, join
from media.latency import LatencyHist
from media.quality import RtpQuality, estimated_mos
from media.recording import CallRecording
from media.rtp import EVENT_DIGITS, DigitPlayer, DtmfReceiver, RtpSender, build_sr, parse_rtcp, parse_rtp
from media.speech import ResponseTimer
from media.stream_session import (
    AGENT_CLOSED,
    CALL_ENDED,
    CONNECT_FAILED,
    CONNECT_TIMEOUT,
    PROTOCOL_ERROR,
    RELAY_READY,
    StreamSession,
    run_outbound,
)
from telephony.gateway import events as ev

from . import host_link

log = logging.getLogger("gateway.media")
# Agents' stream URLs pass the platform's outbound guard here too, where the connection is made.
OUTBOUND_ALLOW = egress.allow_from_env()

FRAME_S = 0.020
FRAME_BYTES = 160
LATE_TICK_S = 0.010  # a playout tick more than this late counts as a late frame
RTCP_INTERVAL_S = 5.0
DEFAULT_CONNECT_TIMEOUT_S = 10.0

STREAM_END_REASONS = {
    AGENT_CLOSED: ev.REASON_AGENT_CLOSED,
    CONNECT_FAILED: ev.REASON_AGENT_CONNECT_FAILED,
    CONNECT_TIMEOUT: ev.REASON_AGENT_CONNECT_TIMEOUT,
    PROTOCOL_ERROR: ev.REASON_AGENT_PROTOCOL_ERROR,
}

SILENCE = {"pcmu": bytes([codec.ULAW_SILENCE]) * FRAME_BYTES, "pcma": bytes([codec.ALAW_SILENCE]) * FRAME_BYTES}


class _Rtcp(asyncio.DatagramProtocol):
    def __init__(self, cb: CallBridge):
        self.cb = cb

    def datagram_received(self, data, addr):
        self.cb.on_rtcp(data, addr)


class CallBridge(asyncio.DatagramProtocol):
    """One bridged call, on the host's loop. ``link`` is the worker that owns the call's SIP side."""

    def __init__(self, host: MediaHost, link: WorkerLink, call_id: str, cfg: dict, rtp_sock, rtcp_sock):
        self.host = host
        self.link = link
        self.call_id = call_id
        self.cfg = cfg
        self.rtp_sock = rtp_sock
        self.rtcp_sock = rtcp_sock
        self.transport: asyncio.DatagramTransport | None = None
        self.rtcp_transport: asyncio.DatagramTransport | None = None
        self.remote: tuple | None = None
        self.remote_rtcp: tuple | None = None
        self.latched = False
        self.codec = "pcmu"
        self.rx_pt = 0
        self.event_pts: tuple = ()
        self.sender: RtpSender | None = None
        self.silence = SILENCE["pcmu"]
        self.quality = RtpQuality()
        self.dtmf = DtmfReceiver()
        # digits to the callee (RFC 4733), in place of audio on the clock's ticks
        self.digits_out = DigitPlayer()
        self.tx_event_pt = 0  # the telephone-event payload type we send with (0: none negotiated)
        self.event_ts = 0  # the RTP timestamp of the event being sent
        self.dtmf_out = ""  # the digits sent, in order
        self.recording: CallRecording | None = None  # from the answer, when the call records (cfg record_dir)
        # the recording announcement (consent), played from the answer; the recording and stream follow it
        self.announcement: Announcement | None = None
        self.remote_ssrc: int | None = None
        self.session: StreamSession | None = None
        self.stream_task: asyncio.Task | None = None
        self.ticking = False  # in the bridge's clock (MediaBridge.clocked)
        self.last_rtcp = 0.0
        self.answered_mono = 0.0
        self.closing = False
        self.fallback: tuple[bytes, str, str] | None = None  # (audio, end reason, detail) while it plays
        self.fallback_pos = 0
        self.played_early = False  # _play_now sent the frame of the coming tick
        self.closed = False
        # no RTP from the answered far end for this long ends the call (rtp_timeout); 0 = never
        self.rtp_timeout = float(cfg.get("rtp_timeout") or 0)
        self.last_rtp = 0.0  # monotonic: the last RTP packet from the far end (or the answer)
        self.rtp_timed_out = False
        # stats
        self.packets_in = 0
        self.late_ticks = 0
        self.ticks = 0
        self.dtmf_in = ""  # the caller's digits, in order (campaign opt-out reads them from the final event)
        self.ai_connect_ms: float | None = None
        self.out_hist = LatencyHist()
        # AI response time: end of caller speech -> agent audio (in the stream's encoding)
        self.responses = ResponseTimer(agent_l16=cfg.get("encoding") == "audio/x-l16")
        self.out_marks: collections.deque = collections.deque()  # (byte position, arrival)
        # caller frames that arrive before the stream session exists (RTP can beat the loop's view
        # of the answer): flushed into the session if they came after the answer
        self.early: collections.deque = collections.deque(maxlen=50)
        self.rtcp_info: dict = {}
        self.last_sr_mid = 0
        self.last_sr_arrival = 0.0
        # answering-machine detection (media/amd_call.py), when the call asks for it
        self.amd = AmdCall(cfg["amd"]) if cfg.get("amd") else None
        self.amd_decided_mono = 0.0
        self.fallback_label = "fallback message"
        self.fallback_done = None  # called when the message has played, instead of ending the call (a whisper)
        self.joined: JoinedLegs | None = None  # a transfer: this leg and the other play to each other
        self.player: twiml_player.TwimlPlayer | None = None  # the call's TwiML program, while it runs
        self.fork: StreamSession | None = None  # TwiML <Start><Stream>: listen-only

    # ---- loop thread ----------------------------------------------------------------------------
    async def open(self) -> None:
        loop = asyncio.get_running_loop()
        self.transport, _ = await loop.create_datagram_endpoint(lambda: self, sock=self.rtp_sock)
        self.rtcp_transport, _ = await loop.create_datagram_endpoint(lambda: _Rtcp(self), sock=self.rtcp_sock)

    def set_remote(self, addr: tuple, rtcp_addr: tuple | None, codec_name: str, tx_pt: int, rx_pt: int,
                   event_pts: tuple) -> None:
        if not self.latched:
            self.remote = addr
        self.remote_rtcp = rtcp_addr or (addr[0], addr[1] + 1)
        self.codec = "pcma" if codec_name.upper().startswith("PCMA") else "pcmu"
        self.silence = SILENCE[self.codec]
        self.responses.set_caller_codec(self.codec)
        if self.amd is not None:
            self.amd.set_codec(self.codec)
        self.rx_pt = rx_pt
        self.event_pts = tuple(p for p in event_pts if p and p > 0)
        # (rx, tx) from the worker: send with the tx one
        self.tx_event_pt = event_pts[1] if len(event_pts) > 1 and event_pts[1] > 0 else next(iter(self.event_pts), 0)
        if self.sender is None:
            self.sender = RtpSender(tx_pt, random.getrandbits(32), random.getrandbits(16), random.getrandbits(32))
        else:
            self.sender.pt = tx_pt
        if self.session is not None:
            self.session.caller_codec = self.codec

    def start(self, answered_mono: float) -> None:
        """The call is answered: start the RTP clock, then the agent stream (after the pause)."""
        if self.closing:
            return
        self.answered_mono = answered_mono
        self.last_rtp = max(self.last_rtp, time.monotonic())
        loop = asyncio.get_running_loop()
        if self.transport is None:  # open() still running (it was posted first): retry shortly
            loop.call_later(0.002, self.start, answered_mono)
            return
        if not self.ticking:
            self.ticking = True
            self.host.clock_add(self)
            if self.cfg.get("send_digits"):
                self.send_digits(self.cfg["send_digits"])
            if self.announcement is not None:
                self.announcement.use_codec(self.codec)
            else:
                self._start_recording()
        if self.announcement is None:  # else the recording and the stream start once it has played
            self._after_answer()

    def _start_recording(self) -> None:
        if self.cfg.get("record_dir"):
            self.recording = CallRecording(self.call_id, self.cfg["record_dir"], self.codec, time.monotonic())

    def _announced(self) -> None:
        self.announcement = None
        self.early.clear()  # what the callee said over the announcement is not the agent's to hear
        self._start_recording()
        self._after_answer()

    def _after_answer(self) -> None:
        loop = asyncio.get_running_loop()
        if self.amd is not None and self.amd.sync:
            return  # the stream starts after the decision (_amd_decided)
        if self.player is not None:
            return  # a program sent before the answer
        if self.cfg.get("twiml") is not None:
            twiml_player.run(self, self.cfg["twiml"], OUTBOUND_ALLOW)
            return
        if self.cfg.get("twiml_wait"):
            loop.call_later(ev.TWIML_WAIT_S, self._twiml_missing)
        if not self.cfg["url"]:
            return  # no stream: the call only plays its fallback message (the worker says when)
        self._start_stream()

    def _start_stream(self) -> None:
        if self.closing or self.session is not None:
            return
        cfg = self.cfg
        s = self.session = StreamSession(cfg["account_sid"], cfg["call_sid"], custom_parameters=cfg["params"],
                                         encoding=cfg["encoding"],
                                         caller_codec=self.codec, on_agent_message=self._on_agent_message)
        s.on_started = self._on_started
        # outbound: drop what came before the 200 OK (early media, ringback); RTP right after
        # the 200 OK can beat our processing of it by a few ms. Inbound: we answered at once.
        since = self.answered_mono - 0.05 if self.cfg["direction"] == ev.DIRECTION_OUTBOUND else 0.0
        for arrival, data, is_digit in self.early:
            if arrival >= since:
                if is_digit:
                    s.push_dtmf(data)
                else:
                    s.push_inbound(data)
        self.early.clear()
        timeout = cfg["connect_timeout"] or DEFAULT_CONNECT_TIMEOUT_S
        self.stream_task = asyncio.get_running_loop().create_task(self._run_stream(s, timeout))

    async def _run_stream(self, s: StreamSession, timeout: float) -> None:
        try:
            address = None
            if not self.cfg["via_relay"]:  # the relay is the platform's own daphne
                address = await asyncio.get_running_loop().run_in_executor(
                    None, egress.check, self.cfg["url"], OUTBOUND_ALLOW, egress.WS_SCHEMES)
            reason = await run_outbound(self.cfg["url"], s, connect_timeout=timeout, address=address.address if address else None,
                                        ready_message=RELAY_READY if self.cfg["via_relay"] else None)
        except egress.EgressRefused as exc:
            reason = CONNECT_FAILED
            s._finish(reason, f"stream_url refused: {exc}")
        except Exception as exc:  # noqa: BLE001
            log.exception("call %s: stream failed", self.call_id)
            reason = "internal_error"
            s._finish(reason, repr(exc))
        log.info("call %s: stream ended: %s %s", self.call_id, reason, s.end_detail)
        if reason != CALL_ENDED and not self.closing and not (self.joined and self.joined.agent_left()):
            self.link.send({"op": "ended", "call": self.call_id, "detail": s.end_detail,
                            "reason": STREAM_END_REASONS.get(reason, ev.REASON_MEDIA_ERROR),
                            "want_fallback": bool(self.cfg["fallback_key"])})
        if self.closing:
            self._close_transports()

    def _twiml_missing(self) -> None:
        if self.player is None and self.session is None and not self.closing:
            self.link.send({"op": "ended", "call": self.call_id, "reason": ev.REASON_TWIML_MISSING,
                            "detail": f"no TwiML within {ev.TWIML_WAIT_S:g} s of the answer"})

    def _on_started(self) -> None:
        # after synchronous detection, from the decision: the end of the callee's greeting (the
        # abandonment rule's "2 s after the greeting"); the detection's own time is amd_ms
        since = self.amd_decided_mono or self.answered_mono
        self.ai_connect_ms = round((time.monotonic() - since) * 1000, 1)
        self.link.send({"op": "started", "call": self.call_id, "ai_connect_ms": self.ai_connect_ms,
                        "stream_sid": self.session.stream_sid if self.session else None})

    def _on_agent_message(self, msg) -> None:
        # agent media arriving at an idle playout: time it until its first byte is sent (bridge_out).
        # Not idle: audio still queued, or the previous frame went out early and its 20 ms have not
        # run (played_early): the new audio waits for that to play, at the pace the caller hears.
        pb = self.session.playout
        t = type(msg).__name__
        if t == "AgentMedia":
            start = pb._written - len(msg.payload)
            now = time.monotonic()
            if start <= pb._read:
                if not self.played_early:
                    self.out_marks.append((start, now))
                self._play_now()
            self.responses.agent_audio(msg.payload, now)
        elif t == "AgentClear":
            self.out_marks.clear()

    def datagram_received(self, data, addr):
        p = parse_rtp(data)
        if p is None:
            return
        pt, _m, seq, ts, ssrc, payload = p
        self.last_rtp = time.monotonic()
        if pt == self.rx_pt:
            now = self.last_rtp
            self.packets_in += 1
            if not self.latched:  # symmetric RTP: answer where the audio comes from
                self.remote = addr
                self.latched = True
            self.remote_ssrc = ssrc
            self.quality.on_packet(seq, ts, now)
            if self.recording is not None:
                self.recording.callee_frame(ts, payload, now)
            if self.joined is not None:
                self.joined.heard(self, payload)
            if self.amd is not None and self.answered_mono and self.amd.decision is None:
                decision = self.amd.feed(payload)
                if decision is not None:
                    self._amd_decided()
            s = self.session
            if s is not None:
                if self.joined is not None and self.joined.agent_on:  # warm transfer: the agent hears both
                    payload = self.joined.for_agent(payload)
                if len(payload) == FRAME_BYTES:
                    s.push_inbound(payload)
                else:
                    for i in range(0, len(payload) - FRAME_BYTES + 1, FRAME_BYTES):
                        s.push_inbound(payload[i:i + FRAME_BYTES])
                self.responses.caller_frame(payload, now)  # after the push: not in the bridge's latency
            elif not self.closing:
                self.early.append((now, payload, False))
            if self.fork is not None:
                twiml_player.feed_fork(self.fork, payload)
        elif pt in self.event_pts:
            digit = self.dtmf.on_packet(ts, payload)
            if digit is not None:
                self.dtmf_in = (self.dtmf_in + digit)[-32:]
                if self.session is not None:
                    self.session.push_dtmf(digit)
                elif not self.closing:
                    self.early.append((time.monotonic(), digit, True))

    def _amd_decided(self) -> None:
        """Answering-machine detection decided: report it, then stream, hang up or leave the voicemail."""
        amd = self.amd
        self.link.send({"op": "amd", "call": self.call_id, **amd.result()})
        step = amd.next_step()
        if step == STREAM:
            if self.session is not None:  # async: the agent is already streaming
                self.session.push_answered_by(amd.stream_message())
            elif not self.closing:
                self.amd_decided_mono = time.monotonic()
                self.cfg["params"] = {**self.cfg["params"], "AnsweredBy": amd.decision.answered_by}
                self.early.clear()  # the greeting was for the detector, not the agent
                self._start_stream()
            return
        if self.session is not None:
            self.session.stop()  # async: the agent's stream ends (`stop`), the call goes on without it
        if step == PLAY_VOICEMAIL:
            self.link.send({"op": "ended", "call": self.call_id, "reason": ev.REASON_VOICEMAIL_LEFT,
                            "detail": amd.decision.answered_by, "want_voicemail": True})
        elif step == END_CALL:
            self.link.send({"op": "ended", "call": self.call_id, "reason": ev.REASON_MACHINE_DETECTED,
                            "detail": amd.decision.answered_by})

    def push_dtmf(self, digit: str) -> None:  # SIP INFO digits reported by pjsua
        self.dtmf_in = (self.dtmf_in + digit)[-32:]
        if self.session is not None:
            self.session.push_dtmf(digit)

    def send_digits(self, digits: str) -> None:
        """Queue digits for the callee (0-9 * # A-D, ``w`` a half-second pause); they go out from the
        next tick of an answered call, after any digits still queued."""
        self.digits_out.add(digits)

    def tick(self, now: float, skipped: int) -> None:
        """One 20 ms playout tick (called by the process-wide clock, MediaBridge._clock)."""
        if skipped and self.sender is not None:  # the clock skipped ticks after a long stall
            self.sender.ts = (self.sender.ts + skipped * FRAME_BYTES) & 0xFFFFFFFF
        if self.sender is not None and self.remote is not None:
            if self.played_early:  # this tick's frame already went out (_play_now)
                self.played_early = False
            else:
                step = self.digits_out.step() if self.digits_out else None
                if step is not None and not self.tx_event_pt:
                    log.warning("call %s: the callee accepts no telephone-event: digits not sent", self.call_id)
                    self.digits_out.steps.clear()
                    step = None
                if step is not None:
                    payload, first = step
                    if first:
                        self.event_ts = self.sender.ts
                        self.dtmf_out = (self.dtmf_out + EVENT_DIGITS[payload[0]])[-64:]
                    packet = self.sender.event_packet(self.tx_event_pt, self.event_ts, payload, first)
                else:
                    if self.fallback is not None:
                        frame = self._fallback_frame()
                    elif self.announcement is not None:
                        frame = self.announcement.next_frame(self.silence)
                        if frame is None:
                            self._announced()
                    elif self.player is not None:
                        frame = self.player.frame()
                        frame = codec.ulaw_to_alaw(frame) if frame and self.codec == "pcma" else frame
                    elif self.joined is not None:
                        frame = self.joined.frame_for(self)
                    else:
                        frame = self._agent_frame()
                    if frame is None:
                        frame = self.silence
                    if self.recording is not None:
                        self.recording.agent_frame(self.sender.ts, frame)
                    packet = self.sender.packet(frame)
                self.transport.sendto(packet, self.remote)
            if now - self.last_rtcp > RTCP_INTERVAL_S:
                self.last_rtcp = now
                self._send_rtcp()
        self.ticks += 1
        if self.rtp_timeout and self.ticks % 50 == 0:
            self._check_rtp()

    def _check_rtp(self) -> None:
        """A far end that sends no RTP for rtp_timeout s is gone (crashed, unplugged, lost its route)."""
        silent = time.monotonic() - self.last_rtp
        if silent > self.rtp_timeout and not self.rtp_timed_out and not self.closing:
            self.rtp_timed_out = True
            log.warning("call %s: no RTP for %.1f s: ending it", self.call_id, silent)
            self.link.send({"op": "ended", "call": self.call_id, "reason": ev.REASON_RTP_TIMEOUT,
                            "detail": f"no RTP from the far end for {silent:.1f} s",
                            "last_rtp_at": time.time() - silent})

    def _agent_frame(self) -> bytes | None:
        """The next 20 ms of agent audio (None when there is none), timing audio that found the buffer idle."""
        s = self.session
        if s is None:
            return None
        frame = s.pull_outbound()
        if frame is not None and self.out_marks:
            played_to = s.playout._read
            t = None
            while self.out_marks and self.out_marks[0][0] < played_to:
                t = self.out_marks.popleft()[1]
            if t is not None:
                self.out_hist.add(time.monotonic() - t)
        return frame

    def _play_now(self) -> None:
        """Agent audio that finds the playout buffer idle goes out at once, not at the next tick (0-20 ms
        later); that tick then sends nothing, so the stream still carries one frame per 20 ms. The
        callee's jitter buffer sees one early packet per utterance."""
        if (self.played_early or self.fallback is not None or self.announcement is not None
                or self.sender is None or self.remote is None
                or self.digits_out or self.joined is not None):  # digits being sent own the ticks (an event is never split by audio)
            return
        frame = self._agent_frame()
        if frame is not None:
            if self.recording is not None:
                self.recording.agent_frame(self.sender.ts, frame)
            self.transport.sendto(self.sender.packet(frame), self.remote)
            self.played_early = True

    def play_fallback(self, audio: bytes, reason: str, detail: str, label: str = "fallback message") -> None:
        """The agent is gone: play the fallback message (caller's codec), then hang up with ``reason``.
        Also the voicemail message of answering-machine detection (``label`` says which in the detail)."""
        self.fallback_label = label
        if self.closing:
            return
        if self.sender is None or self.remote is None:  # no media path to the callee: nothing to play on
            self.link.send({"op": "ended", "call": self.call_id, "reason": reason, "detail": detail})
            return
        if self.codec == "pcma":
            audio = codec.ulaw_to_alaw(audio)
        self.fallback = (audio, reason, detail)
        self.fallback_pos = 0

    def _fallback_frame(self) -> bytes | None:
        audio, reason, detail = self.fallback
        frame = audio[self.fallback_pos:self.fallback_pos + FRAME_BYTES]
        self.fallback_pos += FRAME_BYTES
        if self.fallback_pos >= len(audio):
            self.fallback = None
            done, self.fallback_done = self.fallback_done, None
            if done is not None:
                done()
            else:
                self.link.send({"op": "ended", "call": self.call_id, "reason": reason,
                                "detail": f"{detail} ({self.fallback_label} played)".strip()})
        return frame + self.silence[len(frame):] if frame else None

    def _send_rtcp(self) -> None:
        if self.rtcp_transport is None or self.remote_rtcp is None or self.sender is None:
            return
        block = None
        if self.remote_ssrc is not None:
            loss = self.quality.loss
            dlsr = int((time.time() - self.last_sr_arrival) * 65536) if self.last_sr_mid else 0
            block = (self.remote_ssrc, min(255, int(loss.loss_fraction * 256)), max(0, loss.lost),
                     loss.extended_max, self.quality.jitter.jitter, self.last_sr_mid, dlsr)
        try:
            self.rtcp_transport.sendto(build_sr(self.sender.ssrc, self.sender.ts, self.sender.packets,
                                                self.sender.octets, block), self.remote_rtcp)
        except OSError:
            pass

    def on_rtcp(self, data, addr) -> None:
        if self.sender is None:
            return
        info = parse_rtcp(data, self.sender.ssrc)
        if "sr_ntp_mid" in info:
            self.last_sr_mid = info["sr_ntp_mid"]
            self.last_sr_arrival = info["sr_arrival"]
        self.rtcp_info.update({k: v for k, v in info.items() if not k.startswith("sr_")})

    def close(self) -> None:
        """The call ended: `stop` to the agent, stop the clock, close the sockets."""
        if self.closing:
            return
        self.closing = True
        if self.joined is not None:
            self.joined.split()
        if self.ticking:
            self.ticking = False
            self.host.clock_remove(self)
        if self.session is not None:
            self.session.stop()
        if self.player is not None:
            self.player.stop()
        twiml_player.stop_fork(self)
        if self.stream_task is None or self.stream_task.done():
            self._close_transports()
        if self.recording is not None:  # off the loop: decoding and the disk must not delay any frame
            threading.Thread(target=self._write_recording, args=(self.recording,), name=f"rec-{self.call_id}").start()

    def _write_recording(self, recording: CallRecording) -> None:
        try:
            path = recording.write()
            log.info("call %s: recording written: %s (%.1f s)", self.call_id, path, recording.duration_s)
        except OSError:
            log.exception("call %s: recording not written", self.call_id)

    def _close_transports(self) -> None:
        if self.closed:
            return
        self.closed = True
        for t in (self.transport, self.rtcp_transport):
            if t is not None:
                t.close()
        if self.transport is None:
            self.rtp_sock.close()
        if self.rtcp_transport is None:
            self.rtcp_sock.close()

    # ---- any thread (read-only snapshot at the end of the call) ------------------------------------
    def report(self) -> dict:
        q = self.quality.report()
        rtt = self.rtcp_info.get("rtt_ms")
        out = {
            "jitter_ms": q["jitter_ms"], "loss_percent": q["loss_percent"],
            "rtp_packets_in": self.packets_in,
            "rtp_packets_out": self.sender.packets if self.sender else 0,
            "late_frames": self.late_ticks, "dtmf_digits": self.dtmf_in,
            "dtmf_digits_sent": self.dtmf_out or None,
            "ai_connect_ms": self.ai_connect_ms,
        }
        if rtt is not None:
            out["rtt_ms"] = round(rtt, 1)
        if self.recording is not None:
            out["recording_file"] = self.recording.file_name
            out["recording_duration_s"] = self.recording.duration_s
        if "jitter_units" in self.rtcp_info:
            out["remote_jitter_ms"] = round(self.rtcp_info["jitter_units"] / 8.0, 3)
            out["remote_loss_percent"] = round(self.rtcp_info.get("fraction_lost", 0.0) * 100, 3)
        one_way = (rtt or 0.0) / 2.0
        out["mos"] = round(estimated_mos(one_way, q["jitter_ms"], q["loss_percent"]), 3)
        s = self.session
        if s is not None:
            st = s.stats
            out.update(st.bridge_in_hist.summary("bridge_in"))
            out["frames_to_agent"] = st.frames_sent
            out["frames_dropped"] = st.frames_dropped
            out["frames_from_agent"] = s.playout.stats.frames_played
            out["stream_sid"] = s.stream_sid
            if s.marks.total:
                out["marks"] = s.marks.report()
            if s.end_reason:
                out["stream_end"] = s.end_reason
        out.update(self.out_hist.summary("bridge_out"))
        if s is not None:
            out.update(self.responses.summary())
        if self.amd is not None and self.answered_mono:
            self.amd.finish()  # undecided when the call ended: unknown
            out.update(self.amd.result())
        return {k: v for k, v in out.items() if v is not None}


class WorkerLink:
    """One worker's connection to the host (host loop thread)."""

    def __init__(self, host: MediaHost, sock: socket.socket):
        self.host = host
        self.sock = sock
        sock.setblocking(False)
        self.calls: dict[str, CallBridge] = {}
        self.out: collections.deque = collections.deque()  # packets waiting for the socket to drain
        self.fallback_parts: dict[str, list[bytes]] = {}
        self.closed = False
        host.loop.add_reader(sock.fileno(), self._readable)

    # ---- to the worker ----------------------------------------------------------------------------
    def send(self, msg: dict) -> None:
        if self.closed:
            return
        data = host_link.encode(msg)
        if self.out:
            self.out.append(data)
            return
        try:
            self.sock.send(data)
        except BlockingIOError:
            self.out.append(data)
            self.host.loop.add_writer(self.sock.fileno(), self._writable)
        except OSError:
            self.lost()

    def _writable(self) -> None:
        try:
            while self.out:
                self.sock.send(self.out[0])
                self.out.popleft()
        except BlockingIOError:
            return
        except OSError:
            self.lost()
            return
        self.host.loop.remove_writer(self.sock.fileno())

    # ---- from the worker --------------------------------------------------------------------------
    def _readable(self) -> None:
        while not self.closed:
            try:
                data, fds, _flags, _addr = socket.recv_fds(self.sock, host_link.MAX_PACKET, 2)
            except BlockingIOError:
                return
            except OSError:
                data, fds = b"", []
            if not data:
                for fd in fds:
                    os.close(fd)
                self.lost()
                return
            try:
                self.handle(host_link.decode(data), fds)
            except Exception:  # noqa: BLE001 - one bad request must not take the host's calls down
                log.exception("media host: link message %r", data[:200])
                for fd in fds:
                    os.close(fd)

    def handle(self, msg: dict, fds: list[int]) -> None:
        op = msg["op"]
        call_id = msg["call"]
        if op == "open":
            rtp = socket.socket(fileno=fds[0])
            rtcp = socket.socket(fileno=fds[1])
            old = self.calls.pop(call_id, None)
            if old is not None:
                old.close()
            cb = self.calls[call_id] = CallBridge(self.host, self, call_id, msg["cfg"], rtp, rtcp)
            self.host.loop.create_task(cb.open())
            return
        for fd in fds:
            os.close(fd)
        cb = self.calls.get(call_id)
        if cb is None:
            if op == "close" and msg.get("report"):
                self.send({"op": "report", "call": call_id, "report": {}})
            return
        if op == "remote":
            cb.set_remote(tuple(msg["addr"]), tuple(msg["rtcp"]) if msg.get("rtcp") else None, msg["codec"],
                          msg["tx_pt"], msg["rx_pt"], tuple(msg["event_pts"]))
        elif op == "start":
            cb.start(msg["answered_mono"])
        elif op == "dtmf":
            cb.push_dtmf(msg["digit"])
        elif op == "digits":
            cb.send_digits(msg["digits"])
        elif op == "transfer":  # how the agent's transfer went: told to the agent, if it is still there
            if cb.session is not None:
                cb.session.push_transfer(msg["transfer"])
        elif op == "join":  # a transfer leg answered: its audio and the call's play to each other
            person = self.calls.get(msg["leg"])
            whisper = b"".join(self.fallback_parts.pop(msg["leg"], []))
            if person is not None and not person.closing and not cb.closing:
                join(cb, person, msg["mode"], whisper)
        elif op == "announcement_audio":
            cb.announcement = cb.announcement or Announcement()
            cb.announcement.add(base64.b64decode(msg["audio"]))
        elif op == "twiml":
            twiml_player.run(cb, msg["steps"], OUTBOUND_ALLOW)
        elif op == "fallback_audio":
            self.fallback_parts.setdefault(call_id, []).append(base64.b64decode(msg["audio"]))
        elif op == "fallback":
            audio = b"".join(self.fallback_parts.pop(call_id, []))
            cb.play_fallback(audio, msg["reason"], msg["detail"], msg.get("label", "fallback message"))
        elif op == "close":
            if msg.get("report"):
                try:
                    report = cb.report()
                except Exception:  # noqa: BLE001
                    log.exception("call %s: media report", call_id)
                    report = {}
                self.send({"op": "report", "call": call_id, "report": report})
            self.calls.pop(call_id, None)
            self.fallback_parts.pop(call_id, None)
            cb.close()
        else:
            log.warning("media host: unknown link op %r", op)

    def lost(self) -> None:
        """The worker is gone (or the host stops): every call of it ends, `stop` to its agent."""
        if self.closed:
            return
        self.closed = True
        loop = self.host.loop
        loop.remove_reader(self.sock.fileno())
        if self.out:
            loop.remove_writer(self.sock.fileno())
        for cb in self.calls.values():
            cb.close()
        if self.calls:
            log.warning("media host: worker link closed with %d calls: their streams are stopped", len(self.calls))
        self.calls.clear()
        self.sock.close()
        self.host.links.discard(self)


class MediaHost:
    """The bridged calls of any number of workers, on one asyncio loop in the thread that runs it."""

    def __init__(self, loop: asyncio.AbstractEventLoop | None = None):
        # uvloop: the loop's own cost per wake-up (epoll, handles, transports) is in C
        self.loop = loop or uvloop.new_event_loop()
        self.links: set[WorkerLink] = set()
        self.clocked: list[CallBridge] = []
        self.clock_handle: asyncio.TimerHandle | None = None
        self.next_tick = 0.0
        self.listener: socket.socket | None = None

    # ---- links -------------------------------------------------------------------------------------
    def attach(self, sock: socket.socket) -> None:
        """Serve one worker over ``sock`` (a connected SOCK_SEQPACKET socket). Loop thread, or before run."""
        self.links.add(WorkerLink(self, sock))

    def listen(self, path: str) -> None:
        """Accept workers on the Unix socket ``path``."""
        if os.path.exists(path):
            os.unlink(path)
        s = self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        s.bind(path)
        s.listen(64)
        s.setblocking(False)
        self.loop.add_reader(s.fileno(), self._accept)

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except BlockingIOError:
                return
            self.attach(conn)

    # ---- the host-wide 20 ms playout clock ----------------------------------------------------------
    # One timer for all calls: every call's frame goes out in the same wake-up. Absolute schedule,
    # so it does not drift; a tick more than 10 ms late counts a late frame for every call.
    def clock_add(self, cb: CallBridge) -> None:
        self.clocked.append(cb)
        if self.clock_handle is None:
            self.next_tick = self.loop.time()
            self._clock()

    def clock_remove(self, cb: CallBridge) -> None:
        if cb in self.clocked:
            self.clocked.remove(cb)
        if not self.clocked and self.clock_handle is not None:
            self.clock_handle.cancel()
            self.clock_handle = None

    def _clock(self) -> None:
        loop = self.loop
        now = loop.time()
        late = now - self.next_tick
        skipped = 0
        if late > 0.2:  # a long stall: do not burst, resume from now
            skipped = int(late / FRAME_S)
            self.next_tick = now
        for cb in list(self.clocked):
            if late > LATE_TICK_S:
                cb.late_ticks += 1
            try:
                cb.tick(now, skipped)
            except Exception:  # noqa: BLE001 - one call's bug must not stop the others' audio
                log.exception("call %s: playout tick", cb.call_id)
        self.next_tick += FRAME_S
        self.clock_handle = loop.call_at(self.next_tick, self._clock)

    # ---- running ------------------------------------------------------------------------------------
    def run(self) -> None:
        """Run the loop in this thread until ``stop_soon``; then every call gets `stop` (drained)."""
        asyncio.set_event_loop(self.loop)
        # imported before any call ticks on this loop, not by the first connect (an import on the
        # running loop would delay every call's frames)
        import media.ws_client  # noqa: F401
        prof_path = os.environ.get("MEDIA_BRIDGE_PROFILE")  # development aid: cProfile dump
        if prof_path:
            import cProfile

            prof = cProfile.Profile()
            prof.enable()
        try:
            self.loop.run_forever()
            self.loop.run_until_complete(self._drain())
        finally:
            if prof_path:
                prof.disable()
                prof.dump_stats(f"{prof_path}.{os.getpid()}")

    def stop_soon(self) -> None:
        """Any thread: stop the host (its calls get `stop`, their sockets close)."""
        self.loop.call_soon_threadsafe(self.loop.stop)

    async def _drain(self, timeout: float = 3.0) -> None:
        for link in list(self.links):
            link.lost()
        if self.listener is not None:
            self.loop.remove_reader(self.listener.fileno())
            self.listener.close()
        tasks = [t for t in asyncio.all_tasks(self.loop) if t is not asyncio.current_task()]
        if tasks:
            await asyncio.wait(tasks, timeout=timeout)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description="Media host: bridged call audio for gateway workers")
    p.add_argument("--socket", required=True, help="Unix socket path the workers connect to")
    p.add_argument("--name", default="media", help="name in log lines")
    p.add_argument("--nice", type=int, default=-10,
                   help="scheduling priority (the frame clock must not wait behind SIP work; < 0 needs root)")
    args = cli.parse_args(p, argv, lambda a: a.name)
    try:
        os.setpriority(os.PRIO_PROCESS, 0, args.nice)
    except OSError as exc:
        log.warning("media host: cannot set priority %s (%s): frames may be late under load", args.nice, exc)
    host = MediaHost()
    host.listen(args.socket)
    log.info("media host listening on %s (pid %s)", args.socket, os.getpid())
    cli.run_until_signalled(host.run, host.loop.stop, loop=host.loop)
    try:
        os.unlink(args.socket)
    except OSError:
        pass
    log.info("media host stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
