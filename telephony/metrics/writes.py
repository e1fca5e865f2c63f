"""Metrics updates as a single Redis round trip, each counted at most once.

A `Batch` collects hash increments, expiries, sorted-set and list changes (of one event or of a
whole batch of events, merged: the recorder sends one per tenant and batch), then `apply` runs them
all in one EVALSHA of a small Lua script guarded by idempotency keys, one per event: gateway events
are delivered at least once, and a replayed event must not count twice (or leave a call "active").
If any guard is there already nothing is applied and `apply` names those guards; the caller builds
the batch again without their events.

The operations travel as one JSON argument (decoded by the script's cjson), not as one argument
each: a final event has ~300 of them, and redis-py packs each argument in Python (~4 us apiece,
measured by bench/metrics_cost.py); json.dumps is one C call.
"""
from __future__ import annotations

import json
from collections import defaultdict

import redis

_SCRIPT = """
local first_guard = #KEYS - tonumber(ARGV[2]) + 1
local seen = {}
for g = first_guard, #KEYS do
  if redis.call('EXISTS', KEYS[g]) == 1 then seen[#seen + 1] = g - first_guard end
end
if #seen > 0 then return seen end
for g = first_guard, #KEYS do redis.call('SET', KEYS[g], '1', 'EX', ARGV[1]) end
local A = cjson.decode(ARGV[3])
local i = 1
local n = #A
while i <= n do
  local op, key = A[i], KEYS[A[i + 1]]
  if op == 'hi' then redis.call('HINCRBY', key, A[i + 2], A[i + 3]); i = i + 4
  elseif op == 'hf' then redis.call('HINCRBYFLOAT', key, A[i + 2], A[i + 3]); i = i + 4
  elseif op == 'hs' then redis.call('HSET', key, A[i + 2], A[i + 3]); i = i + 4
  elseif op == 'ea' then redis.call('EXPIREAT', key, A[i + 2]); i = i + 3
  elseif op == 'ex' then redis.call('EXPIRE', key, A[i + 2]); i = i + 3
  elseif op == 'za' then redis.call('ZADD', key, A[i + 2], A[i + 3]); i = i + 4
  elseif op == 'zr' then redis.call('ZREM', key, A[i + 2]); i = i + 3
  elseif op == 'lp' then
    redis.call('LPUSH', key, A[i + 2]); redis.call('LTRIM', key, 0, tonumber(A[i + 3]) - 1); i = i + 4
  elseif op == 'ib' then redis.call('INCRBY', key, A[i + 2]); i = i + 3
  else return redis.error_reply('unknown metrics op ' .. op) end
end
return {}
"""

_scripts: dict[int, redis.commands.core.Script] = {}


def _script(client: redis.Redis):
    script = _scripts.get(id(client))
    if script is None:
        script = _scripts[id(client)] = client.register_script(_SCRIPT)
    return script


class Batch:
    def __init__(self) -> None:
        self._keys: dict[str, int] = {}
        self._ints: dict[tuple[str, str], int] = defaultdict(int)
        self._floats: dict[tuple[str, str], float] = defaultdict(float)
        self._expire_at: dict[str, int] = {}
        self._bumps: dict[str, int] = defaultdict(int)
        self._ops: list = []

    def incr(self, key: str, field: str, amount: int = 1) -> None:
        self._ints[key, field] += amount

    def incr_float(self, key: str, field: str, amount: float) -> None:
        self._floats[key, field] += amount

    def expire_at(self, key: str, when: int) -> None:
        self._expire_at[key] = when

    def hset(self, key: str, field: str, value, ttl: int) -> None:
        self._ops += [("hs", key, field, value), ("ex", key, ttl)]

    def zadd(self, key: str, score: float, member: str) -> None:
        self._ops.append(("za", key, score, member))

    def zrem(self, key: str, member: str) -> None:
        self._ops.append(("zr", key, member))

    def push_capped(self, key: str, value: str, length: int) -> None:
        self._ops.append(("lp", key, value, length))

    def bump(self, key: str) -> None:
        self._bumps[key] += 1

    def __bool__(self) -> bool:
        return bool(self._ints or self._floats or self._ops or self._bumps)

    def _ix(self, key: str) -> int:
        if key not in self._keys:
            self._keys[key] = len(self._keys) + 1
        return self._keys[key]

    def args(self) -> list:
        argv: list = []
        for (key, field), amount in self._ints.items():
            if amount:
                argv += ["hi", self._ix(key), field, amount]
        for (key, field), amount in self._floats.items():
            argv += ["hf", self._ix(key), field, repr(float(amount))]
        for key, when in self._expire_at.items():
            argv += ["ea", self._ix(key), when]
        for op, key, *rest in self._ops:
            argv += [op, self._ix(key), *rest]
        for key, amount in self._bumps.items():
            argv += ["ib", self._ix(key), amount]
        return argv

    def apply(self, client: redis.Redis, guards: list[str], guard_ttl: int = 86400) -> list[str]:
        """Set every guard key and run everything, in one round trip; if any guard was there
        already, nothing is done and those guards are returned."""
        argv = self.args()
        keys = [*sorted(self._keys, key=self._keys.get), *guards]
        seen = _script(client)(keys=keys, args=[guard_ttl, len(guards), json.dumps(argv, separators=(",", ":"))])
        return [guards[int(i)] for i in seen]
