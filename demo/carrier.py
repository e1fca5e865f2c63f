"""Demo carrier: a far end that answers SIP calls and plays audio, for `make run` without a real trunk.

Pure Python (asyncio UDP, standard library only; no pjsua2, no Django)::

    python -m demo.carrier --port 5090 [--host 127.0.0.1] [--answer-after 1.0]
                                     [--hangup-after 0] [--busy-every 0] [--advertise IP]

SIP over UDP, the part of RFC 3261 a peer on loopback or a LAN needs:

- INVITE: 100 Trying, 180 Ringing, then after ``--answer-after`` s 200 OK with an SDP answer (PCMU/8000
  payload 0, plus telephone-event/8000 when offered); 488 when the offer has no PCMU. Final responses
  are retransmitted (T1 doubling up to T2) until the ACK, for at most 64*T1 = 32 s.
  ``--busy-every N``: every Nth new call is answered 486 Busy Here.
- CANCEL before the answer: 200 to the CANCEL, 487 to the INVITE.
- BYE: 200 OK, media stops, one log line for the call.
- OPTIONS: 200 OK (carrier health checks). re-INVITE / UPDATE in a dialog: 200 with the same SDP.
  Other methods: 501. Requests in an unknown dialog: 481.
- ``--hangup-after S`` (> 0): we send BYE S seconds after the answer (to the caller's Contact, through
  its Record-Route set, retransmitted until answered).

Media: once answered, RTP (PCMU, 20 ms packets of 160 bytes) to the address in the caller's SDP, from
one socket per call on a free port: media/assets/prompt_8k_mulaw.raw in a loop with 1 s of silence in
between. One media clock paces every call (absolute deadlines, so there is no drift). RTP received from
the caller is only counted.

SIGINT/SIGTERM: BYE to answered calls, 480 to ringing ones, wait (at most 2 s) for the answers, exit 0.

Every call ends with one log line: ``call <sip call-id> from=... to=... result=... duration=...
sent=... received=...``.
"""
from __future__ import annotations

import argparse
import asyncio
import logging
import math
import os
import random
import re
import secrets
import signal
import socket
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from media import codec
from media.rtp import rtp_packet
from telephony.sip_head import SipError, head_lines, header_fields, split_head, split_header_list

log = logging.getLogger("demo.carrier")

USER_AGENT = "voiceplatform-demo-carrier/1"
ALLOW = "INVITE, ACK, CANCEL, BYE, OPTIONS, UPDATE"
T1 = 0.5
T2 = 4.0
TIMER_B = 64 * T1  # 32 s: give up retransmitting / waiting
PROMPT_PATH = Path(__file__).resolve().parents[1] / "media" / "assets" / "prompt_8k_mulaw.raw"
FRAME_BYTES = 160  # 20 ms of 8 kHz mu-law
FRAME_S = 0.020
MULAW_SILENCE = codec.ULAW_SILENCE
MAX_CATCH_UP = 5  # frames sent in a burst after a stalled loop; beyond that the clock jumps ahead

CANONICAL = {"via": "Via", "from": "From", "to": "To", "call-id": "Call-ID", "cseq": "CSeq",
             "contact": "Contact", "record-route": "Record-Route", "route": "Route",
             "content-length": "Content-Length", "content-type": "Content-Type"}
REASONS = {100: "Trying", 180: "Ringing", 200: "OK", 400: "Bad Request", 480: "Temporarily Unavailable",
           481: "Call/Transaction Does Not Exist", 482: "Loop Detected", 486: "Busy Here",
           487: "Request Terminated", 488: "Not Acceptable Here", 491: "Request Pending",
           500: "Server Internal Error", 501: "Not Implemented"}


# --------------------------------------------------------------------------------------------- SIP text

@dataclass
class SipMessage:
    """A parsed SIP request or response. Header names are lower-case long forms; values in order."""

    method: str | None = None  # requests
    uri: str | None = None
    code: int | None = None  # responses
    reason: str | None = None
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""

    @property
    def is_request(self) -> bool:
        return self.method is not None

    def get(self, name: str, default: str | None = None) -> str | None:
        name = name.lower()
        for k, v in self.headers:
            if k == name:
                return v
        return default

    def get_all(self, name: str) -> list[str]:
        """Every value of a header, comma-separated lists split (for Via, Route, Record-Route)."""
        name = name.lower()
        out: list[str] = []
        for k, v in self.headers:
            if k == name:
                out.extend(split_header_list(v))
        return out

    @property
    def call_id(self) -> str:
        return self.get("call-id") or ""

    @property
    def cseq(self) -> tuple[int, str]:
        raw = (self.get("cseq") or "").split()
        if len(raw) != 2 or not raw[0].isdigit():
            raise SipError(f"bad CSeq: {self.get('cseq')!r}")
        return int(raw[0]), raw[1].upper()

    @property
    def branch(self) -> str:
        vias = self.get_all("via")
        return param(vias[0], "branch") or "" if vias else ""


