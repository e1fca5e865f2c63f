"""Call quality from RTP: interarrival jitter (RFC 3550 §6.4.1, A.8), packet loss (RFC 3550 A.3) and an
estimated MOS (simplified ITU-T G.107 E-model). No Django: the media path calls this per packet.

Per packet the work is a few float operations on slotted objects; nothing allocates.

    stream = RtpQuality()                  # 8 kHz (G.711) by default
    stream.on_packet(seq, rtp_timestamp, arrival_s)   # for each received packet, arrival in seconds
    stream.report(latency_ms=120)          # {"jitter_ms", "loss_percent", "lost", "expected", "mos"}
"""
from __future__ import annotations

SEQ_MOD = 1 << 16
TS_MOD = 1 << 32
DEFAULT_CLOCK_RATE = 8000  # G.711 mu-law / A-law: 8000 timestamp units per second
MAX_DROPOUT = 3000  # RFC 3550 A.1: a forward jump of at most this many is in-order (with losses)


class JitterEstimator:
    """RFC 3550 interarrival jitter, computed incrementally.

    For packets i-1 and i with RTP timestamps S and arrival times R (both in timestamp units),
    D = (R_i - R_{i-1}) - (S_i - S_{i-1}) and J += (|D| - J) / 16.
    """

    __slots__ = ("clock_rate", "jitter", "_prev_arrival", "_prev_ts")

    def __init__(self, clock_rate: int = DEFAULT_CLOCK_RATE):
        self.clock_rate = clock_rate
        self.jitter = 0.0  # timestamp units
        self._prev_arrival: float | None = None
        self._prev_ts = 0

    def add(self, arrival_s: float, rtp_ts: int) -> None:
        arrival = arrival_s * self.clock_rate
        if self._prev_arrival is not None:
            ts_delta = (rtp_ts - self._prev_ts) % TS_MOD  # the 32-bit timestamp wraps too
            if ts_delta >= TS_MOD // 2:
                ts_delta -= TS_MOD
            d = (arrival - self._prev_arrival) - ts_delta
            self.jitter += (abs(d) - self.jitter) / 16.0
        self._prev_arrival = arrival
        self._prev_ts = rtp_ts

    @property
    def jitter_ms(self) -> float:
        return self.jitter * 1000.0 / self.clock_rate


class LossCounter:
    """Packets lost = expected - received, expected from the extended highest sequence number.

    expected = extended_max - base_seq + 1, where extended_max counts the 16-bit wraps (cycles).
    A packet behind the highest one (reordered or duplicate) counts as received and moves nothing,
    so a duplicate can make `lost` negative, as in RFC 3550; loss_fraction clamps at 0.
    """

    __slots__ = ("base_seq", "max_seq", "cycles", "received")

    def __init__(self) -> None:
        self.base_seq: int | None = None
        self.max_seq = 0
        self.cycles = 0
        self.received = 0

    def add(self, seq: int) -> None:
        seq &= 0xFFFF
        self.received += 1
        if self.base_seq is None:
            self.base_seq = self.max_seq = seq
            return
        forward = (seq - self.max_seq) % SEQ_MOD
        if 0 < forward < MAX_DROPOUT:
            if seq < self.max_seq:
                self.cycles += SEQ_MOD
            self.max_seq = seq

    @property
    def extended_max(self) -> int:
        return self.cycles + self.max_seq

    @property
    def expected(self) -> int:
        return 0 if self.base_seq is None else self.extended_max - self.base_seq + 1

    @property
    def lost(self) -> int:
        return self.expected - self.received

    @property
    def loss_fraction(self) -> float:
        expected = self.expected
        return max(0, self.lost) / expected if expected else 0.0


def effective_latency_ms(latency_ms: float, jitter_ms: float) -> float:
    """Latency as the E-model sees it: one-way latency + 2 x jitter (jitter buffer) + 10 ms (codec)."""
    return latency_ms + 2.0 * jitter_ms + 10.0


def r_factor(latency_ms: float, jitter_ms: float, loss_percent: float) -> float:
    """Simplified E-model transmission rating.

        eff = latency + 2 * jitter + 10
        R = 93.2 - (eff / 40 if eff < 160 else (eff - 120) / 10) - 2.5 * loss_percent
    """
    eff = effective_latency_ms(latency_ms, jitter_ms)
    delay_impairment = eff / 40.0 if eff < 160 else (eff - 120.0) / 10.0
    return 93.2 - delay_impairment - 2.5 * loss_percent


def mos_from_r(r: float) -> float:
    """MOS = 1 + 0.035 R + 7e-6 R (R - 60) (100 - R), clamped to [1, 4.5].

    The cubic is only meaningful for 0 <= R <= 100 (below 0 it turns back up), so R outside that
    range maps straight to the ends of the scale.
    """
    if r <= 0:
        return 1.0
    if r >= 100:
        return 4.5
    mos = 1.0 + 0.035 * r + 7e-6 * r * (r - 60.0) * (100.0 - r)
    return min(4.5, max(1.0, mos))


def estimated_mos(latency_ms: float, jitter_ms: float, loss_percent: float) -> float:
    """Estimated MOS of a call leg from one-way latency (ms), jitter (ms) and packet loss (percent)."""
    return mos_from_r(r_factor(latency_ms, jitter_ms, loss_percent))


class RtpQuality:
    """Jitter and loss of one received RTP stream; `report` adds the estimated MOS."""

    __slots__ = ("jitter", "loss")

    def __init__(self, clock_rate: int = DEFAULT_CLOCK_RATE):
        self.jitter = JitterEstimator(clock_rate)
        self.loss = LossCounter()

    def on_packet(self, seq: int, rtp_ts: int, arrival_s: float) -> None:
        self.loss.add(seq)
        self.jitter.add(arrival_s, rtp_ts)

    def report(self, latency_ms: float = 0.0) -> dict:
        jitter_ms = self.jitter.jitter_ms
        loss_percent = self.loss.loss_fraction * 100.0
        return {
            "jitter_ms": round(jitter_ms, 3),
            "loss_percent": round(loss_percent, 3),
            "lost": max(0, self.loss.lost),
            "expected": self.loss.expected,
            "latency_ms": latency_ms,
            "mos": round(estimated_mos(latency_ms, jitter_ms, loss_percent), 3),
        }


# ---- signalling latencies (architecture: "setup latency") ---------------------------------------
def post_dial_delay_ms(invite_sent_s: float, first_provisional_s: float | None) -> float | None:
    """INVITE sent to the first provisional (180/183) response, in ms; None if none came."""
    if first_provisional_s is None:
        return None
    return max(0.0, (first_provisional_s - invite_sent_s) * 1000.0)


def setup_latency_ms(invite_sent_s: float, answered_s: float | None) -> float | None:
    """INVITE sent to 200 OK, in ms; None if the call was not answered."""
    if answered_s is None:
        return None
    return max(0.0, (answered_s - invite_sent_s) * 1000.0)
