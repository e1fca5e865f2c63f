"""Per-call media stream logic, independent of the transport (asyncio).

One ``StreamSession`` bridges one call to one agent WebSocket. Both connect modes use it:

* the platform dials the agent's ws:// or wss:// URL: ``await run_outbound(url, session)``;
* the agent connects in (to daphne, with a per-call token): the gateway dials the platform's own
  relay (media/stream_relay.py) with ``run_outbound(relay_url, session,
  ready_message=RELAY_READY)``, which waits for the relay to say the agent is there before it
  sends ``connected``/``start``; the relay passes the text frames through unchanged.

The caller side (the media host's frame path, media/host.py) uses only non-blocking calls:

* ``push_inbound(frame)`` - one caller audio frame (20 ms, 160 bytes of PCMU or PCMA) per tick;
  it goes through a bounded queue: when full (agent too slow, socket stalled) the frame is dropped
  and counted; the call never blocks. Media time still advances for a dropped frame, so the
  ``timestamp`` of the next media message stays true time (``chunk`` stays consecutive).
* ``push_dtmf(digit)``, ``stop()`` - queued in order with the audio (never dropped).
* ``pull_outbound()`` - one 20 ms frame of agent audio in the caller's codec, or None when there
  is nothing to play; marks reached by that pull are queued to be sent back to the agent.

Frames pushed before the transport is up are queued (within the same bound) and sent after
``start``: the stream's media time starts at the first frame the gateway pushes.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

from . import codec
from .latency import LatencyHist
from .marks import MarkLog
from .playout import PlayoutBuffer
from .protocol import (
    DTMF_DIGITS,
    AgentClear,
    AgentMark,
    AgentMedia,
    AgentMessage,
    AgentUnknown,
    StreamEncoder,
    parse_agent_message,
)

log = logging.getLogger(__name__)

__all__ = [
    "AGENT_CLOSED",
    "CALL_ENDED",
    "CONNECT_FAILED",
    "CONNECT_TIMEOUT",
    "PROTOCOL_ERROR",
    "INTERNAL_ERROR",
    "SessionStats",
    "StreamSession",
    "run_outbound",
    "RELAY_READY",
]

# End reasons (also the call's hang-up reason when the stream ends first).
AGENT_CLOSED = "agent_closed"  # the agent closed the socket, or the connection was lost
CALL_ENDED = "call_ended"  # the platform ended the stream (call hung up): `stop` was sent
CONNECT_FAILED = "connect_failed"  # refused, DNS, TLS, HTTP status other than 101, bad URL
CONNECT_TIMEOUT = "connect_timeout"  # no WebSocket within connect_timeout
PROTOCOL_ERROR = "protocol_error"  # binary frames, or too many malformed messages
INTERNAL_ERROR = "internal_error"  # a bug on our side (logged with traceback)

# What the platform's relay sends the gateway once the agent has connected in (never sent to agents).
RELAY_READY = '{"event":"relay.agent_connected"}'

CALLER_CODECS = ("pcmu", "pcma")

# Outgoing queue item kinds.
_MEDIA, _DTMF, _MARK, _STOP, _ANSWERED_BY, _TRANSFER = 0, 1, 2, 3, 4, 5


class DirectWriter(Protocol):
    """A socket the session may write a message to synchronously (the agent socket)."""

    def ready(self) -> bool: ...  # open, and not holding back (peer reading)

    def write_text(self, text: str) -> None: ...


@dataclass(slots=True)
class SessionStats:
    frames_pushed: int = 0  # push_inbound calls accepted into the queue
    frames_dropped: int = 0  # push_inbound calls dropped (queue full / stream ended)
    frames_sent: int = 0  # media messages sent to the agent
    dtmf_sent: int = 0
    marks_sent: int = 0  # marks echoed to the agent (reached or cleared)
    agent_media: int = 0  # media messages received
    agent_media_bytes: int = 0
    agent_marks: int = 0
    agent_clears: int = 0
    agent_unknown: int = 0  # well-formed messages with events we ignore
    agent_errors: int = 0  # malformed messages (ProtocolError)
    # Bridge latency, caller -> agent: push_inbound() to the end of send_text(), in seconds.
    bridge_in_count: int = 0
    bridge_in_sum: float = 0.0
    bridge_in_max: float = 0.0
    bridge_in_hist: LatencyHist | None = None  # per-frame histogram (set by StreamSession)

    @property
    def bridge_in_avg_ms(self) -> float:
        return 1000 * self.bridge_in_sum / self.bridge_in_count if self.bridge_in_count else 0.0


class StreamSession:
    """The media stream of one call (see the module docstring for who calls what)."""

    def __init__(
        self,
        account_sid: str,
        call_sid: str,
        *,
        stream_sid: str | None = None,
        custom_parameters: dict[str, str] | None = None,
        encoding: str = "audio/x-mulaw",
        caller_codec: str = "pcmu",
        inbound_queue_frames: int = 100,
        playout_max_seconds: float = 60.0,
        max_bad_messages: int = 100,
        on_agent_message: Callable[[AgentMessage], None] | None = None,
    ) -> None:
        if caller_codec not in CALLER_CODECS:
            raise ValueError(f"caller_codec must be one of {CALLER_CODECS}")
        self.encoder = StreamEncoder(
            account_sid, call_sid, stream_sid=stream_sid,
            custom_parameters=custom_parameters, encoding=encoding,
        )
        self.stream_sid = self.encoder.stream_sid
        self.caller_codec = caller_codec
        self.l16 = encoding == "audio/x-l16"
        self.playout = PlayoutBuffer(
            frame_bytes=self.encoder.bytes_per_frame,
            silence=0x00 if self.l16 else codec.ULAW_SILENCE,
            max_seconds=playout_max_seconds,
            bytes_per_second=self.encoder.bytes_per_frame * 50,
        )
        self.stats = SessionStats(bridge_in_hist=LatencyHist())
        self.marks = MarkLog()  # each mark's name, sent and echoed times, for the call's record
        # Called on the event loop once `start` went out (the gateway reports "stream started").
        self.on_started: Callable[[], None] | None = None
        self.max_bad_messages = max_bad_messages
        self.on_agent_message = on_agent_message
        self.end_reason: str | None = None
        self.end_detail = ""

        # Outgoing queue: filled from any thread, drained by the sender task in run().
        self._lock = threading.Lock()
        self._marks_lock = threading.Lock()  # held around playout pull/clear + queueing their marks
        self._out: deque[tuple] = deque()
        self._out_media = 0  # media items in _out (the bounded part)
        self._max_media = max(1, inbound_queue_frames)
        self._samples_in = 0  # caller samples pushed so far (media clock, 8 kHz), dropped included
        self._wake_pending = False
        self._direct: DirectWriter | None = None  # set by run() once `start` is out
        self._stopping = False  # stop() called: no more items accepted
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_tid = 0  # thread id of the loop: pushes made on it wake the sender directly
        # asyncio.Event binds to the running loop on first use (Python >= 3.10): safe to create here.
        self._wake = asyncio.Event()  # set on the loop when there is something to send / it ended
        self._ended = asyncio.Event()
        self.stop_requested = asyncio.Event()  # set on the loop once stop() was called
        # Per-direction codec state (upsampler used by the sender task, downsampler by the puller).
        self._up = codec.Upsampler() if self.l16 else None
        self._down = codec.Downsampler() if self.l16 else None

    # ---------------------------------------------------------------------------------------------
    # gateway side: thread-safe, non-blocking
    # ---------------------------------------------------------------------------------------------
    def push_inbound(self, frame: bytes) -> bool:
        """Queue one caller frame (PCMU/PCMA 8 kHz). Returns False if it was dropped."""
        now = time.monotonic()
        with self._lock:
            self._samples_in += len(frame)
            ts = self._samples_in // 8
            if self._stopping or self._out_media >= self._max_media:
                self.stats.frames_dropped += 1
                return False
            # Nothing queued, the sender idle, the socket taking data, and we are on the loop: send
            # it now. Through the queue it costs the sender task a wake-up per frame.
            direct = (self._direct is not None and not self._wake_pending and self._direct.ready()
                      and threading.get_ident() == self._loop_tid)
            if not direct:
                self._out.append((_MEDIA, frame, ts, now))
                self._out_media += 1
                wake = self._want_wake_locked()
            self.stats.frames_pushed += 1
        if direct:
            self._direct.write_text(self._media_text(frame, ts))
            self._media_sent(now)
        elif wake:
            self._wake_threadsafe()
        return True

    def push_dtmf(self, digit: str) -> bool:
        """Queue a DTMF digit for the agent (in order with the audio). False if invalid or stopped."""
        digit = str(digit).upper()
        if digit not in DTMF_DIGITS:
            return False
        return self._push_control((_DTMF, digit))

    def push_answered_by(self, result: dict) -> bool:
        """Queue the answering-machine detection result for the agent (async detection)."""
        return self._push_control((_ANSWERED_BY, result))

    def push_transfer(self, status: dict) -> bool:
        """Queue how the agent's transfer went (in order with the audio)."""
        return self._push_control((_TRANSFER, status))

    def stop(self) -> None:
        """The call ended: send what is queued, then `stop`, then end the stream. Idempotent."""
        with self._lock:
            if self._stopping:
                return
        self._push_control((_STOP,), final=True)
        loop = self._loop
        if loop is not None:
            with contextlib.suppress(RuntimeError):  # loop already closed
                loop.call_soon_threadsafe(self.stop_requested.set)

    def pull_outbound(self) -> bytes | None:
        """One 20 ms frame of agent audio in the caller's codec (160 bytes), or None if idle."""
        with self._marks_lock:  # marks reached here and marks cleared on the loop keep their order
            frame, marks = self.playout.pull_frame()
            for name in marks:
                self.marks.echoed()
                self._push_control((_MARK, name))
        if frame is None:
            return None
        if self.l16:
            down = codec.lin16_to_ulaw if self.caller_codec == "pcmu" else codec.lin16_to_alaw
            return down(self._down.process(frame))
        if self.caller_codec == "pcma":
            return codec.ulaw_to_alaw(frame)
        return frame

    def _push_control(self, item: tuple, final: bool = False) -> bool:
        with self._lock:
            if self._stopping:
                return False
            if final:
                self._stopping = True
            self._out.append(item)
            wake = self._want_wake_locked()
        if wake:
            self._wake_threadsafe()
        return True

    def _want_wake_locked(self) -> bool:
        if self._wake_pending or self._loop is None:
            return False
        self._wake_pending = True
        return True

    def _wake_threadsafe(self) -> None:
        loop = self._loop
        if loop is None:
            return
        if threading.get_ident() == self._loop_tid:  # already on the loop: no self-pipe write
            self._wake.set()
            return
        try:
            loop.call_soon_threadsafe(self._wake.set)
        except RuntimeError:  # loop closed: the session is over
            pass

    # ---------------------------------------------------------------------------------------------
    # transport side: event loop only
    # ---------------------------------------------------------------------------------------------
    def bind_loop(self) -> None:
        """Attach to the running loop, so that stop() from another thread sets ``stop_requested``."""
        with self._lock:
            self._loop = asyncio.get_running_loop()
            self._loop_tid = threading.get_ident()
            if self._stopping:
                self.stop_requested.set()

    async def run(self, send_text: Callable[[str], Awaitable[object]], direct: DirectWriter | None = None) -> str:
        """Send connected + start, then forward everything queued until the stream ends.

        Returns the end reason: CALL_ENDED after sending `stop`, or whatever ended it first
        (``transport_closed``, a protocol error, or AGENT_CLOSED if ``send_text`` raised).
        With ``direct``, caller frames pushed on the loop while nothing is queued skip the queue.
        """
        self.bind_loop()
        with self._lock:
            self._wake_pending = True  # we drain right away
        enc = self.encoder
        try:
            await send_text(enc.connected())
            await send_text(enc.start())
            self._direct = direct
            if self.on_started is not None:
                try:
                    self.on_started()
                except Exception:  # noqa: BLE001 - a hook must not break the stream
                    log.exception("media stream %s: on_started hook failed", self.stream_sid)
            while not self._ended.is_set():
                item = self._pop()
                if item is None:
                    await self._wake.wait()
                    self._wake.clear()
                    continue
                await self._send_item(item, send_text)
                if item[0] == _STOP:
                    self._finish(CALL_ENDED)
        except asyncio.CancelledError:
            self._finish(AGENT_CLOSED, "cancelled")
            raise
        except Exception as exc:  # noqa: BLE001 - any send failure means the socket is gone
            if _is_connection_closed(exc):
                self._finish(AGENT_CLOSED, f"send failed: {exc}")
            else:
                log.exception("media stream %s: sender failed", self.stream_sid)
                self._finish(INTERNAL_ERROR, repr(exc))
        finally:
            self._direct = None
            self.playout.end()
        return self.end_reason or CALL_ENDED

    def _pop(self) -> tuple | None:
        with self._lock:
            if not self._out:
                self._wake_pending = False
                return None
            item = self._out.popleft()
            if item[0] == _MEDIA:
                self._out_media -= 1
            return item

    async def _send_item(self, item: tuple, send_text: Callable[[str], Awaitable[object]]) -> None:
        kind = item[0]
        enc = self.encoder
        if kind == _MEDIA:
            _, frame, ts, t_push = item
            await send_text(self._media_text(frame, ts))
            self._media_sent(t_push)
        elif kind == _MARK:
            await send_text(enc.mark(item[1]))
            self.stats.marks_sent += 1
        elif kind == _DTMF:
            await send_text(enc.dtmf(item[1]))
            self.stats.dtmf_sent += 1
        elif kind == _STOP:
            await send_text(enc.stop())
        elif kind == _ANSWERED_BY:
            await send_text(enc.answered_by(item[1]))
        elif kind == _TRANSFER:
            await send_text(enc.transfer(item[1]))

    def _media_text(self, frame: bytes, ts: int) -> str:
        """The `media` message of one caller frame, in the stream's encoding."""
        if self.l16:
            lin = codec.ulaw_to_lin16(frame) if self.caller_codec == "pcmu" else codec.alaw_to_lin16(frame)
            payload = self._up.process(lin)
        elif self.caller_codec == "pcma":
            payload = codec.alaw_to_ulaw(frame)
        else:
            payload = frame
        return self.encoder.media(payload, ts)

    def _media_sent(self, t_push: float) -> None:
        st = self.stats
        st.frames_sent += 1
        lat = time.monotonic() - t_push
        st.bridge_in_count += 1
        st.bridge_in_sum += lat
        if lat > st.bridge_in_max:
            st.bridge_in_max = lat
        st.bridge_in_hist.add(lat)

    def feed_text(self, text: str | bytes) -> AgentMessage:
        """Handle one text frame from the agent (event loop thread). Returns the parsed message."""
        msg = parse_agent_message(text)
        st = self.stats
        if isinstance(msg, AgentMedia):
            st.agent_media += 1
            st.agent_media_bytes += len(msg.payload)
            self.playout.append(msg.payload)
        elif isinstance(msg, AgentMark):
            st.agent_marks += 1
            with self._marks_lock:  # logged in the order the playout will report it
                self.marks.sent(msg.name)
                self.playout.mark(msg.name)
        elif isinstance(msg, AgentClear):
            st.agent_clears += 1
            with self._marks_lock:
                for name in self.playout.clear():
                    self.marks.echoed(cleared=True)
                    self._push_control((_MARK, name))
        elif isinstance(msg, AgentUnknown):
            st.agent_unknown += 1
        else:  # ProtocolError
            st.agent_errors += 1
            if st.agent_errors <= 3 or st.agent_errors % 100 == 0:
                log.warning("media stream %s: bad agent message #%d: %s (%r)",
                            self.stream_sid, st.agent_errors, msg.error, msg.excerpt)
            if st.agent_errors >= self.max_bad_messages:
                self._finish(PROTOCOL_ERROR, f"{st.agent_errors} malformed messages; last: {msg.error}")
        if self.on_agent_message is not None:
            try:
                self.on_agent_message(msg)
            except Exception:  # noqa: BLE001 - a hook must not break the stream
                log.exception("media stream %s: on_agent_message hook failed", self.stream_sid)
        return msg

    def feed_binary(self, data: bytes) -> None:
        """A binary frame from the agent: not part of the protocol; ends the stream."""
        self.stats.agent_errors += 1
        self._finish(PROTOCOL_ERROR, f"binary frame of {len(data)} bytes")

    def transport_closed(self, reason: str = AGENT_CLOSED, detail: str = "") -> None:
        """The transport ended (agent closed the socket / connection lost). Event loop thread."""
        self._finish(reason, detail)

    def _finish(self, reason: str, detail: str = "") -> None:
        if self.end_reason is None:
            self.end_reason = reason
            self.end_detail = detail
        with self._lock:
            self._stopping = True
        self._ended.set()
        self._wake.set()

    @property
    def ended(self) -> bool:
        return self.end_reason is not None

    async def wait_ended(self) -> str:
        await self._ended.wait()
        return self.end_reason or CALL_ENDED


