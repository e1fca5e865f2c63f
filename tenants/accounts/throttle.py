"""Failed API-key attempts, counted per client address in Redis (shared by every web process): past
API_KEY_FAILURE_LIMIT failures within API_KEY_FAILURE_WINDOW_S the address gets 429 until the window
ends, even with a good key. Per address only: a per-account lock would let anyone switch off a
tenant's API by sending bad keys for its account SID (whose keys are 256-bit secrets).

The counter is read on every API request, so it is a plain Redis key read with the process's client
(core.keys), not Django's cache (which builds a Redis client per operation: ~0.6 ms a request)."""
from __future__ import annotations

from django.conf import settings
from rest_framework import exceptions

from core import keys
from core.redis_client import get_redis


def _key(request) -> str:
    return keys.api_key_failures(request.META.get("REMOTE_ADDR", ""))


def check(request) -> None:
    if int(get_redis().get(_key(request)) or 0) >= settings.API_KEY_FAILURE_LIMIT:
        raise exceptions.Throttled(detail="Too many failed API key attempts from this address; "
                                          f"try again within {settings.API_KEY_FAILURE_WINDOW_S} s.")


def record_failure(request) -> None:
    key = _key(request)
    with get_redis().pipeline(transaction=True) as pipe:
        pipe.set(key, 0, ex=settings.API_KEY_FAILURE_WINDOW_S, nx=True)  # the window starts at the first failure
        pipe.incr(key)
        pipe.execute()
