"""The media stream wire protocol (Twilio Media Streams compatible), both directions.

Platform -> agent: one ``StreamEncoder`` per stream builds every JSON text frame and owns the
counters (``sequenceNumber`` for every message from ``start`` = "1" on, ``chunk`` for media frames
from "1"). Agent -> platform: ``parse_agent_message`` turns one text frame into a small value
object; bad input gives a ``ProtocolError`` value, never an exception.

The per-frame path (``StreamEncoder.media``) is one f-string around a constant middle part prepared
once per stream with the JSON-escaped streamSid baked in; it produces byte-for-byte the same JSON as ``json.dumps`` with
compact separators (the tests check it) at well under half the cost (figures in
docs/media-protocol.md). The payload is base64 (no quoting needed) and the counters are integers,
so nothing on that path needs escaping.

No Django imports here: this runs inside the media gateway processes.
"""
from __future__ import annotations

import binascii
import json
import secrets
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "MULAW_8K",
    "L16_16K",
    "TRACK_INBOUND",
    "DTMF_DIGITS",
    "new_stream_sid",
    "StreamEncoder",
    "AgentMedia",
    "AgentMark",
    "AgentClear",
    "AgentUnknown",
    "ProtocolError",
    "AgentMessage",
    "parse_agent_message",
]

MULAW_8K: dict[str, Any] = {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1}
# Platform option (not in Twilio): 16-bit signed little-endian PCM at 16 kHz, both directions.
L16_16K: dict[str, Any] = {"encoding": "audio/x-l16", "sampleRate": 16000, "channels": 1}
MEDIA_FORMATS = {"audio/x-mulaw": MULAW_8K, "audio/x-l16": L16_16K}

TRACK_INBOUND = "inbound"
DTMF_DIGITS = frozenset("0123456789*#ABCD")

_b64 = binascii.b2a_base64
_COMPACT = {"separators": (",", ":"), "ensure_ascii": False}


def _dumps(obj: Any) -> str:
    return json.dumps(obj, **_COMPACT)


def new_stream_sid() -> str:
    """A stream id shaped like Twilio's: "MZ" + 32 lowercase hex digits."""
    return "MZ" + secrets.token_hex(16)


class StreamEncoder:
    """Builds the platform -> agent messages of one stream, in the order they are sent.

    Call ``connected()`` then ``start()`` first; each method returns the JSON text to send and
    advances the counters, so call them in send order (one sender task does). Not thread-safe.
    """

    __slots__ = (
        "account_sid", "call_sid", "stream_sid", "custom_parameters", "media_format",
        "seq", "chunk", "_media_mid", "_bytes_per_ms",
    )

    def __init__(
        self,
        account_sid: str,
        call_sid: str,
        *,
        stream_sid: str | None = None,
        custom_parameters: dict[str, str] | None = None,
        encoding: str = "audio/x-mulaw",
    ) -> None:
        if encoding not in MEDIA_FORMATS:
            raise ValueError(f"unsupported encoding {encoding!r}; use one of {sorted(MEDIA_FORMATS)}")
        self.account_sid = account_sid
        self.call_sid = call_sid
        self.stream_sid = stream_sid or new_stream_sid()
        self.custom_parameters = dict(custom_parameters or {})
        self.media_format = dict(MEDIA_FORMATS[encoding])
        self.seq = 0  # last sequenceNumber used
        self.chunk = 0  # last media chunk number used
        # The constant middle of every media message, with the JSON-escaped streamSid baked in.
        self._media_mid = (
            '","streamSid":' + _dumps(self.stream_sid) + ',"media":{"track":"inbound","chunk":"'
        )
        fmt = self.media_format
        width = 2 if fmt["encoding"] == "audio/x-l16" else 1
        self._bytes_per_ms = fmt["sampleRate"] * fmt["channels"] * width // 1000

    # -- bookkeeping ---------------------------------------------------------------------------------
    def _next(self) -> int:
        self.seq += 1
        return self.seq

    @property
    def bytes_per_frame(self) -> int:
        """Bytes of payload in one 20 ms frame of this stream's format (160 for mu-law 8 kHz)."""
        return self._bytes_per_ms * 20

    # -- messages ------------------------------------------------------------------------------------
    def connected(self) -> str:
        """Always the first frame; carries no sequenceNumber and no streamSid."""
        return '{"event":"connected","protocol":"Call","version":"1.0.0"}'

    def start(self) -> str:
        """Always the second frame; sequenceNumber "1"."""
        return _dumps({
            "event": "start",
            "sequenceNumber": str(self._next()),
            "streamSid": self.stream_sid,
            "start": {
                "streamSid": self.stream_sid,
                "accountSid": self.account_sid,
                "callSid": self.call_sid,
                "tracks": [TRACK_INBOUND],
                "customParameters": self.custom_parameters,
                "mediaFormat": self.media_format,
            },
        })

    def media(self, payload: bytes, timestamp_ms: int) -> str:
        """One media frame. ``timestamp_ms`` is the media time since the stream started (the session
        passes the time at the end of this frame: frames pushed so far x 20 ms, counting frames that
        were dropped, so it is true time and jumps over a gap)."""
        seq = self.seq = self.seq + 1
        chunk = self.chunk = self.chunk + 1
        return (
            f'{{"event":"media","sequenceNumber":"{seq}{self._media_mid}{chunk}","timestamp":"{timestamp_ms}",'
            f'"payload":"{_b64(payload, newline=False).decode("ascii")}"}}}}'
        )

    def media_json(self, payload: bytes, timestamp_ms: int) -> str:
        """Reference implementation of ``media`` with json.dumps (same output; for tests/benchmarks)."""
        self.seq += 1
        self.chunk += 1
        return _dumps({
            "event": "media",
            "sequenceNumber": str(self.seq),
            "streamSid": self.stream_sid,
            "media": {
                "track": TRACK_INBOUND,
                "chunk": str(self.chunk),
                "timestamp": str(timestamp_ms),
                "payload": binascii.b2a_base64(payload, newline=False).decode("ascii"),
            },
        })

    def dtmf(self, digit: str) -> str:
        return _dumps({
            "event": "dtmf",
            "streamSid": self.stream_sid,
            "sequenceNumber": str(self._next()),
            "dtmf": {"track": "inbound_track", "digit": digit},
        })

    def mark(self, name: str) -> str:
        return _dumps({
            "event": "mark",
            "streamSid": self.stream_sid,
            "sequenceNumber": str(self._next()),
            "mark": {"name": name},
        })

    def answered_by(self, result: dict) -> str:
        """Platform extension (not Twilio): the answering-machine detection result, for async detection."""
        return self._extension("answeredBy", result)

    def transfer(self, status: dict) -> str:
        """Platform extension (not Twilio): how the agent's transfer of the call went (failed, or warm: joined)."""
        return self._extension("transfer", status)

    def _extension(self, event: str, body: dict) -> str:
        return _dumps({
            "event": event,
            "streamSid": self.stream_sid,
            "sequenceNumber": str(self._next()),
            event: body,
        })

    def stop(self) -> str:
        return _dumps({
            "event": "stop",
            "streamSid": self.stream_sid,
            "sequenceNumber": str(self._next()),
            "stop": {"accountSid": self.account_sid, "callSid": self.call_sid},
        })