def _is_connection_closed(exc: BaseException) -> bool:
    if isinstance(exc, ConnectionError | OSError):
        return True
    try:
        from websockets.exceptions import ConnectionClosed
    except ImportError:  # pragma: no cover
        return False
    return isinstance(exc, ConnectionClosed)


# -------------------------------------------------------------------------------------------------
# outbound mode: the platform connects to the agent's URL
# -------------------------------------------------------------------------------------------------

async def run_outbound(
    url: str,
    session: StreamSession,
    connect_timeout: float = 10.0,
    *,
    stop_grace: float = 2.0,
    close_timeout: float = 2.0,
    additional_headers: dict[str, str] | None = None,
    ssl=None,
    max_message_bytes: int = 2 ** 21,
    ready_message: str | None = None,
    address: str | None = None,
) -> str:
    """Connect to the agent's ws:// or wss:// URL, run ``session`` over it, return the end reason.

    Reasons: CONNECT_FAILED (refused, DNS, TLS, HTTP refusal, bad URL), CONNECT_TIMEOUT,
    AGENT_CLOSED (the agent closed the socket or it was lost), PROTOCOL_ERROR, CALL_ENDED (the
    platform called ``session.stop()``; `stop` was sent and the socket closed with 1000).
    ``session.end_detail`` has the details. Never raises (except CancelledError).

    With ``ready_message`` (the relay for agents that connect in) the stream starts only once that
    text arrives; ``connect_timeout`` covers the wait, and CONNECT_TIMEOUT means the agent never came.

    After ``session.stop()`` the queued audio and `stop` get ``stop_grace`` seconds to go out; a
    socket that does not drain by then is dropped without a close handshake. Otherwise the socket
    is closed with 1000 (1008 after a protocol error), waiting at most ``close_timeout`` seconds.
    """
    from . import ws_client

    deadline = asyncio.get_running_loop().time() + connect_timeout
    try:
        async with asyncio.timeout_at(deadline):
            ws = await ws_client.connect(url, additional_headers=additional_headers, ssl=ssl,
                                         max_size=max_message_bytes, address=address)
    except TimeoutError:
        session._finish(CONNECT_TIMEOUT, f"no WebSocket within {connect_timeout} s")
        return CONNECT_TIMEOUT
    except (OSError, ws_client.HandshakeError, ValueError) as exc:
        session._finish(CONNECT_FAILED, f"{type(exc).__name__}: {exc}")
        return CONNECT_FAILED
    if ready_message is not None and not await _await_ready(ws, session, ready_message, deadline, connect_timeout):
        with contextlib.suppress(Exception):
            async with asyncio.timeout(close_timeout):
                await ws.close(1000, "")
        ws.abort()
        return session.end_reason or CONNECT_FAILED

    def on_message(data: str | bytes, is_text: bool) -> None:
        if session.ended:
            return
        try:
            if is_text:
                session.feed_text(data)
            else:
                session.feed_binary(data)
        except Exception as exc:  # noqa: BLE001 - a bug in a handler must not leave the call hanging
            log.exception("media stream %s: handling an agent message failed", session.stream_sid)
            session._finish(INTERNAL_ERROR, repr(exc))

    ws.set_handlers(on_message)
    sender = asyncio.create_task(session.run(ws.send, direct=ws), name=f"media-send-{session.stream_sid}")
    stop_wait = asyncio.create_task(session.stop_requested.wait())
    ended_wait = asyncio.create_task(session.wait_ended())
    try:
        done, _ = await asyncio.wait((sender, ws.closed, stop_wait, ended_wait), return_when=asyncio.FIRST_COMPLETED)
        if ws.closed.done():
            code, why = ws.closed.result()
            session.transport_closed(AGENT_CLOSED, f"close code {code} {why}".strip())
        elif stop_wait in done and not sender.done():
            # The call ended: give the sender a moment to flush the queue and send `stop`.
            await asyncio.wait((sender, ws.closed), timeout=stop_grace, return_when=asyncio.FIRST_COMPLETED)
            if not sender.done():
                session._finish(CALL_ENDED, f"`stop` not delivered within {stop_grace} s")
    finally:
        session._finish(AGENT_CLOSED, "socket ended")  # no-op when a reason is already set
        stalled = not sender.done()  # still blocked in send(): the socket does not drain
        for t in (sender, stop_wait, ended_wait):
            t.cancel()
        await asyncio.gather(sender, stop_wait, ended_wait, return_exceptions=True)
        code, why = (1008, "protocol error") if session.end_reason == PROTOCOL_ERROR else (1000, "")
        try:
            if stalled:
                raise TimeoutError  # a close frame would queue behind the stuck data: just drop it
            async with asyncio.timeout(close_timeout):
                await ws.close(code, why)
        except Exception:  # noqa: BLE001 - stalled or broken socket: drop it
            ws.abort()
    return session.end_reason or AGENT_CLOSED


