"""Fixed-bucket latency histogram (0.1 ms buckets up to 100 ms, one overflow bucket): O(1) per sample,
no allocation, percentiles at the end of a call. Used for the media bridge latencies."""
from __future__ import annotations

__all__ = ["LatencyHist"]

_BUCKETS = 1000  # 0.1 ms each: 0 .. 100 ms; index _BUCKETS = overflow


class LatencyHist:
    __slots__ = ("counts", "n", "total", "max")

    def __init__(self) -> None:
        self.counts = [0] * (_BUCKETS + 1)
        self.n = 0
        self.total = 0.0
        self.max = 0.0

    def add(self, seconds: float) -> None:
        i = int(seconds * 10000.0)
        if i < 0:
            i = 0
        elif i > _BUCKETS:
            i = _BUCKETS
        self.counts[i] += 1
        self.n += 1
        self.total += seconds
        if seconds > self.max:
            self.max = seconds

    def merge(self, other: LatencyHist) -> None:
        for i, c in enumerate(other.counts):
            if c:
                self.counts[i] += c
        self.n += other.n
        self.total += other.total
        self.max = max(self.max, other.max)

    def percentile_ms(self, p: float) -> float | None:
        """Upper edge of the bucket holding the p-th percentile (ms); None without samples."""
        if not self.n:
            return None
        rank = max(1, int(round(p / 100.0 * self.n + 0.4999)))
        seen = 0
        for i, c in enumerate(self.counts):
            seen += c
            if seen >= rank:
                return round(self.max * 1000.0, 2) if i == _BUCKETS else round((i + 1) / 10.0, 2)
        return round(self.max * 1000.0, 2)

    def summary(self, prefix: str) -> dict:
        if not self.n:
            return {}
        return {f"{prefix}_p50_ms": self.percentile_ms(50), f"{prefix}_p99_ms": self.percentile_ms(99),
                f"{prefix}_max_ms": round(self.max * 1000.0, 2), f"{prefix}_frames": self.n}
