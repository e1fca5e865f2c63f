"""The gateway's WebSocket client for agent streams: RFC 6455, client side, on a plain asyncio.Protocol.

Why not the `websockets` package here: per 20 ms frame, its send and receive paths (async context
managers, an async iterator and a Future per message) cost more than everything else the gateway
does for a call. This client writes each frame straight to the transport and hands each received
message to a callback from ``data_received`` - no task switch, no Future. It implements what agent
streams use: text and binary messages (fragmented or not), ping/pong, the close handshake, TLS,
write-side flow control. No extensions (no per-message deflate), no subprotocols, no proxies.
"""
from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import ssl as ssl_lib
import struct
from collections import deque
from collections.abc import Callable
from urllib.parse import urlsplit

try:
    from websockets.speedups import apply_mask  # C; websockets is a dependency anyway
except ImportError:  # pragma: no cover
    def apply_mask(data: bytes, mask: bytes) -> bytes:
        n = len(data)
        key = int.from_bytes((mask * (n // 4 + 1))[:n], "big")
        return (int.from_bytes(data, "big") ^ key).to_bytes(n, "big")

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA
MAX_HANDSHAKE_BYTES = 16384
# Past this much unsent data the sender waits (an agent that stops reading must not grow us without bound).
WRITE_HIGH_WATER = 32 * 1024


class HandshakeError(Exception):
    """The server did not upgrade the connection (HTTP status, bad headers); the message says how."""


class ConnectionClosedError(ConnectionError):
    """Sending on a socket that is closing or closed."""


def _frame_header(opcode: int, length: int) -> bytes:
    if length < 126:
        return struct.pack("!BB", 0x80 | opcode, 0x80 | length)
    if length < 65536:
        return struct.pack("!BBH", 0x80 | opcode, 0xFE, length)
    return struct.pack("!BBQ", 0x80 | opcode, 0xFF, length)


class AgentSocket(asyncio.Protocol):
    """One client connection. Until ``set_handlers`` messages are kept for ``recv``; after it they go
    to ``on_message(data, is_text)`` as they arrive (text as str, binary as bytes)."""

    def __init__(self, max_size: int, request: bytes, key: bytes):
        self.max_size = max_size
        self.request = request
        self.accept = base64.b64encode(hashlib.sha1(key + GUID).digest())
        self.transport: asyncio.Transport | None = None
        self.handshake: asyncio.Future = asyncio.get_running_loop().create_future()
        self.closed: asyncio.Future = asyncio.get_running_loop().create_future()  # → (code, reason)
        self.buf = bytearray()
        self.upgraded = False
        self.fragments: list[bytes] = []
        self.fragment_text = False
        self.on_message: Callable[[bytes, bool], None] | None = None
        self.pending: deque[tuple[bytes, bool]] = deque()
        self.arrived: asyncio.Event = asyncio.Event()
        self.close_sent = False
        self.close_code = 1006
        self.close_reason = ""
        self.paused = False
        self.resumed: asyncio.Future | None = None

    # ---- asyncio.Protocol -----------------------------------------------------------------------
    def connection_made(self, transport):
        self.transport = transport
        transport.set_write_buffer_limits(high=WRITE_HIGH_WATER)
        transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        self.buf += data
        if not self.upgraded:
            self._read_handshake()
            if not self.upgraded:
                return
        self._read_frames()

    def connection_lost(self, exc) -> None:
        if not self.handshake.done():
            self.handshake.set_exception(HandshakeError(f"connection closed during the handshake: {exc}"))
        if not self.closed.done():
            self.closed.set_result((self.close_code, self.close_reason))
        self._wake_writer()
        self.arrived.set()

    def pause_writing(self) -> None:
        self.paused = True

    def resume_writing(self) -> None:
        self.paused = False
        self._wake_writer()

    # ---- handshake --------------------------------------------------------------------------------
    def _read_handshake(self) -> None:
        end = self.buf.find(b"\r\n\r\n")
        if end < 0:
            if len(self.buf) > MAX_HANDSHAKE_BYTES:
                self._fail_handshake("response headers too long")
            return
        head = bytes(self.buf[:end]).decode("latin-1").split("\r\n")
        del self.buf[:end + 4]
        status = head[0].split(" ", 2)
        headers = {}
        for line in head[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        if len(status) < 2 or status[1] != "101":
            self._fail_handshake(f"server rejected WebSocket connection: HTTP {' '.join(status[1:]) or '?'}")
        elif headers.get("upgrade", "").lower() != "websocket":
            self._fail_handshake("response lacks Upgrade: websocket")
        elif headers.get("sec-websocket-accept", "").encode() != self.accept:
            self._fail_handshake("bad Sec-WebSocket-Accept")
        elif headers.get("sec-websocket-extensions"):
            self._fail_handshake(f"unrequested extension {headers['sec-websocket-extensions']!r}")
        else:
            self.upgraded = True
            self.handshake.set_result(None)

    def _fail_handshake(self, why: str) -> None:
        if not self.handshake.done():
            self.handshake.set_exception(HandshakeError(why))
        self.transport.abort()

    # ---- receiving ----------------------------------------------------------------------------------
    def _read_frames(self) -> None:
        buf = self.buf
        while len(buf) >= 2:
            b0, b1 = buf[0], buf[1]
            length = b1 & 0x7F
            pos = 2
            if length == 126:
                if len(buf) < 4:
                    return
                length = int.from_bytes(buf[2:4], "big")
                pos = 4
            elif length == 127:
                if len(buf) < 10:
                    return
                length = int.from_bytes(buf[2:10], "big")
                pos = 10
            if b1 & 0x80:
                return self._protocol_error(1002, "masked frame from server")
            if length > self.max_size:
                return self._protocol_error(1009, f"frame of {length} bytes over the {self.max_size} limit")
            if len(buf) < pos + length:
                return
            payload = bytes(buf[pos:pos + length])
            del buf[:pos + length]
            self._on_frame(b0 & 0x80, b0 & 0x0F, payload)
            if self.transport is None or self.transport.is_closing():
                return

    def _on_frame(self, fin: int, opcode: int, payload: bytes) -> None:
        if opcode == OP_TEXT or opcode == OP_BINARY:
            if self.fragments:
                return self._protocol_error(1002, "new message inside a fragmented one")
            if fin:
                return self._deliver(payload, opcode == OP_TEXT)
            self.fragments, self.fragment_text = [payload], opcode == OP_TEXT
        elif opcode == OP_CONT:
            if not self.fragments:
                return self._protocol_error(1002, "continuation without a message")
            self.fragments.append(payload)
            if sum(map(len, self.fragments)) > self.max_size:
                return self._protocol_error(1009, f"message over the {self.max_size} limit")
            if fin:
                data, self.fragments = b"".join(self.fragments), []
                self._deliver(data, self.fragment_text)
        elif opcode == OP_PING:
            self._write(OP_PONG, payload)
        elif opcode == OP_PONG:
            pass
        elif opcode == OP_CLOSE:
            code = int.from_bytes(payload[:2], "big") if len(payload) >= 2 else 1005
            self.close_code, self.close_reason = code, payload[2:].decode("utf-8", "replace")
            if not self.close_sent:
                self._write(OP_CLOSE, payload[:2])
                self.close_sent = True
            self.transport.close()
        else:
            self._protocol_error(1002, f"unknown opcode {opcode}")

    def _deliver(self, data: bytes, is_text: bool) -> None:
        if is_text:
            data = data.decode("utf-8", "surrogateescape")  # json.loads(bytes) would sniff the encoding each time
        if self.on_message is not None:
            self.on_message(data, is_text)
        else:
            self.pending.append((data, is_text))
            self.arrived.set()

    def _protocol_error(self, code: int, why: str) -> None:
        self.close_code, self.close_reason = code, why
        if not self.close_sent:
            self._write(OP_CLOSE, struct.pack("!H", code) + why.encode()[:120])
            self.close_sent = True
        self.transport.close()

    # ---- what the session uses --------------------------------------------------------------------
    def set_handlers(self, on_message: Callable[[bytes, bool], None]) -> None:
        """From now on deliver messages to ``on_message``; the ones already received go first."""
        self.on_message = on_message
        while self.pending:
            on_message(*self.pending.popleft())

    async def recv(self) -> str | bytes:
        """The next message received before ``set_handlers``; ConnectionClosedError once closed."""
        while not self.pending:
            if self.closed.done():
                raise ConnectionClosedError(f"close code {self.close_code} {self.close_reason}".strip())
            self.arrived.clear()
            await self.arrived.wait()
        return self.pending.popleft()[0]

    async def send(self, text: str) -> None:
        """Send a text message; waits only while the peer is not reading (write buffer full)."""
        if self.close_sent or self.transport.is_closing():
            raise ConnectionClosedError("socket is closing")
        self._write(OP_TEXT, text.encode())
        if self.paused:
            self.resumed = asyncio.get_running_loop().create_future()
            await self.resumed
            if self.transport.is_closing():
                raise ConnectionClosedError("socket closed while sending")

    def ready(self) -> bool:
        """A message written now goes straight out: open, and the peer is reading."""
        return not (self.paused or self.close_sent or self.transport.is_closing())

    def write_text(self, text: str) -> None:
        """Send a text message without waiting (callers check ``ready()`` first)."""
        self._write(OP_TEXT, text.encode())

    async def close(self, code: int = 1000, reason: str = "") -> None:
        """Close handshake: send our close frame, wait for the server's and the end of the connection."""
        if not self.close_sent and not self.transport.is_closing():
            self._write(OP_CLOSE, struct.pack("!H", code) + reason.encode()[:120])
            self.close_sent = True
        await asyncio.shield(self.closed)

    def abort(self) -> None:
        self.transport.abort()

    def _write(self, opcode: int, payload: bytes) -> None:
        mask = os.urandom(4)
        self.transport.write(_frame_header(opcode, len(payload)) + mask + apply_mask(payload, mask))

    def _wake_writer(self) -> None:
        if self.resumed is not None and not self.resumed.done():
            self.resumed.set_result(None)


async def connect(url: str, *, additional_headers: dict[str, str] | None = None,
                  ssl: ssl_lib.SSLContext | None = None, max_size: int = 2 ** 21,
                  address: str | None = None) -> AgentSocket:
    """Open a WebSocket to ``url`` (ws:// or wss://). Raises ValueError for a bad URL, OSError when the
    connection fails, HandshakeError when the server does not upgrade it. Cancel to time it out.
    ``address``: connect there (the address core.egress checked) instead of resolving the host again."""
    parts = urlsplit(url)
    if parts.scheme not in ("ws", "wss") or not parts.hostname:
        raise ValueError(f"not a ws:// or wss:// URL: {url!r}")
    secure = parts.scheme == "wss"
    port = parts.port or (443 if secure else 80)
    host_header = parts.netloc.rsplit("@", 1)[-1]
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    key = base64.b64encode(os.urandom(16))
    lines = [f"GET {path} HTTP/1.1", f"Host: {host_header}", "Upgrade: websocket", "Connection: Upgrade",
             f"Sec-WebSocket-Key: {key.decode()}", "Sec-WebSocket-Version: 13",
             *(f"{name}: {value}" for name, value in (additional_headers or {}).items())]
    request = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    if secure and ssl is None:
        ssl = ssl_lib.create_default_context()
    loop = asyncio.get_running_loop()
    transport, sock = await loop.create_connection(
        lambda: AgentSocket(max_size, request, key), address or parts.hostname, port,
        ssl=ssl if secure else None, server_hostname=parts.hostname if secure else None,
    )
    try:
        await sock.handshake
    except BaseException:
        transport.abort()
        raise
    return sock
