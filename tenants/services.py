"""Creating and removing tenants. A tenant is created whole or not at all: no orphan schema."""
from __future__ import annotations

import re
import secrets
from dataclasses import asdict, dataclass

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.core.validators import validate_domain_name
from django.db import transaction
from django_tenants.utils import get_public_schema_name, schema_context

from tenants.accounts.services import issue_api_key

from .models import Domain, Tenant

SLUG_PATTERN = re.compile(r"^[a-z][a-z0-9_]{1,40}$")
RESERVED_SLUGS = {"public", "information_schema", "admin", "api", "www", "static", "media"}


class TenantError(ValueError):
    """A tenant could not be created or found; the message is meant for the person who asked."""


@dataclass(frozen=True)
class TenantCredentials:
    tenant: str
    domain: str
    account_sid: str
    api_key: str
    admin_user: str
    admin_password: str

    def as_dict(self) -> dict:
        return asdict(self)


def validate_slug(slug: str) -> None:
    if not SLUG_PATTERN.match(slug) or slug.startswith("pg_") or slug in RESERVED_SLUGS:
        raise TenantError(
            f"invalid tenant name {slug!r}: use 2-41 characters, lower-case letters, digits and '_', "
            "starting with a letter (not 'public', 'pg_…' or another reserved name)"
        )


def validate_domain(domain: str) -> None:
    host = domain.split(":")[0]
    try:
        # Django's validator wants a dot; single-label hosts such as "localhost" are fine here.
        validate_domain_name(host if "." in host else host + ".local")
    except ValidationError:
        raise TenantError(f"invalid domain {domain!r}: expected a host name such as acme.localhost") from None


def ensure_public_tenant() -> Tenant:
    """The public schema's own tenant row, reached at PUBLIC_DOMAIN (django-tenants needs one)."""
    tenant, _ = Tenant.objects.get_or_create(schema_name=get_public_schema_name(), defaults={"name": "Platform"})
    Domain.objects.get_or_create(domain=settings.PUBLIC_DOMAIN, defaults={"tenant": tenant, "is_primary": True})
    return tenant


def create_tenant(slug: str, domain: str, name: str | None = None, admin_user: str = "admin") -> TenantCredentials:
    validate_slug(slug)
    validate_domain(domain)
    if Tenant.objects.filter(schema_name=slug).exists():
        raise TenantError(f"tenant {slug!r} already exists")
    if Domain.objects.filter(domain=domain).exists():
        raise TenantError(f"domain {domain!r} already belongs to another tenant")

    # Saving the tenant creates and migrates its schema (DDL outside of our transaction); if anything
    # after that fails the schema is dropped again, so nothing is left half-created.
    tenant = Tenant(schema_name=slug, name=name or slug)
    tenant.save(verbosity=0)
    try:
        with transaction.atomic():
            Domain.objects.create(domain=domain, tenant=tenant, is_primary=True)
        password = secrets.token_urlsafe(12)
        with schema_context(slug):
            get_user_model().objects.create_superuser(admin_user, email="", password=password)
            api_key = issue_api_key(tenant.account_sid, name="created with the tenant")
    except BaseException:
        drop_tenant(slug)
        raise
    return TenantCredentials(slug, domain, tenant.account_sid, api_key, admin_user, password)


def drop_tenant(slug: str) -> None:
    """Delete the tenant, its domains and its schema with everything in it."""
    tenant = Tenant.objects.filter(schema_name=slug).first()
    if tenant is None:
        raise TenantError(f"no tenant named {slug!r}")
    if tenant.schema_name == get_public_schema_name():
        raise TenantError("the public schema cannot be dropped")
    tenant.delete(force_drop=True)


def reset_admin_credentials(slug: str, admin_user: str = "admin") -> TenantCredentials:
    """New password for the tenant's first admin and a new API key (used by `make run` for the demo)."""
    tenant = Tenant.objects.get(schema_name=slug)
    password = secrets.token_urlsafe(12)
    with schema_context(slug):
        user_model = get_user_model()
        user = user_model.objects.filter(username=admin_user).first()
        if user is None:
            user_model.objects.create_superuser(admin_user, email="", password=password)
        else:
            user.set_password(password)
            user.save(update_fields=["password"])
        api_key = issue_api_key(tenant.account_sid, name="demo credentials")
    domain = tenant.domains.filter(is_primary=True).first()
    return TenantCredentials(slug, domain.domain if domain else "", tenant.account_sid, api_key, admin_user, password)


def set_status_callback(tenant: Tenant, url: str) -> None:
    """The tenant's own status callback URL (checked by the caller against the outbound rules), for
    calls that name none; "" sends none for them."""
    Tenant.objects.filter(pk=tenant.pk).update(status_callback=url)
    tenant.status_callback = url
