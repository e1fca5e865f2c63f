"""Media bridge: the call's RTP <-> the tenant agent's WebSocket (Twilio Media Streams protocol).

pjsua2 keeps SIP and SDP negotiation; the audio of a bridged call never enters pjsua's media
stack. Why (measured, see docs/gateway.md "Media bridge"): a Python ``AudioMediaPort`` costs a
director call per 20 ms frame and direction on the conference bridge's single clock thread, and
reading a frame's ``ByteVector`` from Python costs ~350 us (element by element), i.e. ~1.8 % of a
core per call for reading alone; the target is 1 % per call *including* the WebSocket.

Frame path (one asyncio loop per gateway process, in one thread, for all its calls):

* SDP: ``onCallSdpCreated`` rewrites the audio m-line (and ``a=rtcp``) of the SDP pjsua built to our
  own UDP pair (RTP even port, RTCP +1), allocated right there. Codecs, payload types, direction and
  telephone-event stay exactly as pjsua negotiates them; ``onCallMediaState`` reads the result
  (``Call.getStreamInfo``: remote address, codec, payload types) and hands it to the loop. pjsua's
  own stream is still created but gets no RTP and, fed only NONE frames by the conference bridge,
  sends none (it only emits its RTCP reports).
* caller -> agent: ``datagram_received`` parses the RTP header, updates RFC 3550 jitter/loss
  (media/quality.py), and pushes the G.711 payload to the call's ``StreamSession`` on the same
  thread (no lock contention, no self-pipe wake-up); the session's sender task sends the ``media``
  message. RFC 4733 telephone-events become ``dtmf`` messages.
* agent -> caller: a per-call 20 ms timer (``loop.call_at`` on an absolute schedule, so it does not
  drift) pulls one frame from the playout buffer (silence when empty) and sends it as RTP with
  continuous sequence numbers and timestamps.

Nothing of this runs on pjsua's threads: a slow agent or a busy loop can only delay this process's
calls, never the conference bridge clock. Events for the worker (stream started, stream ended ->
hang up) are queued and run by the worker's main thread (``MediaBridge.poll`` from a 20 ms pjsua
timer), because the worker's state is single-threaded.
"""
from __future__ import annotations

import asyncio
import collections
import ctypes
import functools
import hashlib
import logging
import os
import random
import socket
import threading
import time

import pjsua2 as pj
import uvloop

from media import codec
from media.latency import LatencyHist
from media.protocol import MULAW_8K
from media.quality import RtpQuality, estimated_mos
from media.rtp import DtmfReceiver, RtpSender, build_sr, parse_rtcp, parse_rtp, rewrite_sdp_media
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

from . import events as ev

log = logging.getLogger("gateway.media")

FRAME_S = 0.020
FRAME_BYTES = 160
LATE_TICK_S = 0.010  # a playout tick more than this late counts as a late frame
RTCP_INTERVAL_S = 5.0

STREAM_END_REASONS = {
    AGENT_CLOSED: ev.REASON_AGENT_CLOSED,
    CONNECT_FAILED: ev.REASON_AGENT_CONNECT_FAILED,
    CONNECT_TIMEOUT: ev.REASON_AGENT_CONNECT_TIMEOUT,
    PROTOCOL_ERROR: ev.REASON_AGENT_PROTOCOL_ERROR,
}

SILENCE = {"pcmu": bytes([codec.ULAW_SILENCE]) * FRAME_BYTES, "pcma": bytes([codec.ALAW_SILENCE]) * FRAME_BYTES}


def stream_config(s) -> dict | None:
    """Stream settings of a worker Session, or None when the call is not bridged."""
    if s.direction == ev.DIRECTION_INBOUND:
        route = s.extra.get("route") or {}
        url = route.get("stream_url")
        if not url:
            return None
        params = dict(route.get("parameters") or route.get("custom_parameters") or {})
        src = route
    else:
        url = s.cmd.get("stream_url")
        if not url:
            return None
        params = dict(s.cmd.get("custom_parameters") or {})
        src = s.cmd
    params = {str(k): str(v) for k, v in params.items()}
    params.setdefault("from_number", str(s.extra.get("from") or ""))
    params.setdefault("to_number", str(s.extra.get("to") or ""))
    tenant = s.tenant or ""
    account_sid = src.get("account_sid") or "AC" + hashlib.md5(tenant.encode()).hexdigest()
    return {
        "url": url,
        "params": params,
        "account_sid": account_sid,
        "call_sid": s.call_id,
        "pause": float(src.get("pause_seconds") or 0),
        "direction": s.direction,
        "connect_timeout": float(src.get("stream_connect_timeout") or 0),
        # the URL is the platform's relay and the agent connects in to it: wait until it has
        "via_relay": bool(src.get("stream_via_relay")),
        # Redis key of the message played when the agent fails (media.fallback), or ""
        "fallback_key": str(src.get("fallback_audio_key") or ""),
        "encoding": src.get("stream_encoding") or MULAW_8K["encoding"],  # what the agent sends and receives
    }


