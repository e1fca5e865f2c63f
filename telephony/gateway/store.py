"""The few Redis operations that must be atomic, shared by worker, supervisor and client.

Lua scripts (run server-side, atomically) so that:
- a gateway that pops an originate command has already recorded the call as its own
  (``gw:{id}:calls`` + ``call:{id}`` gateway field) before it could die: nothing is lost in between;
- exactly one final event is published per call even when a worker and the supervisor race
  (``HSETNX call:{id} final``);
- a hangup request either reaches the gateway holding the call or is seen by the gateway that pops
  the still-queued command;
- an API call a gateway popped but cannot place while caps are full goes back to the front of its
  tenant's queue as if never popped, its tenant passed over for a moment (``_REQUEUE_ORIGINATES``).

Every key a script touches comes as KEYS (core.keys names them): the commands at the head of each
tenant's queue are read before the script that pops them (for their ``call:{id}`` keys), which pops
a tenant's only while its queue still starts with the commands read.
"""
from __future__ import annotations

import json
import time

from core import keys

from . import events as ev

# Redis's clock in ms, for the scripts that read or write tenants' holds (scores of originate_held)
_NOW_MS = """
local function now_ms()
  local clock = redis.call('TIME')
  return tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
end
"""

# KEYS: the tenant's queue, ring, wake list, depth, held-back tenants    ARGV: command json, tenant
# The tenant joins the back of the ring when its queue was empty (it is on the ring exactly while it
# has calls waiting); one wake token per command, none while the tenant is held back (no gateway
# could take it: its gateway retries it when the hold ends).
_PUSH_ORIGINATE = _NOW_MS + """
if redis.call('RPUSH', KEYS[1], ARGV[1]) == 1 then redis.call('RPUSH', KEYS[2], ARGV[2]) end
redis.call('INCR', KEYS[4])
local held_until = redis.call('ZSCORE', KEYS[5], ARGV[2])
if held_until then
  if tonumber(held_until) > now_ms() then return 1 end
end
redis.call('RPUSH', KEYS[3], 1)
return 1
"""

# Commands read ahead per command wanted: gateways woken together read the same head, and the one
# that loses it to another finds the next commands among those it read instead of reading again.
READ_AHEAD = 8
# Tenants read from the front of the ring beyond those a pop wants: the held-back ones among them are
# passed over, and the tenants behind them served.
HELD_LOOKAHEAD = 64
# How long a tenant whose call met full caps is held back: its calls are tried again this often by
# the gateway that held it (a few times a second, not in a loop), others' calls go on meanwhile.
CAP_HOLD_MS = 300

