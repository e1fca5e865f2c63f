"""Carrier health checks: a SIP OPTIONS "ping" and a flap-damping state machine.

Any final SIP response proves the trunk's SIP stack is up and reachable, whatever the code: many
carriers answer OPTIONS from unknown sources with 403/404/405, and that is still "alive". Only
silence, a transport error or bytes that are not a SIP response count as a failure.
"""
from __future__ import annotations

import asyncio
import secrets
import socket
import ssl
import time
from dataclasses import dataclass

from telephony.sip_head import SipError, head_lines, header_fields

USER_AGENT = "voiceplatform-health/1"
T1 = 0.5  # RFC 3261 retransmission timer base for UDP (doubles each time, capped at T2)
T2 = 4.0


@dataclass(frozen=True)
class PingResult:
    """(ok, code, rtt_ms, error); unpacks like a tuple."""

    ok: bool
    code: int | None
    rtt_ms: float | None
    error: str | None

    def __iter__(self):
        return iter((self.ok, self.code, self.rtt_ms, self.error))


class _BadResponse(Exception):
    pass


def build_options(host: str, port: int, transport: str, local_host: str, local_port: int, call_id: str,
                  branch: str, tag: str) -> bytes:
    """An OPTIONS request for `sip:host:port` (RFC 3261 section 11), as bytes for the wire."""
    uri_host = f"[{host}]" if ":" in host else host
    via_host = f"[{local_host}]" if ":" in local_host else local_host
    lines = [
        f"OPTIONS sip:{uri_host}:{port};transport={transport} SIP/2.0",
        f"Via: SIP/2.0/{transport.upper()} {via_host}:{local_port};branch={branch};rport",
        "Max-Forwards: 70",
        f"From: <sip:health@{via_host}>;tag={tag}",
        f"To: <sip:{uri_host}:{port}>",
        f"Call-ID: {call_id}",
        "CSeq: 1 OPTIONS",
        f"Contact: <sip:health@{via_host}:{local_port};transport={transport}>",
        "Accept: application/sdp",
        f"User-Agent: {USER_AGENT}",
        "Content-Length: 0",
        "",
        "",
    ]
    return "\r\n".join(lines).encode()


def parse_status(data: bytes, call_id: str | None = None) -> int | None:
    """Status code of a SIP response; None if it belongs to another transaction (other Call-ID).

    Raises _BadResponse when the bytes are not a SIP response at all.
    """
    try:
        lines = head_lines(data)
    except SipError as exc:
        raise _BadResponse("response is not UTF-8 text") from exc
    parts = lines[0].split(" ", 2)
    if len(parts) < 2 or parts[0] != "SIP/2.0" or not parts[1].isdigit() or len(parts[1]) != 3:
        raise _BadResponse(f"not a SIP response: {lines[0][:60]!r}")
    code = int(parts[1])
    if not 100 <= code <= 699:
        raise _BadResponse(f"status code out of range: {code}")
    if call_id is not None:
        for name, value in header_fields(lines):
            if name == "call-id":
                return code if value == call_id else None
    return code


async def ping(host: str, port: int = 5060, transport: str = "udp", timeout: float = 2.0,
               ssl_context: ssl.SSLContext | None = None) -> PingResult:
    """Send one SIP OPTIONS to host:port and wait up to `timeout` s for a final response.

    transport: 'udp' (retransmitted on RFC 3261 timers), 'tcp' or 'tls' (default TLS context
    verifies the certificate against `host`). Returns PingResult(ok, code, rtt_ms, error).
    """
    transport = transport.lower()
    call_id = f"{secrets.token_hex(12)}@voiceplatform"
    ids = dict(call_id=call_id, branch="z9hG4bK" + secrets.token_hex(8), tag=secrets.token_hex(6))
    started = time.perf_counter()
    try:
        if transport == "udp":
            coro = _ping_udp(host, port, ids)
        elif transport in ("tcp", "tls"):
            ctx = None
            if transport == "tls":
                ctx = ssl_context or ssl.create_default_context()
            coro = _ping_stream(host, port, transport, ctx, ids)
        else:
            raise ValueError(f"transport must be udp, tcp or tls, not {transport!r}")
        code = await asyncio.wait_for(coro, timeout)
    except TimeoutError:
        return PingResult(False, None, None, f"no response within {timeout:g} s")
    except _BadResponse as exc:
        return PingResult(False, None, None, f"invalid response: {exc}")
    except ConnectionRefusedError:
        return PingResult(False, None, None, "connection refused")
    except socket.gaierror as exc:
        return PingResult(False, None, None, f"cannot resolve {host}: {exc.strerror or exc}")
    except ssl.SSLError as exc:
        return PingResult(False, None, None, f"TLS error: {exc.reason or exc}")
    except (OSError, EOFError) as exc:
        return PingResult(False, None, None, f"transport error: {exc.strerror or exc or type(exc).__name__}")
    rtt_ms = (time.perf_counter() - started) * 1000.0
    return PingResult(True, code, rtt_ms, None)


