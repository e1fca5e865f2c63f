"""What the rest of the platform (dialer, REST API) calls to use the gateway pool.

Only needs a ``redis.Redis`` client; no pjsua2, no Django. See docs/gateway.md for the protocol.
"""
from __future__ import annotations

import json
import logging
import time
import uuid

from core import keys

from . import events as ev
from .contract import OriginateCommand, TransferCommand
from .store import Store, _s, close_out_call

log = logging.getLogger("gateway.client")


def new_call_id() -> str:
    return uuid.uuid4().hex


def originate(redis, command: OriginateCommand) -> str:
    """Queue an outbound call (its fields: contract.OriginateCommand); returns its call_id
    (generated if the command has none). The first gateway with a free slot in the legs' region
    takes it (any gateway when the legs have no region, or no live gateway has that region), the
    tenants' waiting calls taken in turn; its events then appear on ``calls:events``.
    """
    return originate_many(redis, [command])[0]


def originate_many(redis, commands: list[OriginateCommand]) -> list[str]:
    """Queue several outbound calls (as ``originate``, in their order) in one Redis transaction:
    two round trips whatever their number; returns their call_ids."""
    queued: list[OriginateCommand] = []
    for command in commands:
        cmd = OriginateCommand(**command)
        cmd["type"] = "originate"
        cmd.setdefault("call_id", new_call_id())
        cmd.setdefault("queued_at", round(time.time(), 3))
        if not cmd.get("legs"):
            raise ValueError("originate needs at least one leg")
        queued.append(cmd)
    if not queued:
        return []
    wanted = [ev.call_region(cmd) for cmd in queued]
    regions = sorted({region for region in wanted if region})
    alive: dict[str, int] = {}
    if regions:
        p = redis.pipeline(transaction=False)
        for region in regions:
            p.exists(keys.region_alive_key(region))
        alive = dict(zip(regions, p.execute(), strict=True))
    store, p = Store(redis), redis.pipeline(transaction=True)
    for cmd, region in zip(queued, wanted, strict=True):
        p.hset(keys.call_key(cmd["call_id"]), mapping={
            "state": "queued", "direction": ev.DIRECTION_OUTBOUND, "tenant": _s(cmd.get("tenant") or ""),
            "from": _s(cmd.get("from") or ""), "to": _s(cmd.get("to") or ""), "queued_at": cmd["queued_at"],
        })
        # no gateway serves the carrier's region: any gateway places it (one node, no regions)
        store.push_originate(json.dumps(cmd, separators=(",", ":")), cmd.get("tenant") or "",
                             region if alive.get(region) else "", client=p)
    p.execute()
    for cmd in queued:
        log.info("originate queued: %s -> %s, %d carrier legs", cmd.get("from"), cmd.get("to"), len(cmd["legs"]),
                 extra={"call_sid": cmd["call_id"]})
    return [cmd["call_id"] for cmd in queued]


def give_up_unplaced(redis, call_id: str, tenant: str) -> bool:
    """End, as failed with reason not_placed, a call whose originate never reached Redis; the pool
    never dials it afterwards. False (nothing done) if Redis knows the call."""
    event = ev.make_event(call_id, ev.FAILED, reason=ev.REASON_NOT_PLACED, legs_tried=0, sip_code=0,
                          direction=ev.DIRECTION_OUTBOUND, tenant=tenant or None)
    given_up = Store(redis).give_up_unplaced(event)
    if given_up:
        log.warning("call never reached the gateway pool: ended as not placed", extra={"call_sid": call_id})
    return given_up


