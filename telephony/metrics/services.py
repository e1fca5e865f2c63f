"""Writing call metrics: one Redis round trip per update, and per batch of events
(telephony.metrics.writes.Batch; the recorder counts the events it read together at once).

What each gateway event counts (see keys.py for where):

    initiated    attempted (tenant, campaign, platform, per tenant); the call becomes in flight
    leg_started  attempted on the carrier and its region (for a carrier an attempt is a leg, so a
                 carrier's ASR is its own answer rate); in flight on that carrier
    ringing      post-dial delay histogram (INVITE -> first 18x)
    answered     answered; setup latency histogram (INVITE -> 200 OK)
    leg_failed   failovers, when the next carrier is tried; the leg leaves its carrier's in-flight set
    completed    outcome "answered", call duration (for ACD); no longer in flight
    failed       its outcome; no longer in flight
(ended is the sum of the outcomes, failed the sum of all but "answered": read, not written.)
Per-second buckets get attempted and answered only (CPS, "now"); minute and hour buckets get all.
A final event may carry the call's media quality (jitter_ms, loss_percent, latency_ms, mos,
ai_response_ms).

Events are counted once: a replayed event (same call, type and leg) changes nothing.
"""
from __future__ import annotations

import json
import logging
import threading
import time

from core import keys
from core.redis_client import get_redis
from media.quality import estimated_mos
from telephony.gateway import events as gw

from . import buckets
from . import histograms as H
from .writes import Batch

log = logging.getLogger(__name__)

TENANT_DIMS = ("camp", "car", "reg")
PLATFORM_DIMS = ("car", "reg")  # campaign ids are per tenant: they mean nothing platform-wide
QUALITY_FIELDS = ("jitter_ms", "loss_percent", "latency_ms", "mos")
PER_SECOND = frozenset({"attempted", "answered"})  # what "now" (CPS) needs; the rest is per minute/hour


# ---- carrier regions, cached (the hot path must not query the database per event) ----------------
_regions: dict[str, str] = {}
_regions_loaded_at = 0.0
_regions_lock = threading.Lock()
REGIONS_REFRESH_S = 30.0


def carrier_region(carrier_id: str) -> str:
    global _regions, _regions_loaded_at
    if not carrier_id:
        return ""
    now = time.monotonic()
    if now - _regions_loaded_at > REGIONS_REFRESH_S or carrier_id not in _regions and now - _regions_loaded_at > 1:
        with _regions_lock:
            try:
                from telephony.models import Carrier

                _regions = {str(pk): region or "" for pk, region in Carrier.objects.values_list("pk", "region")}
            except Exception:  # no database here (a bench, a gateway-side caller): regions unknown
                log.debug("carrier regions not loaded", exc_info=True)
            _regions_loaded_at = now
    return _regions.get(carrier_id, "")


def _text(value) -> str:
    return "" if value is None else str(value)


def _number(value) -> float | None:
    try:
        return None if value is None or value == "" else float(value)
    except (TypeError, ValueError):
        return None


