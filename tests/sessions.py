"""Signed-in browser sessions for tests that open WebSockets (sessions live in each tenant's schema)."""
from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY, get_user_model
from django.contrib.sessions.backends.db import SessionStore
from django_tenants.utils import schema_context


def signed_in_session(schema: str, username: str, staff: bool = False) -> str:
    """The key of a session of `username` (created if missing) in `schema`, saved for other processes."""
    with schema_context(schema):
        user, _ = get_user_model().objects.update_or_create(username=username, defaults={"is_staff": staff})
        session = SessionStore()
        session[SESSION_KEY] = str(user.pk)
        session[BACKEND_SESSION_KEY] = "django.contrib.auth.backends.ModelBackend"
        session[HASH_SESSION_KEY] = user.get_session_auth_hash()
        session.create()
        return session.session_key
