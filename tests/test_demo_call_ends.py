"""The demo of `make run` ends its calls by itself: the gateway pool dials the demo carrier (which
answers and speaks its prompt, pausing between), the call is bridged to the demo agent, which greets,
answers each time the far end pauses, says goodbye and hangs up. So demo campaigns finish."""
import sys

import pytest
from django.db import connection
from django.test import Client
from django_tenants.utils import schema_context

from telephony.models import Carrier, Number
from tenants.models import Tenant
from tests import stack
from tests.support import free_tcp_port, free_udp_port, wait_until

pytestmark = pytest.mark.usefixtures("committed")
ACME_NUMBER = "+14155550124"


@pytest.fixture
def demo(tmp_path, tenant_a):
    carrier_port, agent_port = free_udp_port(), free_tcp_port()
    processes = [
        stack.Process("carrier", [sys.executable, "-m", "demo.carrier", "--host", "127.0.0.1",
                                  "--port", str(carrier_port)], tmp_path),
        stack.Process("agent", [sys.executable, "-m", "demo.agent", "--port", str(agent_port),
                                "--listen", "4"], tmp_path),
        stack.gateway_pool(tmp_path, processes=1), stack.recorder(tmp_path),
    ]
    carrier = Carrier.objects.create(name="Demo carrier", host="127.0.0.1", port=carrier_port, priority=1)
    number = Number.objects.create(e164=ACME_NUMBER, tenant=Tenant.objects.get(schema_name=tenant_a.tenant))
    yield processes, f"ws://127.0.0.1:{agent_port}/"
    for process in processes:
        process.stop()
    number.delete()
    carrier.delete()


def test_a_demo_call_is_a_short_conversation_the_agent_ends(demo, tenant_a):
    processes, agent_url = demo
    agent = processes[1]
    wait_until(lambda: "listening on" in agent.tail(), 30, what="the demo agent to listen")
    api = Client(HTTP_AUTHORIZATION=f"Bearer {tenant_a.api_key}")
    response = api.post("/api/v1/calls", {"to": "+14155550177", "from": ACME_NUMBER, "stream_url": agent_url},
                        content_type="application/json")
    connection.set_schema_to_public()
    assert response.status_code == 201, response.content

    call = stack.final_call(tenant_a.tenant, response.json()["sid"], processes, timeout=90)
    log = agent.tail(20000)
    assert (call.status, call.outcome, call.reason) == ("completed", "answered", "agent_closed"), log
    assert "conversation over, hanging up" in log
    assert "playback reached mark 'answer-2'" in log and "playback reached mark 'goodbye'" in log
    assert all(line.startswith("ts=") for line in log.splitlines() if line.strip())  # the platform's format
    with schema_context(tenant_a.tenant):
        call.delete()


def test_a_member_hangs_up_a_call_in_progress_from_its_page(demo, tenant_a):
    from telephony.calls.models import Call
    from tests.ui_support import make_user, signed_in

    processes, agent_url = demo
    wait_until(lambda: "listening on" in processes[1].tail(), 30, what="the demo agent to listen")
    api = Client(HTTP_AUTHORIZATION=f"Bearer {tenant_a.api_key}")
    sid = api.post("/api/v1/calls", {"to": "+14155550178", "from": ACME_NUMBER, "stream_url": agent_url},
                   content_type="application/json").json()["sid"]
    connection.set_schema_to_public()

    def answered():
        with schema_context(tenant_a.tenant):
            return Call.objects.filter(sid=sid, status="in-progress").exists()

    wait_until(answered, 60, what="the call to be answered")
    make_user(tenant_a.tenant, "mia")
    member = signed_in(tenant_a.domain, "mia")
    assert "Hang up" in member.get(f"/calls/{sid}/").content.decode()
    page = member.post(f"/calls/{sid}/hangup/", follow=True)
    assert "Hang-up sent" in page.content.decode()
    call = stack.final_call(tenant_a.tenant, sid, processes)
    assert (call.status, call.reason, call.hangup_by) == ("completed", "hangup_requested", "platform")
    with schema_context(tenant_a.tenant):
        call.delete()
