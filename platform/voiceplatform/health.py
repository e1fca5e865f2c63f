"""Health of the platform, each part checked for real and on its own: PostgreSQL (a query), Redis
(PING), the channel layer (a message sent and received), the dialer and webhooks Celery workers
(which workers consume each queue), the call recorder (alive, and its lag on calls:events), the
gateway pool (workers alive, free slots), and, for information, the media hosts and the restart
counts of `manage.py run`.

The checks run concurrently in threads of their own, each bounded by its own timeouts, and the
answer is given by DEADLINE_S whatever hangs: a part that has not answered by then is reported down.
A check still running from an earlier request is awaited again, not started twice, so a hung server
never piles up threads.
"""
from __future__ import annotations

import asyncio
import time
import uuid
from concurrent.futures import Future, ThreadPoolExecutor

from channels.layers import get_channel_layer
from django.conf import settings

DEADLINE_S = 1.5  # the whole answer, so that /healthz answers within 2 s
CHECK_TIMEOUT_S = 1.0  # each server round trip
REQUIRED = ("postgres", "redis", "channel_layer", "dialer", "webhooks", "recorder", "gateways", "media_hosts")

_executor = ThreadPoolExecutor(max_workers=8, thread_name_prefix="healthz")
_running: dict[str, Future] = {}


def _redis():
    import redis

    return redis.Redis.from_url(settings.REDIS_URL, socket_connect_timeout=CHECK_TIMEOUT_S,
                                socket_timeout=CHECK_TIMEOUT_S)


def check_postgres() -> dict:
    import psycopg
    from django.db import connections

    params = connections["default"].get_connection_params()
    for django_only in ("cursor_factory", "context"):
        params.pop(django_only, None)
    # libpq waits at least 2 s to connect; the statement gets CHECK_TIMEOUT_S
    params.update(connect_timeout=2, options=f"-c statement_timeout={int(CHECK_TIMEOUT_S * 1000)}")
    with psycopg.connect(**params) as conn:
        conn.execute("SELECT 1")
    return {}


def check_redis() -> dict:
    _redis().ping()
    return {}


async def check_channel_layer() -> dict:
    layer = get_channel_layer()
    channel = await layer.new_channel("healthz.")
    await layer.send(channel, {"type": "healthz", "nonce": uuid.uuid4().hex})
    await layer.receive(channel)
    return {}


def celery_queues() -> dict[str, list[str]]:
    """Queue name -> the workers consuming it, as the workers themselves answer."""
    from voiceplatform.celery import app

    _redis().ping()  # fails at once with the broker down, where the broadcast retries for seconds
    replies = app.control.inspect(timeout=CHECK_TIMEOUT_S).active_queues() or {}
    consumers: dict[str, list[str]] = {}
    for worker, queues in replies.items():
        for queue in queues:
            consumers.setdefault(queue["name"], []).append(worker)
    return consumers


def _queue_check(task: str):
    """The check of the workers that run `task` (whichever queue it is routed to)."""

    def check(consumers: dict[str, list[str]]) -> dict:
        from voiceplatform.celery import app

        queue = app.amqp.router.route({}, task)["queue"].name
        workers = sorted(consumers.get(queue, []))
        if not workers:
            raise RuntimeError(f"no Celery worker consumes the {queue!r} queue")
        return {"queue": queue, "workers": workers}

    return check


def check_recorder() -> dict:
    from telephony.calls.event_stream import recorder_status

    status = recorder_status(_redis())
    if not status["alive"]:
        raise RuntimeError(f"no call recorder is reading calls:events ({status['pending']} pending, "
                           f"{status['undelivered']} unread)")
    return status


def check_gateways() -> dict:
    from telephony.gateway.client import pool_status

    alive = [gateway for gateway in pool_status(_redis()) if gateway["alive"]]
    if not alive:
        raise RuntimeError("no gateway worker is alive")
    return {"alive": len(alive), "capacity": sum(g["capacity"] for g in alive),
            "free_slots": sum(max(0, g["capacity"] - g["active"]) for g in alive),
            "restarts": sum(g["restarts"] for g in alive)}


def check_media_hosts() -> dict:
    """The media hosts the gateway supervisors run (each restarts its own); a dead one is a failure
    until its supervisor has started it again."""
    from telephony.gateway.client import media_hosts

    hosts = media_hosts(_redis())
    dead = sorted(name for name, host in hosts.items() if not host["alive"])
    if dead:
        raise RuntimeError(f"media host(s) down: {', '.join(dead)}")
    return {"alive": len(hosts), "restarts": sum(host["restarts"] for host in hosts.values()),
            "hosts": hosts}


def check_runner() -> dict:
    from .processes import read_state

    state = read_state()
    if state is None:
        return {"running": False}
    return {"running": True, "processes": {name: {key: unit[key] for key in ("alive", "restarts", "last_exit")}
                                           for name, unit in state["processes"].items()}}


def _in_thread(name: str, check, *args) -> asyncio.Future:
    future = _running.get(name)
    if future is None or future.done():
        future = _running[name] = _executor.submit(check, *args)
    # shielded: a request that gives up must not cancel what another request awaits
    return asyncio.shield(asyncio.wrap_future(future))


async def _queues_then(check) -> dict:
    return check(await _in_thread("celery", celery_queues))


async def _timed(coroutine, started: float) -> dict:
    try:
        status = {"ok": True, **(await coroutine)}
    except Exception as exc:  # a health check reports every failure, whatever its type
        status = {"ok": False, "error": f"{type(exc).__name__}: {exc}"[:300]}
    status["ms"] = round((time.perf_counter() - started) * 1000, 1)
    return status


async def platform_health() -> dict:
    started = time.perf_counter()
    checks = {
        "postgres": _in_thread("postgres", check_postgres),
        "redis": _in_thread("redis", check_redis),
        "channel_layer": check_channel_layer(),
        "dialer": _queues_then(_queue_check("campaigns.tasks.dispatch_dialers")),
        "webhooks": _queues_then(_queue_check("telephony.calls.tasks.deliver_webhook")),
        "recorder": _in_thread("recorder", check_recorder),
        "gateways": _in_thread("gateways", check_gateways),
        "media_hosts": _in_thread("media_hosts", check_media_hosts),
        "runner": _in_thread("runner", check_runner),
    }
    tasks = {name: asyncio.ensure_future(_timed(check, started)) for name, check in checks.items()}
    await asyncio.wait(tasks.values(), timeout=DEADLINE_S)
    services = {}
    for name, task in tasks.items():
        if task.done():
            services[name] = task.result()
        else:
            task.cancel()
            services[name] = {"ok": False, "error": f"no answer within {DEADLINE_S} s", "ms": DEADLINE_S * 1000}
        if name not in REQUIRED:
            services[name]["required"] = False
    return {"ok": all(services[name]["ok"] for name in REQUIRED), "services": services}
