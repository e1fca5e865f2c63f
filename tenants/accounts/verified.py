"""API keys verified recently, per process: a key checked once is trusted for API_AUTH_CACHE_S seconds
without reading the tenant and the key again (two queries and a schema switch per request). The
account's auth token is checked every time (its rotation's grace period ends in the tenant's row).

A revoked key or a suspended tenant is refused by every web process within API_AUTH_CACHE_S (0: no
cache); this process forgets at once (services.revoke_api_key). Only successes are kept: a bad key is
checked, and counted by the throttle, every time. Entries are keyed by a SHA-256 of the secret, never
the secret itself.
"""
from __future__ import annotations

from django.conf import settings

from core.recent import MISSING, Recent

_principals = Recent(settings.API_AUTH_CACHE_S)


def recall(key):
    """The principal remembered under ``key`` less than API_AUTH_CACHE_S ago, or None."""
    principal = _principals.recall(key)
    return None if principal is MISSING else principal


def remember(key, principal) -> None:
    _principals.remember(key, principal)


def forget_all() -> None:
    """After a revocation: every credential is checked again (in this process; others within the TTL)."""
    _principals.forget_all()
