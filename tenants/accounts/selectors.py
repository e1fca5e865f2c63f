"""Reads: the tenant's API keys and users. Run inside the tenant's schema."""
from __future__ import annotations

from django.contrib.auth import get_user_model
from django.db.models import QuerySet

from .models import ApiKey


def api_keys() -> QuerySet[ApiKey]:
    return ApiKey.objects.all()


def users() -> QuerySet:
    return get_user_model().objects.order_by("username").prefetch_related("groups")


def role_of(user) -> str:
    """'admin', 'member' or 'viewer' (see services.ROLES)."""
    from .services import VIEWER_GROUP

    if user.is_staff or user.is_superuser:
        return "admin"
    return "viewer" if any(g.name == VIEWER_GROUP for g in user.groups.all()) else "member"
