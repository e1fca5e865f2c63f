"""Fixed histogram buckets for the distributions we keep, and percentiles estimated from them.

Buckets are cumulative-free counts per "less than or equal" bound, the last one open (+Inf), the
way Prometheus histograms are: any process adds to them with HINCRBY, and sums over time windows
are plain additions. Percentiles are interpolated inside the bucket holding the rank (as
Prometheus' histogram_quantile does), so they are estimates good to a bucket's width.
"""
from __future__ import annotations

from bisect import bisect_left
from dataclasses import dataclass


@dataclass(frozen=True)
class Histogram:
    name: str
    unit: str
    bounds: tuple[float, ...]  # upper bounds ("le"); a last, open bucket follows

    def bucket(self, value: float) -> int:
        return bisect_left(self.bounds, value)

    @property
    def size(self) -> int:
        return len(self.bounds) + 1


SETUP = Histogram("setup_ms", "ms", (100, 200, 300, 500, 750, 1000, 1500, 2000, 3000, 5000, 8000, 15000))
PDD = Histogram("pdd_ms", "ms", (100, 200, 300, 500, 750, 1000, 1500, 2000, 3000, 5000, 8000, 15000))
JITTER = Histogram("jitter_ms", "ms", (1, 2, 5, 10, 20, 30, 50, 100, 200))
LOSS = Histogram("loss_percent", "%", (0.1, 0.5, 1, 2, 3, 5, 10, 20))
MOS = Histogram("mos", "MOS", (1.5, 2.0, 2.5, 3.0, 3.5, 3.8, 4.0, 4.2, 4.3, 4.4, 4.5))
AI_RESPONSE = Histogram("ai_response_ms", "ms", (100, 200, 300, 500, 750, 1000, 1500, 2000, 3000, 5000))

# answer -> answering-machine detection decision (media/amd.py)
AMD = Histogram("amd_ms", "ms", (1000, 1500, 2000, 2500, 3000, 4000, 5000, 7500, 10000, 20000))
HISTOGRAMS = {h.name: h for h in (SETUP, PDD, JITTER, LOSS, MOS, AI_RESPONSE, AMD)}


def percentile(hist: Histogram, counts: list[int], q: float) -> float | None:
    """Estimated q-quantile (0..1) from bucket counts; None without observations."""
    total = sum(counts)
    if total <= 0:
        return None
    rank = q * total
    seen = 0
    for i, count in enumerate(counts):
        if count and seen + count >= rank:
            if i >= len(hist.bounds):  # open bucket: all we know is "above the last bound"
                return float(hist.bounds[-1])
            lower = hist.bounds[i - 1] if i else 0.0
            upper = hist.bounds[i]
            return lower + (upper - lower) * max(0.0, rank - seen) / count
        seen += count
    return float(hist.bounds[-1])


def summary(hist: Histogram, counts: list[int], total: float) -> dict:
    """What dashboards draw: bounds, counts, count, mean and p50/p90/p99."""
    n = sum(counts)
    return {
        "unit": hist.unit,
        "le": list(hist.bounds) + ["+Inf"],
        "counts": counts,
        "count": n,
        "mean": round(total / n, 3) if n else None,
        "p50": _round(percentile(hist, counts, 0.50)),
        "p90": _round(percentile(hist, counts, 0.90)),
        "p99": _round(percentile(hist, counts, 0.99)),
    }


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)
