"""Reading the gateways' event stream as a consumer group: several recorders share the work, and
the events a dead recorder had taken are claimed by the others at once (a recorder no longer alive in
keys.RECORDERS, or one of this host whose process is gone), any other's after CLAIM_IDLE_MS.

A recorder rides out outages of PostgreSQL and Redis: what it could not record stays unacknowledged
in the stream, it tries again with backoff, and once both answer it first records its own pending
events (those of the outage), then new ones. Each recorder marks itself alive in keys.RECORDERS."""
from __future__ import annotations

import logging
import os
import socket
import time

import redis
from django.db import DatabaseError, connections

from core import keys
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
ALIVE_WITHIN_S = 10.0
MAX_PAUSE_S = 5.0


def ensure_group(client: redis.Redis) -> None:
    try:
        client.xgroup_create(keys.EVENTS_STREAM, GROUP, id="0", mkstream=True)
    except redis.ResponseError as exc:
        if "BUSYGROUP" not in str(exc):
            raise


def tenants_of(client: redis.Redis, events: list[dict]) -> list[str]:
    """Each event's tenant: its own field, else the call's (one round trip for those without)."""
    asked, known = [event["call_id"] for event in events if not event.get("tenant")], {}
    if asked:
        pipe = client.pipeline(transaction=False)
        for call_id in asked:
            pipe.hget(keys.call_key(call_id), "tenant")
        known = {call_id: raw.decode() if raw else "" for call_id, raw in zip(asked, pipe.execute(), strict=True)}
    return [event.get("tenant") or known[event["call_id"]] for event in events]


def handle(client: redis.Redis, entries) -> int:
    decoded = gw.decode_entries(entries)
    events = [event for _, event in decoded]
    done = record_events(list(zip(events, tenants_of(client, events), strict=True)))
    # What failed stays pending: claimed again after CLAIM_IDLE_MS rather than lost.
    acked = [entry_id for (entry_id, _), ok in zip(decoded, done, strict=True) if ok]
    if acked:
        client.xack(keys.EVENTS_STREAM, GROUP, *acked)
    return len(entries)


def read_once(client: redis.Redis, consumer: str, block_ms: int) -> int:
    ensure_group(client)
    done = claim_from_the_dead(client, consumer)
    # Redis 6.2 answers [cursor, entries], Redis 7 adds deleted ids: the entries are second either way.
    claimed = client.xautoclaim(keys.EVENTS_STREAM, GROUP, consumer, CLAIM_IDLE_MS, "0-0", count=BLOCK)[1]
    done += handle(client, claimed) if claimed else 0
    reply = client.xreadgroup(GROUP, consumer, {keys.EVENTS_STREAM: ">"}, count=BLOCK, block=block_ms)
    for _, entries in reply or []:
        done += handle(client, entries)
    return done


def claim_from_the_dead(client: redis.Redis, consumer: str) -> int:
    """Record the pending events of recorders that are gone: left waiting until CLAIM_IDLE_MS, a
    call's answer would be recorded after its end."""
    done = 0
    for other in client.xinfo_consumers(keys.EVENTS_STREAM, GROUP):
        name = other["name"].decode() if isinstance(other["name"], bytes) else other["name"]
        if name == consumer or not int(other["pending"]) or _alive(client, name):
            continue
        log.info("recorder %s is gone: %s records its pending events", name, consumer)
        while True:
            ids = [p["message_id"] for p in client.xpending_range(
                keys.EVENTS_STREAM, GROUP, "-", "+", 200, consumername=name)]
            if not ids:  # nothing of it is left (a consumer's pending events go with it)
                client.xgroup_delconsumer(keys.EVENTS_STREAM, GROUP, name)
                break
            claimed = [entry for entry in client.xclaim(keys.EVENTS_STREAM, GROUP, consumer, 0, ids) if entry[1]]
            if not claimed:
                break  # trimmed from the stream, or taken by another recorder meanwhile
            done += handle(client, claimed)
    return done


def _alive(client: redis.Redis, name: str) -> bool:
    host, _, pid = name.rpartition("-")
    if host == socket.gethostname() and pid.isdigit() and not _process_exists(int(pid)):
        return False  # restarted here: no need to wait for its mark to grow old
    seen = client.zscore(keys.RECORDERS, name)
    return seen is not None and seen > time.time() - ALIVE_WITHIN_S


def _process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return True


def read_own_pending(client: redis.Redis, consumer: str) -> int:
    """Record, once through, the events this consumer read but did not acknowledge (an outage)."""
    ensure_group(client)
    done, after = 0, "0"
    while True:
        reply = client.xreadgroup(GROUP, consumer, {keys.EVENTS_STREAM: after}, count=BLOCK)
        entries = reply[0][1] if reply else []
        if not entries:
            return done
        done += handle(client, entries)
        after = entries[-1][0]
        mark_alive(client, consumer)  # a long backlog is work, not death


def mark_alive(client: redis.Redis, consumer: str) -> None:
    client.zadd(keys.RECORDERS, {consumer: time.time()})


def recorder_status(client: redis.Redis) -> dict:
    """The recorders alive (read within ALIVE_WITHIN_S) and their lag: events read but not yet
    acknowledged (pending) and events not read yet (undelivered, counted up to 10 000)."""
    now = time.time()
    client.zremrangebyscore(keys.RECORDERS, 0, now - 86_400)
    alive = sorted(name.decode() for name in client.zrangebyscore(keys.RECORDERS, now - ALIVE_WITHIN_S, "+inf"))
    group = next((g for g in client.xinfo_groups(keys.EVENTS_STREAM) if g["name"] == GROUP.encode()), None) \
        if client.exists(keys.EVENTS_STREAM) else None
    pending = int(group["pending"]) if group else 0
    after = group["last-delivered-id"].decode() if group else "0-0"
    undelivered = len(client.xrange(keys.EVENTS_STREAM, f"({after}", "+", count=10_000))
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
