"""Twilio-compatibility tests: Acme with a number and a carrier (nothing listens on it unless a test
starts one); `web` (tests/conftest.py) is daphne serving the platform."""
import pytest
from django_tenants.utils import schema_context

from core import keys
from telephony.calls.models import Call
from telephony.models import Carrier, Number
from tenants.models import Tenant
from tests.twilio_support import ACME_NUMBER, TenantApp


@pytest.fixture
def acme(tenant_a):
    """Acme owns ACME_NUMBER and there is a carrier (calls are only queued); its calls are removed after."""
    carrier = Carrier.objects.create(name="Queued only", host="127.0.0.1", port=5097)
    number = Number.objects.create(e164=ACME_NUMBER, tenant=Tenant.objects.get(schema_name="acme"))
    yield Tenant.objects.get(schema_name="acme")
    with schema_context("acme"):
        Call.objects.filter(from_number=ACME_NUMBER).delete()
    number.delete()
    carrier.delete()


@pytest.fixture
def app():
    """Acme's web app, receiving its callbacks (tests/twilio_support.TenantApp)."""
    app = TenantApp()
    yield app
    app.stop()


@pytest.fixture
def gateways_start_empty():
    """Calls the API tests only queued (no gateway ran) are dropped from the originate queue, so a
    gateway pool a test starts takes only that test's calls (else they fill its slots, and an
    inbound call finds it busy)."""
    from core.redis_client import get_redis

    get_redis().delete(keys.tenant_queue("", "acme"), keys.originate_ring(), keys.originate_depth(), keys.ORIGINATE_WAKE)
