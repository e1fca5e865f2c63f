"""Reading call metrics for dashboards: series over a window, breakdowns, what is happening now.

Series are read with one pipelined round trip per call to Redis (plus the carrier list from the
public schema for the platform view, cached briefly); the dashboards' percentiles come from the call
records (telephony.metrics.percentiles), one query per read.
"""
from __future__ import annotations

import datetime as dt
import json
import time
from collections import defaultdict

from core import keys
from core.redis_client import get_redis
from telephony.gateway import client as gateway_client

from . import buckets, percentiles
from . import histograms as H

# name -> (resolution, number of buckets)
WINDOWS = {"1m": ("s", 60), "15m": ("m", 15), "1h": ("m", 60), "6h": ("m", 360), "24h": ("h", 24),
           "7d": ("h", 168), "30d": ("h", 720)}
DEFAULT_WINDOW = "1h"
CPS_SECONDS = 5  # "calls per second now" is the mean over the last complete seconds
COUNTERS = ("attempted", "answered", "failed", "ended", "failovers", "abandoned")
DIM_NAMES = {"car": "carrier", "reg": "region", "camp": "campaign", "t": "tenant"}


def _str(value) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _num(value) -> float:
    value = float(value)
    return int(value) if value.is_integer() else value


def _bucket_starts(res: str, count: int, now: float) -> list[int]:
    step = buckets.RESOLUTIONS[res]
    last = buckets.bucket(now, res)
    return [last - step * i for i in range(count - 1, -1, -1)]


def _ended(fields: dict, failed_only: bool, suffix: str = "") -> float:
    """Calls ended (or failed: ended but not answered) = the sum of their outcomes."""
    total = 0
    for field, value in fields.items():
        if field.startswith("o.") and (field.endswith(suffix) if suffix else "|" not in field):
            if not (failed_only and field.split("|")[0] == "o.answered"):
                total += value
    return total


class _Rollup:
    """Hash fields of a scope summed over a window, plus per-bucket values for the series."""

    def __init__(self, hashes: list[dict]):
        self.buckets = [{_str(k): _num(v) for k, v in h.items()} for h in hashes]
        self.sums: dict[str, float] = defaultdict(float)
        for h in self.buckets:
            for field, value in h.items():
                self.sums[field] += value

    def series(self, field: str) -> list[float]:
        if field in ("ended", "failed"):
            return [_ended(h, field == "failed") for h in self.buckets]
        return [h.get(field, 0) for h in self.buckets]

    def get(self, field: str) -> float:
        name, _, dim = field.partition("|")
        if name in ("ended", "failed"):
            return _ended(self.sums, name == "failed", f"|{dim}" if dim else "")
        return self.sums.get(field, 0)

    def outcomes(self) -> dict[str, list[float]]:
        names = sorted({f[2:] for f in self.sums if f.startswith("o.") and "|" not in f})
        return {name: self.series(f"o.{name}") for name in names}

    def histogram(self, hist: H.Histogram, suffix: str = "") -> dict:
        counts = [int(self.get(f"h.{hist.name}.{i}{suffix}")) for i in range(hist.size)]
        return H.summary(hist, counts, self.get(f"h.{hist.name}.sum{suffix}"))

    def dim_values(self, dim: str) -> list[str]:
        marker = f"|{dim}="
        return sorted({f.split(marker, 1)[1] for f in self.sums if marker in f})

    def figures(self, suffix: str = "", seconds: int = 0) -> dict:
        """Counters, ASR, ACD (and CPS over the window) of the scope or of one breakdown."""
        out = {name: int(self.get(name + suffix)) for name in COUNTERS}
        attempted, ended = out["attempted"], out["ended"]
        dur_n = self.get("dur_n" + suffix)
        # ASR over finished attempts only: a call still ringing is neither a success nor a failure yet
        out["asr"] = round(self.get("o.answered" + suffix) / ended, 4) if ended else None
        out["acd_s"] = round(self.get("dur_ms" + suffix) / dur_n / 1000, 3) if dur_n else None
        out["outcomes"] = {
            f[2:].split("|")[0]: int(v) for f, v in self.sums.items()
            if f.startswith("o.") and (f.endswith(suffix) if suffix else "|" not in f)
        }
        out["answered_by"] = {  # answering-machine detection: human, machine_end_beep, fax…
            f[2:].split("|")[0]: int(v) for f, v in self.sums.items()
            if f.startswith("a.") and (f.endswith(suffix) if suffix else "|" not in f)
        }
        if seconds:
            out["cps"] = round(attempted / seconds, 3)
        return out

    def breakdown(self, dim: str, seconds: int) -> dict[str, dict]:
        out = {}
        for value in self.dim_values(dim):
            suffix = f"|{dim}={value}"
            figures = self.figures(suffix, seconds)
            figures["setup_ms_p50"] = self.histogram(H.SETUP, suffix)["p50"]
            figures["mos_p50"] = self.histogram(H.MOS, suffix)["p50"]
            figures["ai_response_ms_p50"] = self.histogram(H.AI_RESPONSE, suffix)["p50"]
            out[value] = figures
        return out


