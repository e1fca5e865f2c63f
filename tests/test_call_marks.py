"""End to end: the call page shows the agent's stream marks. The callee (SIPp) answers and says hello;
Acme's agent greets it with 300 ms of audio and mark `greeting`; once the platform echoes it (the
greeting has played) it asks a question, 200 ms and mark `question`; once that is echoed Acme hangs up. The call record keeps both
marks with when each was sent and played, and an operator reads them on the call page's timeline and in
GET /api/v1/calls/{sid}."""
import pytest
from django.contrib.auth import get_user_model
from django.db import connection
from django.test import Client
from django_tenants.utils import schema_context

from telephony.calls.models import Call
from tests import stack
from tests.gateway.test_recording import tone_frames
from tests.support import wait_until
from tests.test_call_digits import agents  # noqa: F401 - fixture: Twilio-protocol agents
from tests.test_call_flow import platform  # noqa: F401 - fixture: the gateway pool and the recorder
from tests.test_call_recording import ACME_NUMBER, speaking_callee  # noqa: F401 - fixture: the callee says hello
from tests.ui_support import make_user, signed_in

pytestmark = pytest.mark.usefixtures("committed")


@pytest.fixture
def operator(tenant_a):
    make_user(tenant_a.tenant, "oona")
    yield signed_in(tenant_a.domain, "oona")
    with schema_context(tenant_a.tenant):
        get_user_model().objects.filter(username="oona").delete()


def test_the_agents_marks_reach_the_call_page(platform, speaking_callee, agents, operator, tenant_a):  # noqa: F811
    api = Client(HTTP_AUTHORIZATION=f"Bearer {tenant_a.api_key}")
    response = api.post("/api/v1/calls", {"to": "+14155550199", "from": ACME_NUMBER, "timeout": 15,
                                          "stream_url": agents.url("/record")}, content_type="application/json")
    connection.set_schema_to_public()
    assert response.status_code == 201, response.content
    sid = response.json()["sid"]
    conn = agents.conn_for(sid, timeout=20)
    for name, ms in (("greeting", 300), ("question", 200)):
        audio = b"".join(tone_frames(1000, ms / 1000))
        agents.send_audio(conn, audio, chunk=len(audio))  # one message, so the mark follows it closely
        agents.send(conn, {"event": "mark", "streamSid": conn.msgs[1]["start"]["streamSid"], "mark": {"name": name}})
        wait_until(lambda name=name: name in [m["mark"]["name"] for m in conn.events("mark")], 10,
                   what=f"mark {name} echoed")
    assert api.post(f"/api/v1/calls/{sid}/hangup").status_code == 202
    connection.set_schema_to_public()
    call = stack.final_call("acme", sid, platform)

    greeting, question = call.marks
    assert [greeting["name"], question["name"]] == ["greeting", "question"]
    # each echoed once its audio had played to the callee at 20 ms a frame (the first frame goes out at
    # once, and the mark arrives just after the audio), not when it arrived
    assert greeting["played_at"] - greeting["sent_at"] >= 0.2
    assert question["played_at"] - question["sent_at"] >= 0.1
    assert greeting["played_at"] <= question["sent_at"]  # the agent asked after hearing it played
    assert "cleared" not in greeting and "cleared" not in question

    page = operator.get(f"/calls/{sid}/")
    connection.set_schema_to_public()
    timeline = [(step.what, step.detail) for step in page.context["timeline"] if step.what.startswith("mark")]
    wait = round((greeting["played_at"] - greeting["sent_at"]) * 1000)
    assert timeline[0] == ("mark greeting", f"sent / played (+{wait} ms)") and timeline[1][0] == "mark question"
    assert f"sent / played (+{wait} ms)" in page.content.decode()

    record = api.get(f"/api/v1/calls/{sid}").json()
    connection.set_schema_to_public()
    assert record["marks"] == [{"cleared": False, **mark} for mark in call.marks]
    listed = api.get("/api/v1/calls", {"to": "+14155550199"}).json()["results"]
    connection.set_schema_to_public()
    assert listed and "marks" not in listed[0]  # the list stays light
    with schema_context("acme"):
        Call.objects.filter(sid=sid).delete()
