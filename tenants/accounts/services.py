"""Issuing, checking and revoking API keys; the tenant's users and their roles. Run inside the
tenant's schema.

A key reads `<account_sid>.<secret>`: the account SID says which tenant (and so which schema) to
look in, without a special host name; only a SHA-256 of the secret is stored. Plain SHA-256 is
enough because the secret is 256 random bits, not a password a person chose.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import secrets

from django.contrib.auth import get_user_model
from django.utils import timezone

from .models import ApiKey

SEPARATOR = "."


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def split_key(key: str) -> tuple[str, str] | None:
    account_sid, sep, secret = key.strip().partition(SEPARATOR)
    if not sep or not account_sid.startswith("AC") or not secret:
        return None
    return account_sid, secret


def issue_api_key(account_sid: str, name: str) -> str:
    """Create a key and return it in full; this is the only time it can be seen."""
    secret = secrets.token_urlsafe(32)
    ApiKey.objects.create(name=name, prefix=secret[:8], secret_hash=hash_secret(secret))
    return f"{account_sid}{SEPARATOR}{secret}"


LAST_USED_RESOLUTION = dt.timedelta(seconds=60)


def find_active_key(secret: str) -> ApiKey | None:
    """The live key with this secret. Its last use is written at most once a minute: a write (and
    its commit) on every request was a third of the time `POST /api/v1/calls` took."""
    key = ApiKey.objects.filter(secret_hash=hash_secret(secret), revoked_at__isnull=True).first()
    now = timezone.now()
    if key is not None and (key.last_used_at is None or now - key.last_used_at > LAST_USED_RESOLUTION):
        ApiKey.objects.filter(pk=key.pk).update(last_used_at=now)
    return key


def revoke_api_key(key_id: int) -> bool:
    return bool(ApiKey.objects.filter(pk=key_id, revoked_at__isnull=True).update(revoked_at=timezone.now()))




# --- users of the tenant -------------------------------------------------------------------------
# A member builds and runs campaigns; an admin (is_staff) also manages API keys, webhooks, the
# do-not-call list and users; the owner (is_superuser, made with the tenant) always stays an admin.


class RoleChangeRefused(Exception):
    """The role cannot change; the message says why, for the person who asked."""


def user_create(*, username: str, email: str = "", password: str, is_admin: bool = False):
    """A user of the current tenant schema: an admin (staff) or a member."""
    return get_user_model().objects.create_user(username, email=email, password=password, is_staff=is_admin)


def user_set_role(user, *, is_admin: bool, changed_by) -> None:
    """Make `user` an admin or a member. Nobody changes their own role (an admin could lock the
    tenant out of its settings by mistake), and the owner stays an admin."""
    if user.pk == changed_by.pk:
        raise RoleChangeRefused("You cannot change your own role: ask another admin.")
    if user.is_superuser:
        raise RoleChangeRefused(f"{user.username} is the account owner (superuser) and stays an admin.")
    if user.is_staff != is_admin:
        user.is_staff = is_admin
        user.save(update_fields=["is_staff"])