def parse_message(data: bytes) -> SipMessage:
    head, body = split_head(data)
    unfolded = head_lines(head)
    if not unfolded or not unfolded[0]:
        raise SipError("empty message")
    start = unfolded[0].split(" ", 2)
    msg = SipMessage()
    if start[0] == "SIP/2.0":
        if len(start) < 2 or not start[1].isdigit():
            raise SipError(f"bad status line {unfolded[0]!r}")
        msg.code, msg.reason = int(start[1]), (start[2] if len(start) > 2 else "")
    else:
        if len(start) != 3 or start[2] != "SIP/2.0":
            raise SipError(f"bad request line {unfolded[0]!r}")
        msg.method, msg.uri = start[0].upper(), start[1]
    msg.headers = header_fields(unfolded, strict=True)
    length = msg.get("content-length")
    if length is not None:
        try:
            n = int(length)
        except ValueError:
            raise SipError("bad Content-Length") from None
        body = body[:n]
    msg.body = body
    for required in ("via", "call-id", "cseq", "from", "to"):
        if msg.get(required) is None:
            raise SipError(f"missing {required}")
    _ = msg.cseq  # raises SipError when malformed
    return msg


def param(value: str, name: str) -> str | None:
    """A ;name=value parameter of a header value, outside <...> (tag, branch, received...)."""
    tail = value.rsplit(">", 1)[1] if ">" in value else value
    for part in tail.split(";")[1:]:
        k, _, v = part.partition("=")
        if k.strip().lower() == name:
            return v.strip()
    return None


def tag_of(value: str | None) -> str | None:
    return param(value, "tag") if value else None


def name_addr_uri(value: str) -> str:
    """The URI of a name-addr / addr-spec header value (Contact, Route, From...)."""
    m = re.search(r"<([^>]*)>", value)
    if m:
        return m.group(1).strip()
    return value.split(";", 1)[0].strip()


def uri_hostport(uri: str, default_port: int = 5060) -> tuple[str, int]:
    """host and port of a sip: URI (sip:user@host:port;params, sip:[::1]:5060)."""
    rest = uri.split(":", 1)[1] if uri.lower().startswith(("sip:", "sips:")) else uri
    rest = rest.split(";", 1)[0].split("?", 1)[0]
    if "@" in rest:
        rest = rest.rsplit("@", 1)[1]
    if rest.startswith("["):
        host, _, tail = rest[1:].partition("]")
        port = tail[1:] if tail.startswith(":") else ""
    else:
        host, _, port = rest.partition(":")
    return host, int(port) if port.isdigit() else default_port


def build_message(start_line: str, headers: list[tuple[str, str]], body: bytes = b"",
                  content_type: str | None = None) -> bytes:
    lines = [start_line]
    for k, v in headers:
        lines.append(f"{CANONICAL.get(k, k)}: {v}")
    if body:
        lines.append(f"Content-Type: {content_type or 'application/sdp'}")
    lines.append(f"User-Agent: {USER_AGENT}")
    lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def build_response(req: SipMessage, code: int, source: tuple[str, int], to_tag: str | None = None,
                   extra: list[tuple[str, str]] | None = None, body: bytes = b"",
                   reason: str | None = None) -> bytes:
    """A response to `req` (RFC 3261 8.2.6): Vias copied (top one with received/rport), From, Call-ID,
    CSeq copied, To with our tag added when it has none."""
    vias = req.get_all("via")
    headers: list[tuple[str, str]] = []
    for i, via in enumerate(vias):
        if i == 0:
            via = _stamp_via(via, source)
        headers.append(("via", via))
    if code != 100:
        for rr in req.get_all("record-route"):
            if code < 300 and req.method in ("INVITE", "UPDATE"):
                headers.append(("record-route", rr))
    headers.append(("from", req.get("from") or ""))
    to = req.get("to") or ""
    if to_tag and tag_of(to) is None and code != 100:
        to = f"{to};tag={to_tag}"
    headers.append(("to", to))
    headers.append(("call-id", req.call_id))
    headers.append(("cseq", req.get("cseq") or ""))
    headers.extend(extra or [])
    return build_message(f"SIP/2.0 {code} {reason or REASONS.get(code, 'Unknown')}", headers, body)


def _stamp_via(via: str, source: tuple[str, int]) -> str:
    """Top Via of a response: add received= when the sent-by host differs, fill rport= (RFC 3581)."""
    host, port = source[0], source[1]
    parts = via.split(";")
    sent_by = parts[0].split()[-1] if parts[0].split() else ""
    sent_host = uri_hostport("sip:" + sent_by)[0]
    out = [parts[0]]
    has_received = False
    for p in parts[1:]:
        k = p.split("=", 1)[0].strip().lower()
        if k == "rport":
            out.append(f"rport={port}")
        elif k == "received":
            has_received = True
            out.append(f"received={host}")
        else:
            out.append(p)
    if not has_received and (sent_host != host or any(p.strip().lower().startswith("rport") for p in parts[1:])):
        out.append(f"received={host}")
    return ";".join(out)


