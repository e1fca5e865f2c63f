"""Acme's contacts never reach Globex: not through the ORM, not through the REST API."""
import pytest
from django.test import Client
from django_tenants.utils import schema_context

from campaigns.models import Contact, ContactList

pytestmark = pytest.mark.django_db



@pytest.fixture
def acme_list(tenant_a):
    with schema_context(tenant_a.tenant):
        contact_list = ContactList.objects.create(name="Acme spring leads")
        Contact.objects.create(contact_list=contact_list, phone="+14155550100", name="Ada")
    return contact_list


def api(key, host="localhost"):
    return Client(HTTP_AUTHORIZATION=f"Bearer {key}", HTTP_HOST=host)


def test_orm_in_one_schema_sees_nothing_of_another(acme_list, tenant_a, tenant_b):
    with schema_context(tenant_a.tenant):
        assert ContactList.objects.filter(name="Acme spring leads").exists()
    with schema_context(tenant_b.tenant):
        assert not ContactList.objects.filter(name="Acme spring leads").exists()
        assert not Contact.objects.filter(phone="+14155550100").exists()


def test_api_lists_only_the_callers_tenant(acme_list, tenant_a, tenant_b):
    acme = api(tenant_a.api_key).get("/api/v1/contact-lists")
    assert acme.status_code == 200
    assert [row["name"] for row in acme.json()["results"]] == ["Acme spring leads"]
    assert acme.json()["results"][0]["contact_count"] == 1

    globex = api(tenant_b.api_key).get("/api/v1/contact-lists")
    assert globex.status_code == 200
    assert globex.json()["results"] == []


def test_another_tenants_object_is_a_404(acme_list, tenant_b):
    response = api(tenant_b.api_key).get(f"/api/v1/contact-lists/{acme_list.pk}")
    assert response.status_code == 404


def test_created_objects_land_in_the_callers_schema(tenant_a, tenant_b):
    response = api(tenant_b.api_key).post("/api/v1/contact-lists", {"name": "Globex winter"})
    assert response.status_code == 201, response.content
    with schema_context(tenant_b.tenant):
        assert ContactList.objects.filter(name="Globex winter").exists()
    with schema_context(tenant_a.tenant):
        assert not ContactList.objects.filter(name="Globex winter").exists()


@pytest.mark.parametrize("header", ["Bearer nonsense", "Bearer AC0000.wrong", ""])
def test_missing_or_wrong_keys_are_refused(header):
    client = Client(HTTP_AUTHORIZATION=header) if header else Client()
    assert client.get("/api/v1/contact-lists").status_code in (401, 403)


def test_a_key_is_refused_on_another_tenants_host(tenant_a, tenant_b):
    assert api(tenant_a.api_key, host="globex.localhost").get("/api/v1/contact-lists").status_code == 401


def test_twilio_style_basic_auth_with_account_sid_and_key(tenant_a):
    secret = tenant_a.api_key.split(".", 1)[1]
    client = Client()
    client.defaults["HTTP_AUTHORIZATION"] = "Basic " + __import__("base64").b64encode(
        f"{tenant_a.account_sid}:{secret}".encode()
    ).decode()
    assert client.get("/api/v1/contact-lists").status_code == 200


def test_a_revoked_key_is_refused_at_once_though_it_was_just_verified(tenant_a):
    """Verified keys are remembered for a few seconds (API_AUTH_CACHE_S); revoking one forgets them."""
    from tenants.accounts.models import ApiKey
    from tenants.accounts.services import issue_api_key, revoke_api_key

    with schema_context(tenant_a.tenant):
        key = issue_api_key(tenant_a.account_sid, "Reporting dashboard")
        key_id = ApiKey.objects.get(name="Reporting dashboard").pk
    client = api(key)
    assert client.get("/api/v1/contact-lists").status_code == 200
    assert client.get("/api/v1/contact-lists").status_code == 200  # remembered

    with schema_context(tenant_a.tenant):
        assert revoke_api_key(key_id)
    assert client.get("/api/v1/contact-lists").status_code == 401
    assert api(tenant_a.api_key).get("/api/v1/contact-lists").status_code == 200  # Acme's other key still works
