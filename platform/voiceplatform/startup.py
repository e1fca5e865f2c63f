"""What every entry point does before Django loads: have a database and a Redis, or say why not."""
from __future__ import annotations

import os
import sys

from .embedded import ServiceError, ensure_services


def fail(message: str) -> None:
    """One line naming the problem and the fix; no traceback wall."""
    print(f"voiceplatform: {message}", file=sys.stderr)
    raise SystemExit(2)


def check_database(url: str) -> None:
    import psycopg

    try:
        psycopg.connect(url, connect_timeout=3).close()
    except psycopg.Error as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        fail(f"cannot reach PostgreSQL at DATABASE_URL ({reason}); fix the URL or unset it to use the embedded server")


def check_redis(url: str) -> None:
    import redis

    try:
        redis.Redis.from_url(url, socket_connect_timeout=3, socket_timeout=3).ping()
    except (redis.RedisError, OSError, ValueError) as exc:
        fail(f"cannot reach Redis at REDIS_URL ({exc}); fix the URL or unset it to use the embedded server")


def prepare_process() -> None:
    try:
        ensure_services()
    except ServiceError as exc:
        fail(str(exc))
    check_database(os.environ["DATABASE_URL"])
    check_redis(os.environ["REDIS_URL"])
