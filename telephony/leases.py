"""Cluster-wide leases and pacing kept in Redis (the call caps, the dialer's one loop per slot),
enforced by Lua scripts so that every process on every node sees one answer (each script runs
atomically: there is no check-then-act window between nodes).

Concurrency: a sorted set per limit key, member = holder id (e.g. a call id), score = lease expiry in
ms of *Redis* time. A holder renews its lease every second or so; a process that dies stops renewing
and its slots come back by themselves once the lease runs out (expired members are dropped by the
next acquire). Acquiring several keys (carrier + tenant + campaign) is all-or-nothing in one script.

Pacing (calls per second): GCRA (generic cell rate algorithm, a token bucket stored as one
"theoretical arrival time"), also on Redis time, so all nodes share one clock and one schedule.

All time comes from Redis `TIME`, never from the caller's clock, so skewed nodes cannot cheat.
With Redis Cluster, give related keys a common hash tag ("{tenant42}:...") for multi-key acquires.
"""
from __future__ import annotations

import math
import time
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

from core.redis_scripts import registered

if TYPE_CHECKING:  # the gateway passes its small Redis client; nothing here needs redis-py itself
    import redis

# KEYS: limit keys. ARGV: holder, ttl_ms, limit_1..limit_n.
# Returns 1 when every key admitted the holder, else -(i) with i the 1-based index of the first full key.
_ACQUIRE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local holder = ARGV[1]
local ttl = tonumber(ARGV[2])
for i, key in ipairs(KEYS) do
  redis.call('ZREMRANGEBYSCORE', key, '-inf', now)
  if not redis.call('ZSCORE', key, holder) then
    if redis.call('ZCARD', key) >= tonumber(ARGV[2 + i]) then
      return -i
    end
  end
end
local expiry = now + ttl
for _, key in ipairs(KEYS) do
  redis.call('ZADD', key, expiry, holder)
  if redis.call('PTTL', key) < ttl + 1000 then redis.call('PEXPIRE', key, ttl + 1000) end
end
return 1
"""

# KEYS: limit keys. ARGV: ttl_ms, holder_1..holder_n.
# Extends live leases of the given holders on every key; returns the holders that were no longer
# held on at least one key (lease expired or released), so the caller learns it lost its slot.
_RENEW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = tonumber(ARGV[1])
local lost = {}
for _, key in ipairs(KEYS) do
  local renewed = false
  for j = 2, #ARGV do
    local holder = ARGV[j]
    local score = redis.call('ZSCORE', key, holder)
    if score and tonumber(score) > now then
      redis.call('ZADD', key, 'XX', now + ttl, holder)
      renewed = true
    else
      if score then redis.call('ZREM', key, holder) end
      lost[holder] = true
    end
  end
  if renewed and redis.call('PTTL', key) < ttl + 1000 then
    redis.call('PEXPIRE', key, ttl + 1000)
  end
end
local out = {}
for holder, _ in pairs(lost) do out[#out + 1] = holder end
return out
"""

# KEYS: limit keys. ARGV: ttl_ms, holder. Puts the holder back whatever the limit: its call is up at
# the carrier (after a Redis restart lost the leases, or while a dead gateway's call is being ended),
# so the slot is really taken.
_REASSERT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = tonumber(ARGV[1])
for _, key in ipairs(KEYS) do
  redis.call('ZADD', key, now + ttl, ARGV[2])
  if redis.call('PTTL', key) < ttl + 1000 then redis.call('PEXPIRE', key, ttl + 1000) end
end
return 1
"""

# KEYS: limit keys. ARGV: holder. Returns how many keys still held it.
_RELEASE = """
local n = 0
for _, key in ipairs(KEYS) do
  n = n + redis.call('ZREM', key, ARGV[1])
end
return n
"""

# KEYS[1]: limit key. Returns the number of live leases (expired ones are dropped first).
_COUNT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
return redis.call('ZCARD', KEYS[1])
"""

# GCRA. KEYS[1]: state key (theoretical arrival time, microseconds of Redis time).
# ARGV: emission interval us, burst tolerance us. Returns 0 when granted, else the wait in us.
_GCRA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local tolerance = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then tat = now end
local allow_at = tat - tolerance
if now < allow_at then
  return math.ceil(allow_at - now)
