"""REST API authentication by tenant API key: `Authorization: Bearer <key>`, or HTTP basic with the
account SID as user name and the key as password (how Twilio client libraries authenticate)."""
from __future__ import annotations

import base64
from dataclasses import dataclass

from django.db import connection
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import authentication, exceptions

from tenants.models import Tenant

from . import services, throttle
from .models import ApiKey


@dataclass(frozen=True)
class ApiPrincipal:
    """Who is calling: a tenant, through one of its keys."""

    tenant: Tenant
    api_key: ApiKey

    is_authenticated = True
    is_anonymous = False
    is_staff = False

    def __str__(self) -> str:
        return f"{self.tenant.schema_name}:{self.api_key.prefix}"


class ApiKeyAuthentication(authentication.BaseAuthentication):
    def authenticate(self, request):
        key = self._key_from_header(authentication.get_authorization_header(request).decode("latin-1"))
        if key is None:
            return None
        throttle.check(request)
        try:
            return self._principal(request, key)
        except exceptions.AuthenticationFailed:
            throttle.record_failure(request)
            raise

    def _principal(self, request, key: str):
        parts = services.split_key(key)
        if parts is None:
            raise exceptions.AuthenticationFailed("Malformed API key.")
        account_sid, secret = parts
        tenant = Tenant.objects.filter(account_sid=account_sid, is_suspended=False).first()
        host_tenant = getattr(request, "tenant", None)
        if tenant is None or (
            host_tenant is not None and host_tenant.schema_name != "public" and host_tenant.pk != tenant.pk
        ):
            raise exceptions.AuthenticationFailed("Invalid API key.")
        connection.set_tenant(tenant)
        request._request.tenant = tenant
        api_key = services.find_active_key(secret)
        if api_key is None:
            connection.set_schema_to_public()
            raise exceptions.AuthenticationFailed("Invalid API key.")
        return ApiPrincipal(tenant=tenant, api_key=api_key), api_key

    def authenticate_header(self, request) -> str:
        return 'Bearer realm="api"'

    @staticmethod
    def _key_from_header(header: str) -> str | None:
        scheme, _, value = header.partition(" ")
        if scheme.lower() == "bearer" and value:
            return value.strip()
        if scheme.lower() == "basic" and value:
            try:
                user, _, password = base64.b64decode(value).decode().partition(":")
            except (ValueError, UnicodeDecodeError):
                raise exceptions.AuthenticationFailed("Malformed basic credentials.") from None
            # Twilio clients send the account SID as user and the key as password; the key may be
            # given whole or as its secret part alone.
            return password if password.startswith(user + services.SEPARATOR) else f"{user}{services.SEPARATOR}{password}"
        return None


class ApiKeyScheme(OpenApiAuthenticationExtension):
    """How the OpenAPI schema describes ApiKeyAuthentication: bearer, or basic as Twilio clients send."""

    target_class = ApiKeyAuthentication
    name = ["bearerAuth", "basicAuth"]

    def get_security_definition(self, auto_schema):
        return [{"type": "http", "scheme": "bearer", "description": "Authorization: Bearer <api key>"},
                {"type": "http", "scheme": "basic", "description": "account SID and API key"}]
