"""Acme's app serves the TwiML of its calls, as it did for Twilio: the platform fetches the `Url` when
the call is answered (its `FallbackUrl` when the `Url` fails), with Twilio's request parameters
(CallSid, AccountSid, From, To, CallStatus in-progress, Direction, ApiVersion) by the `Method` asked
for, signed so that Twilio's RequestValidator with Acme's auth token accepts it; the callee hears the
<Say> and the <Play> file, a <Redirect> fetches the next document, and <Hangup/> ends the call. Mid-call,
an update with new `Twiml` takes the call off its agent's stream (how agents hand a call on).

Real parts: daphne serving the API, Twilio's client and validator, Acme's app as an HTTP server, the
gateway pool, the call recorder and a Celery worker, SIPp as the carrier whose callee's phone line is
this test's RTP socket, and a WebSocket agent.
"""
import urllib.parse

import pytest
from django_tenants.utils import schema_context

from telephony.calls.models import Call
from telephony.models import Carrier
from tenants import auth_token
from tests import stack
from tests.gateway.test_amd import PhoneLine
from tests.gateway.test_media_bridge import AgentServer, find_run, pattern_frames
from tests.gateway.test_twiml_program import is_silence, mulaw_wav
from tests.support import wait_until
from tests.twilio_support import ACME_NUMBER, CALLEE, TenantApp, acme_client

pytestmark = pytest.mark.usefixtures("committed")
GREETING = pattern_frames(50, seed=11)  # one second the callee must hear intact
FIRST_DOCUMENT = ('<Response><Say>Hello from Acme.</Say><Play>/greeting.wav</Play>'
                  '<Redirect method="GET">/next?step=2</Redirect></Response>')


@pytest.fixture
def app():
    app = TenantApp()
    app.answers["/broken"] = (500, "text/plain", "oops")
    app.answers["/twiml"] = (200, "text/xml", FIRST_DOCUMENT)
    app.answers["/greeting.wav"] = (200, "audio/wav", mulaw_wav(b"".join(GREETING)))
    app.answers["/next"] = (200, "text/xml", '<Response><Pause length="1"/><Hangup/></Response>')
    yield app
    app.stop()


@pytest.fixture
def live(acme, tmp_path, gateways_start_empty):
    """The platform's processes, and a carrier whose callee answers on a phone line we listen to."""
    line = PhoneLine([])
    Carrier.objects.filter(name="Queued only").update(enabled=False)
    with stack.media_trunk(tmp_path, "Answering trunk", rtp_port=line.port):
        processes = [stack.gateway_pool(tmp_path, 1), stack.recorder(tmp_path), stack.celery_worker(tmp_path, "calls")]
        yield line, processes
        for process in processes:
            process.stop()
        line.stop()


def fetched(app, path: str, count: int = 1) -> list[dict]:
    return wait_until(lambda: [r for r in app.requests if r["path"].split("?")[0] == path][:count]
                      if len([r for r in app.requests if r["path"].split("?")[0] == path]) >= count else None,
                      30, what=f"{path} fetched")


def params_of(request: dict) -> dict:
    raw = request["body"].decode() if request["method"] == "POST" else urllib.parse.urlsplit(request["path"]).query
    return dict(urllib.parse.parse_qsl(raw))


def test_the_url_is_fetched_when_answered_signed_and_run_verb_by_verb(acme, web, app, live):
    line, processes = live
    call = acme_client(acme, web).calls.create(to=CALLEE, from_=ACME_NUMBER, url=app.url("/broken"),
                                               fallback_url=app.url("/twiml"), fallback_method="GET")
    assert call.status == "queued"

    broken, = fetched(app, "/broken")
    params = params_of(broken)
    assert params["CallSid"] == call.sid and params["AccountSid"] == acme.account_sid
    assert params["From"] == ACME_NUMBER and params["To"] == CALLEE
    assert params["Direction"] == "outbound-api" and params["ApiVersion"] == "2010-04-01"
    assert params["CallStatus"] == "in-progress"  # fetched when answered, as Twilio does
    assert broken["method"] == "POST" and app.validated(auth_token.current(acme), broken)
    fallback, = fetched(app, "/twiml")
    assert fallback["method"] == "GET" and app.validated(auth_token.current(acme), fallback)
    assert params_of(fallback)["ErrorCode"] == "11200" and params_of(fallback)["ErrorUrl"] == app.url("/broken")
    assert not app.validated("0" * 32, fallback)

    final = stack.final_call("acme", call.sid, processes)
    next_document, = fetched(app, "/next")
    assert next_document["method"] == "GET" and params_of(next_document)["step"] == "2"
    assert app.validated(auth_token.current(acme), next_document)
    with schema_context("acme"):
        final = Call.objects.get(sid=call.sid)
    assert (final.status, final.outcome, final.reason, final.hangup_by) == (
        "completed", "answered", "twiml_hangup", "platform")
    heard = b"".join(payload for _, payload in line.heard)
    start = find_run(heard, GREETING)  # <Play>: the file, intact
    frames = [heard[i:i + 160] for i in range(0, start, 160)]
    assert sum(not is_silence(f) for f in frames) > 25  # <Say> before it: speech
    assert final.duration_s >= 2.5  # speech, one second of file, one second of <Pause>


def test_a_live_update_takes_the_call_off_its_agent_and_runs_the_new_twiml(acme, web, app, live):
    line, processes = live
    agents = AgentServer()
    try:
        client = acme_client(acme, web)
        call = client.calls.create(to=CALLEE, from_=ACME_NUMBER,
                                   twiml=f'<Response><Connect><Stream url="{agents.url("/record")}"/></Connect></Response>')
        conn = agents.conn_for(call.sid, timeout=30)
        wait_until(lambda: client.calls(call.sid).fetch().status == "in-progress", 20, what="the call in progress")
        updated = client.calls(call.sid).update(twiml="<Response><Play>" + app.url("/greeting.wav") +
                                                "</Play><Hangup/></Response>")
        assert updated.status == "in-progress"
        assert conn.closed.wait(10)
        assert conn.msgs[-1]["event"] == "stop"  # the agent learns the call left it

        final = stack.final_call("acme", call.sid, processes)
        assert (final.status, final.reason) == ("completed", "twiml_hangup")
        find_run(b"".join(payload for _, payload in line.heard), GREETING)
        with pytest.raises(Exception) as over:
            client.calls(call.sid).update(twiml="<Response><Hangup/></Response>")
        assert over.value.code == 21220
    finally:
        agents.stop()
