"""End to end: Acme's campaign code calls a number with answering-machine detection (hang up on
machines); the line is answered by a fax machine. The gateway pool dials the carrier (SIPp, which
plays the fax's calling tone after answering), the media host hears the tone and hangs up, and the
recorder writes the whole story: answered by a fax, when and why, hung up by the platform, not an
abandoned call."""
import random

import pytest
from django.db import connection
from django.test import Client
from django_tenants.utils import schema_context

from bench.amd_corpus import make_answer
from telephony.models import Number
from tenants.models import Tenant
from tests import stack
from tests.conversation import write_rtp_pcap
from tests.support import free_tcp_port
from tests.test_call_flow import platform  # noqa: F401 - fixture: the gateway pool and the recorder

pytestmark = pytest.mark.usefixtures("committed")
ACME_NUMBER = "+14155550124"


@pytest.fixture
def fax_line(tmp_path):
    """A carrier whose callee is a fax machine: SIPp answers and plays CNG (1100 Hz) until our BYE."""
    pcap = write_rtp_pcap(tmp_path / "fax.pcap", [(0, f) for f in make_answer("fax", random.Random(1)).frames])
    with stack.media_trunk(tmp_path, "Fax trunk", play_pcap=pcap) as carrier:
        number = Number.objects.create(e164=ACME_NUMBER, tenant=Tenant.objects.get(schema_name="acme"))
        yield carrier
        number.delete()


def test_a_fax_answer_is_detected_hung_up_on_and_recorded(platform, fax_line, tenant_a):  # noqa: F811
    api = Client(HTTP_AUTHORIZATION=f"Bearer {tenant_a.api_key}")
    response = api.post("/api/v1/calls", {
        "to": "+14155550199", "from": ACME_NUMBER, "timeout": 15,
        "stream_url": f"ws://127.0.0.1:{free_tcp_port()}/agent",  # never called: a fax gets no agent
        "machine_detection": "Enable", "on_machine": "hangup",
    }, content_type="application/json")
    connection.set_schema_to_public()
    assert response.status_code == 201, response.content
    sid = response.json()["sid"]

    call = stack.final_call("acme", sid, platform)
    with schema_context("acme"):
        assert (call.status, call.outcome, call.reason, call.hangup_by) == (
            "completed", "answered", "machine_detected", "platform")
        assert call.answered_by == "fax" and 500 <= call.amd_ms <= 3000
        assert call.amd_evidence["tones"][0]["hz"] == pytest.approx(1100, abs=40)
        assert not call.abandoned and call.ai_connect_ms is None
        call.delete()
    connection.set_schema_to_public()
