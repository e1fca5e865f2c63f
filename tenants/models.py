"""Tenants (companies) and the host names that reach them. Public schema."""
import uuid

from django.db import models
from django_tenants.models import DomainMixin, TenantMixin

PUBLIC_SCHEMA = "public"


def new_account_sid() -> str:
    # Twilio's shape (AC + 32 hex), so Twilio client libraries accept it as an account SID.
    return "AC" + uuid.uuid4().hex


def new_auth_token_encrypted() -> str:
    from .auth_token import encrypt_new_token

    return encrypt_new_token()


class Tenant(TenantMixin):
    name = models.CharField(max_length=200)
    account_sid = models.CharField(max_length=34, unique=True, default=new_account_sid)
    # Twilio's account auth token (tenants/auth_token.py): basic auth with the account SID, and the key
    # that signs every request the platform makes to the tenant. Encrypted at rest (FIELD_ENCRYPTION_KEY).
    auth_token_encrypted = models.TextField(default=new_auth_token_encrypted)
    # After a rotation the previous token still works (and still validates nothing new) until this time.
    previous_auth_token_encrypted = models.TextField(blank=True, default="")
    previous_auth_token_until = models.DateTimeField(null=True, blank=True)
    # Where status callbacks go for calls that name none themselves (neither the call nor its campaign).
    status_callback = models.URLField(max_length=500, blank=True)
    is_suspended = models.BooleanField(default=False)
    # Caps over all the tenant's calls, enforced cluster-wide by the gateways (0: no cap).
    max_concurrent_calls = models.PositiveIntegerField(default=100)
    # Recorded calls older than this are deleted (telephony.calls.tasks.delete_expired_recordings); 0: kept.
    recording_retention_days = models.PositiveIntegerField(default=90)
    created_at = models.DateTimeField(auto_now_add=True)

    auto_create_schema = True
    auto_drop_schema = True

    def __str__(self) -> str:
        return self.schema_name

    @property
    def slug(self) -> str:
        return self.schema_name


class Domain(DomainMixin):
    def __str__(self) -> str:
        return self.domain
