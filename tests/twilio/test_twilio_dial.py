"""Acme's agent hands the caller to its front desk as its code did on Twilio:
`calls(sid).update(twiml='<Response><Dial callerId=… timeout=… action=…><Number>…</Number></Dial></Response>')`.
The platform dials the desk through the desk's trunk, joins the caller and the desk (each hears the
other), and when the transfer is over requests the `action` URL, signed with Acme's auth token, with
DialCallStatus. A busy desk (a SIP URI, in a document the update's `Url` gives) gives DialCallStatus=busy,
and the TwiML the action returns (<Say>, <Hangup>) runs on the caller's line. A <Dial> that cannot be placed is Twilio's 400.

Real parts: daphne serving the API, Twilio's client and validator, Acme's app as an HTTP server, the
gateway pool, the call recorder and a Celery worker, SIPp as the caller's, the desk's and a busy
trunk, this test's RTP sockets as their phone lines, and a WebSocket agent.
"""
import urllib.parse

import pytest
from django_tenants.utils import schema_context
from twilio.base.exceptions import TwilioRestException

from telephony.calls.models import Transfer
from telephony.models import Carrier
from tenants import auth_token
from tests import stack
from tests.gateway.gwhelpers import Sipp, free_udp_port
from tests.gateway.test_media_bridge import AgentServer
from tests.gateway.test_transfer import CALLEE_HZ, PERSON_HZ, blocks_with, heard_since, talking_line
from tests.gateway.test_twiml_program import is_silence
from tests.support import wait_until
from tests.twilio_support import ACME_NUMBER, CALLEE, acme_client

pytestmark = pytest.mark.usefixtures("committed")
DESK = "+14155550177"


@pytest.fixture
def live(acme, tmp_path, gateways_start_empty):
    """The platform's processes, the caller's trunk (its line keeps saying 400 Hz) and an agent."""
    line = talking_line(CALLEE_HZ)
    Carrier.objects.filter(name="Queued only").update(enabled=False)
    with stack.media_trunk(tmp_path, "Caller trunk", priority=2, rtp_port=line.port):
        processes = [stack.gateway_pool(tmp_path, 1), stack.recorder(tmp_path), stack.celery_worker(tmp_path, "calls")]
        agents = AgentServer()
        yield line, processes, agents
        agents.stop()
        for process in processes:
            process.stop()
        line.stop()


def answered_call(acme, web, line, agents):
    """Acme's call to the caller, talking to its agent; the agent's connection."""
    client = acme_client(acme, web)
    call = client.calls.create(to=CALLEE, from_=ACME_NUMBER,
                               twiml=f'<Response><Connect><Stream url="{agents.url("/record")}"/></Connect></Response>')
    agent = agents.conn_for(call.sid, timeout=30)
    line.play(gateway_port(line))
    wait_until(lambda: blocks_with(agent.payload(), CALLEE_HZ) > 10, 10, what="the agent hearing the caller")
    wait_until(lambda: client.calls(call.sid).fetch().status == "in-progress", 20, what="the call in progress")
    return client, call, agent


def gateway_port(line) -> int:
    wait_until(lambda: line.heard, 10, what="the gateway's first RTP on the line")
    return line.remote_port


def action_request(app) -> dict:
    return wait_until(lambda: next((r for r in app.requests if r["path"] == "/after-dial"), None), 30,
                      what="the <Dial action> request")


def params_of(request: dict) -> dict:
    return dict(urllib.parse.parse_qsl(request["body"].decode()))


def test_dial_bridges_the_caller_to_the_desk_and_the_action_hears_it_completed(acme, web, app, live, tmp_path):
    line, processes, agents = live
    client, call, agent = answered_call(acme, web, line, agents)
    desk = talking_line(PERSON_HZ)
    try:
        with stack.media_trunk(tmp_path, "Desk trunk", rtp_port=desk.port):
            updated = client.calls(call.sid).update(twiml=(
                f'<Response><Dial callerId="{ACME_NUMBER}" timeout="20" action="{app.url("/after-dial")}">'
                f'<Number>{DESK}</Number></Dial></Response>'))
            assert updated.status == "in-progress"
            desk.play(gateway_port(desk))
            assert agent.closed.wait(10)  # cold: the agent's stream ends when the desk answers
            caller_from, desk_from = len(line.heard), len(desk.heard)
            wait_until(lambda: blocks_with(heard_since(desk, desk_from), CALLEE_HZ) >= 50, 10,
                       what="the desk hearing the caller")
            wait_until(lambda: blocks_with(heard_since(line, caller_from), PERSON_HZ) >= 50, 10,
                       what="the caller hearing the desk")
            client.calls(call.sid).update(status="completed")
            stack.final_call("acme", call.sid, processes)

            action = action_request(app)
            assert action["method"] == "POST" and app.validated(auth_token.current(acme), action)
            params = params_of(action)
            with schema_context("acme"):
                transfer = Transfer.objects.get(call__sid=call.sid)
            assert (transfer.to, transfer.caller_id, transfer.carrier_name) == (DESK, ACME_NUMBER, "Desk trunk")
            assert params["DialCallStatus"] == "completed" and params["DialCallSid"] == transfer.sid
            assert int(params["DialCallDuration"]) >= 1
            assert (params["CallSid"], params["AccountSid"]) == (call.sid, acme.account_sid)
            assert (params["From"], params["To"]) == (ACME_NUMBER, CALLEE)
    finally:
        desk.stop()


def test_a_busy_desk_gives_busy_to_the_action_whose_twiml_ends_the_call(acme, web, app, live, tmp_path):
    line, processes, agents = live
    app.answers["/after-dial"] = (200, "text/xml", "<Response><Say>Sorry, the desk is busy.</Say><Hangup/></Response>")
    busy = Sipp(tmp_path, "uas_reject.xml", free_udp_port(), ["-m", "1"], {"CODE": 486, "PHRASE": "Busy Here"})
    try:
        client, call, agent = answered_call(acme, web, line, agents)
        for document, code in (("<Response><Dial><Number>12</Number></Dial></Response>", 13224),
                               (f'<Response><Dial callerId="+14155550100">{DESK}</Dial></Response>', 13214),
                               (f'<Response><Dial action="http://10.1.2.3/after">{DESK}</Dial></Response>', 12100)):
            with pytest.raises(TwilioRestException) as refused:
                client.calls(call.sid).update(twiml=document)
            assert (refused.value.status, refused.value.code) == (400, code), refused.value.msg

        app.answers["/hand-over"] = (200, "text/xml", '<Response><Dial action="/after-dial">'
                                     f'<Sip>sip:desk@{busy.uri_host}</Sip></Dial></Response>')
        client.calls(call.sid).update(url=app.url("/hand-over"))  # relative action: from the document's URL
        action = action_request(app)
        assert app.validated(auth_token.current(acme), action)
        params = params_of(action)
        assert params["DialCallStatus"] == "busy" and "DialCallDuration" not in params
        heard_from = len(line.heard)
        final = stack.final_call("acme", call.sid, processes)
        assert (final.status, final.reason) == ("completed", "twiml_hangup")  # the action's TwiML ran
        assert agent.closed.is_set() and agent.msgs[-1]["event"] == "stop"
        assert sum(not is_silence(payload) for _, payload in line.heard[heard_from:]) > 25  # <Say>, then <Hangup>
        with schema_context("acme"):
            transfer = Transfer.objects.get(call=final)
        assert (transfer.sid, transfer.status, transfer.sip_code) == (params["DialCallSid"], "busy", 486)
    finally:
        busy.stop()
