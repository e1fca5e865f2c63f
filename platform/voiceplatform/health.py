"""Health of the shared services, each checked for real (a query, a PING, a message, a worker ping)."""
from __future__ import annotations

import asyncio
import time
import uuid

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.conf import settings
from django.db import connection


def _timed(check) -> dict:
    started = time.perf_counter()
    try:
        detail = check()
        status = {"ok": True}
        if detail:
            status["detail"] = detail
    except Exception as exc:  # a health check reports every failure, whatever its type
        status = {"ok": False, "error": f"{type(exc).__name__}: {exc}"[:300]}
    status["ms"] = round((time.perf_counter() - started) * 1000, 1)
    return status


def check_postgres() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")


def check_redis() -> None:
    import redis

    redis.Redis.from_url(settings.REDIS_URL, socket_connect_timeout=2, socket_timeout=2).ping()


def check_channel_layer() -> None:
    layer = get_channel_layer()

    async def round_trip():
        channel = await layer.new_channel("healthz.")
        await layer.send(channel, {"type": "healthz", "nonce": uuid.uuid4().hex})
        await asyncio.wait_for(layer.receive(channel), timeout=2)

    async_to_sync(round_trip)()


def check_celery() -> str:
    from voiceplatform.celery import app

    replies = app.control.ping(timeout=1.0)
    if not replies:
        raise RuntimeError("no Celery worker answered a ping")
    return f"{len(replies)} worker(s)"


CHECKS = {
    "postgres": check_postgres,
    "redis": check_redis,
    "channel_layer": check_channel_layer,
    "celery": check_celery,
}


def platform_health() -> dict:
    services = {name: _timed(check) for name, check in CHECKS.items()}
    return {"ok": all(s["ok"] for s in services.values()), "services": services}
