"""RTP / RTCP / RFC 4733 helpers for the gateway's own media path (stdlib only, no pjsua2).

The media bridge (telephony/gateway/media_bridge.py) keeps pjsua2 for SIP and SDP negotiation only
and moves the call's RTP to its own asyncio UDP sockets; this module is the packet format side:

* ``parse_rtp(data)`` -> (pt, marker, seq, ts, ssrc, payload) or None (RFC 3550 §5.1: CSRCs, header
  extension and padding handled);
* ``RtpSender`` builds outgoing packets (one ``struct.pack`` + concatenation per packet);
* ``DigitPlayer`` schedules digits to send as RFC 4733 telephone-events on the 20 ms clock;
* ``DtmfReceiver`` turns RFC 4733 telephone-event packets into digits, once per event (the end
  packets are sent three times and an event spans many packets: deduplicated on the event's RTP
  timestamp);
* ``rewrite_sdp_media(sdp, port, rtcp_port)`` points the audio m-line (and ``a=rtcp``) of an SDP
  pjsua created at our own sockets;
* minimal RTCP: ``build_sr`` (sender report with one reception report block) and ``parse_rtcp``
  (report blocks about our stream: loss, jitter, LSR/DLSR for the round-trip time, RFC 3550 §6.4).
"""
from __future__ import annotations

import collections
import re
import struct
import time

__all__ = ["parse_rtp", "rtp_packet", "RtpSender", "DigitPlayer", "telephone_event", "DtmfReceiver", "rewrite_sdp_media", "build_sr", "parse_rtcp",
           "ntp_now", "EVENT_DIGITS"]

_HDR = struct.Struct("!BBHII")
_HS = struct.Struct("!HI")
EVENT_DIGITS = "0123456789*#ABCD"  # RFC 4733 event codes 0-15
NTP_EPOCH_OFFSET = 2208988800


def parse_rtp(data: bytes):
    """(pt, marker, seq, ts, ssrc, payload) of an RTP packet, or None if it is not one."""
    n = len(data)
    if n < 12:
        return None
    b0 = data[0]
    if b0 & 0xC0 != 0x80:
        return None
    b1 = data[1]
    seq, ts = _HS.unpack_from(data, 2)
    ssrc = int.from_bytes(data[8:12], "big")
    off = 12 + (b0 & 0x0F) * 4
    if b0 & 0x10:  # header extension
        if n < off + 4:
            return None
        off += 4 + 4 * int.from_bytes(data[off + 2:off + 4], "big")
    end = n
    if b0 & 0x20:  # padding: last byte is the count
        end -= data[-1]
    if off > end:
        return None
    return b1 & 0x7F, b1 >> 7, seq, ts, ssrc, data[off:end]


def rtp_packet(seq: int, timestamp: int, ssrc: int, payload: bytes, pt: int = 0, marker: bool = False) -> bytes:
    """One RTP packet (RtpSender keeps a call's numbering; this is for senders that keep their own)."""
    return _HDR.pack(0x80, (0x80 if marker else 0) | pt, seq & 0xFFFF, timestamp & 0xFFFFFFFF, ssrc) + payload


class RtpSender:
    """Outgoing RTP of one call: sequence numbers and timestamps continue across silence."""

    __slots__ = ("pt", "ssrc", "seq", "ts", "packets", "octets", "marker_next")

    def __init__(self, pt: int, ssrc: int, seq: int, ts: int):
        self.pt = pt
        self.ssrc = ssrc
        self.seq = seq & 0xFFFF
        self.ts = ts & 0xFFFFFFFF
        self.packets = 0
        self.octets = 0
        self.marker_next = True

    def event_packet(self, pt: int, event_ts: int, payload: bytes, marker: bool, samples: int = 160) -> bytes:
        """An RFC 4733 packet in place of this tick's audio: it carries its event's start timestamp,
        while the stream's own clock moves on as for audio (the audio after it stays in time)."""
        pkt = _HDR.pack(0x80, (0x80 if marker else 0) | pt, self.seq, event_ts & 0xFFFFFFFF, self.ssrc) + payload
        self.seq = (self.seq + 1) & 0xFFFF
        self.ts = (self.ts + samples) & 0xFFFFFFFF
        self.packets += 1
        self.octets += len(payload)
        return pkt

    def packet(self, payload: bytes, samples: int = 160) -> bytes:
        b1 = self.pt
        if self.marker_next:
            b1 |= 0x80
            self.marker_next = False
        pkt = _HDR.pack(0x80, b1, self.seq, self.ts, self.ssrc) + payload
        self.seq = (self.seq + 1) & 0xFFFF
        self.ts = (self.ts + samples) & 0xFFFFFFFF
        self.packets += 1
        self.octets += len(payload)
        return pkt


def telephone_event(event: int, end: bool, duration: int, volume: int = 10) -> bytes:
    """An RFC 4733 §2.3 payload: event code, E bit, volume (-dBm0), duration in timestamp units."""
    return struct.pack("!BBH", event, (0x80 if end else 0) | (volume & 0x3F), duration & 0xFFFF)


SEND_DIGIT_CHARS = EVENT_DIGITS + "w"  # 'w': a half-second pause (Twilio's SendDigits)