class _UdpClient(asyncio.DatagramProtocol):
    def __init__(self, call_id: str):
        self.call_id = call_id
        self.done: asyncio.Future[int] = asyncio.get_running_loop().create_future()

    def datagram_received(self, data: bytes, addr) -> None:
        if self.done.done():
            return
        try:
            code = parse_status(data, self.call_id)
        except _BadResponse as exc:
            self.done.set_exception(exc)
            return
        if code is not None and code >= 200:
            self.done.set_result(code)  # 1xx: keep waiting for the final answer

    def error_received(self, exc: Exception) -> None:  # e.g. ICMP port unreachable
        if not self.done.done():
            self.done.set_exception(exc)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.done.done():
            self.done.set_exception(exc or EOFError("socket closed"))


async def _ping_udp(host: str, port: int, ids: dict) -> int:
    loop = asyncio.get_running_loop()
    transport, proto = await loop.create_datagram_endpoint(lambda: _UdpClient(ids["call_id"]),
                                                           remote_addr=(host, port))
    try:
        local_host, local_port = transport.get_extra_info("sockname")[:2]
        request = build_options(host, port, "udp", local_host, local_port, **ids)
        interval = T1
        while True:
            transport.sendto(request)
            try:
                return await asyncio.wait_for(asyncio.shield(proto.done), interval)
            except TimeoutError:
                interval = min(interval * 2, T2)
    finally:
        if not proto.done.done():
            proto.done.cancel()  # so closing the socket does not leave an unretrieved exception
        transport.close()


async def _ping_stream(host: str, port: int, transport: str, ctx: ssl.SSLContext | None, ids: dict) -> int:
    reader, writer = await asyncio.open_connection(host, port, ssl=ctx, server_hostname=host if ctx else None)
    try:
        local_host, local_port = writer.get_extra_info("sockname")[:2]
        writer.write(build_options(host, port, transport, local_host, local_port, **ids))
        await writer.drain()
        while True:
            try:
                head = await reader.readuntil(b"\r\n\r\n")
            except asyncio.IncompleteReadError as exc:
                if exc.partial:
                    parse_status(exc.partial)  # raises _BadResponse on garbage
                raise EOFError("connection closed before a response") from None
            except asyncio.LimitOverrunError as exc:
                raise _BadResponse("no end of headers in the first 64 KiB") from exc
            code = parse_status(head, ids["call_id"])
            await reader.readexactly(_content_length(head))
            if code is not None and code >= 200:
                return code
    finally:
        writer.close()
        try:
            await writer.wait_closed()
        except (OSError, ssl.SSLError):
            pass


def _content_length(head: bytes) -> int:
    try:
        fields = header_fields(head_lines(head))
    except SipError as exc:
        raise _BadResponse("response is not UTF-8 text") from exc
    for name, value in fields:
        if name == "content-length":
            try:
                return max(0, int(value))
            except ValueError:
                raise _BadResponse("bad Content-Length") from None
    return 0


class HealthTracker:
    """Flap damping for one carrier: flips down after `down_after` consecutive failures and back up
    after `up_after` consecutive successes; a single odd result never flips the state.

    `record(ok)` returns "down" or "up" exactly when the state changes, else None.
    """

    DOWN = "down"
    UP = "up"

    def __init__(self, down_after: int = 3, up_after: int = 2, healthy: bool = True):
        if down_after < 1 or up_after < 1:
            raise ValueError("down_after and up_after must be >= 1")
        self.down_after = down_after
        self.up_after = up_after
        self.healthy = healthy
        self.failures = 0  # consecutive
        self.successes = 0  # consecutive

    def record(self, ok: bool) -> str | None:
        if ok:
            self.successes += 1
            self.failures = 0
            if not self.healthy and self.successes >= self.up_after:
                self.healthy = True
                return self.UP
        else:
            self.failures += 1
            self.successes = 0
            if self.healthy and self.failures >= self.down_after:
                self.healthy = False
                return self.DOWN
        return None

    def __repr__(self) -> str:
        state = self.UP if self.healthy else self.DOWN
        return f"HealthTracker({state}, failures={self.failures}, successes={self.successes})"