end
local new_tat = tat + interval
redis.call('SET', KEYS[1], string.format('%.0f', new_tat), 'PX', math.ceil((new_tat - now) / 1000) + 1000)
return 0
"""


class _Scripts:
    """Scripts registered per client (redis-py caches the SHA and falls back to EVAL)."""

    def __init__(self, client: redis.Redis):
        self.acquire = client.register_script(_ACQUIRE)
        self.renew = client.register_script(_RENEW)
        self.release = client.register_script(_RELEASE)
        self.reassert = client.register_script(_REASSERT)
        self.count = client.register_script(_COUNT)
        self.gcra = client.register_script(_GCRA)


def _scripts(client: redis.Redis) -> _Scripts:
    return registered(client, _Scripts)


def _ms(seconds: float) -> int:
    ms = int(math.ceil(seconds * 1000))
    if ms <= 0:
        raise ValueError(f"ttl must be positive, got {seconds}")
    return ms


def _decode(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


DEFAULT_LEASE_TTL = 5.0  # seconds; holders renew about every second


class ConcurrencyLimiter:
    """At most `limit` live holders of `key` across the cluster."""

    def __init__(self, client: redis.Redis, key: str, limit: int):
        if limit < 0:
            raise ValueError(f"limit must be >= 0, got {limit}")
        self.client = client
        self.key = key
        self.limit = int(limit)

    def acquire(self, holder_id: str, ttl: float = DEFAULT_LEASE_TTL) -> bool:
        """Take a slot for `holder_id` (idempotent: a holder already in gets its lease extended)."""
        return acquire_all([self], holder_id, ttl)

    def release(self, holder_id: str) -> bool:
        """Give the slot back; False when it was not held (already released or lease expired)."""
        return release_all([self], holder_id) > 0

    def renew(self, holder_ids: Iterable[str], ttl: float = DEFAULT_LEASE_TTL) -> list[str]:
        """Extend the leases of live holders; returns the ids that no longer hold a slot."""
        return renew_all([self], holder_ids, ttl)

    def count(self) -> int:
        """Live holders now (drops expired leases first)."""
        return int(_scripts(self.client).count(keys=[self.key]))

    def holders(self) -> list[str]:
        """Ids of live holders (expired leases dropped first)."""
        self.count()
        return [_decode(m) for m in self.client.zrange(self.key, 0, -1)]

    def __repr__(self) -> str:
        return f"ConcurrencyLimiter({self.key!r}, limit={self.limit})"


def _same_client(limiters: Sequence[ConcurrencyLimiter]) -> redis.Redis:
    if not limiters:
        raise ValueError("no limiters given")
    client = limiters[0].client
    if any(lim.client is not client for lim in limiters[1:]):
        raise ValueError("limiters acquired together must share one Redis client")
    return client


def acquire_all(limiters: Sequence[ConcurrencyLimiter], holder_id: str, ttl: float = DEFAULT_LEASE_TTL) -> bool:
    """Take a slot on every limiter or on none (one atomic script)."""
    client = _same_client(limiters)
    result = _scripts(client).acquire(
        keys=[lim.key for lim in limiters], args=[holder_id, _ms(ttl), *[lim.limit for lim in limiters]]
    )
    return int(result) == 1


def release_all(limiters: Sequence[ConcurrencyLimiter], holder_id: str) -> int:
    """Release `holder_id` on every limiter; returns on how many it was still held."""
    client = _same_client(limiters)
    return int(_scripts(client).release(keys=[lim.key for lim in limiters], args=[holder_id]))


def reassert_keys(client: redis.Redis, keys: Sequence[str], holder_id: str, ttl: float = DEFAULT_LEASE_TTL) -> None:
    """Hold `holder_id` on every key again, over the limit if need be (the call it stands for is up)."""
    if keys:
        _scripts(client).reassert(keys=list(keys), args=[_ms(ttl), holder_id])


def release_keys(client: redis.Redis, keys: Sequence[str], holder_id: str) -> int:
    """Release `holder_id` on limit keys known only by name (a dead gateway's calls)."""
    return int(_scripts(client).release(keys=list(keys), args=[holder_id])) if keys else 0


def renew_all(
    limiters: Sequence[ConcurrencyLimiter], holder_ids: Iterable[str], ttl: float = DEFAULT_LEASE_TTL
) -> list[str]:
    """Renew leases of `holder_ids` on every limiter; returns the holders lost on at least one."""
    holders = list(holder_ids)
    if not holders:
        return []
    client = _same_client(limiters)
    lost = _scripts(client).renew(keys=[lim.key for lim in limiters], args=[_ms(ttl), *holders])
    return sorted(_decode(h) for h in lost)


class RateLimiter:
    """Cluster-wide pacing: `rate` grants per second on average across every process and node.

    `burst` is how many grants beyond the steady pace may be taken back to back (after an idle spell,
    or to catch up when callers claim their slot late). With burst=0 a slot claimed late is lost for
    good, so busy nodes drift below the rate (about 1 ms lost per grant on a loaded machine); the
    default burst=1 lets a late caller catch up, keeping the observed rate on target, at the price
    of at most one extra grant in any window: grants in any T seconds <= rate * T + 1 + burst.
    """

    def __init__(self, client: redis.Redis, key: str, rate: float, burst: int = 1):
        if rate <= 0:
            raise ValueError(f"rate must be > 0 calls per second, got {rate}")
        if burst < 0:
            raise ValueError(f"burst must be >= 0, got {burst}")
        self.client = client
        self.key = key
        self.rate = float(rate)
        self.burst = int(burst)
        self._interval_us = 1_000_000.0 / self.rate
        self._tolerance_us = self._interval_us * self.burst

    def try_acquire(self) -> float:
        """0.0 when a call may start now (the grant is taken), else the seconds to wait first."""
        wait_us = _scripts(self.client).gcra(
            keys=[self.key], args=[repr(self._interval_us), repr(self._tolerance_us)]
        )
        return int(wait_us) / 1_000_000.0

    def acquire(self, timeout: float | None = None) -> bool:
        """Block until granted; False if that would take longer than `timeout` seconds."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            wait = self.try_acquire()
            if wait <= 0:
                return True
            if deadline is not None and time.monotonic() + wait > deadline:
                return False
            time.sleep(wait)

    def reset(self) -> None:
        self.client.delete(self.key)

    def __repr__(self) -> str:
        return f"RateLimiter({self.key!r}, rate={self.rate}, burst={self.burst})"
