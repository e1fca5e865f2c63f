"""Reads: the tenant's API keys and users. Run inside the tenant's schema."""
from __future__ import annotations

from django.contrib.auth import get_user_model
from django.db.models import QuerySet

from .models import ApiKey


def api_keys() -> QuerySet[ApiKey]:
    return ApiKey.objects.all()


def users() -> QuerySet:
    return get_user_model().objects.order_by("username")
