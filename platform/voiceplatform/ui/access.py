"""Who may open which page.

- platform admin: a staff user of the public schema, on the public host;
- tenant admin: a staff user or superuser of the tenant's schema, on the tenant's host;
- tenant member: any other active user of the tenant's schema, on the tenant's host: runs campaigns;
- tenant viewer: a member of the tenant's "viewer" group: reads every page, changes nothing (pages
  that change something are a 403 for them, and their buttons are not shown).

Users and sessions live in each schema (django-tenants), so a user signed in on one host is a
stranger on every other host. A page asked for on the wrong kind of host is a 404 that says where it
lives; a signed-in user without the role gets a 403 page; anyone else is sent to sign in.
"""
from __future__ import annotations

from functools import wraps

from django.contrib.auth.views import redirect_to_login
from django.shortcuts import render
from django_tenants.utils import get_public_schema_name

from tenants.accounts.services import VIEWER_GROUP

LOGIN_URL = "/accounts/login/"


def on_public_host(request) -> bool:
    tenant = getattr(request, "tenant", None)
    return tenant is None or tenant.schema_name == get_public_schema_name()


def is_tenant_admin(user) -> bool:
    return bool(user.is_authenticated and user.is_active and (user.is_staff or user.is_superuser))


def is_viewer(user) -> bool:
    """Read-only: never an admin; otherwise a member of the viewer group."""
    if not user.is_authenticated or is_tenant_admin(user):
        return False
    cached = getattr(user, "_is_viewer", None)
    if cached is None:
        cached = user._is_viewer = user.groups.filter(name=VIEWER_GROUP).exists()
    return cached


def can_change(user) -> bool:
    return bool(user.is_authenticated and user.is_active and not is_viewer(user))


def ui_role(request) -> str:
    """'platform_admin', 'tenant_admin', 'tenant_member', 'tenant_viewer' or 'anonymous'."""
    user = request.user
    if not user.is_authenticated:
        return "anonymous"
    if on_public_host(request):
        return "platform_admin" if user.is_staff else "anonymous"
    if is_tenant_admin(user):
        return "tenant_admin"
    return "tenant_viewer" if is_viewer(user) else "tenant_member"


def _refuse(request, status: int, title: str, message: str):
    return render(request, "ui/refused.html", {"title": title, "message": message}, status=status)


def tenant_page(admin: bool = False, change: bool = False):
    """A page of the tenant's own host; `admin` pages are for the tenant's admins only, `change`
    pages (anything that writes) for admins and members, never viewers."""

    def decorator(view):
        @wraps(view)
        def wrapper(request, *args, **kwargs):
            if on_public_host(request):
                return _refuse(request, 404, "Not on this host",
                               "This page belongs to a company account: open it on your company's own address "
                               "(for example acme.localhost).")
            if not request.user.is_authenticated:
                return redirect_to_login(request.get_full_path(), LOGIN_URL)
            if request.tenant.is_suspended:
                return _refuse(request, 403, "Account suspended",
                               "This account is suspended. Contact the platform operator.")
            if admin and not is_tenant_admin(request.user):
                return _refuse(request, 403, "Admins only",
                               "Only an administrator of this account can open this page.")
            if change and not can_change(request.user):
                return _refuse(request, 403, "Read-only access",
                               "Your role is viewer: you can see everything in this account but change nothing. "
                               "Ask an administrator for the member role.")
            return view(request, *args, **kwargs)

        return wrapper

    return decorator


def platform_page(view):
    """A page of the platform admin, on the public host, for staff users."""

    @wraps(view)
    def wrapper(request, *args, **kwargs):
        if not on_public_host(request):
            return _refuse(request, 404, "Not on this host",
                           "Platform administration is on the platform's own address, not on a company's.")
        if not request.user.is_authenticated:
            return redirect_to_login(request.get_full_path(), LOGIN_URL)
        if not request.user.is_staff:
            return _refuse(request, 403, "Platform admins only", "Only platform administrators can open this page.")
        return view(request, *args, **kwargs)

    return wrapper


def roles(request) -> dict:
    """Template context: the signed-in user's role, and whether they may change anything."""
    if not hasattr(request, "user"):
        return {}
    return {"ui_role": ui_role(request), "can_change": can_change(request.user)}