# KEYS: ring, gw:{id}:calls, wake list, depth, held-back tenants, then one queue per tenant served,
# then the queue of each tenant held back, then the call:{id} of each command read from the heads of
# the served queues, in order ('' for a command that is not one)
# ARGV: gateway id, now, commands per tenant, n tenants, the n tenants, how many commands were read
# from each tenant's queue, m tenants held back, the m tenants, then each command read and its call id
# Up to that many commands from each tenant's queue in turn, while its head is one of the commands
# read (more are read than taken: a gateway that lost the head to another finds the next ones among
# them); round-robin: a tenant served goes to the back of the ring, off it
# when its queue is empty. A tenant held back (its calls met full caps: _REQUEUE_ORIGINATES) is
# skipped and keeps its place until its hold ends. Also leaves exactly one wake token per
# command still queued that a gateway may take now (none for a held tenant's; capped per call), so
# no gateway is woken for nothing and a token taken by a gateway that then had no room (or died) is
# given back. Returns how many commands a gateway may still take now, then each command and its flag.
_POP_ORIGINATE = _NOW_MS + """
local out = {0}
local popped = 0
local each = tonumber(ARGV[3])
local n = tonumber(ARGV[4])
local m = tonumber(ARGV[5 + 2 * n])
local first_command = 5 + 2 * n + m  -- ARGV index before the first (command, call id) pair
local first_call_key = 5 + n + m  -- KEYS index before the first call:{id}
redis.call('ZREMRANGEBYSCORE', KEYS[5], '-inf', now_ms())
local c = 0
for t = 1, n do
  local tenant = ARGV[4 + t]
  local queue = KEYS[5 + t]
  local count = tonumber(ARGV[4 + n + t])
  if not redis.call('ZSCORE', KEYS[5], tenant) then
    redis.call('LREM', KEYS[1], 1, tenant)
    local read = {}
    for j = c + 1, c + count do read[ARGV[first_command + 2 * j - 1]] = j end
    for _ = 1, each do
      local raw = redis.call('LINDEX', queue, 0)
      local j = raw and read[raw]
      if not j then break end
      read[raw] = nil
      redis.call('LPOP', queue)
      popped = popped + 1
      local ck = KEYS[first_call_key + j]
      local flag = 'bad'
      if ck ~= '' then
        if redis.call('HEXISTS', ck, 'final') == 1 then
          flag = 'done'
        else
          redis.call('SADD', KEYS[2], ARGV[first_command + 2 * j])
          redis.call('HSET', ck, 'gateway', ARGV[1], 'state', 'accepted', 'accepted_at', ARGV[2])
          if redis.call('HEXISTS', ck, 'hangup_requested') == 1 then flag = 'cancel' else flag = 'ok' end
        end
      end
      table.insert(out, raw)
      table.insert(out, flag)
    end
    if redis.call('LLEN', queue) > 0 then redis.call('RPUSH', KEYS[1], tenant) end
  end
  c = c + count
end
local left = redis.call('DECRBY', KEYS[4], popped)
if left < 0 or redis.call('LLEN', KEYS[1]) == 0 then
  left = 0
  redis.call('SET', KEYS[4], 0)
end
local takeable = left
for h = 1, m do
  if redis.call('ZSCORE', KEYS[5], ARGV[5 + 2 * n + h]) then takeable = takeable - redis.call('LLEN', KEYS[5 + n + h]) end
end
local tokens = redis.call('LLEN', KEYS[3])
if takeable <= 0 then
  redis.call('DEL', KEYS[3])
elseif tokens > takeable then
  redis.call('LTRIM', KEYS[3], 0, takeable - 1)
else
  for i = 1, math.min(takeable - tokens, 64) do redis.call('RPUSH', KEYS[3], 1) end
end
out[1] = math.max(takeable, 0)
return out
"""

# KEYS: the tenant's queue, ring, depth, wake list, held-back tenants, gw:{id}:calls, then the
# call:{id} of each command    ARGV: gateway id, tenant, hold ms, then each command and its call id,
# oldest first
# Undoes the pop of commands this gateway took but cannot place yet (every carrier leg, or the
# tenant, at its cap): back at the front of the tenant's queue in their order, the tenant back on the
# ring, the calls queued again in their hashes and off the gateway's set; the tenant is held back for
# hold ms, during which no gateway takes its calls or is woken for them. Only a call still this
# gateway's goes back (run again after a lost reply, it changes nothing); an ended one is dropped.
_REQUEUE_ORIGINATES = _NOW_MS + """
local back = 0
for i = (#ARGV - 3) / 2, 1, -1 do
  local ck = KEYS[6 + i]
  if redis.call('HGET', ck, 'gateway') == ARGV[1] then
    redis.call('SREM', KEYS[6], ARGV[3 + 2 * i])
    if redis.call('HEXISTS', ck, 'final') == 0 then
      redis.call('HDEL', ck, 'gateway', 'accepted_at')
      redis.call('HSET', ck, 'state', 'queued')
      redis.call('LPUSH', KEYS[1], ARGV[2 + 2 * i])
      back = back + 1
    end
  end
end
if back == 0 then return 0 end
if redis.call('LLEN', KEYS[1]) == back then redis.call('RPUSH', KEYS[2], ARGV[2]) end
local depth = redis.call('INCRBY', KEYS[3], back)
redis.call('ZADD', KEYS[5], now_ms() + tonumber(ARGV[3]), ARGV[2])
local takeable = depth - redis.call('LLEN', KEYS[1])
if takeable <= 0 then
  redis.call('DEL', KEYS[4])
elseif redis.call('LLEN', KEYS[4]) > takeable then
  redis.call('LTRIM', KEYS[4], 0, takeable - 1)
end
return back
"""

# KEYS: call:{id}, gw:{gw}:calls (may be ''), events stream    ARGV: call id, final type, event json,
# maxlen, ttl, state
_FINALIZE = """
local first = redis.call('HSETNX', KEYS[1], 'final', ARGV[2])
if KEYS[2] ~= '' then redis.call('SREM', KEYS[2], ARGV[1]) end
if first == 1 then
  redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[4], '*', 'event', ARGV[3])
  redis.call('HSET', KEYS[1], 'state', 'ended', 'ended_at', ARGV[6])
  redis.call('EXPIRE', KEYS[1], tonumber(ARGV[5]))
end
return first
"""