def hangup(redis, call_id: str, gateway_id: str = "", answered_at: float | None = None) -> str:
    """Ask for a call to end: the live gateway holding it sends CANCEL (ringing) or BYE (answered).

    A call no live gateway holds (still queued, its gateway dead, or unknown to Redis) gets its final
    event at once: ``failed``/cancelled if no gateway ever took it (a queued command is then never
    dialed), else with reason ``no_live_gateway`` (``completed`` if it was answered: its duration runs
    to its gateway's last heartbeat). ``gateway_id`` / ``answered_at``: what the call's durable record
    knows, for a Redis that lost the call. Returns the gateway id the command went to, "ended" (it
    already had its final event) or "finalized".
    """
    store = Store(redis)
    where = store.request_hangup(call_id, gateway_id)
    if where in ("orphan", "unheld"):
        info = call_state(redis, call_id)
        gw = info.get("gateway") or gateway_id
        if answered_at and "answered_at" not in info:
            info.update(state="answered", answered_at=str(answered_at))
        if gw or info.get("state") == "answered":
            last = redis.hget(keys.gw_key(gw), "updated_at") if gw else None
            ended_at = max(min(time.time(), float(last)) if last else time.time(), float(info.get("answered_at") or 0))
            close_out_call(store, gw or None, call_id, info, ev.REASON_NO_LIVE_GATEWAY, ended_at)
        else:  # never taken by a gateway: it will not be dialed
            store.finalize(ev.make_event(call_id, ev.FAILED, outcome=ev.OUTCOME_CANCELLED,
                                         reason=ev.REASON_HANGUP_REQUESTED, legs_tried=0, sip_code=0,
                                         direction=info.get("direction") or ev.DIRECTION_OUTBOUND,
                                         tenant=info.get("tenant") or None), None)
        where = "finalized"
    log.info("hangup requested: %s", where, extra={"call_sid": call_id})
    return where


def send_digits(redis, call_id: str, digits: str) -> str:
    """Send digits (RFC 4733; 0-9 * # A-D, 'w' a half-second pause) to the callee of a bridged call,
    through the live gateway holding it: after any digits still being sent, or after the answer when
    it is still ringing. Returns the gateway id, or why not: "ended", "unheld" (still queued),
    "orphan" (its gateway is dead)."""
    where = Store(redis).call_command(call_id, {"type": "digits", "digits": digits})
    log.info("digits requested: %s", where, extra={"call_sid": call_id})
    return where


def transfer(redis, command: TransferCommand) -> str:
    """Transfer an answered bridged call to a person: the live gateway holding it dials
    ``command["leg"]`` and joins the two legs (telephony/gateway/transfers.py). Returns the gateway id,
    or why not: "ended", "unheld" (not with a gateway yet), "orphan" (its gateway is dead)."""
    where = Store(redis).call_command(command["call_id"], {**command, "type": "transfer"})
    log.info("transfer requested: %s", where, extra={"call_sid": command["call_id"]})
    return where


def run_twiml(redis, call_id: str, steps: list[dict]) -> str:
    """Run a TwiML program (media/twiml_player.py steps) on a bridged call from now on, in place of
    what it does (a live update stops its stream), through the live gateway holding it. Returns the
    gateway id, or why not, as send_digits."""
    where = Store(redis).call_command(call_id, {"type": "twiml", "steps": steps})
    log.info("TwiML sent: %s", where, extra={"call_sid": call_id})
    return where


def call_state(redis, call_id: str) -> dict:
    """The call:{id} hash (gateway, state, leg, carrier_id, answered_at, final...) as str -> str."""
    return {k.decode(): v.decode() for k, v in redis.hgetall(keys.call_key(call_id)).items()}


def read_events(redis, last_id: str = "$", block_ms: int | None = 1000, count: int = 500
                ) -> list[tuple[str, dict]]:
    """One XREAD of calls:events after last_id: [(entry_id, event)]; [] on timeout.

    Use "0" to read from the start of the (trimmed) stream, "$" for new events only (then pass the
    last entry id you got to the next call). For load-shared consumption use a consumer group
    (XREADGROUP) on the same stream instead.
    """
    res = redis.xread({keys.EVENTS_STREAM: last_id}, count=count, block=block_ms)
    if not res:
        return []
    return ev.decode_entries(res[0][1])


def call_events(redis, call_id: str) -> list[dict]:
    """Every event of one call still in the stream (a scan: for tests and debugging)."""
    return [e for _, e in ev.decode_entries(redis.xrange(keys.EVENTS_STREAM)) if e.get("call_id") == call_id]


