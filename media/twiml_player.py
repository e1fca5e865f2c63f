"""TwiML on the media host: the verbs of a call's program, run in order on its 20 ms clock.

A program is the list of steps the platform made of a TwiML document (telephony/calls/twiml.py):
``{"verb": "say", "text", "voice", "loop"}``, ``{"verb": "play", "url", "loop"}``,
``{"verb": "digits", "digits"}``, ``{"verb": "pause", "seconds"}``, ``{"verb": "connect", "url",
"params"}`` (the Media Stream: the program ends there), ``{"verb": "fork", "url", "params"}`` /
``{"verb": "unfork"}`` (<Start><Stream> / <Stop><Stream>: the caller's audio to a listen-only stream
while the program goes on), ``{"verb": "redirect", "url", "method"}`` (the
platform fetches the next document and sends its program), ``{"verb": "hangup"}``, ``{"verb": "reject",
"reason"}`` (refuses an inbound call before its answer, in the gateway; an answered call hangs up). A document that runs
out ends the call, as Twilio's does.

Speech (espeak-ng) and downloads (through the outbound guard) run in the loop's executor, never on the
frame path; the call hears silence meanwhile. A `<Play>` or `<Say>` that cannot be had is skipped
(logged), as the next verb is what the tenant wants after it.
"""
from __future__ import annotations

import asyncio
import collections
import logging
import struct

from core import egress
from media import codec, fallback
from media.stream_session import StreamSession, run_outbound
from telephony.gateway.events import REASON_TWIML_HANGUP

log = logging.getLogger("gateway.media")

FRAME_BYTES = 160
TICKS_PER_SECOND = 50
MAX_PLAY_BYTES = 8 << 20  # about 17 minutes of 8 kHz mu-law, or 4 of 16 kHz PCM
MAX_LOOPS = 1000  # loop="0" is "until the call ends" in Twilio: this many times here
FETCH_TIMEOUT_S = 10.0

WAVE_PCM, WAVE_ALAW, WAVE_ULAW = 1, 6, 7


class AudioError(ValueError):
    pass


def mulaw_of(body: bytes, content_type: str = "") -> bytes:
    """8 kHz mu-law of a WAV file (PCM 8/16-bit at any rate, mu-law, a-law; mono or stereo mixed down
    to its first channel) or of raw mu-law (``audio/basic``)."""
    if body[:4] != b"RIFF" or body[8:12] != b"WAVE":
        if content_type.split(";")[0].strip().lower() in ("audio/basic", "audio/x-mulaw", "audio/ulaw"):
            return body
        raise AudioError("not a WAV file (nor audio/basic mu-law)")
    fmt, data, pos = None, None, 12
    while pos + 8 <= len(body):
        chunk, size = body[pos:pos + 4], struct.unpack("<I", body[pos + 4:pos + 8])[0]
        if chunk == b"fmt ":
            fmt = struct.unpack("<HHIIHH", body[pos + 8:pos + 24])
        elif chunk == b"data":
            data = body[pos + 8:pos + 8 + size]
            break
        pos += 8 + size + (size & 1)
    if fmt is None or data is None:
        raise AudioError("a WAV file without fmt or data")
    kind, channels, rate, _, block, bits = fmt
    if kind in (WAVE_ULAW, WAVE_ALAW) and rate == 8000:
        mono = data[::channels]
        return mono if kind == WAVE_ULAW else codec.alaw_to_ulaw(mono)
    if kind != WAVE_PCM or bits != 16:
        raise AudioError(f"WAV format {kind} with {bits}-bit samples at {rate} Hz is not supported "
                         "(16-bit PCM at any rate, or 8 kHz mu-law / a-law)")
    if channels > 1:
        data = b"".join(data[i:i + 2] for i in range(0, len(data) - block + 1, block))
    data = data[:len(data) - len(data) % 2]
    return codec.lin16_to_ulaw(codec.resample_lin16(data, rate, 8000) if rate != 8000 else data)


def fetch_audio(url: str, allow) -> bytes:
    """``url``'s audio as 8 kHz mu-law (runs in an executor: a blocking download)."""
    response = egress.request(url, allow=allow, timeout=FETCH_TIMEOUT_S, max_bytes=MAX_PLAY_BYTES)
    if not 200 <= response.status < 300:
        raise AudioError(f"it answered HTTP {response.status}")
    return mulaw_of(response.body, response.headers.get("content-type", ""))


def run(bridge, steps: list[dict], allow=()) -> None:
    """Run ``steps`` on the answered call of ``bridge`` (media.host.CallBridge) from now on, in place of
    whatever it did: a program still running is dropped, a Media Stream gets `stop` (a live update)."""
    if bridge.player is not None:
        bridge.player.stop()
    if bridge.session is not None:
        bridge.session.stop()  # its stream ends as call_ended: the call goes on
        bridge.session = None
    bridge.player = TwimlPlayer(bridge, steps, allow)


