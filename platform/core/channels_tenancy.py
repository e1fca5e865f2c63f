"""Tenant resolution for WebSockets. django-tenants' middleware only runs for HTTP requests, so
Channels connections get theirs here: the Host header names the tenant, and every group name a
consumer joins carries the tenant's schema so one tenant's stream can never reach another's."""
from __future__ import annotations

from http.cookies import SimpleCookie
from importlib import import_module
from types import SimpleNamespace

from channels.db import database_sync_to_async
from django.conf import settings
from django.contrib.auth import get_user
from django.contrib.auth.models import AnonymousUser
from django.db import connection
from django_tenants.utils import get_public_schema_name, get_tenant_domain_model, remove_www, tenant_context


def header(scope, wanted: bytes) -> str:
    for name, value in scope.get("headers", []):
        if name == wanted:
            return value.decode("latin-1")
    return ""


def host_of(scope) -> str:
    return remove_www(header(scope, b"host").split(":")[0].lower())


@database_sync_to_async
def tenant_for_host(host: str):
    connection.set_schema_to_public()
    domain = get_tenant_domain_model().objects.select_related("tenant").filter(domain=host).first()
    return domain.tenant if domain else None


@database_sync_to_async
def user_for_session(tenant, session_key: str):
    """The signed-in user of this tenant's session (sessions and users live in the tenant's schema)."""
    if tenant is None or not session_key:
        return AnonymousUser()
    store = import_module(settings.SESSION_ENGINE).SessionStore
    with tenant_context(tenant):
        return get_user(SimpleNamespace(session=store(session_key)))


def session_key_of(scope) -> str:
    morsel = SimpleCookie(header(scope, b"cookie")).get(settings.SESSION_COOKIE_NAME)
    return morsel.value if morsel else ""


def tenant_group(schema_name: str, topic: str) -> str:
    """Channel-layer group for one tenant's topic (names allow only [a-zA-Z0-9_.-])."""
    return f"tenant.{schema_name}.{topic}"


class TenantWebsocketMiddleware:
    """Puts `tenant`, `schema_name` and `user` into the scope; an unknown host gets the public schema."""

    def __init__(self, inner):
        self.inner = inner

    async def __call__(self, scope, receive, send):
        tenant = await tenant_for_host(host_of(scope))
        user = await user_for_session(tenant, session_key_of(scope))
        schema_name = tenant.schema_name if tenant else get_public_schema_name()
        scope = dict(scope, tenant=tenant, schema_name=schema_name, user=user)
        return await self.inner(scope, receive, send)