# --------------------------------------------------------------------------------------------- SDP

@dataclass
class SdpOffer:
    address: str
    port: int
    payload_types: list[int]
    telephone_event_pt: int | None
    direction: str  # sendrecv, sendonly, recvonly, inactive (from the offerer's point of view)

    @property
    def has_pcmu(self) -> bool:
        return 0 in self.payload_types


def parse_sdp(body: bytes | str) -> SdpOffer:
    """The first audio m= line of an SDP offer: where to send RTP, codecs, telephone-event payload."""
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
    session_c = None
    media_c = None
    port = None
    pts: list[int] = []
    rtpmap: dict[int, str] = {}
    direction = "sendrecv"
    session_dir = None
    in_audio = False
    seen_audio = False
    for raw in text.replace("\r\n", "\n").split("\n"):
        line = raw.strip()
        if len(line) < 2 or line[1] != "=":
            continue
        kind, value = line[0], line[2:]
        if kind == "m":
            if seen_audio:
                in_audio = False
                continue
            fields = value.split()
            if fields and fields[0] == "audio" and len(fields) >= 3:
                in_audio = seen_audio = True
                port = int(fields[1].split("/")[0])
                pts = [int(p) for p in fields[3:] if p.isdigit()]
            else:
                in_audio = False
            continue
        if seen_audio and not in_audio:
            continue
        if kind == "c":
            addr = value.split()
            if len(addr) >= 3:
                if in_audio:
                    media_c = addr[2].split("/")[0]
                else:
                    session_c = addr[2].split("/")[0]
        elif kind == "a":
            name, _, rest = value.partition(":")
            if name in ("sendrecv", "sendonly", "recvonly", "inactive"):
                if in_audio:
                    direction = name
                else:
                    session_dir = name
            elif name == "rtpmap" and in_audio:
                pt, _, enc = rest.partition(" ")
                if pt.strip().isdigit():
                    rtpmap[int(pt)] = enc.strip()
    if port is None:
        raise SipError("SDP has no audio stream")
    address = media_c or session_c
    if not address:
        raise SipError("SDP has no connection address")
    if direction == "sendrecv" and session_dir:
        direction = session_dir
    te = next((pt for pt in pts if rtpmap.get(pt, "").lower().startswith("telephone-event/8000")), None)
    return SdpOffer(address=address, port=port, payload_types=pts, telephone_event_pt=te, direction=direction)


ANSWER_DIRECTION = {"sendrecv": "sendrecv", "sendonly": "recvonly", "recvonly": "sendonly", "inactive": "inactive"}


def build_sdp_answer(offer: SdpOffer, address: str, port: int, session_id: int, version: int = 1) -> bytes:
    """Our SDP answer: PCMU/8000 (payload 0) and telephone-event/8000 with the offer's payload type."""
    ip = "IP6" if ":" in address else "IP4"
    fmts = ["0"] + ([str(offer.telephone_event_pt)] if offer.telephone_event_pt is not None else [])
    lines = [
        "v=0",
        f"o=- {session_id} {version} IN {ip} {address}",
        "s=demo-carrier",
        f"c=IN {ip} {address}",
        "t=0 0",
        f"m=audio {port} RTP/AVP {' '.join(fmts)}",
        "a=rtpmap:0 PCMU/8000",
    ]
    if offer.telephone_event_pt is not None:
        lines += [f"a=rtpmap:{offer.telephone_event_pt} telephone-event/8000",
                  f"a=fmtp:{offer.telephone_event_pt} 0-16"]
    lines += ["a=ptime:20", f"a={ANSWER_DIRECTION.get(offer.direction, 'sendrecv')}"]
    return ("\r\n".join(lines) + "\r\n").encode()


# --------------------------------------------------------------------------------------------- media

def load_frames(path: Path = PROMPT_PATH, silence_s: float = 1.0) -> list[bytes]:
    """The prompt followed by `silence_s` of silence, cut in 160-byte frames (last one padded)."""
    try:
        audio = path.read_bytes()
    except OSError as exc:
        log.warning("cannot read prompt %s (%s): playing a tone instead", path, exc)
        audio = _tone()
    audio += bytes([MULAW_SILENCE]) * int(8000 * silence_s)
    if len(audio) % FRAME_BYTES:
        audio += bytes([MULAW_SILENCE]) * (FRAME_BYTES - len(audio) % FRAME_BYTES)
    return [audio[i:i + FRAME_BYTES] for i in range(0, len(audio), FRAME_BYTES)]


def _tone(seconds: float = 1.0, hz: float = 440.0) -> bytes:
    pcm = b"".join(int(8000 * math.sin(2 * math.pi * hz * n / 8000)).to_bytes(2, "little", signed=True)
                   for n in range(int(8000 * seconds)))
    return codec.lin16_to_ulaw(pcm)