class TwimlPlayer:
    """Runs one program on one call: the bridge calls ``frame()`` on every tick that carries audio."""

    def __init__(self, bridge, steps: list[dict], allow=()):
        self.bridge = bridge
        self.steps = collections.deque(steps)
        self.allow = allow
        self.audio = b""
        self.pos = 0
        self.repeats = 0  # plays of ``audio`` still to come after this one
        self.quiet_ticks = 0
        self.loading: asyncio.Future | None = None
        self.done = False
        self.ticks = 0

    def frame(self) -> bytes | None:
        """The next 20 ms of the program's audio (mu-law), or None for silence."""
        self.ticks += 1
        while not self.done:
            if self.loading is not None:
                if not self.loading.done():
                    return None
                self._loaded(self.loading)
                continue
            if self.pos < len(self.audio):
                chunk = self.audio[self.pos:self.pos + FRAME_BYTES]
                self.pos += FRAME_BYTES
                if self.pos >= len(self.audio) and self.repeats:
                    self.repeats, self.pos = self.repeats - 1, 0
                return chunk + bytes([codec.ULAW_SILENCE]) * (FRAME_BYTES - len(chunk))
            if self.quiet_ticks:
                self.quiet_ticks -= 1
                return None
            if self.bridge.digits_out:
                return None  # <Play digits>: the next verb waits for them
            self._next()
        return None

    def stop(self) -> None:
        self.done = True
        if self.loading is not None:
            self.loading.cancel()

    def _next(self) -> None:
        self.audio, self.pos, self.repeats = b"", 0, 0
        if not self.steps:
            self._hang_up("end of TwiML")
            return
        step = self.steps.popleft()
        verb = step.get("verb")
        loop = asyncio.get_running_loop()
        if verb == "pause":
            self.quiet_ticks = int(step.get("seconds", 1)) * TICKS_PER_SECOND
        elif verb == "say":
            self.repeats = self._loops(step)
            self.loading = loop.run_in_executor(None, fallback.render, step["text"], step.get("voice") or "en-us")
        elif verb == "play":
            self.repeats = self._loops(step)
            self.loading = loop.run_in_executor(None, fetch_audio, step["url"], self.allow)
        elif verb == "digits":
            self.bridge.send_digits(step["digits"])
        elif verb == "connect":
            self.done = True
            cfg = self.bridge.cfg
            cfg.update(url=step["url"], via_relay=False,
                       params={**(step.get("params") or {}),
                               **{k: v for k, v in cfg["params"].items() if k in ("from_number", "to_number")}})
            self.bridge.player = None
            if self.ticks > 1:  # the caller's audio during the verbs before <Connect> is not the agent's
                self.bridge.early.clear()
            self.bridge._start_stream()
        elif verb == "fork":
            start_fork(self.bridge, step["url"], step.get("params") or {}, self.allow)
        elif verb == "unfork":
            stop_fork(self.bridge)
        elif verb == "redirect":
            self.done = True
            self.bridge.link.send({"op": "redirect", "call": self.bridge.call_id, "url": step["url"],
                                   "method": step.get("method") or "POST"})
        elif verb in ("hangup", "reject"):  # an answered call cannot be refused any more: it hangs up
            self._hang_up(f"<{verb.title()}>")
        else:
            log.warning("call %s: TwiML step %r skipped", self.bridge.call_id, verb)

    def _hang_up(self, detail: str) -> None:
        self.done = True
        self.bridge.link.send({"op": "ended", "call": self.bridge.call_id, "reason": REASON_TWIML_HANGUP,
                               "detail": detail})

    @staticmethod
    def _loops(step: dict) -> int:
        loops = int(step.get("loop", 1))
        return (MAX_LOOPS if loops == 0 else min(loops, MAX_LOOPS)) - 1

    def _loaded(self, future: asyncio.Future) -> None:
        self.loading = None
        try:
            self.audio = future.result()
        except (asyncio.CancelledError, Exception) as exc:  # noqa: BLE001 - a verb that fails is skipped
            log.warning("call %s: TwiML audio skipped: %s", self.bridge.call_id, exc)
            self.audio, self.repeats = b"", 0
        if not self.audio:
            self.repeats = 0


def start_fork(bridge, url: str, params: dict, allow=()) -> None:
    """<Start><Stream>: the caller's audio also goes to ``url`` (Media Streams, listen-only: what that
    agent sends is not played) until <Stop><Stream> or the call's end; one fork per call."""
    if bridge.fork is not None:
        log.warning("call %s: a second <Start><Stream> ignored (one fork per call)", bridge.call_id)
        return
    cfg = bridge.cfg
    own = {k: v for k, v in cfg["params"].items() if k in ("from_number", "to_number")}
    fork = bridge.fork = StreamSession(cfg["account_sid"], cfg["call_sid"], custom_parameters={**params, **own},
                                       encoding=cfg["encoding"], caller_codec=bridge.codec)
    asyncio.get_running_loop().create_task(_run_fork(bridge, fork, url, allow))


async def _run_fork(bridge, fork: StreamSession, url: str, allow) -> None:
    try:
        target = await asyncio.get_running_loop().run_in_executor(None, egress.check, url, allow, egress.WS_SCHEMES)
        reason = await run_outbound(url, fork, address=target.address)
        log.info("call %s: forked stream ended: %s %s", bridge.call_id, reason, fork.end_detail)
    except egress.EgressRefused as exc:
        log.warning("call %s: <Start><Stream> url refused: %s", bridge.call_id, exc)
    except Exception:  # noqa: BLE001 - a fork that fails leaves the call as it is
        log.exception("call %s: forked stream failed", bridge.call_id)
    finally:
        if bridge.fork is fork:
            bridge.fork = None


def stop_fork(bridge) -> None:
    if bridge.fork is not None:
        bridge.fork.stop()
        bridge.fork = None


def feed_fork(fork: StreamSession, payload: bytes) -> None:
    """The caller's RTP payload to the fork, in 20 ms frames."""
    for i in range(0, len(payload) - FRAME_BYTES + 1, FRAME_BYTES):
        fork.push_inbound(payload[i:i + FRAME_BYTES])
