"""Agents that connect in: Acme's AI does not listen on a public URL, so it asks for a call with
`agent_connects` and opens the WebSocket itself, with the per-call token from the API's response.
Same Twilio Media Streams protocol as when we connect out; refused without a valid, fresh token.

Real parts: daphne (the relay), the gateway pool, the recorder, SIPp as the carrier echoing RTP.
"""
import base64
import json
import time
from unittest import mock
from urllib.parse import urlsplit, urlunsplit

import pytest
from django.db import connection
from django.test import Client, override_settings
from django_tenants.utils import schema_context
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from telephony.calls import stream_access
from telephony.calls.models import Call
from telephony.models import Carrier, Number
from tenants.models import Tenant
from tests import stack

pytestmark = pytest.mark.usefixtures("committed")
ACME_NUMBER = "+14155550177"


@pytest.fixture
def platform(tmp_path, tenant_a, web):
    carrier_process, carrier_port = stack.sipp_carrier(tmp_path, "uas_answer.xml", "-rtp_echo")
    carrier = Carrier.objects.create(name="Echo trunk", host="127.0.0.1", port=carrier_port)
    number = Number.objects.create(e164=ACME_NUMBER, tenant=Tenant.objects.get(schema_name="acme"))
    processes = [stack.gateway_pool(tmp_path, processes=1), stack.recorder(tmp_path), carrier_process]
    with override_settings(MEDIA_RELAY_URL=f"ws://127.0.0.1:{web}", AGENT_STREAM_CONNECT_TIMEOUT_S=3):
        yield processes
    for process in processes:
        process.stop()
    with schema_context("acme"):
        Call.objects.filter(from_number=ACME_NUMBER).delete()
    number.delete()
    carrier.delete()


def place_call(tenant, **fields) -> dict:
    api = Client(HTTP_AUTHORIZATION=f"Bearer {tenant.api_key}")
    response = api.post("/api/v1/calls", {"to": "+14155550199", "from": ACME_NUMBER, "timeout": 15,
                                          "custom_parameters": {"order": "A-17"}, **fields},
                        content_type="application/json")
    connection.set_schema_to_public()
    assert response.status_code == 201, response.content
    return response.json()