class RtpReceiver(asyncio.DatagramProtocol):
    def __init__(self, call: Call):
        self.call = call

    def datagram_received(self, data: bytes, addr) -> None:
        if len(data) >= 12 and data[0] >> 6 == 2:
            self.call.packets_received += 1

    def error_received(self, exc: Exception) -> None:  # ICMP unreachable: the caller is not listening
        pass


# --------------------------------------------------------------------------------------------- calls

@dataclass
class Call:
    call_id: str
    invite: SipMessage
    source: tuple[str, int]
    local_tag: str
    number: int
    from_: str
    to: str
    created: float = field(default_factory=time.monotonic)
    state: str = "early"  # early, answered, confirmed, ended
    offer: SdpOffer | None = None
    sdp: bytes = b""
    final_response: bytes | None = None  # last final response to the INVITE (retransmitted)
    last_provisional: bytes | None = None
    acked: asyncio.Event | None = None
    answered_at: float | None = None
    ended_at: float | None = None
    result: str = ""
    end_reason: str = ""
    rtp: asyncio.DatagramTransport | None = None
    rtp_port: int = 0
    ssrc: int = 0
    seq: int = 0
    timestamp: int = 0
    frame: int = 0
    first_packet: bool = True
    packets_sent: int = 0
    packets_received: int = 0
    local_cseq: int = 0
    tasks: set = field(default_factory=set)
    sending: bool = False
    sdp_session: int = 0
    sdp_version: int = 1
    reinvite_acks: dict = field(default_factory=dict)  # CSeq of a re-INVITE -> Event set by its ACK
    reinvite_response: bytes | None = None

    @property
    def remote_contact(self) -> str:
        contact = self.invite.get("contact")
        return name_addr_uri(contact) if contact else name_addr_uri(self.invite.get("from") or "")


