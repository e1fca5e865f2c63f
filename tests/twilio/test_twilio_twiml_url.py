"""Acme's app serves the TwiML for its calls: the platform fetches the `Url` with Twilio's request
parameters (CallSid, AccountSid, From, To, CallStatus, Direction, ApiVersion), by the `Method` asked
for, signed so that Twilio's RequestValidator with Acme's auth token accepts it, and runs what it got.

Real parts: daphne serving the API, Twilio's client and validator, Acme's app as an HTTP server.
"""
import urllib.parse

import pytest
from django_tenants.utils import schema_context
from twilio.base.exceptions import TwilioRestException

from telephony.calls.models import Call
from tenants import auth_token
from tests.twilio_support import ACME_NUMBER, CALLEE, TenantApp, acme_client

pytestmark = pytest.mark.usefixtures("committed")
AGENT_TWIML = ('<Response><Connect><Stream url="wss://127.0.0.1:9/agent">'
               '<Parameter name="lead" value="42"/></Stream></Connect></Response>')


@pytest.fixture
def app():
    app = TenantApp()
    app.answers["/twiml"] = (200, "text/xml", AGENT_TWIML)
    yield app
    app.stop()


@pytest.mark.parametrize("method", ["POST", "GET"])
def test_the_twiml_url_is_fetched_signed_with_twilios_parameters_and_run(acme, web, app, method):
    call = acme_client(acme, web).calls.create(to=CALLEE, from_=ACME_NUMBER, url=app.url("/twiml?flow=sales"),
                                               method=method)

    [fetch] = app.requests
    assert fetch["method"] == method
    raw = fetch["body"].decode() if method == "POST" else urllib.parse.urlsplit(fetch["path"]).query
    params = dict(urllib.parse.parse_qsl(raw))
    assert params["CallSid"] == call.sid and params["AccountSid"] == acme.account_sid
    assert params["From"] == ACME_NUMBER and params["To"] == CALLEE
    assert params["Direction"] == "outbound-api" and params["ApiVersion"] == "2010-04-01"
    assert params["CallStatus"] == "queued"
    assert app.validated(auth_token.current(acme), fetch)
    assert not app.validated("0" * 32, fetch)

    with schema_context("acme"):
        placed = Call.objects.get(sid=call.sid)
    assert placed.stream_url == "wss://127.0.0.1:9/agent" and placed.custom_parameters == {"lead": "42"}


def test_a_url_answering_unsupported_twiml_is_a_400_naming_the_verb(acme, web, app):
    app.answers["/twiml"] = (200, "text/xml", "<Response><Gather/></Response>")
    with pytest.raises(TwilioRestException) as fault:
        acme_client(acme, web).calls.create(to=CALLEE, from_=ACME_NUMBER, url=app.url("/twiml"))
    assert fault.value.status == 400 and fault.value.code == 12100 and "<Gather>" in fault.value.msg