def _window(window: str) -> tuple[str, int]:
    if window not in WINDOWS:
        raise ValueError(f"unknown window {window!r}: one of {', '.join(WINDOWS)}")
    return WINDOWS[window]


def _series(rollup: _Rollup, starts: list[int], res: str, dims: tuple[str, ...], window: str) -> dict:
    seconds = buckets.RESOLUTIONS[res] * len(starts)
    return {
        "window": window,
        "step_s": buckets.RESOLUTIONS[res],
        "t": starts,
        **{name: rollup.series(name) for name in COUNTERS},
        "outcomes": rollup.outcomes(),
        "totals": rollup.figures(seconds=seconds),
        "histograms": {name: rollup.histogram(hist) for name, hist in H.HISTOGRAMS.items()},
        "by": {DIM_NAMES[dim]: rollup.breakdown(dim, seconds) for dim in dims},
    }


def _read(pipe_fill, client=None):
    client = client or get_redis()
    pipe = client.pipeline(transaction=False)
    pipe_fill(pipe)
    return pipe.execute()


def _prune_and_count(pipe, key: str, now: float) -> None:
    pipe.zremrangebyscore(key, "-inf", now - buckets.MAX_CALL_AGE)
    pipe.zcard(key)


def _cps(second_hashes: list[dict], field: str = "attempted") -> float:
    # the current second is still filling: CPS is the mean of the CPS_SECONDS before it
    done = second_hashes[-CPS_SECONDS - 1:-1]
    return round(sum(h.get(field, 0) for h in done) / CPS_SECONDS, 3)


# ---- tenant -------------------------------------------------------------------------------------
def tenant_series(schema: str, window: str = DEFAULT_WINDOW, now: float | None = None) -> dict:
    """One tenant's counters over time, totals (ASR, ACD, CPS), histograms with percentiles, and
    breakdowns by carrier, region and campaign, over the window."""
    res, count = _window(window)
    now = now or time.time()
    starts = _bucket_starts(res, count, now)
    hashes = _read(lambda p: [p.hgetall(keys.tenant_rollup(schema, res, s)) for s in starts])
    return _series(_Rollup(hashes), starts, res, ("car", "reg", "camp"), window)


def latest_calls(schema: str, limit: int = 20) -> list[dict]:
    """The tenant's latest ended calls, newest first, with their quality where it was reported."""
    client = get_redis()
    calls = [json.loads(raw) for raw in client.lrange(keys.latest_calls(schema), 0, limit - 1)]
    qualities = _read(lambda p: [p.hgetall(keys.call_quality(schema, c["sid"])) for c in calls], client)
    for call, quality in zip(calls, qualities, strict=True):
        call.update({_str(k): _num(v) for k, v in quality.items()})
    return calls


def tenant_now(schema: str, now: float | None = None) -> dict:
    """Calls in flight, CPS, and attempts/answers per second over the last minute."""
    now = now or time.time()
    starts = _bucket_starts("s", 60, now)

    def fill(p):
        _prune_and_count(p, keys.tenant_active(schema), now)
        for s in starts:
            p.hgetall(keys.tenant_rollup(schema, "s", s))

    replies = _read(fill)
    seconds = [{_str(k): _num(v) for k, v in h.items()} for h in replies[2:]]
    return {
        "ts": now,
        "active": replies[1],
        "cps": _cps(seconds),
        "t": starts,
        "attempted": [h.get("attempted", 0) for h in seconds],
        "answered": [h.get("answered", 0) for h in seconds],
    }


def tenant_version(schema: str) -> int:
    return int(get_redis().get(keys.tenant_version(schema)) or 0)