class DemoCarrier(asyncio.DatagramProtocol):
    def __init__(self, host: str = "127.0.0.1", port: int = 5090, answer_after: float = 1.0,
                 hangup_after: float = 0.0, busy_every: int = 0, advertise: str | None = None,
                 frames: list[bytes] | None = None):
        self.host = host
        self.port = port
        self.answer_after = answer_after
        self.hangup_after = hangup_after
        self.busy_every = busy_every
        self.advertise = advertise
        self.frames = frames if frames is not None else load_frames()
        self.transport: asyncio.DatagramTransport | None = None
        self.calls: dict[str, Call] = {}
        self.invites = 0
        self.responses: dict[tuple[str, str, str], bytes] = {}  # (call-id, branch, method) -> last response
        self.client_tsx: dict[str, asyncio.Future] = {}  # branch of our requests -> final response future
        self.closing = False
        self._tasks: set[asyncio.Task] = set()
        self._media_task: asyncio.Task | None = None
        self.started = time.monotonic()

    # ----------------------------------------------------------------------- lifecycle

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self.transport, _ = await loop.create_datagram_endpoint(lambda: self, local_addr=(self.host, self.port))
        self.port = self.transport.get_extra_info("sockname")[1]
        sock = self.transport.get_extra_info("socket")
        for opt in (socket.SO_RCVBUF, socket.SO_SNDBUF):  # bursts of INVITEs (the kernel caps the size)
            try:
                sock.setsockopt(socket.SOL_SOCKET, opt, 4 << 20)
            except OSError:
                pass
        self._media_task = asyncio.create_task(self._media_clock())
        log.info("demo carrier listening on udp %s:%d (answer after %gs, hangup after %s, busy every %s)",
                 self.host, self.port, self.answer_after, self.hangup_after or "never", self.busy_every or "never")

    async def shutdown(self, timeout: float = 2.0) -> None:
        """BYE to answered calls, 480 to ringing ones, wait for the BYEs to be answered, close."""
        self.closing = True
        byes = []
        for call in list(self.calls.values()):
            if call.state == "early":
                self._final_invite(call, 480, reason="Temporarily Unavailable")
                self._end(call, "failed", "shutdown")
            elif call.state in ("answered", "confirmed"):
                byes.append(self._send_bye(call, "shutdown"))
        if byes:
            await asyncio.wait([asyncio.ensure_future(b) for b in byes], timeout=timeout)
        for call in list(self.calls.values()):
            if call.state != "ended":
                self._end(call, call.result or "completed", "shutdown")
        if self._media_task:
            self._media_task.cancel()
        for t in list(self._tasks):
            t.cancel()
        await asyncio.sleep(0)
        if self.transport:
            self.transport.close()

    def _spawn(self, coro, call: Call | None = None) -> asyncio.Task:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        if call is not None:
            call.tasks.add(task)
            task.add_done_callback(call.tasks.discard)
        return task

    # ----------------------------------------------------------------------- transport

    def send(self, data: bytes, addr: tuple[str, int]) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.sendto(data, addr)

    def error_received(self, exc: Exception) -> None:
        log.debug("udp error: %s", exc)

    def datagram_received(self, data: bytes, addr) -> None:
        if not data.strip():  # keep-alive CRLF
            return
        try:
            msg = parse_message(data)
        except SipError as exc:
            log.debug("dropping bad message from %s: %s", addr, exc)
            return
        addr = (addr[0], addr[1])
        try:
            if msg.is_request:
                self.on_request(msg, addr)
            else:
                self.on_response(msg)
        except Exception:  # one bad message must not stop the carrier
            log.exception("error handling %s from %s", msg.method or msg.code, addr)
            if msg.is_request and msg.method != "ACK":
                self.send(build_response(msg, 500, addr), addr)

    def respond(self, req: SipMessage, code: int, addr: tuple[str, int], to_tag: str | None = None,
                extra: list[tuple[str, str]] | None = None, body: bytes = b"", reason: str | None = None,
                remember: bool = True) -> bytes:
        data = build_response(req, code, addr, to_tag=to_tag, extra=extra, body=body, reason=reason)
        self.send(data, addr)
        if remember and req.method != "INVITE":
            key = (req.call_id, req.branch, req.method or "")
            self.responses[key] = data
            loop = asyncio.get_running_loop()
            loop.call_later(TIMER_B, self.responses.pop, key, None)
        return data

    def contact_header(self, peer_host: str) -> str:
        host = self.media_address(peer_host)
        h = f"[{host}]" if ":" in host else host
        return f"<sip:demo@{h}:{self.port};transport=udp>"

    def media_address(self, peer_host: str) -> str:
        """The address the caller can reach us at: --advertise, --host, or the route to the caller."""
        if self.advertise:
            return self.advertise
        if self.host not in ("0.0.0.0", "::", ""):
            return self.host
        family = socket.AF_INET6 if ":" in peer_host else socket.AF_INET
        try:
            with socket.socket(family, socket.SOCK_DGRAM) as s:
                s.connect((peer_host, 9))
                return s.getsockname()[0]
        except OSError:
            return "127.0.0.1"

    # ----------------------------------------------------------------------- requests

    def on_request(self, req: SipMessage, addr: tuple[str, int]) -> None:
        method = req.method
        if method == "ACK":
            self.on_ack(req)
            return
        if method != "INVITE":
            cached = self.responses.get((req.call_id, req.branch, method))
            if cached is not None:  # retransmitted request: the same answer again
                self.send(cached, addr)
                return
        if method == "INVITE":
            self.on_invite(req, addr)
        elif method == "CANCEL":
            self.on_cancel(req, addr)
        elif method == "BYE":
            self.on_bye(req, addr)
        elif method == "OPTIONS":
            self.respond(req, 200, addr, to_tag=secrets.token_hex(4),
                         extra=[("Allow", ALLOW), ("Accept", "application/sdp")])
        elif method == "UPDATE":
            self.on_update(req, addr)
        else:
            self.respond(req, 501, addr, to_tag=secrets.token_hex(4), extra=[("Allow", ALLOW)])

    def on_invite(self, req: SipMessage, addr: tuple[str, int]) -> None:
        call = self.calls.get(req.call_id)
        to_tag = tag_of(req.get("to"))
        if to_tag:  # re-INVITE
            if call is None or call.local_tag != to_tag or call.state == "ended":
                self.respond(req, 481, addr)
                return
            self.on_reinvite(call, req, addr)
            return
        if call is not None:
            if call.invite.branch == req.branch:  # retransmission of the initial INVITE
                self.send(call.final_response or call.last_provisional or b"", addr)
                return
            if call.state != "ended":
                self.respond(req, 482, addr, to_tag=secrets.token_hex(4))
                return
        if self.closing:
            self.respond(req, 503, addr, to_tag=secrets.token_hex(4), reason="Service Unavailable")
            return
        self.invites += 1
        call = Call(call_id=req.call_id, invite=req, source=addr, local_tag=secrets.token_hex(6),
                    number=self.invites, from_=name_addr_uri(req.get("from") or ""),
                    to=name_addr_uri(req.get("to") or ""))
        call.acked = asyncio.Event()
        self.calls[call.call_id] = call
        trying = build_response(req, 100, addr)
        self.send(trying, addr)
        call.last_provisional = trying
        if self.busy_every and call.number % self.busy_every == 0:
            self._final_invite(call, 486)
            self._end(call, "busy", "busy_every")
            return
        try:
            call.offer = parse_sdp(req.body) if req.body else None
        except (SipError, ValueError) as exc:
            log.info("call %s: bad SDP offer: %s", call.call_id, exc)
            call.offer = None
        if call.offer is None or not call.offer.has_pcmu or call.offer.port == 0:
            self._final_invite(call, 488, extra=[("Warning", '304 demo-carrier "PCMU/8000 offer required"')])
            self._end(call, "rejected", "no_pcmu_offer")
            return
        ringing = build_response(req, 180, addr, to_tag=call.local_tag,
                                 extra=[("contact", self.contact_header(addr[0]))])
        self.send(ringing, addr)
        call.last_provisional = ringing
        self._spawn(self._answer_later(call), call)

    async def _answer_later(self, call: Call) -> None:
        await asyncio.sleep(max(0.0, self.answer_after))
        if call.state != "early":
            return
        await self._open_media(call)
        if call.state != "early":  # cancelled while the socket was being opened
            self._close_media(call)
            return
        call.sdp_session = random.randrange(1, 2**31)
        call.sdp = self._answer_sdp(call)
        call.state = "answered"
        call.answered_at = time.monotonic()
        self._final_invite(call, 200, body=call.sdp, extra=[("contact", self.contact_header(call.source[0])),
                                                            ("Allow", ALLOW)])
        call.sending = call.offer.direction in ("sendrecv", "recvonly")
        if self.hangup_after > 0:
            self._spawn(self._hangup_later(call), call)

    def _final_invite(self, call: Call, code: int, body: bytes = b"", extra=None, reason: str | None = None) -> None:
        """Send a final response to the initial INVITE and retransmit it until the ACK (or 32 s)."""
        data = build_response(call.invite, code, call.source, to_tag=call.local_tag, extra=extra, body=body,
                              reason=reason)
        call.final_response = data
        self.send(data, call.source)
        self._spawn(self._retransmit_until_ack(call, data, call.acked, code), None)

    async def _retransmit_until_ack(self, call: Call, data: bytes, acked: asyncio.Event, code: int) -> None:
        interval = T1
        deadline = time.monotonic() + TIMER_B
        while not acked.is_set():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                if code < 300 and call.state in ("answered", "confirmed"):
                    log.info("call %s: no ACK for 200 OK within %gs, hanging up", call.call_id, TIMER_B)
                    await self._send_bye(call, "no_ack")
                return
            try:
                await asyncio.wait_for(acked.wait(), min(interval, remaining))
                return
            except TimeoutError:
                pass
            if not acked.is_set():
                self.send(data, call.source)
                interval = min(interval * 2, T2)

    async def _hangup_later(self, call: Call) -> None:
        await asyncio.sleep(self.hangup_after)
        if call.state not in ("answered", "confirmed"):
            return
        # RFC 3261 15: no BYE before the ACK of our 2xx (or its transaction timing out)
        try:
            await asyncio.wait_for(call.acked.wait(), TIMER_B)
        except TimeoutError:
            pass
        if call.state in ("answered", "confirmed"):
            await self._send_bye(call, "hangup_after")

    def on_ack(self, req: SipMessage) -> None:
        call = self.calls.get(req.call_id)
        if call is None:
            return
        cseq, _ = req.cseq
        if cseq in call.reinvite_acks:
            call.reinvite_acks.pop(cseq).set()
            return
        if call.acked is not None and cseq == call.invite.cseq[0]:
            call.acked.set()
            if call.state == "answered":
                call.state = "confirmed"

    def on_cancel(self, req: SipMessage, addr: tuple[str, int]) -> None:
        call = self.calls.get(req.call_id)
        if call is None or call.invite.branch != req.branch or call.invite.cseq[0] != req.cseq[0]:
            self.respond(req, 481, addr)
            return
        # the CANCEL's To tag must match what we put in our provisional responses
        self.respond(req, 200, addr, to_tag=call.local_tag)
        if call.state == "early":
            call.state = "cancelled"  # stops _answer_later
            self._final_invite(call, 487)
            self._end(call, "cancelled", "cancel")

    def on_bye(self, req: SipMessage, addr: tuple[str, int]) -> None:
        call = self.calls.get(req.call_id)
        if call is None or tag_of(req.get("to")) != call.local_tag:
            self.respond(req, 481, addr)
            return
        self.respond(req, 200, addr)
        if call.state == "early":  # BYE in an early dialog (RFC 3261 15): end the INVITE with 487
            self._final_invite(call, 487)
            self._end(call, "cancelled", "bye_early")
        elif call.state != "ended":
            self._end(call, "completed", "caller_bye")

    def on_reinvite(self, call: Call, req: SipMessage, addr: tuple[str, int]) -> None:
        """A re-INVITE in the dialog: 200 with the same SDP (the new offer updates where we send)."""
        pending = call.reinvite_acks
        cseq = req.cseq[0]
        if cseq in pending:  # retransmission
            if call.reinvite_response:
                self.send(call.reinvite_response, addr)
            return
        if call.state not in ("answered", "confirmed"):
            self.respond(req, 491, addr, remember=False)
            return
        self._apply_offer(call, req)
        data = build_response(req, 200, addr, to_tag=call.local_tag, body=call.sdp,
                              extra=[("contact", self.contact_header(addr[0])), ("Allow", ALLOW)])
        call.reinvite_response = data
        self.send(data, addr)
        acked = asyncio.Event()
        pending[cseq] = acked
        self._spawn(self._retransmit_reinvite(call, data, acked, addr), call)

    async def _retransmit_reinvite(self, call: Call, data: bytes, acked: asyncio.Event, addr) -> None:
        interval, deadline = T1, time.monotonic() + TIMER_B
        while not acked.is_set() and time.monotonic() < deadline and call.state != "ended":
            try:
                await asyncio.wait_for(acked.wait(), interval)
            except TimeoutError:
                if not acked.is_set():
                    self.send(data, addr)
                interval = min(interval * 2, T2)

    def on_update(self, req: SipMessage, addr: tuple[str, int]) -> None:
        call = self.calls.get(req.call_id)
        if call is None or tag_of(req.get("to")) != call.local_tag or call.state == "ended":
            self.respond(req, 481, addr)
            return
        if req.body and call.sdp:
            self._apply_offer(call, req)
            self.respond(req, 200, addr, body=call.sdp, extra=[("contact", self.contact_header(addr[0]))])
        else:
            self.respond(req, 200, addr, extra=[("contact", self.contact_header(addr[0]))])

    def _apply_offer(self, call: Call, req: SipMessage) -> None:
        if not req.body:
            return
        try:
            offer = parse_sdp(req.body)
        except (SipError, ValueError):
            return
        if offer.has_pcmu and offer.port:
            call.offer = offer
            call.sending = offer.direction in ("sendrecv", "recvonly") and call.state != "ended"
            sdp = self._answer_sdp(call)
            if sdp != call.sdp:  # e.g. hold: the direction changed, so the version goes up (RFC 3264 8)
                call.sdp_version += 1
                call.sdp = self._answer_sdp(call)

    def _answer_sdp(self, call: Call) -> bytes:
        return build_sdp_answer(call.offer, self.media_address(call.source[0]), call.rtp_port,
                                session_id=call.sdp_session, version=call.sdp_version)

    # ----------------------------------------------------------------------- our requests

    async def _send_bye(self, call: Call, reason: str) -> None:
        """BYE to the caller's Contact (through its Record-Route set), retransmitted until answered."""
        if call.state == "ended":
            return
        call.sending = False
        inv = call.invite
        routes = inv.get_all("record-route")  # UAS: the route set is Record-Route in order
        target = call.remote_contact
        dest_uri = name_addr_uri(routes[0]) if routes else target
        dest = uri_hostport(dest_uri)
        if dest[0] in ("", "0.0.0.0"):
            dest = call.source
        call.local_cseq += 1
        branch = "z9hG4bK" + secrets.token_hex(10)
        local = self.media_address(call.source[0])
        lh = f"[{local}]" if ":" in local else local
        to_value = f"{inv.get('to')};tag={call.local_tag}" if tag_of(inv.get("to")) is None else inv.get("to")
        headers = [("via", f"SIP/2.0/UDP {lh}:{self.port};branch={branch};rport"),
                   ("Max-Forwards", "70")]
        headers += [("route", r) for r in routes]
        headers += [("from", to_value), ("to", inv.get("from") or ""), ("call-id", call.call_id),
                    ("cseq", f"{call.local_cseq} BYE"), ("contact", self.contact_header(call.source[0]))]
        data = build_message(f"BYE {target} SIP/2.0", headers)
        fut = asyncio.get_running_loop().create_future()
        self.client_tsx[branch] = fut
        self._end(call, "completed", reason)
        try:
            interval, deadline = T1, time.monotonic() + TIMER_B
            while not fut.done():
                self.send(data, dest)
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    log.info("call %s: BYE not answered", call.call_id)
                    return
                try:
                    await asyncio.wait_for(asyncio.shield(fut), min(interval, remaining))
                except TimeoutError:
                    interval = min(interval * 2, T2)
        finally:
            self.client_tsx.pop(branch, None)

    def on_response(self, resp: SipMessage) -> None:
        fut = self.client_tsx.get(resp.branch)
        if fut is not None and not fut.done() and resp.code and resp.code >= 200:
            fut.set_result(resp.code)

    # ----------------------------------------------------------------------- media

    async def _open_media(self, call: Call) -> None:
        loop = asyncio.get_running_loop()
        bind_host = self.host if self.host not in ("",) else "0.0.0.0"
        transport = None
        for _ in range(8):  # prefer an even port (RTP convention; RTCP would be the next one)
            transport, _proto = await loop.create_datagram_endpoint(lambda: RtpReceiver(call),
                                                                    local_addr=(bind_host, 0))
            if transport.get_extra_info("sockname")[1] % 2 == 0:
                break
            transport.close()
            transport = None
        if transport is None:
            transport, _proto = await loop.create_datagram_endpoint(lambda: RtpReceiver(call),
                                                                    local_addr=(bind_host, 0))
        call.rtp = transport
        call.rtp_port = transport.get_extra_info("sockname")[1]
        call.ssrc = random.getrandbits(32)
        call.seq = random.getrandbits(16)
        call.timestamp = random.getrandbits(32)

    def _close_media(self, call: Call) -> None:
        call.sending = False
        if call.rtp is not None:
            call.rtp.close()
            call.rtp = None

    async def _media_clock(self) -> None:
        """One clock for every call: every 20 ms each sending call gets its next frame."""
        loop = asyncio.get_running_loop()
        start = loop.time()
        tick = 0
        while True:
            tick += 1
            await asyncio.sleep(max(0.0, start + tick * FRAME_S - loop.time()))
            due = int((loop.time() - start) / FRAME_S)  # ticks that should have happened by now
            burst = 1
            if due > tick:  # the loop stalled: send a few missed frames, skip the rest
                burst = min(due - tick + 1, MAX_CATCH_UP)
                skipped = due - tick + 1 - burst
                tick = due
            else:
                skipped = 0
            for call in list(self.calls.values()):
                if call.sending and call.rtp is not None and call.offer is not None:
                    if skipped:
                        call.timestamp += FRAME_BYTES * skipped
                        call.frame = (call.frame + skipped) % len(self.frames)
                    for _ in range(burst):
                        self._send_frame(call)

    def _send_frame(self, call: Call) -> None:
        payload = self.frames[call.frame]
        call.frame = (call.frame + 1) % len(self.frames)
        pkt = rtp_packet(call.seq, call.timestamp, call.ssrc, payload, marker=call.first_packet)
        call.first_packet = False
        call.seq = (call.seq + 1) & 0xFFFF
        call.timestamp = (call.timestamp + FRAME_BYTES) & 0xFFFFFFFF
        try:
            call.rtp.sendto(pkt, (call.offer.address, call.offer.port))
            call.packets_sent += 1
        except OSError:
            pass

    # ----------------------------------------------------------------------- end of call

    def _end(self, call: Call, result: str, reason: str) -> None:
        if call.state == "ended":
            return
        call.state = "ended"
        call.result = result
        call.end_reason = reason
        call.ended_at = time.monotonic()
        self._close_media(call)
        for t in list(call.tasks):
            if t is not asyncio.current_task():
                t.cancel()
        duration = (call.ended_at - call.answered_at) if call.answered_at else 0.0
        log.info("call %s from=%s to=%s result=%s reason=%s duration=%.3f sent=%d received=%d",
                 call.call_id, call.from_, call.to, result, reason, duration, call.packets_sent,
                 call.packets_received)
        # keep the call a while for retransmissions (ACK of a final response, repeated BYE/CANCEL)
        asyncio.get_running_loop().call_later(TIMER_B, self._forget, call)

    def _forget(self, call: Call) -> None:
        if self.calls.get(call.call_id) is call:
            del self.calls[call.call_id]