class _Update:
    """The increments of one event for one tenant, at the event's time, in every resolution."""

    def __init__(self, schema: str, ts: float, dims: dict[str, str], now: float, batch: Batch | None = None):
        self.schema, self.ts, self.dims = schema, ts, dims
        self.batch = Batch() if batch is None else batch
        self.buckets = [
            (res, start) for res in buckets.RESOLUTIONS
            if buckets.expires_at(start := buckets.bucket(ts, res), res) > now
        ]

    def _keys(self, with_seconds: bool):
        for res, start in self.buckets:
            if res == "s" and not with_seconds:
                continue
            tkey, pkey = keys.tenant_rollup(self.schema, res, start), keys.platform_rollup(res, start)
            when = buckets.expires_at(start, res)
            self.batch.expire_at(tkey, when)
            self.batch.expire_at(pkey, when)
            yield tkey, pkey

    def count(self, metric: str, amount: int = 1, dims=TENANT_DIMS, total: bool = True) -> None:
        add = self.batch.incr
        for tkey, pkey in self._keys(with_seconds=metric in PER_SECOND):
            if total:
                add(tkey, metric, amount)
                add(pkey, metric, amount)
                add(pkey, f"{metric}|t={self.schema}", amount)
            for dim in dims:
                value = self.dims.get(dim)
                if value:
                    add(tkey, f"{metric}|{dim}={value}", amount)
                    if dim in PLATFORM_DIMS:
                        add(pkey, f"{metric}|{dim}={value}", amount)

    def observe(self, hist: H.Histogram, value: float | None) -> None:
        if value is None:
            return
        i = hist.bucket(value)
        suffixes = [""] + [f"|{dim}={self.dims[dim]}" for dim in TENANT_DIMS if self.dims.get(dim)]
        for tkey, pkey in self._keys(with_seconds=False):
            for suffix in suffixes:
                on_platform = suffix == "" or suffix.split("=")[0][1:] in PLATFORM_DIMS
                for key in (tkey, pkey) if on_platform else (tkey,):
                    self.batch.incr(key, f"h.{hist.name}.{i}{suffix}")
                    self.batch.incr(key, f"h.{hist.name}.n{suffix}")
                    self.batch.incr_float(key, f"h.{hist.name}.sum{suffix}", value)
        self.total(f"h.{hist.name}.{i}")
        self.total(f"h.{hist.name}.n")
        self.batch.incr_float(keys.METRICS_TOTALS, f"{self.schema}|h.{hist.name}.sum", value)

    def total(self, *name: str, amount: int = 1) -> None:
        self.batch.incr(keys.METRICS_TOTALS, "|".join((self.schema, *name)), amount)

    def in_flight(self, sid: str, *, carrier_only: bool = False) -> None:
        self._active(sid, carrier_only, lambda key, member: self.batch.zadd(key, self.ts, member))

    def landed(self, sid: str, *, carrier_only: bool = False) -> None:
        self._active(sid, carrier_only, self.batch.zrem)

    def _active(self, sid: str, carrier_only: bool, op) -> None:
        member = f"{self.schema}:{sid}"
        if not carrier_only:
            op(keys.tenant_active(self.schema), sid)
            op(keys.PLATFORM_ACTIVE, member)
            if self.dims.get("camp"):
                op(keys.campaign_active(self.schema, self.dims["camp"]), sid)
        if self.dims.get("car"):
            op(keys.carrier_active(self.dims["car"]), member)
        if self.dims.get("reg"):
            op(keys.region_active(self.dims["reg"]), member)

    def quality(self, sid: str, report: dict) -> None:
        values = {name: _number(report.get(name)) for name in QUALITY_FIELDS}
        if values["mos"] is None and values["jitter_ms"] is not None and values["loss_percent"] is not None:
            values["mos"] = round(estimated_mos(values["latency_ms"] or 0.0, values["jitter_ms"],
                                                values["loss_percent"]), 3)
        self.observe(H.JITTER, values["jitter_ms"])
        self.observe(H.LOSS, values["loss_percent"])
        self.observe(H.MOS, values["mos"])
        for name, value in values.items():
            if value is not None:
                self.batch.hset(keys.call_quality(self.schema, sid), name, value, buckets.QUALITY_TTL)

    def changed(self) -> None:
        self.batch.bump(keys.tenant_version(self.schema))
        self.batch.bump(keys.PLATFORM_VERSION)


def _dims(event: dict, call_fields: dict) -> dict[str, str]:
    carrier = _text(event.get("carrier_id") or call_fields.get("carrier_id"))
    region = _text(call_fields.get("region")) if "region" in call_fields else carrier_region(carrier)
    return {"camp": _text(call_fields.get("campaign")), "car": carrier, "reg": region}


def _summary(event: dict, call_fields: dict, dims: dict, outcome: str) -> str:
    def field(name, *alternatives):
        for source, key in ((call_fields, name), *((event, a) for a in alternatives), (event, name)):
            if source.get(key) not in (None, ""):
                return source[key]
        return None

    return json.dumps({
        "sid": field("sid", "call_id"), "ended_at": float(event["ts"]), "outcome": outcome,
        "direction": field("direction"), "from": field("from"), "to": field("to"),
        "reason": field("reason"), "sip_code": field("sip_code"),
        "carrier": dims["car"] or None, "region": dims["reg"] or None, "campaign": dims["camp"] or None,
        "duration_s": _number(field("duration_s", "duration")), "setup_ms": _number(field("setup_ms")),
        "pdd_ms": _number(field("post_dial_delay_ms", "pdd_ms")),
        "ai_response_ms": _number(event.get("ai_response_ms")),
    }, separators=(",", ":"))