def _add_active(breakdown: dict[str, dict], key_for) -> None:
    """Calls in flight for each value of a breakdown (campaign, region)."""
    values, now = sorted(breakdown), time.time()
    replies = _read(lambda p: [_prune_and_count(p, key_for(v), now) for v in values])
    for i, value in enumerate(values):
        breakdown[value]["active"] = replies[2 * i + 1]


# Latency per stage of a call, each from its own column of the call records.
STAGES = [("queued → INVITE", "queue_ms"), ("INVITE → ringing", "pdd_ms"), ("INVITE → answer", "setup_ms"),
          ("answer → agent streaming", "ai_connect_ms"), ("caller stops → agent audio", "ai_response_ms")]


def _window_start(window: str, now: float) -> dt.datetime:
    res, count = _window(window)
    return dt.datetime.fromtimestamp(now - buckets.RESOLUTIONS[res] * count, dt.UTC)


def _with_exact_percentiles(series: dict, schemas: list[str], window: str, now: float, by: tuple[str, ...]) -> None:
    """p50/p90/p99 of the series' histograms and breakdowns, from the calls (percentile_cont)."""
    exact = percentiles.call_percentiles(schemas, _window_start(window, now), by)
    for name, figures in exact["all"].items():
        if name in series["histograms"]:
            series["histograms"][name].update(figures, exact=True)
    series["conversations"] = exact["all"]["conversations"]
    series["stages"] = [{"stage": label, **exact["all"][name]} for label, name in STAGES]
    for dim in by:
        for value, figures in series["by"].get(dim, {}).items():
            scope = exact[dim].get(value, {})
            for name in ("setup_ms", "mos", "ai_response_ms"):
                figures[f"{name}_p50"] = scope.get(name, {}).get("p50")


def tenant_dashboard(schema: str, window: str = DEFAULT_WINDOW) -> dict:
    """Everything the tenant dashboard draws, in one document."""
    now = time.time()
    series = tenant_series(schema, window, now)
    _with_exact_percentiles(series, [schema], window, now, ("carrier", "campaign"))
    _add_active(series["by"]["campaign"], lambda campaign: keys.campaign_active(schema, campaign))
    calls = latest_calls(schema)
    names = carrier_names({call.get("carrier") for call in calls})
    for call in calls:
        call["carrier_name"] = names.get(str(call.get("carrier")), "")
    capacity, active = gateway_client.pool_capacity(get_redis())
    waiting, oldest_s = originate_queue(now).get(schema, (0, 0.0))
    return {"tenant": schema, "now": tenant_now(schema), "series": series, "latest_calls": calls,
            "pool": {"capacity": capacity, "active": active, "waiting": waiting, "oldest_wait_s": round(oldest_s, 1)}}


# ---- platform -----------------------------------------------------------------------------------
_carriers_cache: tuple[float, list[dict]] = (0.0, [])
CARRIERS_CACHE_S = 2.0


def carriers(max_age: float = CARRIERS_CACHE_S) -> list[dict]:
    """The carrier inventory with health (public schema), at most max_age seconds old."""
    global _carriers_cache
    loaded_at, rows = _carriers_cache
    if time.monotonic() - loaded_at >= max_age:
        from django.db.models import BooleanField, ExpressionWrapper, Q

        from telephony.models import Carrier

        checked = ExpressionWrapper(Q(health_checked_at__isnull=False), output_field=BooleanField())
        rows = list(Carrier.objects.annotate(checked=checked).values(
            "id", "name", "region", "enabled", "healthy", "checked", "health_rtt_ms", "max_cps", "max_concurrent"))
        _carriers_cache = (time.monotonic(), rows)
    return rows


def carrier_names(ids) -> dict[str, str]:
    """Carrier id (as text) -> name, for the ids given (calls carry ids; people read names)."""
    from telephony.models import Carrier

    ids = [int(i) for i in ids if str(i or "").isdigit()]
    return {str(pk): name for pk, name in Carrier.objects.filter(pk__in=ids).values_list("pk", "name")} if ids else {}


def originate_queue(now: float | None = None) -> dict[str, tuple[int, float]]:
    """Calls waiting for a gateway or a cap, by tenant: (how many, seconds the oldest has waited). Read at
    scrape time from the tenants' queues (a burst shows as one tenant's depth and wait)."""
    now = time.time() if now is None else now
    return {tenant or "none": (count, max(0.0, now - oldest))
            for tenant, (count, oldest) in gateway_client.waiting_calls(get_redis()).items()}