# --- agent -> platform --------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class AgentMedia:
    payload: bytes
    stream_sid: str | None = None


@dataclass(frozen=True, slots=True)
class AgentMark:
    name: str
    stream_sid: str | None = None


@dataclass(frozen=True, slots=True)
class AgentClear:
    stream_sid: str | None = None


@dataclass(frozen=True, slots=True)
class AgentUnknown:
    """A well-formed message with an event we do not act on (ignored; counted by the session)."""

    event: str
    raw: dict = field(repr=False, default_factory=dict)


@dataclass(frozen=True, slots=True)
class ProtocolError:
    """A frame that is not a valid message: bad JSON, no event, bad base64, missing fields."""

    error: str
    excerpt: str = ""


AgentMessage = AgentMedia | AgentMark | AgentClear | AgentUnknown | ProtocolError

_EXCERPT = 120


def _excerpt(text: str | bytes) -> str:
    if isinstance(text, bytes | bytearray | memoryview):
        text = bytes(text[:_EXCERPT]).decode("utf-8", "replace")
    return text[:_EXCERPT]


def parse_agent_message(text: str | bytes) -> AgentMessage:
    """Parse one agent -> platform frame. Never raises; returns ``ProtocolError`` for bad input."""
    try:
        msg = json.loads(text)
    except (ValueError, TypeError) as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        return ProtocolError(f"invalid JSON: {exc}", _excerpt(text))
    if not isinstance(msg, dict):
        return ProtocolError("message is not a JSON object", _excerpt(text))
    event = msg.get("event")
    if not isinstance(event, str):
        return ProtocolError("missing or non-string 'event'", _excerpt(text))
    sid = msg.get("streamSid")
    if not isinstance(sid, str):
        sid = None
    if event == "media":
        media = msg.get("media")
        payload = media.get("payload") if isinstance(media, dict) else None
        if not isinstance(payload, str):
            return ProtocolError("media without media.payload string", _excerpt(text))
        try:
            data = binascii.a2b_base64(payload, strict_mode=True)
        except (binascii.Error, ValueError) as exc:
            return ProtocolError(f"media.payload is not base64: {exc}", _excerpt(text))
        return AgentMedia(data, sid)
    if event == "mark":
        mark = msg.get("mark")
        name = mark.get("name") if isinstance(mark, dict) else None
        if not isinstance(name, str):
            return ProtocolError("mark without mark.name string", _excerpt(text))
        return AgentMark(name, sid)
    if event == "clear":
        return AgentClear(sid)
    return AgentUnknown(event, msg)