def on_port(url: str, port: int) -> str:
    """The URL the API gave (its host is the test client's) on the port daphne listens on here."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, f"127.0.0.1:{port}", parts.path, parts.query, ""))


def frame(n: int) -> str:
    """20 ms of mu-law that is not silence, different per n."""
    return base64.b64encode(bytes(((n * 29 + i * 7) % 200) + 20 for i in range(160))).decode()


def test_the_agent_connects_in_with_the_calls_token_and_talks_both_ways(platform, tenant_a, web):
    call = place_call(tenant_a, agent_connects=True)
    assert call["agent_connects"] is True and call["stream_url"] == ""
    assert call["stream_connect_url"].startswith("ws://") and "token=" in call["stream_connect_url"]

    # The agent connects as soon as it has the URL; the relay holds it until the call is answered.
    with connect(on_port(call["stream_connect_url"], web), open_timeout=10) as agent:
        connected = json.loads(agent.recv(timeout=20))
        start = json.loads(agent.recv(timeout=5))
        assert connected["event"] == "connected"
        assert start["event"] == "start" and start["start"]["callSid"] == call["sid"]
        assert start["start"]["customParameters"]["order"] == "A-17"
        stream_sid = start["streamSid"]

        sent = [frame(n) for n in range(25)]
        for payload in sent:
            agent.send(json.dumps({"event": "media", "streamSid": stream_sid, "media": {"payload": payload}}))
        agent.send(json.dumps({"event": "mark", "streamSid": stream_sid, "mark": {"name": "greeting"}}))

        # Caller audio keeps coming; SIPp echoes what the caller heard, so the agent's frames return.
        heard, mark_back, deadline = set(), None, time.monotonic() + 10
        while time.monotonic() < deadline and not (mark_back and set(sent) <= heard):
            message = json.loads(agent.recv(timeout=5))
            if message["event"] == "media":
                assert message["media"]["track"] == "inbound"
                heard.add(message["media"]["payload"])
            elif message["event"] == "mark":
                mark_back = message["mark"]["name"]
        assert mark_back == "greeting"
        assert set(sent) <= heard, f"{len(set(sent) & heard)} of {len(sent)} agent frames came back"
    # The agent hung up by closing its socket.

    record = stack.final_call("acme", call["sid"], platform)
    assert (record.status, record.outcome, record.reason) == ("completed", "answered", "agent_closed")
    assert record.ai_connect_ms is not None and record.frames_to_agent > 0


def test_an_agent_can_ask_for_16_khz_linear_audio(platform, tenant_a, web):
    call = place_call(tenant_a, agent_connects=True, stream_encoding="audio/x-l16")
    with connect(on_port(call["stream_connect_url"], web), open_timeout=10) as agent:
        json.loads(agent.recv(timeout=20))  # connected
        start = json.loads(agent.recv(timeout=5))
        assert start["start"]["mediaFormat"] == {"encoding": "audio/x-l16", "sampleRate": 16000, "channels": 1}
        media = next(m for m in (json.loads(agent.recv(timeout=5)) for _ in range(50)) if m["event"] == "media")
        assert len(base64.b64decode(media["media"]["payload"])) == 640  # 20 ms of 16-bit samples at 16 kHz
    assert stack.final_call("acme", call["sid"], platform).reason == "agent_closed"


def test_an_agent_that_never_connects_ends_the_call_with_a_reason(platform, tenant_a):
    call = place_call(tenant_a, agent_connects=True)
    record = stack.final_call("acme", call["sid"], platform)
    assert (record.outcome, record.reason) == ("answered", "agent_connect_timeout")


def test_stream_url_and_agent_connects_are_one_or_the_other(tenant_a):
    api = Client(HTTP_AUTHORIZATION=f"Bearer {tenant_a.api_key}")
    response = api.post("/api/v1/calls", {"to": "+14155550199", "from": ACME_NUMBER, "agent_connects": True,
                                          "stream_url": "ws://agent.example/stream"},
                        content_type="application/json")
    assert response.status_code == 400 and "agent_connects" in response.json()


# -- refusals ---------------------------------------------------------------------------------------

@pytest.fixture
def live_call(tenant_a):
    with schema_context("acme"):
        call = Call.objects.create(from_number=ACME_NUMBER, to_number="+14155550199", agent_connects=True)
    yield call
    with schema_context("acme"):
        Call.objects.filter(pk=call.pk).delete()


def refused(url: str) -> int:
    with pytest.raises(InvalidStatus) as refusal:
        connect(url, open_timeout=10).close()
    return refusal.value.response.status_code


def agent_url(port: int, sid: str, token: str) -> str:
    return f"ws://127.0.0.1:{port}{stream_access.agent_stream_path(sid)}?token={token}"


def test_an_agent_without_a_good_fresh_token_for_this_call_is_refused(web, live_call):
    sid = live_call.sid
    assert refused(agent_url(web, sid, "")) == 403
    assert refused(agent_url(web, sid, "not-a-token")) == 403
    assert refused(agent_url(web, sid, stream_access.agent_token("acme", "CA" + "0" * 32))) == 403

    with mock.patch("django.core.signing.time.time", return_value=time.time() - 3600):
        stale = stream_access.agent_token("acme", sid)
    assert refused(agent_url(web, sid, stale)) == 403

    with connect(agent_url(web, sid, stream_access.agent_token("acme", sid)), open_timeout=10):
        # one agent per call: a second one with the same (valid) token is turned away
        assert refused(agent_url(web, sid, stream_access.agent_token("acme", sid))) == 403


def test_an_ended_call_takes_no_agent_and_the_relay_takes_no_stranger(web, live_call):
    with schema_context("acme"):
        Call.objects.filter(pk=live_call.pk).update(status=Call.Status.COMPLETED)
    assert refused(agent_url(web, live_call.sid, stream_access.agent_token("acme", live_call.sid))) == 403
    relay = stream_access.relay_url("acme", live_call.sid).split("?")[0]
    assert refused(on_port(relay + "?key=guess", web)) == 403
