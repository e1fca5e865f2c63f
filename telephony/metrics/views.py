"""Dashboard pages (server-rendered; live updates come over the dashboard sockets). Their plotly.js
is a static file (voiceplatform/static/vendor/), never from a CDN."""
from __future__ import annotations

from django.conf import settings
from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied
from django.http import Http404
from django.shortcuts import render
from django.views.decorators.http import require_GET
from django_tenants.utils import get_public_schema_name

from . import selectors

LOGIN_URL = settings.LOGIN_URL


def _on_public_host(request) -> bool:
    tenant = getattr(request, "tenant", None)
    return tenant is None or tenant.schema_name == get_public_schema_name()


def _page(request, template: str, data: dict, socket_path: str):
    return render(request, template, {
        "tenant": getattr(request, "tenant", None),
        "initial": data,
        "socket_path": socket_path,
        "windows": list(selectors.WINDOWS),
        "window": selectors.DEFAULT_WINDOW,
    })


@require_GET
def tenant_dashboard(request):
    if _on_public_host(request):
        raise Http404("a tenant's dashboard is on the tenant's host")
    if not request.user.is_authenticated:
        return redirect_to_login(request.get_full_path(), LOGIN_URL)
    data = selectors.tenant_dashboard(request.tenant.schema_name)
    return _page(request, "dashboards/tenant.html", data, "/ws/dashboard")


@require_GET
def platform_dashboard(request):
    if not _on_public_host(request):
        raise Http404("the platform dashboard is on the platform's host")
    if not request.user.is_authenticated:
        return redirect_to_login(request.get_full_path(), LOGIN_URL)
    if not request.user.is_staff:
        raise PermissionDenied("staff only")
    return _page(request, "dashboards/platform.html", selectors.platform_dashboard(), "/ws/platform-dashboard")

