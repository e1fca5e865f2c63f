"""REST API authentication, the platform's way and Twilio's:

- `Authorization: Bearer <key>` (a key reads `<account sid>.<secret>`);
- HTTP basic `AccountSid:AuthToken`, the tenant's account auth token (current, or the previous one
  during its grace period after a rotation);
- HTTP basic `SK…:secret`, an API key's SID and secret, as Twilio clients send with an API key; the
  account is the one in the URL (/2010-04-01/Accounts/{AccountSid}/…) or the host's tenant;
- HTTP basic `AccountSid:<key or its secret>` (what earlier versions documented).
"""
from __future__ import annotations

import base64
from dataclasses import dataclass

from django.db import connection
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import authentication, exceptions

from tenants import auth_token
from tenants.models import Tenant

from . import services, throttle, verified
from .models import ApiKey


@dataclass(frozen=True)
class ApiPrincipal:
    """Who is calling: a tenant, through one of its keys."""

    tenant: Tenant
    api_key: ApiKey | None  # None: the account's auth token


    is_authenticated = True
    is_anonymous = False
    is_staff = False

    def __str__(self) -> str:
        return f"{self.tenant.schema_name}:{self.api_key.prefix if self.api_key else 'auth token'}"


@dataclass(frozen=True)
class Credentials:
    account_sid: str  # "" when only the URL or the host says which account (an SK… key)
    secret: str
    key_sid: str = ""  # SK…: Twilio's API key SID


def _use_schema(tenant: Tenant) -> None:
    """The tenant's schema for the rest of the request; not set again when the host's tenant is it
    already (each set costs a SET search_path round trip)."""
    if connection.schema_name != tenant.schema_name:
        connection.set_tenant(tenant)


class ApiKeyAuthentication(authentication.BaseAuthentication):
    def authenticate(self, request):
        credentials = self._credentials(authentication.get_authorization_header(request).decode("latin-1"))
        if credentials is None:
            return None
        throttle.check(request)
        try:
            return self._principal(request, credentials)
        except exceptions.AuthenticationFailed:
            throttle.record_failure(request)
            raise

    def _principal(self, request, credentials: Credentials):
        host_tenant = getattr(request, "tenant", None)
        if host_tenant is not None and host_tenant.schema_name == "public":
            host_tenant = None
        account_sid = credentials.account_sid or (request.parser_context or {}).get("kwargs", {}).get("account_sid") \
            or (host_tenant.account_sid if host_tenant else "")
        checked = (host_tenant.pk if host_tenant else None, account_sid, credentials.key_sid,
                   services.hash_secret(credentials.secret))
        principal = verified.recall(checked)
        if principal is None:
            principal, lasting = self._verify(host_tenant, account_sid, credentials)
            if lasting:
                verified.remember(checked, principal)
        _use_schema(principal.tenant)
        request._request.tenant = principal.tenant
        return principal, principal.api_key

    @staticmethod
    def _verify(host_tenant: Tenant | None, account_sid: str, credentials: Credentials) -> tuple[ApiPrincipal, bool]:
        """Who the credentials are, and whether they may be remembered: an API key (its revocation makes
        this process forget), not the auth token (a rotation's grace period ends in the tenant's row)."""
        if host_tenant is not None and host_tenant.account_sid == account_sid:
            tenant = None if host_tenant.is_suspended else host_tenant  # the middleware read it already
        else:
            tenant = Tenant.objects.filter(account_sid=account_sid, is_suspended=False).first() if account_sid else None
        if tenant is None or (host_tenant is not None and host_tenant.pk != tenant.pk):
            raise exceptions.AuthenticationFailed("Invalid API key.")
        _use_schema(tenant)
        if not credentials.key_sid and auth_token.accepts(tenant, credentials.secret):
            return ApiPrincipal(tenant=tenant, api_key=None), False
        api_key = services.find_active_key(credentials.secret)
        if api_key is None or (credentials.key_sid and api_key.sid != credentials.key_sid):
            connection.set_schema_to_public()
            raise exceptions.AuthenticationFailed("Invalid API key.")
        return ApiPrincipal(tenant=tenant, api_key=api_key), True

    def authenticate_header(self, request) -> str:
        return 'Bearer realm="api"'

    @staticmethod
    def _credentials(header: str) -> Credentials | None:
        scheme, _, value = header.partition(" ")
        if scheme.lower() == "bearer" and value:
            parts = services.split_key(value)
            if parts is None:
                raise exceptions.AuthenticationFailed("Malformed API key.")
            return Credentials(*parts)
        if scheme.lower() == "basic" and value:
            try:
                user, _, password = base64.b64decode(value).decode().partition(":")
            except (ValueError, UnicodeDecodeError):
                raise exceptions.AuthenticationFailed("Malformed basic credentials.") from None
            if user.startswith("SK"):
                return Credentials("", password, key_sid=user)
            if not user.startswith("AC") or not password:
                raise exceptions.AuthenticationFailed("Malformed basic credentials.")
            # The key may be given whole or as its secret part alone.
            return Credentials(user, password.removeprefix(user + services.SEPARATOR))
        return None


class ApiKeyScheme(OpenApiAuthenticationExtension):
    """How the OpenAPI schema describes ApiKeyAuthentication: bearer, or basic as Twilio clients send."""

    target_class = ApiKeyAuthentication
    name = ["bearerAuth", "basicAuth"]

    def get_security_definition(self, auto_schema):
        return [{"type": "http", "scheme": "bearer", "description": "Authorization: Bearer <api key>"},
                {"type": "http", "scheme": "basic",
                 "description": "account SID and auth token, or API key SID (SK…) and secret"}]
