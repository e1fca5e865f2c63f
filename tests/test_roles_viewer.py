"""A viewer reads everything and changes nothing: every page of a tenant that writes refuses them
(and shows no button for it), and a read-only API key is refused on every call that would change
something, while both still read."""
import re

import pytest
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver
from django_tenants.utils import schema_context

from tests.ui_support import PASSWORD, signed_in

pytestmark = pytest.mark.django_db

SAMPLE_ARGS = {"pk": "1", "sid": "CA" + "0" * 32, "action": "start", "name": "x", "account_sid": "AC",
               "call_sid": "CA" + "0" * 32, "version": "1", "recording_sid": "RE" + "0" * 32,
               "number_sid": "PN" + "0" * 32}


@pytest.fixture
def viewer(tenant_a):
    from tenants.accounts.services import user_create

    with schema_context(tenant_a.tenant):
        from django.contrib.auth import get_user_model

        get_user_model().objects.filter(username="vera").delete()
        user_create(username="vera", password=PASSWORD, role="viewer")
    return signed_in(tenant_a.domain, "vera")


def _tenant_ui_paths() -> list[str]:
    """Every page of the UI app that belongs to a tenant's host, with sample arguments."""
    paths = []

    def walk(patterns, prefix=""):
        for p in patterns:
            if isinstance(p, URLResolver):
                walk(p.url_patterns, prefix + str(p.pattern))
            elif isinstance(p, URLPattern):
                route = prefix + str(p.pattern)
                if p.callback.__module__.startswith("voiceplatform.ui.views_") and not route.startswith(
                        ("platform/", "accounts/")):
                    paths.append("/" + re.sub(r"<(?:\w+:)?(\w+)>", lambda m: SAMPLE_ARGS[m.group(1)], route))

    walk(get_resolver().url_patterns)
    return paths


def test_a_viewer_is_refused_on_every_page_that_changes_something(viewer, tenant_a):
    from campaigns.models import Campaign

    paths = _tenant_ui_paths()
    assert "/calls/CA00000000000000000000000000000000/hangup/" in paths and "/campaigns/1/start/" in paths
    with schema_context(tenant_a.tenant):
        before = Campaign.objects.count()
    for path in paths:
        status = viewer.post(path, {"name": "Sneaky", "to": "+14155550123"}).status_code
        assert status in (403, 405), f"POST {path} by a viewer: {status}"
    with schema_context(tenant_a.tenant):
        assert Campaign.objects.count() == before
    # …and reads everything, without a button that would change something
    for page in ("/campaigns/", "/calls/", "/dashboard/"):
        response = viewer.get(page)
        assert response.status_code == 200, page
        assert "· viewer" in response.content.decode()
    assert "New campaign" not in viewer.get("/campaigns/").content.decode()
    assert viewer.get("/campaigns/new/").status_code == 403


def _api_operations() -> list[tuple[str, str]]:
    """(method, path) of every operation in the API schema that is not a read."""
    from drf_spectacular.generators import SchemaGenerator

    schema = SchemaGenerator().get_schema(request=None, public=True)
    operations = []
    for path, item in schema["paths"].items():
        for method in item:
            if method.upper() not in ("GET", "HEAD", "OPTIONS"):
                concrete = re.sub(r"\{(\w+)\}", lambda m: SAMPLE_ARGS.get(m.group(1), "1"), path)
                operations.append((method.upper(), concrete))
    return operations


def test_a_read_only_api_key_reads_and_is_refused_on_every_change(tenant_a):
    from tenants.accounts.services import issue_api_key

    with schema_context(tenant_a.tenant):
        key = issue_api_key(tenant_a.account_sid, "dashboards", read_only=True)
    client = Client(HTTP_HOST=tenant_a.domain, HTTP_AUTHORIZATION=f"Bearer {key}")
    assert client.get("/api/v1/calls").status_code == 200
    operations = _api_operations()
    assert ("POST", "/api/v1/calls") in operations and len(operations) >= 10
    operations.append(("POST", f"/2010-04-01/Accounts/{tenant_a.account_sid}/Calls.json"))
    for method, path in operations:
        path = path.replace("/Accounts/AC/", f"/Accounts/{tenant_a.account_sid}/")  # Twilio's paths: Acme's own
        response = client.generic(method, path, "{}", content_type="application/json")
        assert response.status_code == 403, f"{method} {path} with a read-only key: {response.status_code}"
        body = response.json()  # Twilio's error body on /2010-04-01/, DRF's elsewhere
        assert "read-only" in (body.get("detail") or body.get("message", ""))


def test_an_admin_makes_a_member_a_viewer_and_deactivates_them_without_deleting_them(viewer, tenant_a):
    from django.contrib.auth import get_user_model

    admin = signed_in(tenant_a.domain, tenant_a.admin_user, tenant_a.admin_password)
    with schema_context(tenant_a.tenant):
        vera = get_user_model().objects.get(username="vera")
    admin.post(f"/settings/users/{vera.pk}/role/", {"role": "member"})
    assert viewer.get("/campaigns/new/").status_code == 200  # a member now: builds campaigns
    admin.post(f"/settings/users/{vera.pk}/role/", {"role": "viewer"})
    assert viewer.get("/campaigns/new/").status_code == 403
    admin.post(f"/settings/users/{vera.pk}/access/", {"active": "no"})
    assert viewer.get("/calls/").status_code == 302  # signed out at the next request
    refused = Client(HTTP_HOST=tenant_a.domain).post("/accounts/login/", {"username": "vera", "password": PASSWORD})
    assert refused.status_code == 200
    with schema_context(tenant_a.tenant):
        assert get_user_model().objects.filter(username="vera", is_active=False).exists()
    owner = get_user_model()
    with schema_context(tenant_a.tenant):
        owner = owner.objects.get(username=tenant_a.admin_user)
    own = admin.post(f"/settings/users/{owner.pk}/access/", {"active": "no"}, follow=True)
    assert "cannot change your own access" in own.content.decode()