def pool_status(redis) -> list[dict]:
    """Every known gateway: id, alive, capacity, active, pid, node, sip_port, public_ip, region, state,
    restarts, updated_at."""
    ids = sorted(x.decode() for x in redis.smembers(keys.GATEWAYS_SET))
    pool = {k.decode(): v.decode() for k, v in redis.hgetall(keys.POOL_HASH).items()}
    p = redis.pipeline(transaction=False)
    for gid in ids:
        p.hgetall(keys.gw_key(gid))
        p.exists(keys.gw_alive_key(gid))
        p.scard(keys.gw_calls_key(gid))
    res = p.execute()
    out = []
    for i, gid in enumerate(ids):
        h = {k.decode(): v.decode() for k, v in res[3 * i].items()}
        out.append({
            "gateway_id": gid,
            "alive": bool(res[3 * i + 1]),
            "capacity": int(h.get("capacity", 0)),
            "active": int(h.get("active", 0)),
            "calls": res[3 * i + 2],
            "pid": int(h["pid"]) if h.get("pid") else None,
            "node": h.get("node"),
            "sip_port": int(h["sip_port"]) if h.get("sip_port") else None,
            "public_ip": h.get("public_ip") or None,
            "region": h.get("region", ""),
            "state": h.get("state"),
            "started_at": float(h["started_at"]) if h.get("started_at") else None,
            "updated_at": float(h["updated_at"]) if h.get("updated_at") else None,
            "restarts": int(pool.get(f"{gid}:restarts", 0)),
        })
    return out


def media_hosts(redis) -> dict[str, dict]:
    """Every node's media hosts as their supervisors last published them: {name: {pid, alive,
    restarts, node}}; a node whose supervisor stopped publishing drops out."""
    nodes = sorted(x.decode() for x in redis.smembers(keys.MEDIA_NODES_SET))
    p = redis.pipeline(transaction=False)
    for node in nodes:
        p.hgetall(keys.media_hosts_key(node))
    hosts: dict[str, dict] = {}
    for node, published in zip(nodes, p.execute(), strict=True):
        if not published:
            redis.srem(keys.MEDIA_NODES_SET, node)
        for name, state in published.items():
            hosts[name.decode()] = {**json.loads(state), "node": node}
    return hosts


def originate_regions(redis, pool: list[dict] | None = None) -> list[str]:
    """The shared queue's region ("") and every region gateways have reported (``pool``: a
    pool_status already read)."""
    regions = {g["region"] for g in (pool if pool is not None else pool_status(redis)) if g["region"]}
    return ["", *sorted(regions)]


def waiting_calls(redis, pool: list[dict] | None = None) -> dict[str, tuple[int, float]]:
    """Calls waiting for a free gateway (or for room under a cap: wait_at_caps), by tenant ("" for
    none): (how many, queued_at of the oldest), every region together. Two round trips whatever the
    queue's length."""
    regions = originate_regions(redis, pool)
    p = redis.pipeline(transaction=False)
    for region in regions:
        p.lrange(keys.originate_ring(region), 0, -1)
    queues = [(region, t.decode()) for region, ring in zip(regions, p.execute(), strict=True) for t in ring]
    for region, tenant in queues:
        p.llen(keys.tenant_queue(region, tenant))
        p.lindex(keys.tenant_queue(region, tenant), 0)
    replies = p.execute()
    waiting: dict[str, tuple[int, float]] = {}
    for i, (_, tenant) in enumerate(queues):
        count, oldest = replies[2 * i], replies[2 * i + 1]
        if not count:
            continue
        queued_at = float(json.loads(oldest).get("queued_at") or time.time()) if oldest else time.time()
        known_count, known_oldest = waiting.get(tenant, (0, queued_at))
        waiting[tenant] = (known_count + count, min(known_oldest, queued_at))
    return waiting


def pool_capacity(redis, pool: list[dict] | None = None) -> tuple[int, int]:
    """(total capacity, active calls) of the gateways that are alive."""
    alive = [g for g in (pool if pool is not None else pool_status(redis)) if g["alive"]]
    return sum(g["capacity"] for g in alive), sum(g["active"] for g in alive)


def pool_room(redis, tenant: str | None = None) -> int:
    """Calls the pool can take now: free slots of live gateways minus calls already waiting for
    them (the pool's state read once). For a tenant, at least its fair share of the pool less its
    own calls waiting: tenants are served in turn, so another tenant's backlog does not hold its
    calls back, and it keeps enough waiting to be served its share."""
    pool = pool_status(redis)
    capacity, active = pool_capacity(redis, pool)
    waiting = waiting_calls(redis, pool)
    free = capacity - active - sum(count for count, _ in waiting.values())
    if tenant is None:
        return free
    others = len([t for t in waiting if t != tenant])
    return max(free, -(-capacity // (others + 1)) - waiting.get(tenant, (0, 0.0))[0])
