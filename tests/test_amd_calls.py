"""Answering-machine detection through the APIs and into the records: a tenant asks for detection on a
call (our API, or Twilio's parameters unchanged), the gateway pool gets the settings and the voicemail
audio, and the result (AnsweredBy, when, why) lands on the call record, its callbacks, its export and
its Twilio resource; a machine answer is never an abandoned call."""
import time

import pytest
from django_tenants.utils import schema_context

from core.redis_client import get_redis
from telephony.calls.models import Call, WebhookDelivery
from telephony.calls.recorder import record_event
from telephony.gateway import events as gw
from tests.test_calls_api import (
    ACME_NUMBER,
    CALLEE,
    inventory,  # noqa: F401 - autouse: carriers and Acme's number
    queued_commands,
    twilio,
    v1,
)

pytestmark = pytest.mark.django_db
AGENT = "wss://agent.acme.example/stream"


def test_a_call_with_voicemail_drop_hands_the_gateways_the_settings_and_the_spoken_message(
    tenant_a, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        response = v1(tenant_a).post("/api/v1/calls", {
            "to": CALLEE, "from": ACME_NUMBER, "stream_url": AGENT, "machine_detection": "DetectMessageEnd",
            "machine_detection_timeout": 20, "machine_detection_speech_end_threshold": 1500,
            "on_machine": "voicemail", "voicemail_message": "Hi, this is Acme about your order. Please call us back.",
        }, content_type="application/json")
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["machine_detection"]["mode"] == "DetectMessageEnd" and body["answered_by"] == ""

    (command,) = queued_commands()
    detection = command["machine_detection"]
    assert detection == {"mode": "DetectMessageEnd", "timeout_s": 20, "speech_threshold_ms": 2400,
                         "speech_end_threshold_ms": 1500, "silence_timeout_ms": 5000, "async": False,
                         "on_machine": "voicemail", "voicemail_key": detection["voicemail_key"]}
    assert len(get_redis().get(detection["voicemail_key"])) > 2 * 8000  # seconds of spoken mu-law


@pytest.mark.parametrize("fields, field", [
    ({"machine_detection": "Sometimes"}, "machine_detection"),
    ({"machine_detection": "Enable", "machine_detection_speech_threshold": 500}, "machine_detection_speech_threshold"),
    ({"machine_detection": "Enable", "on_machine": "voicemail"}, "voicemail_message"),
    ({"on_machine": "hangup"}, "machine_detection"),
    ({"machine_detection": "Enable", "stream_url": ""}, "machine_detection"),
])
def test_bad_detection_settings_are_refused_naming_the_field(tenant_a, fields, field):
    response = v1(tenant_a).post("/api/v1/calls", {"to": CALLEE, "from": ACME_NUMBER, "stream_url": AGENT, **fields},
                                 content_type="application/json")
    assert response.status_code == 400 and field in response.json(), response.content
    assert queued_commands() == []


def test_twilio_machine_detection_parameters_are_understood(tenant_a, django_capture_on_commit_callbacks):
    twiml = f'<Response><Connect><Stream url="{AGENT}"/></Connect></Response>'
    with django_capture_on_commit_callbacks(execute=True):
        response = twilio(tenant_a).post(f"/2010-04-01/Accounts/{tenant_a.account_sid}/Calls.json", {
            "To": CALLEE, "From": ACME_NUMBER, "Twiml": twiml, "MachineDetection": "Enable",
            "MachineDetectionTimeout": "10", "MachineDetectionSilenceTimeout": "3000", "AsyncAmd": "true",
            "AsyncAmdStatusCallback": "https://acme.example/amd",
        })
    assert response.status_code == 201, response.content
    (command,) = queued_commands()
    assert command["machine_detection"] == {
        "mode": "Enable", "timeout_s": 10, "speech_threshold_ms": 2400, "speech_end_threshold_ms": 1200,
        "silence_timeout_ms": 3000, "async": True, "on_machine": "connect"}
    with schema_context("acme"):
        assert Call.objects.get(sid=command["call_id"]).amd_status_callback == "https://acme.example/amd"

    refused = twilio(tenant_a).post(f"/2010-04-01/Accounts/{tenant_a.account_sid}/Calls.json", {
        "To": CALLEE, "From": ACME_NUMBER, "Twiml": twiml, "MachineDetection": "Enable",
        "MachineDetectionSpeechThreshold": "lots"})
    assert refused.status_code == 400 and "MachineDetectionSpeechThreshold" in refused.json()["message"]


def answered_call(sid, answered_by=None):
    t = time.time()
    events = [gw.make_event(sid, gw.INITIATED, ts=t, gateway_id="gw-1"),
              gw.make_event(sid, gw.ANSWERED, ts=t + 1, leg=0, setup_ms=900)]
    final = {"outcome": "answered", "hangup_by": "platform", "duration": 9.0, "reason": "remote_hangup"}
    if answered_by:
        evidence = {"cause": "beep after the greeting", "greeting_ms": 4200, "tones": [{"hz": 1000, "ms": 500}]}
        events.append(gw.make_event(sid, gw.AMD, ts=t + 6, answered_by=answered_by, amd_ms=5020,
                                    amd_evidence=evidence))
        final.update(reason=gw.REASON_VOICEMAIL_LEFT, answered_by=answered_by, amd_ms=5020, amd_evidence=evidence)
    events.append(gw.make_event(sid, gw.COMPLETED, ts=t + 10, **final))
    return events


def test_a_voicemail_answer_is_recorded_with_its_evidence_and_is_not_abandoned(tenant_a):
    with schema_context("acme"):
        machine = Call.objects.create(from_number=ACME_NUMBER, to_number=CALLEE, stream_url=AGENT,
                                      status_callback="https://acme.example/status")
        person = Call.objects.create(from_number=ACME_NUMBER, to_number=CALLEE, stream_url=AGENT)
    for event in answered_call(machine.sid, "machine_end_beep") + answered_call(person.sid):
        record_event(event, "acme")

    with schema_context("acme"):
        machine.refresh_from_db()
        person.refresh_from_db()
        assert (machine.answered_by, machine.amd_ms, machine.reason) == ("machine_end_beep", 5020, "voicemail_left")
        assert machine.amd_evidence["tones"] == [{"hz": 1000, "ms": 500}]
        assert not machine.abandoned  # nobody waited for the agent
        assert person.abandoned and person.answered_by == ""  # the agent never streamed to a person
        amd_callback = WebhookDelivery.objects.get(call=machine, event="amd")
        assert amd_callback.payload["AnsweredBy"] == "machine_end_beep"
        assert amd_callback.payload["MachineDetectionDuration"] == "5020"
        assert WebhookDelivery.objects.get(call=machine, event="completed").payload["AnsweredBy"] == "machine_end_beep"

    resource = twilio(tenant_a).get(f"/2010-04-01/Accounts/{tenant_a.account_sid}/Calls/{machine.sid}.json").json()
    assert resource["answered_by"] == "machine_end_beep"
    export = v1(tenant_a).get("/api/v1/calls/export")
    rows = b"".join(export.streaming_content).decode().splitlines()
    header = rows[0].split(",")
    row = next(r.split(",") for r in rows if r.startswith(machine.sid))
    assert row[header.index("answered_by")] == "machine_end_beep" and row[header.index("amd_ms")] == "5020"