# KEYS: call:{id}, gw:{gw}:alive, gw:{gw}:commands of the gateway the caller read (or of the one
# the call's record names)    ARGV: command json, that gateway id ('' if none)
# Returns 'ended' (already final), the gateway id (alive: the command is queued for it), 'orphan'
# (its gateway is dead), 'unheld' (no gateway holds it) or 'moved' (the gateway changed: read again).
_HANGUP = """
redis.call('HSET', KEYS[1], 'hangup_requested', '1')
if redis.call('HEXISTS', KEYS[1], 'final') == 1 then return 'ended' end
local gw = redis.call('HGET', KEYS[1], 'gateway') or ''
if gw ~= ARGV[2] and gw ~= '' then return 'moved' end
if ARGV[2] == '' then return 'unheld' end
if redis.call('EXISTS', KEYS[2]) == 0 then return 'orphan' end
redis.call('RPUSH', KEYS[3], ARGV[1])
return ARGV[2]
"""

# KEYS: call:{id}, gw:{id}:alive, gw:{id}:commands    ARGV: command json, the gateway id the caller read
# A mid-call command (digits) goes to the live gateway holding the call, like a hangup, marking nothing.
_CALL_COMMAND = """
if redis.call('HEXISTS', KEYS[1], 'final') == 1 then return 'ended' end
local gw = redis.call('HGET', KEYS[1], 'gateway') or ''
if gw ~= ARGV[2] then return 'moved' end
if ARGV[2] == '' then return 'unheld' end
if redis.call('EXISTS', KEYS[2]) == 0 then return 'orphan' end
redis.call('RPUSH', KEYS[3], ARGV[1])
return ARGV[2]
"""

