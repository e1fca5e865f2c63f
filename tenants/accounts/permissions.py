"""REST API permissions by API key."""
from rest_framework import permissions


class ReadOnlyKeysOnlyRead(permissions.BasePermission):
    """A read-only key may read (GET, HEAD, OPTIONS) and nothing else."""

    message = "This API key is read-only: it can read, not change anything."

    def has_permission(self, request, view) -> bool:
        key = getattr(request.user, "api_key", None)
        return request.method in permissions.SAFE_METHODS or key is None or not key.read_only