async def _await_ready(ws, session: StreamSession, ready_message: str, deadline: float, timeout: float) -> bool:
    """Wait for ``ready_message`` on ``ws`` until ``deadline``; False (session finished) if it does
    not come, the socket closes, or the call ends meanwhile."""
    from .ws_client import ConnectionClosedError

    session.bind_loop()
    recv = asyncio.ensure_future(ws.recv())
    stop_wait = asyncio.ensure_future(session.stop_requested.wait())
    try:
        done, _ = await asyncio.wait((recv, stop_wait), timeout=max(0.0, deadline - asyncio.get_running_loop().time()),
                                     return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (recv, stop_wait):
            task.cancel()
        await asyncio.gather(recv, stop_wait, return_exceptions=True)
    if recv in done:
        try:
            message = recv.result()
        except ConnectionClosedError as exc:
            session._finish(CONNECT_FAILED, f"relay closed before the agent connected: {exc}")
            return False
        if message == ready_message:
            return True
        session._finish(PROTOCOL_ERROR, f"expected the relay's ready message, got {message[:80]!r}")
    elif stop_wait in done:
        session._finish(CALL_ENDED, "call ended before the agent connected")
    else:
        session._finish(CONNECT_TIMEOUT, f"the agent did not connect within {timeout} s")
    return False
