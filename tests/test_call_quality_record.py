"""A bridged call against SIPp leaves a call record with every quality figure filled in.

Acme's agent takes a call placed through the REST API. The callee (SIPp) says a sentence, goes quiet
and presses 1; the agent waits for the quiet, answers, and hangs up on the key. The far end reports
RTCP (a responder beside SIPp, which sends none), so the record has a round trip too.

Real parts: the gateway pool, the recorder, SIPp with real RTP, the agent's WebSocket.
"""

import pytest
from django.db import connection
from django.test import Client
from django_tenants.utils import schema_context

from telephony.calls.models import Call
from telephony.metrics import selectors as metrics
from telephony.models import Carrier, Number
from tenants.models import Tenant
from tests import stack
from tests.conversation import RespondingAgent, RtcpResponder, caller_pcap
from tests.gateway.gwhelpers import Sipp
from tests.support import free_media_port, free_udp_port

pytestmark = pytest.mark.usefixtures("committed")
ACME_NUMBER = "+14155550188"
QUALITY = ("jitter_ms", "loss_percent", "rtt_ms", "mos", "bridge_in_p50_ms", "bridge_in_p99_ms",
           "bridge_out_p50_ms", "bridge_out_p99_ms", "frames_to_agent", "frames_dropped", "ai_connect_ms",
           "ai_response_ms", "ai_response_turns", "setup_ms", "post_dial_delay_ms", "duration_s")


@pytest.fixture
def callee(tmp_path, tenant_a):
    """SIPp as the carrier: answers, says its piece (a pcap) and waits for our BYE; RTCP beside it."""
    media_port = free_media_port()
    play = f'<nop><action><exec play_pcap_audio="{caller_pcap(tmp_path / "callee.pcap")}"/></action></nop>'
    sipp = Sipp(tmp_path, "uas_media.xml", free_udp_port(), ["-m", "1", "-mp", media_port],
                subst={"PLAY": play, "CODEC": "PCMU", "CODEC_PT": 0})
    rtcp = RtcpResponder(media_port + 1)
    carrier = Carrier.objects.create(name="Talking trunk", host="127.0.0.1", port=sipp.port)
    number = Number.objects.create(e164=ACME_NUMBER, tenant=Tenant.objects.get(schema_name="acme"))
    yield rtcp
    rtcp.stop()
    sipp.stop()
    with schema_context("acme"):
        Call.objects.filter(from_number=ACME_NUMBER).delete()
    number.delete()
    carrier.delete()


@pytest.fixture
def platform(tmp_path, tenant_a):
    processes = [stack.gateway_pool(tmp_path, processes=1), stack.recorder(tmp_path)]
    yield processes
    for process in processes:
        process.stop()


@pytest.fixture
def agent():
    agent = RespondingAgent(quiet_ms=400, think_ms=200)
    yield agent
    agent.stop()


def test_a_conversation_leaves_a_record_with_every_quality_figure(platform, callee, agent, tenant_a):
    api = Client(HTTP_AUTHORIZATION=f"Bearer {tenant_a.api_key}")
    response = api.post("/api/v1/calls", {"to": "+14155550199", "from": ACME_NUMBER, "timeout": 15,
                                          "stream_url": agent.url}, content_type="application/json")
    connection.set_schema_to_public()
    assert response.status_code == 201, response.content
    sid = response.json()["sid"]

    call = stack.final_call("acme", sid, platform)

    # the agent hung up on the caller's key, after answering the one thing the caller said
    assert (call.status, call.reason, call.hangup_by, call.dtmf_digits) == ("completed", "agent_closed", "platform", "1")
    assert len(agent.replies[sid]) == 1 and callee.reports >= 1
    missing = [name for name in QUALITY if getattr(call, name) is None]
    assert missing == [], f"quality fields left empty: {missing}"
    assert call.loss_percent == 0 and call.mos > 4 and call.frames_dropped == 0
    assert call.ai_response_turns == 1
    assert 520 <= call.ai_response_ms <= 900  # 400 ms of quiet before the agent noticed + 200 ms thinking
    # and the dashboard's table of latest calls shows it
    latest = next(c for c in metrics.latest_calls("acme") if c["sid"] == sid)
    assert latest["ai_response_ms"] == call.ai_response_ms
