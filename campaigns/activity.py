"""Which tenant schemas have campaign activity, so that the dispatcher (tasks.dispatch_dialers), every
second, visits those and not every tenant.

A sorted set in Redis (core.keys.CAMPAIGN_ACTIVITY): member = schema, score = Redis time (ms) of its
latest mark. The campaign services mark a schema when one of its campaigns is scheduled, starts,
resumes, is paused or cancelled (note_activity); the dispatcher forgets a schema in which it found
nothing to do, unless it was marked again after the dispatcher read the set (forget). Every
DIALER_FULL_SCAN_S one dispatch visits every tenant (Round.full_scan) and marks those with activity
again: what a Redis that lost its data forgot is found again within that time.

All times are Redis's (TIME inside the scripts), so every process compares the same clock.
"""
from __future__ import annotations

from typing import NamedTuple

from django.conf import settings
from django.db import connection, transaction

from core import keys
from core.redis_client import get_redis
from core.redis_scripts import registered

_NOW_MS = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
"""

# KEYS: activity set. ARGV: schemas. Marks them now.
_MARK = _NOW_MS + """
for _, schema in ipairs(ARGV) do redis.call('ZADD', KEYS[1], now, schema) end
return now
"""

# KEYS: activity set, full-scan key. ARGV: full-scan period (ms).
# Returns {now, 1 when this round is to visit every tenant (else 0), schema...}.
_ROUND = _NOW_MS + """
local full = redis.call('SET', KEYS[2], now, 'NX', 'PX', ARGV[1]) and 1 or 0
local round = {now, full}
for _, schema in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do round[#round + 1] = schema end
return round
"""

# KEYS: activity set. ARGV: schema, t0 (ms). Removes the schema unless it was marked at or after t0.
_FORGET = """
local score = redis.call('ZSCORE', KEYS[1], ARGV[1])
if score and tonumber(score) < tonumber(ARGV[2]) then
  return redis.call('ZREM', KEYS[1], ARGV[1])
end
return 0
"""


class Round(NamedTuple):
    """What one dispatch visits: the schemas marked active as of t0 (Redis time, ms), and whether it
    is the round that visits every tenant."""
    t0: int
    full_scan: bool
    schemas: list[str]


class _Scripts:

    def __init__(self, client):
        self.mark = client.register_script(_MARK)
        self.round = client.register_script(_ROUND)
        self.forget = client.register_script(_FORGET)


def _scripts() -> _Scripts:
    return registered(get_redis(), _Scripts)


def note_activity() -> None:
    """The current schema has campaign activity: marked once the transaction commits (a rolled-back
    change marks nothing, and the dispatcher that sees the mark also sees the change)."""
    schema = connection.schema_name
    transaction.on_commit(lambda: mark(schema))


def mark(*schemas: str) -> None:
    if schemas:
        _scripts().mark(keys=[keys.CAMPAIGN_ACTIVITY], args=list(schemas))


def dispatch_round() -> Round:
    period_ms = max(1, round(settings.DIALER_FULL_SCAN_S * 1000))
    now, full, *schemas = _scripts().round(keys=[keys.CAMPAIGN_ACTIVITY, keys.CAMPAIGN_FULL_SCAN], args=[period_ms])
    return Round(int(now), bool(full), [s.decode() if isinstance(s, bytes) else s for s in schemas])


def forget(schema: str, t0: int) -> bool:
    """Drop a schema the dispatcher found idle, unless it was marked at or after t0 (a campaign that
    started meanwhile); True when dropped."""
    return bool(_scripts().forget(keys=[keys.CAMPAIGN_ACTIVITY], args=[schema, t0]))