class DigitPlayer:
    """Digits to send, as one step per 20 ms tick of the caller-side clock.

    Each digit is a 100 ms event: packets carrying the growing duration, then the end packet three
    times (RFC 4733 §2.5.1.4), then 100 ms of audio before the next digit; ``w`` is 500 ms of audio.
    ``step()`` gives None for a tick that carries audio, else (payload, first): ``first`` marks the
    event's first packet (the sender stamps it with the marker bit and the event's start timestamp,
    which all its packets keep)."""

    DIGIT_TICKS = 5
    END_REPEATS = 3
    GAP_TICKS = 5
    PAUSE_TICKS = 25

    __slots__ = ("steps",)

    def __init__(self):
        self.steps: collections.deque = collections.deque()

    def add(self, digits: str) -> None:
        for ch in digits:
            if ch == "w":
                self.steps.extend([None] * self.PAUSE_TICKS)
                continue
            code = EVENT_DIGITS.index(ch.upper())
            for i in range(1, self.DIGIT_TICKS):
                self.steps.append((telephone_event(code, False, i * 160), i == 1))
            end = telephone_event(code, True, self.DIGIT_TICKS * 160)
            self.steps.extend([(end, False)] * self.END_REPEATS)
            self.steps.extend([None] * self.GAP_TICKS)

    def __bool__(self) -> bool:
        return bool(self.steps)

    def step(self) -> tuple[bytes, bool] | None:
        return self.steps.popleft() if self.steps else None


class DtmfReceiver:
    """RFC 4733: one digit per event, reported at the first packet of the event (lowest latency)."""

    __slots__ = ("_last_ts", "_last_end")

    def __init__(self):
        self._last_ts: int | None = None
        self._last_end = False

    def on_packet(self, ts: int, payload: bytes) -> str | None:
        if len(payload) < 4:
            return None
        event = payload[0]
        if event >= len(EVENT_DIGITS):
            return None
        if ts == self._last_ts:
            return None  # same event: continuation or retransmitted end packet
        self._last_ts = ts
        return EVENT_DIGITS[event]


_M_AUDIO = re.compile(r"^m=audio \d+ ", re.M)
_A_RTCP = re.compile(r"^a=rtcp:\d+(.*)$", re.M)


def rewrite_sdp_media(sdp: str, port: int, rtcp_port: int | None = None) -> str:
    """The SDP with its (first) audio m-line on ``port`` and any ``a=rtcp`` on ``rtcp_port``."""
    out, n = _M_AUDIO.subn(f"m=audio {port} ", sdp, count=1)
    if not n:
        return sdp
    rtcp_port = rtcp_port if rtcp_port is not None else port + 1
    return _A_RTCP.sub(lambda m: f"a=rtcp:{rtcp_port}{m.group(1)}", out)


# ---- RTCP -------------------------------------------------------------------------------------

def ntp_now() -> tuple[int, int]:
    t = time.time() + NTP_EPOCH_OFFSET
    sec = int(t)
    return sec & 0xFFFFFFFF, int((t - sec) * 4294967296.0) & 0xFFFFFFFF


def build_sr(ssrc: int, rtp_ts: int, packets: int, octets: int, block: tuple | None = None) -> bytes:
    """Sender report; ``block`` = (ssrc, fraction_lost 0-255, cumulative_lost, ext_max_seq, jitter,
    lsr, dlsr) about the stream we receive, or None."""
    sec, frac = ntp_now()
    rc = 1 if block else 0
    length = 6 + 6 * rc  # 32-bit words minus one
    pkt = struct.pack("!BBHIIIIII", 0x80 | rc, 200, length, ssrc, sec, frac, rtp_ts & 0xFFFFFFFF,
                      packets & 0xFFFFFFFF, octets & 0xFFFFFFFF)
    if block:
        b_ssrc, fl, cum, ext, jit, lsr, dlsr = block
        cum = max(-0x800000, min(0x7FFFFF, cum)) & 0xFFFFFF
        pkt += struct.pack("!IIIIII", b_ssrc, (fl << 24) | cum, ext & 0xFFFFFFFF, int(jit) & 0xFFFFFFFF,
                           lsr & 0xFFFFFFFF, dlsr & 0xFFFFFFFF)
    return pkt


def parse_rtcp(data: bytes, our_ssrc: int, arrival: float | None = None) -> dict:
    """Facts from a compound RTCP packet: {'sr_ntp_mid': int} when it has an SR (for our LSR),
    and 'fraction_lost', 'cumulative_lost', 'jitter_units', 'rtt_ms' from a report block about
    ``our_ssrc`` (rtt only when the peer echoed one of our SRs)."""
    out: dict = {}
    off = 0
    n = len(data)
    while off + 8 <= n:
        b0, pt, length = struct.unpack_from("!BBH", data, off)
        end = off + 4 * (length + 1)
        if b0 & 0xC0 != 0x80 or end > n:
            break
        rc = b0 & 0x1F
        blocks_at = None
        if pt == 200 and off + 28 <= end:  # SR
            sec, frac = struct.unpack_from("!II", data, off + 8)
            out["sr_ntp_mid"] = ((sec & 0xFFFF) << 16) | (frac >> 16)
            out["sr_arrival"] = arrival if arrival is not None else time.time()
            blocks_at = off + 28
        elif pt == 201:  # RR
            blocks_at = off + 8
        if blocks_at is not None:
            for i in range(rc):
                p = blocks_at + 24 * i
                if p + 24 > end:
                    break
                ssrc, lost_word, _ext, jitter, lsr, dlsr = struct.unpack_from("!IIIIII", data, p)
                if ssrc != our_ssrc:
                    continue
                cum = lost_word & 0xFFFFFF
                if cum & 0x800000:
                    cum -= 0x1000000
                out["fraction_lost"] = (lost_word >> 24) / 256.0
                out["cumulative_lost"] = cum
                out["jitter_units"] = jitter
                if lsr:
                    sec, frac = ntp_now()
                    now_mid = ((sec & 0xFFFF) << 16) | (frac >> 16)
                    rtt = (now_mid - lsr - dlsr) & 0xFFFFFFFF
                    if rtt < 0x80000000:
                        out["rtt_ms"] = rtt / 65536.0 * 1000.0
        off = end
    return out
