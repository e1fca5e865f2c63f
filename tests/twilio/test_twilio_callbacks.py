"""Acme asks, through Twilio's client, for status callbacks at some events only and by GET; its web app
gets exactly those, with Twilio's parameters (Direction outbound-api, RFC 2822 Timestamp, ApiVersion,
SequenceNumber), and Twilio's RequestValidator with Acme's auth token accepts every one.

Real parts: daphne serving the API, Twilio's client and validator, Acme's app as an HTTP server. The
gateway's events are fed to the recorder's webhook step directly (test_call_flow runs the gateways).
"""
import email.utils
import urllib.parse

import pytest
from django_tenants.utils import schema_context

from telephony.calls import webhooks
from telephony.calls.models import Call, WebhookDelivery
from telephony.gateway import events as gw
from tenants import auth_token
from tests.twilio_support import ACME_NUMBER, CALLEE, STREAM_TWIML, acme_client

pytestmark = pytest.mark.usefixtures("committed")


def deliver_events(sid: str, *events: str) -> None:
    with schema_context("acme"):
        call = Call.objects.get(sid=sid)
        for event in events:
            webhooks.enqueue(call, event)
        for delivery in WebhookDelivery.objects.filter(call=call).order_by("pk"):
            assert webhooks.deliver(delivery.pk) is None


def test_only_the_events_asked_for_are_sent_by_get_and_signed_for_twilios_validator(acme, web, app):
    call = acme_client(acme, web).calls.create(
        to=CALLEE, from_=ACME_NUMBER, twiml=STREAM_TWIML, status_callback=app.url("/status?lead=42"),
        status_callback_event=["answered", "completed"], status_callback_method="GET")

    deliver_events(call.sid, gw.INITIATED, gw.RINGING, gw.ANSWERED, gw.COMPLETED)

    assert [r["method"] for r in app.requests] == ["GET", "GET"]
    params = [dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(r["path"]).query)) for r in app.requests]
    assert [p["CallbackEvent"] for p in params] == ["answered", "completed"]
    assert [p["SequenceNumber"] for p in params] == ["0", "1"]
    for p in params:
        assert p["lead"] == "42" and p["CallSid"] == call.sid and p["AccountSid"] == acme.account_sid
        assert p["Direction"] == "outbound-api" and p["ApiVersion"] == "2010-04-01"
        assert email.utils.parsedate_to_datetime(p["Timestamp"]).tzinfo is not None  # RFC 2822
    assert all(app.validated(auth_token.current(acme), r) for r in app.requests)


def test_without_status_callback_event_only_completed_is_posted_as_twilio_does(acme, web, app):
    call = acme_client(acme, web).calls.create(to=CALLEE, from_=ACME_NUMBER, twiml=STREAM_TWIML,
                                               status_callback=app.url("/status"))

    deliver_events(call.sid, gw.INITIATED, gw.RINGING, gw.ANSWERED, gw.COMPLETED)

    [request] = app.requests
    assert request["method"] == "POST"
    assert dict(urllib.parse.parse_qsl(request["body"].decode()))["CallbackEvent"] == "completed"
    assert app.validated(auth_token.current(acme), request)
    assert not app.validated("0" * 32, request)  # the validator is not a rubber stamp


def test_an_unknown_callback_event_or_method_is_a_400_naming_it(acme, web):
    from twilio.base.exceptions import TwilioRestException

    for fields, named in (({"status_callback_event": ["hungup"]}, "StatusCallbackEvent"),
                          ({"status_callback_method": "PUT"}, "StatusCallbackMethod")):
        with pytest.raises(TwilioRestException) as fault:
            acme_client(acme, web).calls.create(to=CALLEE, from_=ACME_NUMBER, twiml=STREAM_TWIML,
                                                status_callback="http://127.0.0.1:9/status", **fields)
        assert fault.value.status == 400 and fault.value.code == 21609 and named in fault.value.msg
