"""Reading the gateways' event stream as a consumer group: several recorders share the work, and
the events a dead recorder had taken are claimed by the others after CLAIM_IDLE_MS.

A recorder rides out outages of PostgreSQL and Redis: what it could not record stays unacknowledged
in the stream, it tries again with backoff, and once both answer it first records its own pending
events (those of the outage), then new ones. Each recorder marks itself alive in RECORDERS_KEY."""
from __future__ import annotations

import logging
import os
import socket
import time

import redis
from django.db import DatabaseError, connections

from telephony.gateway import events as gw

from .recorder import record_events

log = logging.getLogger(__name__)

GROUP = "recorder"
CLAIM_IDLE_MS = 30_000
BLOCK = 1000  # events read at once: each tenant's are recorded together (telephony.calls.recorder)
# After a short read, events are let gather this long before the next: a block costs a transaction,
# a Redis script and a notice hop whatever its size, and at 150 calls a second a recorder that reads
# as events come reads a few at a time (measured by bench/recorder.py).
GATHER_S = 0.1
RECORDERS_KEY = "calls:recorders"  # sorted set: consumer name -> when it last read (unix time)
ALIVE_WITHIN_S = 10.0
MAX_PAUSE_S = 5.0


def ensure_group(client: redis.Redis) -> None:
    try:
        client.xgroup_create(gw.EVENTS_STREAM, GROUP, id="0", mkstream=True)
    except redis.ResponseError as exc:
        if "BUSYGROUP" not in str(exc):
            raise


def tenants_of(client: redis.Redis, events: list[dict]) -> list[str]:
    """Each event's tenant: its own field, else the call's (one round trip for those without)."""
    asked, known = [event["call_id"] for event in events if not event.get("tenant")], {}
    if asked:
        pipe = client.pipeline(transaction=False)
        for call_id in asked:
            pipe.hget(gw.call_key(call_id), "tenant")
        known = {call_id: raw.decode() if raw else "" for call_id, raw in zip(asked, pipe.execute(), strict=True)}
    return [event.get("tenant") or known[event["call_id"]] for event in events]


def handle(client: redis.Redis, entries) -> int:
    decoded = gw.decode_entries(entries)
    events = [event for _, event in decoded]
    done = record_events(list(zip(events, tenants_of(client, events), strict=True)))
    # What failed stays pending: claimed again after CLAIM_IDLE_MS rather than lost.
    acked = [entry_id for (entry_id, _), ok in zip(decoded, done, strict=True) if ok]
    if acked:
        client.xack(gw.EVENTS_STREAM, GROUP, *acked)
    return len(entries)


def read_once(client: redis.Redis, consumer: str, block_ms: int) -> int:
    ensure_group(client)
    # Redis 6.2 answers [cursor, entries], Redis 7 adds deleted ids: the entries are second either way.
    claimed = client.xautoclaim(gw.EVENTS_STREAM, GROUP, consumer, CLAIM_IDLE_MS, "0-0", count=BLOCK)[1]
    done = handle(client, claimed) if claimed else 0
    reply = client.xreadgroup(GROUP, consumer, {gw.EVENTS_STREAM: ">"}, count=BLOCK, block=block_ms)
    for _, entries in reply or []:
        done += handle(client, entries)
    return done


def read_own_pending(client: redis.Redis, consumer: str) -> int:
    """Record, once through, the events this consumer read but did not acknowledge (an outage)."""
    ensure_group(client)
    done, after = 0, "0"
    while True:
        reply = client.xreadgroup(GROUP, consumer, {gw.EVENTS_STREAM: after}, count=BLOCK)
        entries = reply[0][1] if reply else []
        if not entries:
            return done
        done += handle(client, entries)
        after = entries[-1][0]
        mark_alive(client, consumer)  # a long backlog is work, not death


def mark_alive(client: redis.Redis, consumer: str) -> None:
    client.zadd(RECORDERS_KEY, {consumer: time.time()})


def recorder_status(client: redis.Redis) -> dict:
    """The recorders alive (read within ALIVE_WITHIN_S) and their lag: events read but not yet
    acknowledged (pending) and events not read yet (undelivered, counted up to 10 000)."""
    now = time.time()
    client.zremrangebyscore(RECORDERS_KEY, 0, now - 86_400)
    alive = sorted(name.decode() for name in client.zrangebyscore(RECORDERS_KEY, now - ALIVE_WITHIN_S, "+inf"))
    group = next((g for g in client.xinfo_groups(gw.EVENTS_STREAM) if g["name"] == GROUP.encode()), None) \
        if client.exists(gw.EVENTS_STREAM) else None
    pending = int(group["pending"]) if group else 0
    after = group["last-delivered-id"].decode() if group else "0-0"
    undelivered = len(client.xrange(gw.EVENTS_STREAM, f"({after}", "+", count=10_000))
    return {"alive": alive, "pending": pending, "undelivered": undelivered}


def consume(client: redis.Redis, consumer: str | None = None, block_ms: int = 1000, stop=lambda: False) -> None:
    """Record events until stop() is true; rides out PostgreSQL and Redis outages (events wait in the
    stream, unacknowledged)."""
    consumer = consumer or f"{socket.gethostname()}-{os.getpid()}"
    backlog, pause = True, 0.0
    while not stop():
        try:
            mark_alive(client, consumer)
            if backlog:
                read_own_pending(client, consumer)
                backlog = False
            if 0 < read_once(client, consumer, block_ms) < BLOCK:
                _sleep(GATHER_S, stop)
            pause = 0.0
            continue
        except redis.RedisError as exc:  # down, restarting (LOADING), or the stream gone with its group
            what = f"Redis unavailable ({exc})"
        except DatabaseError as exc:
            what = f"PostgreSQL unavailable ({str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__})"
            backlog = True
            _drop_connections()
        pause = min(MAX_PAUSE_S, max(0.5, pause * 2))
        log.warning("%s; events wait in the stream; retrying in %.1f s", what, pause)
        _sleep(pause, stop)


def _drop_connections() -> None:
    """A connection that saw the server go is useless; the next query opens a new one."""
    for connection in connections.all(initialized_only=True):
        try:
            connection.close()
        except DatabaseError:
            pass


def _sleep(seconds: float, stop) -> None:
    deadline = time.monotonic() + seconds
    while not stop() and time.monotonic() < deadline:
        time.sleep(0.1)
