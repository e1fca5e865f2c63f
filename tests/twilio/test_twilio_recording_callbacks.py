"""Acme records calls through Twilio's client (Record, RecordingChannels=dual) and asks for Twilio's
RecordingStatusCallback: once the call's WAV is stored its app gets the recording's sid, URL, duration
and channels, signed so that Twilio's RequestValidator accepts it, and exactly once; a recorded call
that ends with nothing recorded gets `absent`, when asked for. Bad settings are Twilio's 400s.

Real parts: daphne serving the API, Twilio's client and validator, Acme's app as an HTTP server, the
S3-compatible server (moto). The media host's WAV is spooled by the test, the gateway's events are fed
to the recorder directly (tests/test_call_recording.py records a real call)."""
import urllib.parse

import pytest
from django_tenants.utils import schema_context
from twilio.base.exceptions import TwilioRestException

from telephony.calls import recordings, tasks, webhooks
from telephony.calls.models import Call, Recording, WebhookDelivery
from telephony.calls.recorder import record_event
from telephony.gateway import events as gw
from tenants import auth_token
from tests.twilio.test_twilio_recordings import spool_wav
from tests.twilio_support import ACME_NUMBER, CALLEE, STREAM_TWIML, acme_client

pytestmark = pytest.mark.usefixtures("committed")


def deliver_all(sid: str) -> None:
    with schema_context("acme"):
        for delivery in WebhookDelivery.objects.filter(call__sid=sid).order_by("pk"):
            assert webhooks.deliver(delivery.pk) is None


def test_the_app_hears_of_the_stored_recording_once_signed_as_twilio_signs(acme, web, app, object_store):
    call = acme_client(acme, web).calls.create(
        to=CALLEE, from_=ACME_NUMBER, twiml=STREAM_TWIML, record=True, recording_channels="dual",
        recording_status_callback=app.url("/recordings?lead=7"), recording_status_callback_method="GET")
    record_event(gw.make_event(call.sid, gw.ANSWERED, leg=0, setup_ms=700), "acme")
    spool_wav(call.sid, 3.0)
    record_event(gw.make_event(call.sid, gw.COMPLETED, leg=0, outcome="answered", duration=3.0), "acme")
    with schema_context("acme"):
        recording = recordings.store_recording(call.sid, f"{call.sid}.wav", 3.0)  # the store_recording task
        assert recordings.store_recording(call.sid, f"{call.sid}.wav", 3.0) == recording  # a task run twice
    deliver_all(call.sid)

    [request] = app.requests
    assert request["method"] == "GET" and request["path"].startswith("/recordings?")
    params = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(request["path"]).query))
    assert params["lead"] == "7" and params["CallSid"] == call.sid and params["AccountSid"] == acme.account_sid
    assert (params["RecordingSid"], params["RecordingStatus"], params["RecordingDuration"],
            params["RecordingChannels"], params["RecordingSource"]) == (recording.sid, "completed", "3", "2", "OutboundAPI")
    assert params["RecordingUrl"].endswith(f"/2010-04-01/Accounts/{acme.account_sid}/Recordings/{recording.sid}")
    assert app.validated(auth_token.current(acme), request)
    assert not app.validated("0" * 32, request)
    with schema_context("acme"):
        recordings.delete_recording(Recording.objects.get(sid=recording.sid))


def test_a_recorded_call_that_ends_with_nothing_recorded_is_reported_absent(acme, web, app):
    client = acme_client(acme, web)
    call = client.calls.create(to=CALLEE, from_=ACME_NUMBER, twiml=STREAM_TWIML, record=True,
                               recording_status_callback=app.url("/recordings"),
                               recording_status_callback_event=["completed", "absent"])
    plain = client.calls.create(to=CALLEE, from_=ACME_NUMBER, twiml=STREAM_TWIML, record=True,
                                recording_status_callback=app.url("/recordings"))  # completed only
    lost = client.calls.create(to=CALLEE, from_=ACME_NUMBER, twiml=STREAM_TWIML, record=True,
                               recording_status_callback=app.url("/recordings"),
                               recording_status_callback_event="absent")
    for sid in (call.sid, plain.sid):
        record_event(gw.make_event(sid, gw.ANSWERED, leg=0, setup_ms=700), "acme")
        record_event(gw.make_event(sid, gw.COMPLETED, leg=0, outcome="answered", duration=2.0), "acme")
        deliver_all(sid)
    with schema_context("acme"):  # a WAV the media host announced but never spooled: the task's last try
        tasks.store_recording(lost.sid, f"{lost.sid}.wav", 2.0, attempt=tasks.SPOOL_RETRIES)
    deliver_all(lost.sid)

    assert [dict(urllib.parse.parse_qsl(r["body"].decode()))["CallSid"] for r in app.requests] == [call.sid, lost.sid]
    for request in app.requests:
        params = dict(urllib.parse.parse_qsl(request["body"].decode()))
        assert request["method"] == "POST" and params["RecordingStatus"] == "absent" and "RecordingSid" not in params
        assert app.validated(auth_token.current(acme), request)


def test_bad_recording_callback_settings_are_twilios_400s(acme, web):
    client = acme_client(acme, web)
    for fields, named in (
            ({"record": True, "recording_status_callback_event": ["paused"]}, "RecordingStatusCallbackEvent"),
            ({"record": True, "recording_status_callback_method": "PUT"}, "RecordingStatusCallbackMethod"),
            ({}, "Record=true")):
        with pytest.raises(TwilioRestException) as fault:
            client.calls.create(to=CALLEE, from_=ACME_NUMBER, twiml=STREAM_TWIML,
                                recording_status_callback="http://127.0.0.1:9/recordings", **fields)
        assert fault.value.status == 400 and fault.value.code == 21609 and named in fault.value.msg
    with schema_context("acme"):
        assert not Call.objects.filter(from_number=ACME_NUMBER).exists()