# KEYS: call:{id}, events stream    ARGV: final event json, final type, maxlen, ttl, ended_at
# A call Redis has never heard of (its originate was lost) gets its final event; once it has one, an
# originate arriving late is never dialed (_POP_ORIGINATE).
_GIVE_UP_UNPLACED = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], 'final', ARGV[2], 'state', 'ended', 'ended_at', ARGV[5])
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[3], '*', 'event', ARGV[1])
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[4]))
return 1
"""


class Store:
    def __init__(self, redis):
        self.r = redis
        self._push = redis.register_script(_PUSH_ORIGINATE)
        self._pop = redis.register_script(_POP_ORIGINATE)
        self._requeue = redis.register_script(_REQUEUE_ORIGINATES)
        self._finalize = redis.register_script(_FINALIZE)
        self._hangup = redis.register_script(_HANGUP)
        self._call_command = redis.register_script(_CALL_COMMAND)
        self._give_up_unplaced = redis.register_script(_GIVE_UP_UNPLACED)

    # ---- gateway side ------------------------------------------------------------------------
    def push_originate(self, raw: str, tenant: str, region: str = "", client=None) -> None:
        """Queue one originate command (JSON) behind the tenant's calls already waiting."""
        self._push(keys=[keys.tenant_queue(region, tenant), keys.originate_ring(region), keys.originate_wake(region),
                         keys.originate_depth(region), keys.originate_held(region)], args=[raw, tenant], client=client)

    def pop_originates(self, gateway_id: str, count: int, client=None, region: str = ""
                       ) -> list[tuple[bytes, str, str]]:
        """Up to ``count`` (command, flag, region of the queue it came from), the waiting tenants' in
        turn (the room shared evenly between the first ``count`` of the ring not held back): the
        gateway's own region's first, then the shared queue's."""
        popped: list[tuple[bytes, str, str]] = []
        c = client if client is not None else self.r
        for queue_region in ((region, "") if region else ("",)):
            if popped and len(popped) >= count:
                break
            ring, held_key, idle_rounds = keys.originate_ring(queue_region), keys.originate_held(queue_region), 0
            while True:  # once at least: with nothing to take, the script still gives the wake token back
                want = count - len(popped)
                p = c.pipeline(transaction=False)
                p.zrange(held_key, 0, -1, withscores=True)
                p.time()
                if want > 0:
                    p.lrange(ring, 0, want - 1 + HELD_LOOKAHEAD)
                held_until, (seconds, micros), *ring_head = p.execute()
                now_ms = seconds * 1000 + micros // 1000
                held = [_text(t) for t, until in held_until if until > now_ms]
                tenants = [t for t in map(_text, ring_head[0]) if t not in held][:want] if ring_head else []
                heads: list[list[bytes]] = []
                each = -(-want // max(1, len(tenants)))
                if tenants:
                    p = c.pipeline(transaction=False)
                    for t in tenants:
                        p.lrange(keys.tenant_queue(queue_region, t), 0, each * READ_AHEAD - 1)
                    heads = p.execute()
                commands = [(raw, _call_id_of(raw)) for head in heads for raw in head]
                res = self._pop(
                    keys=[ring, keys.gw_calls_key(gateway_id), keys.originate_wake(queue_region),
                          keys.originate_depth(queue_region), held_key,
                          *(keys.tenant_queue(queue_region, t) for t in tenants),
                          *(keys.tenant_queue(queue_region, t) for t in held),
                          *(keys.call_key(call_id) if call_id else "" for _, call_id in commands)],
                    args=[gateway_id, f"{time.time():.3f}", each, len(tenants), *tenants, *(len(head) for head in heads),
                          len(held), *held, *(part for command in commands for part in command)],
                    client=client,
                )
                takeable, *res = res
                popped += [(res[i], _text(res[i + 1]), queue_region) for i in range(0, len(res), 2)]
                idle_rounds = 0 if res else idle_rounds + 1  # empty: another gateway took them first
                # takeable 0: nothing left to take here (another round would find an empty ring)
                if not tenants or not takeable or len(popped) >= count or idle_rounds >= 3:
                    break
        return popped

    def requeue_originates(self, gateway_id: str, region: str, tenant: str, commands: list[tuple[bytes, str]],
                           hold_ms: int = CAP_HOLD_MS, pipe=None) -> int:
        """Put back at the front of their tenant's queue, in order, commands (raw, call id) this
        gateway popped from ``region``'s queue but cannot place while caps are full, and hold the
        tenant back for ``hold_ms`` (see _REQUEUE_ORIGINATES). Returns how many went back (with
        ``pipe``: queued there, 0)."""
        res = self._requeue(
            keys=[keys.tenant_queue(region, tenant), keys.originate_ring(region), keys.originate_depth(region),
                  keys.originate_wake(region), keys.originate_held(region), keys.gw_calls_key(gateway_id),
                  *(keys.call_key(call_id) for _, call_id in commands)],
            args=[gateway_id, tenant, hold_ms, *(part for command in commands for part in command)],
            client=pipe,
        )
        return 0 if pipe is not None else int(res)

    def publish(self, event: dict, state: dict | None = None, pipe=None) -> None:
        """A non-final event, plus optional fields for the call:{id} hash."""
        p = pipe if pipe is not None else self.r.pipeline(transaction=False)
        p.xadd(keys.EVENTS_STREAM, ev.encode(event), maxlen=ev.EVENTS_MAXLEN, approximate=True)
        if state:
            p.hset(keys.call_key(event["call_id"]), mapping={k: _s(v) for k, v in state.items()})
        if pipe is None:
            p.execute()

    def set_state(self, call_id: str, state: dict, pipe=None) -> None:
        """Fields of the call:{id} hash (a call's dialog, its slot keys) with no event."""
        (pipe if pipe is not None else self.r).hset(keys.call_key(call_id), mapping={k: _s(v) for k, v in state.items()})

    def finalize(self, event: dict, gateway_id: str | None, pipe=None) -> bool:
        """Publish a final event unless the call already has one; drop it from the gateway's set.
        With ``pipe``: queued there (returns False)."""
        assert ev.is_final(event), event
        res = self._finalize(
            keys=[keys.call_key(event["call_id"]), keys.gw_calls_key(gateway_id) if gateway_id else "",
                  keys.EVENTS_STREAM],
            args=[event["call_id"], event["type"], json.dumps(event, separators=(",", ":")),
                  ev.EVENTS_MAXLEN, ev.CALL_TTL, f"{float(event['ts']):.3f}"],
            client=pipe,
        )
        return pipe is None and bool(res)

    # ---- client side -------------------------------------------------------------------------
    def give_up_unplaced(self, event: dict) -> bool:
        """Publish the final event of a call whose originate never reached Redis (False: it did)."""
        assert ev.is_final(event), event
        return bool(self._give_up_unplaced(
            keys=[keys.call_key(event["call_id"]), keys.EVENTS_STREAM],
            args=[json.dumps(event, separators=(",", ":")), event["type"], ev.EVENTS_MAXLEN, ev.CALL_TTL,
                  f"{float(event['ts']):.3f}"],
        ))

    def request_hangup(self, call_id: str, known_gateway: str = "") -> str:
        """Mark the call for hangup and queue the command for the live gateway holding it (see
        _HANGUP for the answers). ``known_gateway``: the gateway the call's durable record names,
        used when Redis no longer knows the call (restarted empty: its gateway re-asserts it soon)."""
        cmd = json.dumps({"type": "hangup", "call_id": call_id})
        while True:
            raw = self.r.hget(keys.call_key(call_id), "gateway")
            gw = (raw.decode() if isinstance(raw, bytes) else raw) or known_gateway or ""
            res = self._hangup(keys=[keys.call_key(call_id), keys.gw_alive_key(gw), keys.gw_commands_key(gw)],
                               args=[cmd, gw])
            res = res.decode() if isinstance(res, bytes) else res
            if res != "moved":
                return res


    def call_command(self, call_id: str, command: dict) -> str:
        """Queue a command for the live gateway holding an unfinished call: its gateway id, or
        "ended" (final event published), "unheld" (no gateway took it yet) or "orphan" (its gateway
        is dead)."""
        cmd = json.dumps({**command, "call_id": call_id})
        while True:
            raw = self.r.hget(keys.call_key(call_id), "gateway")
            gw = (raw.decode() if isinstance(raw, bytes) else raw) or ""
            res = self._call_command(keys=[keys.call_key(call_id), keys.gw_alive_key(gw), keys.gw_commands_key(gw)],
                                     args=[cmd, gw])
            res = res.decode() if isinstance(res, bytes) else res
            if res != "moved":
                return res


def _call_id_of(raw: bytes) -> str:
    """The call id of a queued originate command; '' when it is not a command."""
    try:
        command = json.loads(raw)
    except ValueError:
        return ""
    call_id = command.get("call_id") if isinstance(command, dict) else None
    return call_id if isinstance(call_id, str) and call_id else ""


def _text(v: bytes | str) -> str:
    return v.decode() if isinstance(v, bytes) else v


def _s(v) -> str | int | float:
    if isinstance(v, (dict, list)):
        return json.dumps(v)
    if isinstance(v, bool):
        return int(v)
    return v if isinstance(v, (int, float)) else str(v)


def gateway_calls(store: Store, gateway_id: str) -> dict[str, dict]:
    """{call id: its call:{id} fields (str), with ``dialog``/``early``/``slots`` decoded} of the calls
    a gateway holds that have no final event yet."""
    r = store.r
    out = {}
    for raw in r.smembers(keys.gw_calls_key(gateway_id)):
        call_id = raw.decode() if isinstance(raw, bytes) else raw
        info = {k.decode(): v.decode() for k, v in r.hgetall(keys.call_key(call_id)).items()}
        if "final" in info:
            r.srem(keys.gw_calls_key(gateway_id), call_id)
            continue
        for name, default in (("dialog", None), ("early", None), ("slots", [])):
            try:
                info[name] = json.loads(info[name]) if info.get(name) else default
            except ValueError:
                info[name] = default
        out[call_id] = info
    return out


def close_out_call(store: Store, gateway_id: str, call_id: str, info: dict, reason: str, ended_at: float) -> bool:
    """The final event of a call its gateway can no longer end: ``completed`` (duration up to
    ``ended_at``, when the call really ended or was last known alive) if it was answered, else
    ``failed`` with outcome gateway_died. False if it already had its final event."""
    fields = dict(
        gateway_id=gateway_id, reason=reason, direction=info.get("direction"),
        tenant=info.get("tenant") or None, carrier_id=info.get("carrier_id") or None,
        leg=int(info["leg"]) if info.get("leg") else None, ts=ended_at,
        transfer_of=info.get("transfer_of") or None,  # a transfer leg: its Transfer record, not a call
    )
    if info.get("state") == "answered":
        answered_at = float(info.get("answered_at") or ended_at)
        event = ev.make_event(call_id, ev.COMPLETED, outcome=ev.OUTCOME_ANSWERED, hangup_by=ev.BY_PLATFORM,
                              duration=round(max(0.0, ended_at - answered_at), 3), **fields)
    else:
        event = ev.make_event(call_id, ev.FAILED, outcome=ev.OUTCOME_GATEWAY_DIED, **fields)
    return store.finalize(event, gateway_id)
