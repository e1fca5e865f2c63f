"""End to end: Acme's agent hands a customer to its sales desk. Acme's code places the call through the
REST API; the customer answers (SIPp on the customer trunk; the customer's phone line is an RTP socket
of this test that keeps saying a 400 Hz tone) and talks to the agent. Meanwhile Acme's desk phones got a
trunk of their own, first in the routing plan; the agent asks the API to transfer the call, with no
number: the desk's is the first of the call's transfer numbers (its campaign's; a backup desk is second,
tried only if the desk does not answer). The platform dials it through that trunk (the routing every call has), the desk answers
(its line says 1000 Hz), the agent's stream ends, and the customer and the desk hear each other. The
call record keeps the transfer: who answered, through which carrier, for how long, and its outcome.
A bad number, a blind transfer on a trunk that takes no REFER, a call that is not bridged and a call that
is over are refused with a 4xx."""
from contextlib import ExitStack

import pytest
from django.db import connection
from django.test import Client
from django_tenants.utils import schema_context

from telephony.calls.models import Call, Transfer
from telephony.models import Number
from tenants.models import Tenant
from tests import stack
from tests.gateway.test_transfer import CALLEE_HZ, PERSON_HZ, blocks_with, heard_since, talking_line
from tests.support import wait_until
from tests.test_call_digits import agents  # noqa: F401 - fixture: Twilio-protocol agents in this process
from tests.test_call_flow import platform  # noqa: F401 - fixture: the gateway pool and the recorder

pytestmark = pytest.mark.usefixtures("committed")
ACME_NUMBER = "+14155550126"
CUSTOMER, DESK, BACKUP_DESK = "+14155550199", "+14155550177", "sip:backup@127.0.0.1:5999"


@pytest.fixture
def customer_line(tmp_path):
    """The customer trunk (SIPp answers) and the customer's phone line, which keeps saying 400 Hz."""
    line = talking_line(CALLEE_HZ)
    with stack.media_trunk(tmp_path, "Customer trunk", priority=2, rtp_port=line.port):
        number = Number.objects.create(e164=ACME_NUMBER, tenant=Tenant.objects.get(schema_name="acme"))
        yield line
        line.stop()
        number.delete()


@pytest.fixture
def desk_line(tmp_path):
    """Made by the test once the customer's call is up: the desk's trunk, first in the routing plan."""
    with ExitStack() as made:
        def make():
            line = talking_line(PERSON_HZ)
            made.callback(line.stop)
            made.enter_context(stack.media_trunk(tmp_path, "Desk trunk", rtp_port=line.port))
            return line

        yield make


def post(api, path, data=None):
    response = api.post(path, data or {}, content_type="application/json")
    connection.set_schema_to_public()
    return response


def gateway_port(line) -> int:
    """The gateway's RTP port for a line: where the SDP answer's line started sending to us from."""
    wait_until(lambda: line.heard, 10, what="the gateway's first RTP on the line")
    return line.remote_port


def test_an_agent_hands_the_customer_to_the_sales_desk(platform, customer_line, desk_line, agents,  # noqa: F811
                                                         tenant_a):
    api = Client(HTTP_AUTHORIZATION=f"Bearer {tenant_a.api_key}")
    response = post(api, "/api/v1/calls", {"to": CUSTOMER, "from": ACME_NUMBER, "timeout": 15,
                                           "stream_url": agents.url("/record")})
    assert response.status_code == 201, response.content
    sid = response.json()["sid"]
    agent = agents.conn_for(sid, timeout=20)
    customer_line.play(gateway_port(customer_line))
    wait_until(lambda: blocks_with(agent.payload(), CALLEE_HZ) > 10, 10, what="the agent hearing the customer")
    desk = desk_line()

    assert post(api, f"/api/v1/calls/{sid}/transfer", {"to": "12345"}).status_code == 400
    blind = post(api, f"/api/v1/calls/{sid}/transfer", {"to": DESK, "mode": "blind"})
    assert blind.status_code == 400 and "REFER" in blind.json()["mode"][0]  # the customer trunk takes none
    with schema_context("acme"):  # as a campaign's call carries its campaign's transfer numbers
        Call.objects.filter(sid=sid).update(transfer_numbers=[DESK, BACKUP_DESK])
    connection.set_schema_to_public()
    transfer = post(api, f"/api/v1/calls/{sid}/transfer", {"timeout": 15})  # no number: the first of them
    assert transfer.status_code == 201, transfer.content
    transfer_sid = transfer.json()["sid"]
    desk.play(gateway_port(desk))
    wait_until(agent.closed.is_set, 10, what="the agent's stream ending (cold transfer)")
    customer_from, desk_from = len(customer_line.heard), len(desk.heard)
    wait_until(lambda: blocks_with(heard_since(desk, desk_from), CALLEE_HZ) >= 50, 10,
               what="the desk hearing the customer")
    wait_until(lambda: blocks_with(heard_since(customer_line, customer_from), PERSON_HZ) >= 50, 10,
               what="the customer hearing the desk")
    busy = post(api, f"/api/v1/calls/{sid}/transfer", {"to": DESK})
    assert busy.status_code == 201  # accepted, then refused by the gateway: a transfer is under way

    assert post(api, f"/api/v1/calls/{sid}/hangup").status_code == 202
    call = stack.final_call("acme", sid, platform)

    def transfer_ended():
        with schema_context("acme"):
            return Transfer.objects.filter(sid=transfer_sid, ended_at__isnull=False).first()
    record = wait_until(transfer_ended, 15, what="the transfer's record to end")
    with schema_context("acme"):
        assert (call.status, call.outcome, call.reason) == ("completed", "answered", "hangup_requested")
        assert (record.status, record.outcome, record.reason) == ("completed", "answered", "transfer_leg_ended")
        assert (record.to, record.caller_id, record.carrier_name, record.mode) == (DESK, ACME_NUMBER, "Desk trunk", "cold")
        assert record.answered_at >= call.answered_at and 1.0 < record.duration_s < call.duration_s
        backup = Transfer.objects.get(call=call, to=BACKUP_DESK)  # never dialed: the desk answered
        assert (backup.status, backup.reason) == ("canceled", "the call ended first")
        second = Transfer.objects.exclude(sid__in=[transfer_sid, backup.sid]).get(call=call)
        wait_until(lambda: Transfer.objects.get(pk=second.pk).ended_at, 10, what="the second transfer's refusal")
        assert Transfer.objects.get(pk=second.pk).reason == "a transfer of this call is under way"
    shown = api.get(f"/api/v1/calls/{sid}").json()
    connection.set_schema_to_public()
    assert [t["sid"] for t in shown["transfers"]][0] == transfer_sid
    assert shown["transfers"][0]["carrier"] == "Desk trunk"

    over = post(api, f"/api/v1/calls/{sid}/transfer", {"to": DESK})
    assert over.status_code == 409, over.content
    with schema_context("acme"):
        Call.objects.filter(sid=sid).delete()
    connection.set_schema_to_public()


def test_only_bridged_calls_are_transferred(customer_line, tenant_a):
    api = Client(HTTP_AUTHORIZATION=f"Bearer {tenant_a.api_key}")
    created = post(api, "/api/v1/calls", {"to": CUSTOMER, "from": ACME_NUMBER})
    assert created.status_code == 201, created.content
    refused = post(api, f"/api/v1/calls/{created.json()['sid']}/transfer", {"to": DESK})
    assert refused.status_code == 400 and "bridged" in refused.json()["to"][0]
    with schema_context("acme"):
        Call.objects.filter(sid=created.json()["sid"]).delete()
    connection.set_schema_to_public()
