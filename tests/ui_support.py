"""Helpers shared by the UI tests: users of each role and clients signed in as them."""
from __future__ import annotations

from django.contrib.auth import get_user_model
from django.test import Client
from django_tenants.utils import schema_context

PASSWORD = "ui-test-pass-1"


def make_user(schema: str, username: str, *, staff: bool = False, superuser: bool = False):
    with schema_context(schema):
        model = get_user_model()
        user = model.objects.filter(username=username).first()
        if user is None:
            user = model.objects.create_user(username, password=PASSWORD, is_staff=staff or superuser,
                                             is_superuser=superuser)
        return user


def signed_in(host: str, username: str, password: str = PASSWORD) -> Client:
    client = Client(HTTP_HOST=host)
    response = client.post("/accounts/login/", {"username": username, "password": password})
    assert response.status_code == 302, f"sign-in to {host} as {username} failed: {response.content[:2000]!r}"
    return client
