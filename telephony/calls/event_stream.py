"""Reading the gateways' event stream as a consumer group: several recorders share the work, and
the events a dead recorder had taken are claimed by the others after CLAIM_IDLE_MS."""
from __future__ import annotations

import logging
import os
import socket
import time

import redis

from telephony.gateway import events as gw

from .recorder import record_events

log = logging.getLogger(__name__)

GROUP = "recorder"
CLAIM_IDLE_MS = 30_000


def ensure_group(client: redis.Redis) -> None:
    try:
        client.xgroup_create(gw.EVENTS_STREAM, GROUP, id="0", mkstream=True)
    except redis.ResponseError as exc:
        if "BUSYGROUP" not in str(exc):
            raise


def tenant_of(client: redis.Redis, event: dict) -> str:
    tenant = event.get("tenant")
    if not tenant:
        raw = client.hget(gw.call_key(event["call_id"]), "tenant")
        tenant = raw.decode() if raw else ""
    return tenant


def handle(client: redis.Redis, entries) -> int:
    decoded = gw.decode_entries(entries)
    done = record_events([(event, tenant_of(client, event)) for _, event in decoded])
    # What failed stays pending: claimed again after CLAIM_IDLE_MS rather than lost.
    acked = [entry_id for (entry_id, _), ok in zip(decoded, done, strict=True) if ok]
    if acked:
        client.xack(gw.EVENTS_STREAM, GROUP, *acked)
    return len(entries)


def read_once(client: redis.Redis, consumer: str, block_ms: int) -> int:
    ensure_group(client)
    # Redis 6.2 answers [cursor, entries], Redis 7 adds deleted ids: the entries are second either way.
    claimed = client.xautoclaim(gw.EVENTS_STREAM, GROUP, consumer, CLAIM_IDLE_MS, "0-0", count=100)[1]
    done = handle(client, claimed) if claimed else 0
    reply = client.xreadgroup(GROUP, consumer, {gw.EVENTS_STREAM: ">"}, count=200, block=block_ms)
    for _, entries in reply or []:
        done += handle(client, entries)
    return done


def consume(client: redis.Redis, consumer: str | None = None, block_ms: int = 1000, stop=lambda: False) -> None:
    """Record events until stop() is true; rides out Redis outages (events wait in the stream)."""
    consumer = consumer or f"{socket.gethostname()}-{os.getpid()}"
    while not stop():
        try:
            read_once(client, consumer, block_ms)
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            log.warning("Redis unavailable (%s); retrying in 1 s", exc)
            time.sleep(1)
