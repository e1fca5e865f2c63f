"""django-tenants' middleware (the host name's tenant and schema), with the host's tenant of an API
request remembered per process for API_AUTH_CACHE_S, as API credentials are (tenants/accounts/verified.py):
a burst of API calls no longer reads the domain table on every request. Pages read it every time, so a
tenant suspended or moved to another domain is seen at once there, and within seconds by the API."""
from __future__ import annotations

from contextvars import ContextVar

from django.conf import settings
from django_tenants.middleware.main import TenantMainMiddleware

from core.recent import MISSING, Recent

from .api_errors import is_api_path

_api_request: ContextVar[bool] = ContextVar("api_request", default=False)
_host_tenants = Recent(settings.API_AUTH_CACHE_S)


class TenantMiddleware(TenantMainMiddleware):
    def process_request(self, request):
        token = _api_request.set(is_api_path(request.path))
        try:
            return super().process_request(request)
        finally:
            _api_request.reset(token)

    def get_tenant(self, domain_model, hostname):
        if not _api_request.get():
            return super().get_tenant(domain_model, hostname)
        tenant = _host_tenants.recall(hostname)
        if tenant is MISSING:
            try:
                tenant = super().get_tenant(domain_model, hostname)
            except domain_model.DoesNotExist:
                tenant = None  # an API client's host name need not be a tenant's
            _host_tenants.remember(hostname, tenant)
        if tenant is None:
            raise domain_model.DoesNotExist
        return tenant