PJMEDIA_DIR_ENCODING = 1  # pjmedia_dir: the sending direction of a stream


@functools.cache
def _pjmedia() -> ctypes.CDLL:
    """The C library inside the pjsua2 wheel, for pjmedia calls pjsua2 does not wrap."""
    lib = ctypes.CDLL(pj._pjsua2.__file__)
    lib.pjmedia_stream_pause.argtypes = [ctypes.c_void_p, ctypes.c_int]
    return lib


def _bind_pair(host: str, lo: int, hi: int) -> tuple[socket.socket, socket.socket]:
    """An RTP socket on an even port in [lo, hi) and its RTCP socket on port + 1."""
    span = max(2, (hi - lo) // 2)
    start = random.randrange(span)
    for i in range(span):
        port = lo + 2 * ((start + i) % span)
        a = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        b = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            a.bind((host, port))
            b.bind((host, port + 1))
        except OSError:
            a.close()
            b.close()
            continue
        for x in (a, b):
            x.setblocking(False)
        return a, b
    raise OSError(f"no free RTP port pair in {lo}-{hi}")


class _Rtcp(asyncio.DatagramProtocol):
    def __init__(self, cb: CallBridge):
        self.cb = cb

    def datagram_received(self, data, addr):
        self.cb.on_rtcp(data, addr)


class CallBridge(asyncio.DatagramProtocol):
    """One bridged call. Created on the main thread; everything else runs on the bridge loop."""

    def __init__(self, bridge: MediaBridge, call_id: str, cfg: dict, rtp_sock, rtcp_sock):
        self.bridge = bridge
        self.call_id = call_id
        self.cfg = cfg
        self.rtp_sock = rtp_sock
        self.rtcp_sock = rtcp_sock
        self.port = rtp_sock.getsockname()[1]
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
        self.rx_pt = rx_pt
        self.event_pts = tuple(p for p in event_pts if p and p > 0)
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
        loop = asyncio.get_running_loop()
        if self.transport is None:  # open() still running (it was posted first): retry shortly
            loop.call_later(0.002, self.start, answered_mono)
            return
        if not self.ticking:
            self.ticking = True
            self.bridge.clock_add(self)
        delay = self.cfg["pause"]
        if delay > 0:
            loop.call_later(delay, self._start_stream)
        else:
            self._start_stream()

    def _start_stream(self) -> None:
        if self.closing or self.session is not None:
            return
        cfg = self.cfg
        s = self.session = StreamSession(cfg["account_sid"], cfg["call_sid"], custom_parameters=cfg["params"],
                                         encoding=cfg["encoding"],
                                         caller_codec=self.codec, on_agent_message=self._on_agent_message)
        s.on_started = self._on_started
        if self.cfg["pause"] <= 0:
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
        timeout = cfg["connect_timeout"] or self.bridge.connect_timeout
        self.stream_task = asyncio.get_running_loop().create_task(self._run_stream(s, timeout))

    async def _run_stream(self, s: StreamSession, timeout: float) -> None:
        try:
            reason = await run_outbound(self.cfg["url"], s, connect_timeout=timeout,
                                        ready_message=RELAY_READY if self.cfg["via_relay"] else None)
        except Exception as exc:  # noqa: BLE001
            log.exception("call %s: stream failed", self.call_id)
            reason = "internal_error"
            s._finish(reason, repr(exc))
        log.info("call %s: stream ended: %s %s", self.call_id, reason, s.end_detail)
        if reason != CALL_ENDED and not self.closing:
            ended = self.bridge.main_play_fallback if self.cfg["fallback_key"] else self.bridge.main_stream_ended
            self.bridge.to_main(ended, self.call_id, STREAM_END_REASONS.get(reason, ev.REASON_MEDIA_ERROR), s.end_detail)
        if self.closing:
            self._close_transports()

    def _on_started(self) -> None:
        self.ai_connect_ms = round((time.monotonic() - self.answered_mono) * 1000, 1)
        self.bridge.to_main(self.bridge.main_stream_started, self.call_id, self.ai_connect_ms,
                            self.session.stream_sid if self.session else None)

    def _on_agent_message(self, msg) -> None:
        # agent media arriving at an idle playout buffer: time it until its first byte is sent
        pb = self.session.playout
        t = type(msg).__name__
        if t == "AgentMedia":
            start = pb._written - len(msg.payload)
            now = time.monotonic()
            if start <= pb._read:
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
        if pt == self.rx_pt:
            now = time.monotonic()
            self.packets_in += 1
            if not self.latched:  # symmetric RTP: answer where the audio comes from
                self.remote = addr
                self.latched = True
            self.remote_ssrc = ssrc
            self.quality.on_packet(seq, ts, now)
            s = self.session
            if s is not None:
                if len(payload) == FRAME_BYTES:
                    s.push_inbound(payload)
                else:
                    for i in range(0, len(payload) - FRAME_BYTES + 1, FRAME_BYTES):
                        s.push_inbound(payload[i:i + FRAME_BYTES])
                self.responses.caller_frame(payload, now)  # after the push: not in the bridge's latency
            elif not self.closing:
                self.early.append((now, payload, False))
        elif pt in self.event_pts:
            digit = self.dtmf.on_packet(ts, payload)
            if digit is not None:
                self.dtmf_in = (self.dtmf_in + digit)[-32:]
                if self.session is not None:
                    self.session.push_dtmf(digit)
                elif not self.closing:
                    self.early.append((time.monotonic(), digit, True))

    def push_dtmf(self, digit: str) -> None:  # SIP INFO digits reported by pjsua
        self.dtmf_in = (self.dtmf_in + digit)[-32:]
        if self.session is not None:
            self.session.push_dtmf(digit)

    def tick(self, now: float, skipped: int) -> None:
        """One 20 ms playout tick (called by the process-wide clock, MediaBridge._clock)."""
        if skipped and self.sender is not None:  # the clock skipped ticks after a long stall
            self.sender.ts = (self.sender.ts + skipped * FRAME_BYTES) & 0xFFFFFFFF
        if self.sender is not None and self.remote is not None:
            if self.played_early:  # this tick's frame already went out (_play_now)
                self.played_early = False
            else:
                frame = self._fallback_frame() if self.fallback is not None else self._agent_frame()
                self.transport.sendto(self.sender.packet(frame if frame is not None else self.silence), self.remote)
            if now - self.last_rtcp > RTCP_INTERVAL_S:
                self.last_rtcp = now
                self._send_rtcp()
        self.ticks += 1

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
        if self.played_early or self.fallback is not None or self.sender is None or self.remote is None:
            return
        frame = self._agent_frame()
        if frame is not None:
            self.transport.sendto(self.sender.packet(frame), self.remote)
            self.played_early = True

    def play_fallback(self, audio: bytes, reason: str, detail: str) -> None:
        """The agent is gone: play the fallback message (caller's codec), then hang up with ``reason``."""
        if self.closing:
            return
        if self.sender is None or self.remote is None:  # no media path to the callee: nothing to play on
            self.bridge.to_main(self.bridge.main_stream_ended, self.call_id, reason, detail)
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
            self.bridge.to_main(self.bridge.main_stream_ended, self.call_id, reason,
                                f"{detail} (fallback message played)".strip())
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
        if self.ticking:
            self.ticking = False
            self.bridge.clock_remove(self)
        if self.session is not None:
            self.session.stop()
        if self.stream_task is None or self.stream_task.done():
            self._close_transports()

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
            "ai_connect_ms": self.ai_connect_ms,
        }
        if rtt is not None:
            out["rtt_ms"] = round(rtt, 1)
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
            if s.end_reason:
                out["stream_end"] = s.end_reason
        out.update(self.out_hist.summary("bridge_out"))
        if s is not None:
            out.update(self.responses.summary())
        return {k: v for k, v in out.items() if v is not None}


