"""The time buckets the call metrics roll up into, and what their Redis keys (core.keys) hold.

Rollups (hashes, one per scope and time bucket; the bucket is the epoch second it starts at):
    m:t:{schema}:{res}:{bucket}   one tenant
    m:p:{res}:{bucket}            the whole platform
  res is "s" (1 s, kept SECOND_TTL), "m" (1 min, 48 h) or "h" (1 h, 30 days); each key expires
  a fixed time after its bucket ends (EXPIREAT), so a replayed event never extends a key's life.

  Hash fields are `{metric}` for the scope's total and `{metric}|{dim}={value}` for a breakdown:
  dims car (carrier id), reg (carrier region), camp (campaign) and, on platform hashes, t (tenant).
  Histograms are `h.{name}.{bucket index}`, `h.{name}.sum`, `h.{name}.n` (same suffixes).

Totals for Prometheus (never expire; monotonic counters):
    m:total (METRICS_TOTALS)      field `{schema}|{metric}|{label values…}`
In-flight calls (sorted sets, member -> start time; stale members pruned when read):
    m:active:t:{schema}, m:active:camp:{schema}:{campaign}, m:active:car:{id}, m:active:reg:{region},
    m:active:p
The latest ended calls, and each call's quality:
    m:latest:{schema} (list of JSON, newest first), m:q:{schema}:{call sid} (hash)
Change counters that dashboards poll: m:ver:{schema}, m:ver:p.
Idempotency guards: m:seen:{schema}:{call sid}:{what}.
"""
from __future__ import annotations

RESOLUTIONS = {"s": 1, "m": 60, "h": 3600}
SECOND_TTL = 600
MINUTE_TTL = 48 * 3600
HOUR_TTL = 30 * 86400
TTL = {"s": SECOND_TTL, "m": MINUTE_TTL, "h": HOUR_TTL}

SEEN_TTL = 86400  # an event redelivered later than this is counted again
QUALITY_TTL = 86400
LATEST_CALLS = 50
MAX_CALL_AGE = 6 * 3600  # an in-flight call older than this lost its final event: not counted


def bucket(ts: float, res: str) -> int:
    step = RESOLUTIONS[res]
    return int(ts // step) * step


def expires_at(bucket_start: int, res: str) -> int:
    return bucket_start + RESOLUTIONS[res] + TTL[res]
