"""API credentials verified recently, per process: a key checked once is trusted for API_AUTH_CACHE_S
seconds without reading the tenant and the key again (two queries and a schema switch per request).

A revoked key or a suspended tenant is refused by every web process within API_AUTH_CACHE_S (0: no
cache); this process forgets at once (services.revoke_api_key). Only successes are kept: a bad key is
checked, and counted by the throttle, every time. Entries are keyed by a SHA-256 of the secret, never
the secret itself.
"""
from __future__ import annotations

import threading
from collections.abc import Hashable

from cachetools import TTLCache
from django.conf import settings

_lock = threading.Lock()  # cachetools' caches are not thread-safe, and daphne serves from many threads
_cache: TTLCache | None = None


def _entries() -> TTLCache | None:
    global _cache
    if _cache is None and settings.API_AUTH_CACHE_S > 0:
        _cache = TTLCache(maxsize=10_000, ttl=settings.API_AUTH_CACHE_S)
    return _cache


def recall(key: Hashable):
    """What `remember` kept under ``key`` less than API_AUTH_CACHE_S ago, or None."""
    with _lock:
        entries = _entries()
        return entries.get(key) if entries is not None else None


def remember(key: Hashable, principal) -> None:
    with _lock:
        if (entries := _entries()) is not None:
            entries[key] = principal


def forget_all() -> None:
    """After a revocation: every credential is checked again (in this process; others within the TTL)."""
    with _lock:
        if _cache is not None:
            _cache.clear()
