"""Platform admin pages: carriers (validated, password write-only, OPTIONS test recorded in their
health), numbers assigned and published, tenants created with credentials shown once, suspended and
capped, and the gateway pool."""
import pytest

from telephony.models import Carrier, Number
from tenants.models import Tenant
from tests.ui_support import make_user, signed_in

pytestmark = pytest.mark.django_db

CARRIER = {"name": "trunk-a", "host": "127.0.0.1", "port": "9", "transport": "udp", "priority": "10", "weight": "1",
           "region": "us", "max_cps": "10", "max_concurrent": "100", "strip_digits": "0", "add_prefix": "+",
           "enabled": "on", "password": "digest-secret"}



@pytest.fixture
def root():
    make_user("public", "root", staff=True, superuser=True)
    return signed_in("localhost", "root")


def test_a_carrier_is_validated_and_its_password_never_shown(root):
    bad = root.post("/platform/carriers/new/", {**CARRIER, "host": "bad host!", "port": "70000"})
    html = bad.content.decode()
    assert bad.status_code == 200 and 'value="trunk-a"' in html
    assert "digest-secret" not in html
    assert html.count('class="errors"') >= 2
    response = root.post("/platform/carriers/new/", CARRIER)
    carrier = Carrier.objects.get(name="trunk-a")
    assert response["Location"] == f"/platform/carriers/{carrier.pk}/"
    assert carrier.password() == "digest-secret"
    page = root.get(f"/platform/carriers/{carrier.pk}/").content.decode()
    assert "digest-secret" not in page and "A password is stored" in page
    root.post(f"/platform/carriers/{carrier.pk}/", {**CARRIER, "password": ""})  # empty keeps it
    carrier.refresh_from_db()
    assert carrier.password() == "digest-secret"
    assert "trunk-a" in root.get("/platform/carriers/").content.decode()


def test_testing_a_carrier_that_does_not_answer_counts_a_failure(root, settings):
    settings.CARRIER_PING_TIMEOUT = 0.3
    root.post("/platform/carriers/new/", CARRIER)
    carrier = Carrier.objects.get(name="trunk-a")
    response = root.post(f"/platform/carriers/{carrier.pk}/test/", follow=True)
    assert "OPTIONS to trunk-a failed" in response.content.decode()
    carrier.refresh_from_db()
    assert carrier.health_failures == 1 and carrier.health_checked_at is not None


def test_a_number_is_assigned_with_inbound_routing(root, tenant_a):
    bad = root.post("/platform/numbers/new/", {"e164": "555", "inbound_stream_url": "http://x",
                                               "inbound_parameters_text": "{bad"})
    html = bad.content.decode()
    assert "not valid JSON" in html and 'value="555"' in html
    acme = Tenant.objects.get(schema_name=tenant_a.tenant)
    response = root.post("/platform/numbers/new/", {"e164": "+14155550166", "tenant": acme.pk, "region": "us",
                                                    "inbound_stream_url": "wss://agent.example.com/in",
                                                    "inbound_parameters_text": "greeting=hi"})
    assert response.status_code == 302
    number = Number.objects.get(e164="+14155550166")
    assert number.tenant == acme and number.inbound_parameters == {"greeting": "hi"}


def test_a_number_answered_by_a_twilio_app_gets_its_voice_url(root, tenant_a):
    acme = Tenant.objects.get(schema_name=tenant_a.tenant)
    refused = root.post("/platform/numbers/new/", {"e164": "+14155550167", "tenant": acme.pk,
                                                   "voice_url": "http://169.254.169.254/latest"})
    assert "refused" in refused.content.decode() and not Number.objects.filter(e164="+14155550167").exists()
    response = root.post("/platform/numbers/new/", {"e164": "+14155550167", "tenant": acme.pk,
                                                    "voice_url": "https://app.acme.example/voice", "voice_method": "GET"})
    assert response.status_code == 302
    number = Number.objects.get(e164="+14155550167")
    assert (number.voice_url, number.voice_method, number.voice_fallback_method) == (
        "https://app.acme.example/voice", "GET", "POST")
    number.delete()


def test_tenant_creation_errors_are_shown_next_to_the_field(root, tenant_a):
    response = root.post("/platform/tenants/", {"slug": "Bad Name", "domain": "x.localhost"})
    assert "invalid tenant name" in response.content.decode()
    response = root.post("/platform/tenants/", {"slug": "fresh", "domain": tenant_a.domain})
    assert "already belongs to another tenant" in response.content.decode()


def test_a_tenant_is_suspended_and_capped(root, tenant_a):
    acme = Tenant.objects.get(schema_name=tenant_a.tenant)
    response = root.post(f"/platform/tenants/{acme.pk}/", {"name": acme.name, "is_suspended": "on",
                                                           "max_concurrent_calls": "7"})
    assert response.status_code == 302
    acme.refresh_from_db()
    assert acme.is_suspended and acme.max_concurrent_calls == 7
    assert root.post(f"/platform/tenants/{acme.pk}/", {"name": acme.name, "max_concurrent_calls": "-1"}).status_code == 200


def test_the_gateway_pool_page_renders(root):
    assert "Gateway pool" in root.get("/platform/gateways/").content.decode()
