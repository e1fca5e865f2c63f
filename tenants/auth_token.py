"""The account auth token, as Twilio has one: 32 hex characters, one per tenant. With the account SID
it is a basic-auth credential for the REST API, and it signs every request the platform makes to the
tenant (X-Twilio-Signature), so Twilio's RequestValidator(auth_token) checks them.

It must be recoverable to sign, so it is encrypted (not hashed) like carrier passwords. Rotating keeps
the previous token valid for a grace period, for basic auth only: requests are signed with the new one.
"""
from __future__ import annotations

import datetime as dt
import hmac
import secrets as random

from django.conf import settings
from django.db.models import F
from django.utils import timezone

from telephony import secrets

ROTATION_GRACE = dt.timedelta(hours=24)


def encrypt_new_token() -> str:
    return secrets.encrypt(random.token_hex(16), settings.FIELD_ENCRYPTION_KEY)


def current(tenant) -> str:
    """The token that signs requests to the tenant."""
    return secrets.decrypt(tenant.auth_token_encrypted, settings.FIELD_ENCRYPTION_KEY)


def previous(tenant) -> str | None:
    """The token replaced by the last rotation, while its grace period lasts."""
    if not tenant.previous_auth_token_encrypted or not tenant.previous_auth_token_until:
        return None
    if tenant.previous_auth_token_until <= timezone.now():
        return None
    return secrets.decrypt(tenant.previous_auth_token_encrypted, settings.FIELD_ENCRYPTION_KEY)


def accepts(tenant, token: str) -> bool:
    """Whether `token` authenticates as the tenant's account (current token, or previous in grace)."""
    candidates = [current(tenant), previous(tenant)]
    return any(c is not None and hmac.compare_digest(c.encode(), token.encode()) for c in candidates)


def rotate(tenant, grace: dt.timedelta = ROTATION_GRACE) -> str:
    """A new token; the old one keeps authenticating for `grace`. Returns the new token."""
    from .models import Tenant

    # One statement: two admins rotating at once both end with a token that works, never a lost one.
    Tenant.objects.filter(pk=tenant.pk).update(
        previous_auth_token_encrypted=F("auth_token_encrypted"), auth_token_encrypted=encrypt_new_token(),
        previous_auth_token_until=timezone.now() + grace,
    )
    tenant.refresh_from_db(fields=["auth_token_encrypted", "previous_auth_token_encrypted",
                                   "previous_auth_token_until"])
    return current(tenant)