# --------------------------------------------------------------------------------------------- CLI

def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m demo.carrier",
                                description="Demo SIP carrier: answers calls and plays a prompt over RTP.")
    p.add_argument("--port", type=int, default=5090, help="SIP UDP port (default 5090; 0 = any)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    p.add_argument("--advertise", default=None,
                   help="address put in Contact/SDP (default: --host, or the route to the caller)")
    p.add_argument("--answer-after", type=float, default=1.0, help="seconds of ringing before 200 OK")
    p.add_argument("--hangup-after", type=float, default=0.0,
                   help="seconds after the answer we send BYE (0 = never; the caller hangs up)")
    p.add_argument("--busy-every", type=int, default=0, help="answer every Nth call 486 Busy Here (0 = never)")
    p.add_argument("--prompt", type=Path, default=PROMPT_PATH, help="8 kHz mu-law raw audio to loop")
    p.add_argument("--log-level", default=os.environ.get("LOG_LEVEL", "INFO"))
    return p.parse_args(argv)


def _raise_fd_limit() -> None:
    """One RTP socket per call: lift the soft open-files limit to the hard one (1024 is common)."""
    try:
        import resource
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if hard == resource.RLIM_INFINITY or hard > soft:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard if hard != resource.RLIM_INFINITY else 65536, hard))
    except (ImportError, ValueError, OSError):
        pass


async def amain(args: argparse.Namespace) -> int:
    _raise_fd_limit()
    carrier = DemoCarrier(host=args.host, port=args.port, answer_after=args.answer_after,
                          hangup_after=args.hangup_after, busy_every=args.busy_every, advertise=args.advertise,
                          frames=load_frames(args.prompt))
    try:
        await carrier.start()
    except OSError as exc:
        log.error("cannot listen on udp %s:%d: %s (is another process using it? pick --port)",
                  args.host, args.port, exc.strerror or exc)
        return 1
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("stopping: %d call(s) in progress", sum(c.state != "ended" for c in carrier.calls.values()))
    await carrier.shutdown()
    log.info("stopped")
    return 0


def main(argv=None) -> int:
    args = parse_args(argv)
    from core.logs import configure  # the platform's key=value lines

    configure(args.log_level.upper())
    return asyncio.run(amain(args))


if __name__ == "__main__":
    sys.exit(main())
