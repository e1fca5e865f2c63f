"""End to end: Acme's agent reaches a bank's phone menu and presses keys on it. Acme's code places the
call through the REST API with the first key to press once answered; the gateway pool dials the
carrier (SIPp, whose callee's phone line is this test's RTP socket), the agent streams, and mid-call
the agent asks the API for two more keys. The callee's line hears the three keys as RFC 4733
telephone-events, in order; the call record ends as usual. Bad keys, a call that is not bridged and a
call that is over are refused with a 4xx."""
import pytest
from django.db import connection
from django.test import Client
from django_tenants.utils import schema_context

from telephony.calls.models import Call
from telephony.models import Number
from tenants.models import Tenant
from tests import stack
from tests.gateway.test_amd import PhoneLine
from tests.gateway.test_media_bridge import AgentServer
from tests.gateway.test_send_digits import sent
from tests.test_call_flow import platform  # noqa: F401 - fixture: the gateway pool and the recorder

pytestmark = pytest.mark.usefixtures("committed")
ACME_NUMBER = "+14155550125"


@pytest.fixture
def agents():
    server = AgentServer()
    yield server
    server.stop()


@pytest.fixture
def ivr_line(tmp_path):
    """A carrier whose callee answers (SIPp) on a phone line that records what it hears (RTP)."""
    line = PhoneLine([])
    with stack.media_trunk(tmp_path, "Bank trunk", rtp_port=line.port):
        number = Number.objects.create(e164=ACME_NUMBER, tenant=Tenant.objects.get(schema_name="acme"))
        yield line
        line.stop()
        number.delete()


def test_an_agent_presses_keys_on_a_phone_menu(platform, ivr_line, agents, tenant_a):  # noqa: F811
    api = Client(HTTP_AUTHORIZATION=f"Bearer {tenant_a.api_key}")
    response = api.post("/api/v1/calls", {
        "to": "+14155550199", "from": ACME_NUMBER, "timeout": 15, "stream_url": agents.url("/record"),
        "send_digits": "1",
    }, content_type="application/json")
    connection.set_schema_to_public()
    assert response.status_code == 201, response.content
    sid = response.json()["sid"]
    agents.conn_for(sid, timeout=20)  # answered, the agent streams
    assert [e["digit"] for e in sent(ivr_line, 1)] == ["1"]

    assert api.post(f"/api/v1/calls/{sid}/digits", {"digits": "9x"}, content_type="application/json"
                    ).status_code == 400
    pressed = api.post(f"/api/v1/calls/{sid}/digits", {"digits": "2#"}, content_type="application/json")
    connection.set_schema_to_public()
    assert pressed.status_code == 202, pressed.content
    assert [e["digit"] for e in sent(ivr_line, 3)] == ["1", "2", "#"]

    assert api.post(f"/api/v1/calls/{sid}/hangup").status_code == 202
    connection.set_schema_to_public()
    call = stack.final_call("acme", sid, platform)
    with schema_context("acme"):
        assert (call.status, call.outcome, call.hangup_by) == ("completed", "answered", "platform")
    over = api.post(f"/api/v1/calls/{sid}/digits", {"digits": "3"}, content_type="application/json")
    connection.set_schema_to_public()
    assert over.status_code == 409 and over.json()["detail"] == "the call is over"
    with schema_context("acme"):
        Call.objects.filter(sid=sid).delete()
    connection.set_schema_to_public()


def test_digits_are_for_bridged_calls(ivr_line, tenant_a):
    api = Client(HTTP_AUTHORIZATION=f"Bearer {tenant_a.api_key}")
    at_create = api.post("/api/v1/calls", {"to": "+14155550199", "from": ACME_NUMBER, "send_digits": "1"},
                         content_type="application/json")
    assert at_create.status_code == 400 and "send_digits" in at_create.json(), at_create.content
    connection.set_schema_to_public()
    with schema_context("acme"):
        plain = Call.objects.create(from_number=ACME_NUMBER, to_number="+14155550199")
    mid_call = api.post(f"/api/v1/calls/{plain.sid}/digits", {"digits": "1"}, content_type="application/json")
    connection.set_schema_to_public()
    assert mid_call.status_code == 400 and "digits" in mid_call.json(), mid_call.content
    with schema_context("acme"):
        plain.delete()
    connection.set_schema_to_public()