def gateway_pool() -> list[dict]:
    """Every gateway process: alive, capacity, active calls, pid, node, restarts (gw:* keys)."""
    return gateway_client.pool_status(get_redis())


def platform_series(window: str = DEFAULT_WINDOW, now: float | None = None) -> dict:
    """Platform-wide counters and histograms over the window with breakdowns by carrier, region and
    tenant; each carrier's health, CPS, concurrency and failovers; per-region quality; the gateway
    pool."""
    res, count = _window(window)
    now = now or time.time()
    starts = _bucket_starts(res, count, now)
    second_starts = _bucket_starts("s", CPS_SECONDS + 1, now)
    inventory = carriers()
    carrier_ids = sorted({str(c["id"]) for c in inventory})

    def fill(p):
        for s in starts:
            p.hgetall(keys.platform_rollup(res, s))
        for s in second_starts:
            p.hgetall(keys.platform_rollup("s", s))
        _prune_and_count(p, keys.PLATFORM_ACTIVE, now)
        for carrier_id in carrier_ids:
            _prune_and_count(p, keys.carrier_active(carrier_id), now)

    replies = _read(fill)
    rollup = _Rollup(replies[:count])
    seconds = [{_str(k): _num(v) for k, v in h.items()} for h in replies[count:count + len(second_starts)]]
    rest = replies[count + len(second_starts):]
    active = rest[1]
    concurrency = {cid: rest[3 + 2 * i] for i, cid in enumerate(carrier_ids)}
    series = _series(rollup, starts, res, ("car", "reg", "t"), window)
    by_carrier = series["by"]["carrier"]
    series["carriers"] = [
        {
            **c,
            "up": bool(c["enabled"] and c["healthy"] and c["checked"]),  # never checked: not known up
            "cps": _cps(seconds, f"attempted|car={c['id']}"),
            "concurrency": concurrency.get(str(c["id"]), 0),
            "failovers": by_carrier.get(str(c["id"]), {}).get("failovers", 0),
            "asr": by_carrier.get(str(c["id"]), {}).get("asr"),
        }
        for c in inventory
    ]
    series["regions"] = {
        region: {
            "mos": rollup.histogram(H.MOS, f"|reg={region}"),
            "jitter_ms": rollup.histogram(H.JITTER, f"|reg={region}"),
            "loss_percent": rollup.histogram(H.LOSS, f"|reg={region}"),
            "setup_ms": rollup.histogram(H.SETUP, f"|reg={region}"),
            "ai_response_ms": rollup.histogram(H.AI_RESPONSE, f"|reg={region}"),
        }
        for region in rollup.dim_values("reg")
    }
    _add_active(series["by"]["region"], keys.region_active)
    series["now"] = {"ts": now, "active": active, "cps": _cps(seconds)}
    series["gateways"] = gateway_pool()
    series["waiting"] = [{"tenant": tenant, "calls": count, "oldest_wait_s": round(oldest, 1)}
                         for tenant, (count, oldest) in sorted(originate_queue(now).items())]
    return series


def platform_dashboard(window: str = DEFAULT_WINDOW) -> dict:
    """Everything the platform dashboard draws: platform_series with percentiles from the calls of
    every tenant."""
    from tenants.selectors import tenant_schemas

    now = time.time()
    series = platform_series(window, now)
    _with_exact_percentiles(series, tenant_schemas(), window, now, ("carrier", "tenant"))
    return series


def platform_version() -> int:
    return int(get_redis().get(keys.PLATFORM_VERSION) or 0)


# ---- Prometheus ---------------------------------------------------------------------------------
def totals() -> dict[tuple[str, ...], float]:
    """The monotonic totals: (tenant, metric, label values...) -> value."""
    return {tuple(_str(k).split("|")): _num(v) for k, v in get_redis().hgetall(keys.METRICS_TOTALS).items()}


def active_by_tenant(schemas: list[str]) -> dict[str, int]:
    now = time.time()

    def fill(p):
        for schema in schemas:
            _prune_and_count(p, keys.tenant_active(schema), now)

    replies = _read(fill)
    return {schema: replies[2 * i + 1] for i, schema in enumerate(schemas)}
