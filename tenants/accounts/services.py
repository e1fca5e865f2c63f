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
from django.contrib.auth.models import Group
from django.db import transaction
from django.utils import timezone

from . import verified
from .models import ApiKey

SEPARATOR = "."


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def split_key(key: str) -> tuple[str, str] | None:
    account_sid, sep, secret = key.strip().partition(SEPARATOR)
    if not sep or not account_sid.startswith("AC") or not secret:
        return None
    return account_sid, secret


def issue_api_key(account_sid: str, name: str, read_only: bool = False) -> str:
    """Create a key and return it in full; this is the only time it can be seen."""
    secret = secrets.token_urlsafe(32)
    ApiKey.objects.create(name=name, prefix=secret[:8], secret_hash=hash_secret(secret), read_only=read_only)
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
    """Revoke a key: refused at once by this process, by every other within API_AUTH_CACHE_S (verified.py)."""
    revoked = bool(ApiKey.objects.filter(pk=key_id, revoked_at__isnull=True).update(revoked_at=timezone.now()))
    verified.forget_all()
    return revoked




# --- users of the tenant -------------------------------------------------------------------------
# Roles: a viewer reads everything and changes nothing; a member builds and runs campaigns; an admin
# (is_staff) also manages API keys, webhooks, the do-not-call list and users; the owner (is_superuser,
# made with the tenant) always stays an admin. Viewers are the members of the VIEWER_GROUP group.
ROLES = ("admin", "member", "viewer")
VIEWER_GROUP = "viewer"


class RoleChangeRefused(Exception):
    """The role cannot change; the message says why, for the person who asked."""


def user_create(*, username: str, email: str = "", password: str, role: str = "member"):
    """A user of the current tenant schema with one of ROLES."""
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}")
    with transaction.atomic():
        user = get_user_model().objects.create_user(username, email=email, password=password,
                                                    is_staff=role == "admin")
        if role == "viewer":
            user.groups.add(_viewer_group())
    return user


def _viewer_group():
    return Group.objects.get_or_create(name=VIEWER_GROUP)[0]


def _refuse_change_of(user, changed_by, what: str) -> None:
    """Nobody changes their own role or access (an admin could lock the tenant out of its settings
    by mistake), and the owner stays an active admin."""
    if user.pk == changed_by.pk:
        raise RoleChangeRefused(f"You cannot change your own {what}: ask another admin.")
    if user.is_superuser:
        raise RoleChangeRefused(f"{user.username} is the account owner (superuser) and stays an active admin.")


def user_set_role(user, *, role: str, changed_by) -> None:
    """Make `user` an admin, a member or a viewer."""
    if role not in ROLES:
        raise RoleChangeRefused(f"Unknown role {role!r}: one of {', '.join(ROLES)}.")
    _refuse_change_of(user, changed_by, "role")
    with transaction.atomic():
        if user.is_staff != (role == "admin"):
            user.is_staff = role == "admin"
            user.save(update_fields=["is_staff"])
        if role == "viewer":
            user.groups.add(_viewer_group())
        else:
            user.groups.remove(*Group.objects.filter(name=VIEWER_GROUP))


def user_set_active(user, *, active: bool, changed_by) -> None:
    """Let `user` sign in again, or not any more (kept, with their history, never deleted). Their
    sessions end at their next request: Django refuses inactive users."""
    _refuse_change_of(user, changed_by, "access")
    if user.is_active != active:
        user.is_active = active
        user.save(update_fields=["is_active"])