class MediaBridge:
    """All bridged calls of one gateway process. Hooks are called on the worker's main thread."""

    def __init__(self, worker, port_min: int = 20000, port_max: int = 30000, bind: str | None = None,
                 connect_timeout: float = 10.0):
        self.worker = worker
        self.port_min, self.port_max = port_min, port_max
        self.bind = bind or "0.0.0.0"
        self.connect_timeout = connect_timeout
        self.calls: dict[str, CallBridge] = {}
        self.main_q: collections.deque = collections.deque()
        self.clocked: list[CallBridge] = []
        self.clock_handle: asyncio.TimerHandle | None = None
        self.next_tick = 0.0
        self.loop: asyncio.AbstractEventLoop | None = None
        self.thread: threading.Thread | None = None

    # ---- loop thread management -----------------------------------------------------------------
    def _ensure_loop(self) -> asyncio.AbstractEventLoop:
        if self.loop is None:
            # uvloop: the loop's own cost per wake-up (epoll, handles, transports) is in C, and on
            # this path wake-ups are most of the work (about 400 per second per call)
            loop = uvloop.new_event_loop()

            def run():
                # pjlib asserts (and aborts the process) when called from a thread it does not know,
                # and Python's cyclic GC may run a pjsua2 object's destructor on any thread
                pj.Endpoint.instance().libRegisterThread("media-bridge")
                asyncio.set_event_loop(loop)
                # imported here, before any call ticks on this loop, not by the first connect (an
                # import on the running loop would delay every call's frames); workers that never
                # bridge a call do not pay its memory
                import media.ws_client  # noqa: F401
                prof_path = os.environ.get("MEDIA_BRIDGE_PROFILE")  # development aid: cProfile dump
                if prof_path:
                    import cProfile

                    prof = cProfile.Profile()
                    prof.enable()
                loop.run_forever()
                if prof_path:
                    prof.disable()
                    prof.dump_stats(f"{prof_path}.{os.getpid()}")

            self.thread = threading.Thread(target=run, name="media-bridge", daemon=True)
            self.thread.start()
            self.loop = loop  # call_soon_threadsafe queues work until run_forever starts
        return self.loop

    # ---- the process-wide 20 ms playout clock (loop thread) -----------------------------------------
    # One timer for all calls of the process: every call's frame goes out in the same wake-up
    # (measured: wake-ups, not Python, dominate the per-call cost on this VM). Absolute schedule,
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

    def post(self, fn, *args) -> None:
        self._ensure_loop().call_soon_threadsafe(fn, *args)

    def to_main(self, fn, *args) -> None:
        """Run ``fn(*args)`` on the main thread (``poll``), waking it from ``libHandleEvents``."""
        self.main_q.append((fn, args))  # deque.append is atomic
        self.worker.wake_main()

    def poll(self) -> None:
        """Main thread: run what the loop asked for."""
        q = self.main_q
        while q:
            fn, args = q.popleft()
            try:
                fn(*args)
            except Exception:
                log.exception("media bridge main-thread action")

    # ---- main-thread actions requested by the loop ------------------------------------------------
    def main_stream_started(self, call_id: str, ai_connect_ms: float, stream_sid: str | None) -> None:
        s = self.worker.sessions.get(call_id)
        if s is None or s.state != "answered":
            return
        self.worker.emit(s, ev.STREAM_STARTED, ai_connect_ms=ai_connect_ms, stream_sid=stream_sid)

    def main_play_fallback(self, call_id: str, reason: str, detail: str) -> None:
        """The agent failed on a call with a fallback message: fetch its audio and play it first."""
        cb = self.calls.get(call_id)
        audio = None
        if cb is not None:
            try:
                audio = self.worker.r.get(cb.cfg["fallback_key"])
            except Exception as exc:  # noqa: BLE001 - no message is better than a call left open
                log.warning("call %s: fallback message unavailable: %s", call_id, exc)
        if not audio:
            self.main_stream_ended(call_id, reason, detail)
            return
        log.info("call %s: agent stream ended (%s: %s): playing the fallback message (%.1f s)",
                 call_id, reason, detail, len(audio) / 8000)
        self.post(cb.play_fallback, audio, reason, detail)

    def main_stream_ended(self, call_id: str, reason: str, detail: str) -> None:
        s = self.worker.sessions.get(call_id)
        if s is None or s.hangup_reason:
            return
        log.info("call %s: agent stream ended (%s: %s): hanging up", call_id, reason, detail)
        self.worker.end_session(s, reason)

    # ---- worker hooks (main thread) -----------------------------------------------------------------
    def on_sdp_created(self, s, prm) -> None:
        if s is None:
            return
        cb = self.calls.get(s.call_id)
        if cb is None:
            cfg = stream_config(s)
            if cfg is None:
                return
            rtp, rtcp = _bind_pair(self.bind, self.port_min, self.port_max)
            cb = self.calls[s.call_id] = CallBridge(self, s.call_id, cfg, rtp, rtcp)
            loop = self._ensure_loop()
            asyncio.run_coroutine_threadsafe(cb.open(), loop)
        sdp = prm.sdp.wholeSdp
        new = rewrite_sdp_media(sdp, cb.port, cb.port + 1)
        if new != sdp:
            prm.sdp.wholeSdp = new

    def on_stream_created(self, s, prm) -> None:
        """pjsua's own stream of a bridged call: stop it sending. Left alone it sends silence RTP (no
        VAD) to the callee beside ours, a second SSRC that garbles what the callee hears."""
        if s is None or s.call_id not in self.calls:
            return
        try:
            _pjmedia().pjmedia_stream_pause(ctypes.c_void_p(int(prm.stream)), PJMEDIA_DIR_ENCODING)
        except (OSError, AttributeError, TypeError, ValueError) as exc:
            log.warning("call %s: cannot mute pjsua's own RTP (%s)", s.call_id, exc)

    def on_media_state(self, s, call) -> None:
        cb = self.calls.get(s.call_id) if s is not None else None
        if cb is None:
            return
        try:
            ci = call.getInfo()
            idx = next((m.index for m in ci.media if m.type == pj.PJMEDIA_TYPE_AUDIO
                        and m.status == pj.PJSUA_CALL_MEDIA_ACTIVE), None)
            if idx is None:
                return
            si = call.getStreamInfo(idx)
        except pj.Error as exc:
            log.warning("call %s: no stream info (%s)", s.call_id, exc.reason)
            return
        host, _, port = si.remoteRtpAddress.rpartition(":")
        rtcp = None
        if si.remoteRtcpAddress:
            h2, _, p2 = si.remoteRtcpAddress.rpartition(":")
            if p2.isdigit() and int(p2):
                rtcp = (h2.strip("[]"), int(p2))
        self.post(cb.set_remote, (host.strip("[]"), int(port)), rtcp, si.codecName, si.txPt, si.rxPt,
                  (si.audRxEventPt, si.audTxEventPt))

    def on_answered(self, s, call) -> None:
        cb = self.calls.get(s.call_id)
        if cb is None:
            return
        self.on_media_state(s, call)  # in case the media state came before the session was known
        self.post(cb.start, s.answered_mono)

    def on_dtmf(self, s, digit: str) -> None:
        cb = self.calls.get(s.call_id) if s is not None else None
        if cb is not None:
            self.post(cb.push_dtmf, digit)

    def on_call_ended(self, s) -> None:
        """The call is over (pjsua disconnected it): quality into the final event, stop the stream."""
        cb = self.calls.pop(s.call_id, None)
        if cb is None:
            return
        if s.state == "answered":  # a failed carrier leg reports nothing (extra goes into every event)
            try:
                s.extra.update(cb.report())
            except Exception:
                log.exception("call %s: media report", s.call_id)
        self.post(cb.close)

    def shutdown(self, timeout: float = 3.0) -> None:
        """Before libDestroy: close every call's stream (sending `stop`), then stop the loop."""
        for s_id, cb in list(self.calls.items()):
            self.calls.pop(s_id, None)
            self.post(cb.close)
        loop = self.loop
        if loop is None:
            return

        async def drain():
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            if tasks:
                await asyncio.wait(tasks, timeout=timeout)

        try:
            asyncio.run_coroutine_threadsafe(drain(), loop).result(timeout + 1)
        except Exception:  # noqa: BLE001
            log.warning("media bridge: streams did not close in time")
        loop.call_soon_threadsafe(loop.stop)
        if self.thread is not None:
            self.thread.join(2)
        self.loop = None
