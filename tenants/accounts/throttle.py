"""Failed API-key attempts, counted per client address in the cache (Redis, shared by every web
process): past API_KEY_FAILURE_LIMIT failures within API_KEY_FAILURE_WINDOW_S the address gets 429
until the window ends, even with a good key. Per address only: a per-account lock would let anyone
switch off a tenant's API by sending bad keys for its account SID (whose keys are 256-bit secrets)."""
from __future__ import annotations

from django.conf import settings
from django.core.cache import cache
from rest_framework import exceptions


def _key(request) -> str:
    return f"vp:apikey-failures:{request.META.get('REMOTE_ADDR', '')}"


def check(request) -> None:
    if (cache.get(_key(request)) or 0) >= settings.API_KEY_FAILURE_LIMIT:
        raise exceptions.Throttled(detail="Too many failed API key attempts from this address; "
                                          f"try again within {settings.API_KEY_FAILURE_WINDOW_S} s.")


def record_failure(request) -> None:
    key = _key(request)
    cache.add(key, 0, timeout=settings.API_KEY_FAILURE_WINDOW_S)  # the window starts at the first failure
    try:
        cache.incr(key)
    except ValueError:  # expired between add and incr
        cache.add(key, 1, timeout=settings.API_KEY_FAILURE_WINDOW_S)
