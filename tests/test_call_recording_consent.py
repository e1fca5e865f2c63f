"""Acme tells each callee that the call is recorded before it is: its code places a recorded call with
a recording announcement. The callee (SIPp, its phone line a socket of the test: ivr_line) hears the announcement
(espeak-ng, as the platform renders it) as soon as it answers; only then is the agent connected and the
recording started, so the stored WAV holds the agent's words from its start and none of the announcement."""
import time

import pytest
from django.db import connection
from django.test import Client
from django_tenants.utils import schema_context

from media import fallback
from telephony.calls.models import Call, Recording
from tests import stack
from tests.gateway.test_recording import tone_blocks, tone_frames
from tests.support import wait_until
from tests.test_call_digits import ACME_NUMBER, agents, ivr_line  # noqa: F401 - fixtures: agents, a listening callee
from tests.test_call_flow import platform  # noqa: F401 - fixture: the gateway pool and the recorder
from tests.test_call_recording import channels

pytestmark = pytest.mark.usefixtures("committed")
ANNOUNCEMENT = "This call is recorded for quality and training."


def test_the_callee_hears_the_announcement_before_the_agent_and_the_recording_start(
        platform, celery_worker_process, ivr_line, agents, tenant_a, object_store):  # noqa: F811
    announcement = fallback.render(ANNOUNCEMENT)
    spoken_s = len(announcement) / 8000
    api = Client(HTTP_AUTHORIZATION=f"Bearer {tenant_a.api_key}")
    response = api.post("/api/v1/calls", {
        "to": "+14155550199", "from": ACME_NUMBER, "timeout": 15, "stream_url": agents.url("/record"),
        "record": True, "recording_announcement": ANNOUNCEMENT,
    }, content_type="application/json")
    connection.set_schema_to_public()
    assert response.status_code == 201, response.content
    sid = response.json()["sid"]
    conn = agents.conn_for(sid, timeout=30)
    heard_when_connected = len(ivr_line.audio())
    agents.send_audio(conn, b"".join(tone_frames(1000, 1.0)))
    time.sleep(1.5)  # the agent's tone plays out
    assert api.post(f"/api/v1/calls/{sid}/hangup").status_code == 202
    connection.set_schema_to_public()
    call = stack.final_call("acme", sid, platform)

    # the callee heard the announcement whole, first, and the agent came after it
    heard = ivr_line.audio()
    assert heard[:len(announcement)] == announcement
    assert heard_when_connected >= len(announcement)
    assert call.ai_connect_ms / 1000 >= spoken_s
    assert tone_blocks_in(heard[len(announcement):], 1000) >= 45

    def listed():
        rows = api.get(f"/api/v1/recordings?call={sid}").json()["results"]
        connection.set_schema_to_public()
        return rows
    [recording] = wait_until(listed, 30, what="the stored recording")
    media = api.get(recording["media_url"])
    connection.set_schema_to_public()
    left, right = channels(b"".join(media.streaming_content))
    agent = tone_blocks(right, 1000)
    assert 48 <= len(agent) <= 50
    # the recording started at the announcement's end: the agent speaks at once, and before it, silence
    assert agent[0] * 0.02 < call.ai_connect_ms / 1000 - spoken_s + 0.5, (agent[0], call.ai_connect_ms)
    assert max(abs(x) for x in right[:agent[0] * 160] or [0]) < 200
    assert max(abs(x) for x in left) < 200  # the callee said nothing
    assert abs(recording["duration_s"] - (call.duration_s - spoken_s)) < 0.5

    with schema_context("acme"):
        from telephony.calls import recordings

        recordings.delete_recording(Recording.objects.get(sid=recording["sid"]))
        Call.objects.filter(sid=sid).delete()


def tone_blocks_in(ulaw: bytes, hz: float) -> int:
    import array

    from media import codec

    return len(tone_blocks(array.array("h", codec.ulaw_to_lin16(ulaw)), hz))
