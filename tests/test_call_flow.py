"""End to end: Acme's code asks for a call through the REST API; the gateway pool dials the carrier
(SIPp), fails over when the first trunk answers 503, and the recorder writes the whole story into
Acme's call records."""
import pytest
from django.db import connection
from django.test import Client
from django_tenants.utils import schema_context

from telephony.models import Carrier, Number
from tenants.models import Tenant
from tests import stack

pytestmark = pytest.mark.usefixtures("committed")
ACME_NUMBER = "+14155550123"


@pytest.fixture
def platform(tmp_path, tenant_a):
    processes = [stack.gateway_pool(tmp_path), stack.recorder(tmp_path)]
    yield processes
    for process in processes:
        process.stop()


@pytest.fixture
def carriers(tmp_path):
    broken, broken_port = stack.sipp_carrier(tmp_path, "uas_503.xml")
    good, good_port = stack.sipp_carrier(tmp_path, "uas_answer_bye.xml", "-d", "500")
    rows = [Carrier.objects.create(name="Broken trunk", host="127.0.0.1", port=broken_port, priority=1),
            Carrier.objects.create(name="Good trunk", host="127.0.0.1", port=good_port, priority=2)]
    number = Number.objects.create(e164=ACME_NUMBER, tenant=Tenant.objects.get(schema_name="acme"))
    yield rows
    for process in (broken, good):
        process.stop()
    number.delete()
    for row in rows:
        row.delete()


def test_an_api_call_fails_over_is_answered_and_recorded_leg_by_leg(platform, carriers, tenant_a):
    api = Client(HTTP_AUTHORIZATION=f"Bearer {tenant_a.api_key}")
    response = api.post("/api/v1/calls", {"to": "+14155550199", "from": ACME_NUMBER, "timeout": 15},
                        content_type="application/json")
    connection.set_schema_to_public()
    assert response.status_code == 201, response.content
    sid = response.json()["sid"]

    call = stack.final_call("acme", sid, platform)
    with schema_context("acme"):
        legs = list(call.legs.order_by("attempt"))
        assert (call.status, call.outcome, call.hangup_by) == ("completed", "answered", "callee")
        assert call.carrier_name == "Good trunk" and call.setup_ms is not None and call.duration_s > 0
        assert [(leg.carrier_name, leg.sip_code, leg.failed_over) for leg in legs] == [
            ("Broken trunk", 503, True), ("Good trunk", 200, False)
        ]
        call.delete()
    connection.set_schema_to_public()