def _apply_event(u: _Update, kind: str, sid: str, event: dict, call_fields: dict) -> None:
    if kind == gw.INITIATED:
        u.count("attempted", dims=("camp",))
        u.total("attempted")
        u.in_flight(sid)
    elif kind == gw.LEG_STARTED:
        u.count("attempted", dims=PLATFORM_DIMS, total=False)
        u.total("legs", u.dims["car"])
        u.in_flight(sid, carrier_only=True)
    elif kind == gw.RINGING:
        u.observe(H.PDD, _number(event.get("pdd_ms")))
    elif kind == gw.ANSWERED:
        u.count("answered")
        u.total("answered", u.dims["car"])
        u.observe(H.SETUP, _number(event.get("setup_ms", call_fields.get("setup_ms"))))
    elif kind == gw.LEG_FAILED:
        u.landed(sid, carrier_only=True)
        if event.get("failover"):
            u.count("failovers")
            u.total("failovers", u.dims["car"])
    elif kind == gw.AMD:
        u.count(f"a.{_text(event.get('answered_by')) or 'unknown'}")  # the human/machine split
        u.observe(H.AMD, _number(event.get("amd_ms")))
    elif kind in gw.FINAL_TYPES:
        outcome = event.get("outcome") or (gw.OUTCOME_ANSWERED if kind == gw.COMPLETED else "failed")
        u.count(f"o.{outcome}")  # ended = the sum of outcomes, failed = all but "answered"
        u.total("ended", u.dims["car"], outcome)
        duration = _number(event.get("duration_s", event.get("duration", call_fields.get("duration_s"))))
        if kind == gw.COMPLETED and duration is not None:
            u.count("dur_ms", round(duration * 1000))
            u.count("dur_n")
        u.landed(sid)
        if any(event.get(name) is not None for name in QUALITY_FIELDS):
            u.quality(sid, event)
        ai_ms = _number(event.get("ai_response_ms"))
        u.observe(H.AI_RESPONSE, ai_ms)
        u.batch.push_capped(keys.latest_calls(u.schema), _summary(event, call_fields, u.dims, outcome),
                            buckets.LATEST_CALLS)
    else:
        return
    u.changed()


def record_call_event(tenant_schema: str, event: dict, call_fields: dict | None = None) -> bool:
    """Count one gateway event of one of the tenant's calls (see record_call_events)."""
    return record_call_events(tenant_schema, [(event, call_fields)])[0]


def record_call_events(tenant_schema: str, items: list[tuple[dict, dict | None]]) -> list[bool]:
    """Count gateway events of the tenant's calls, (event, call_fields) in order, in one Redis round
    trip (two when some had been counted already). Per event, False when it had been counted already
    (a redelivery, or twice in ``items``) or is of no interest to metrics.

    call_fields: what the call record knows beyond the event: sid, campaign, carrier_id, region,
    direction, from, to, setup_ms, post_dial_delay_ms, duration_s (all optional; see metrics_fields).
    """
    now = time.time()
    todo: dict[str, tuple[int, str, str, dict, dict]] = {}  # guard -> (index, kind, sid, event, call_fields)
    for index, (event, call_fields) in enumerate(items):
        call_fields = call_fields or {}
        kind = event.get("type")
        sid = _text(call_fields.get("sid") or event.get("call_id"))
        if kind in gw.EVENT_TYPES and sid and tenant_schema:
            guard = keys.seen(tenant_schema, sid, f"{kind}:{event.get('leg', '')}")
            todo.setdefault(guard, (index, kind, sid, event, call_fields))
    while todo:
        batch = Batch()
        for _, kind, sid, event, call_fields in todo.values():
            ts = _number(event.get("ts")) or now
            _apply_event(_Update(tenant_schema, ts, _dims(event, call_fields), now, batch), kind, sid,
                         dict(event, ts=ts), call_fields)
        seen = batch.apply(get_redis(), list(todo), buckets.SEEN_TTL)
        if not seen:
            break
        for guard in seen:
            del todo[guard]
    counted = [False] * len(items)
    for index, *_ in todo.values():
        counted[index] = True
    return counted


def record_abandonment(tenant_schema: str, sid: str, call_fields: dict | None = None,
                       ts: float | None = None) -> bool:
    """An answered call whose agent was not streaming in time (Call.abandoned; fed by the recorder)."""
    call_fields = call_fields or {}
    u = _Update(tenant_schema, ts or time.time(), _dims({}, call_fields), time.time())
    u.count("abandoned")
    u.total("abandoned")
    u.changed()
    return not u.batch.apply(get_redis(), [keys.seen(tenant_schema, sid, "abandoned")], buckets.SEEN_TTL)


def metrics_fields(call) -> dict:
    """call_fields for record_call_event from a telephony.calls.models.Call (no extra query)."""
    campaign = getattr(call, "campaign_id", None) or (call.custom_parameters or {}).get("campaign_id")
    return {
        "sid": call.sid, "direction": call.direction, "from": call.from_number, "to": call.to_number,
        "carrier_id": call.carrier_id, "campaign": campaign, "setup_ms": call.setup_ms,
        "post_dial_delay_ms": call.post_dial_delay_ms, "duration_s": call.duration_s,
    }
