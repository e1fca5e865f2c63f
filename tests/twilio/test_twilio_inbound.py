"""A caller dials Acme's number, and Acme's agent server, written for Twilio, takes the call unchanged:
Acme points the number at its voice URL with Twilio's client (IncomingPhoneNumbers), the platform
fetches that URL while the call rings (signed with Acme's auth token, Twilio's parameters with
Direction inbound, CallStatus ringing), and the <Connect><Stream> it answers brings the call to the
agent; a <Reject> it answers refuses the call unanswered.

Real parts: daphne serving the API, Twilio's client and validator, Acme's app as an HTTP server, the
gateway pool, the call recorder, a Celery worker, SIPp as the caller (real RTP) and a WebSocket agent.
"""
import contextlib
import shutil
import time
import urllib.parse

import pytest
from django_tenants.utils import schema_context
from twilio.base.exceptions import TwilioRestException

from core import keys
from core.redis_client import get_redis
from telephony.calls.models import Call
from tenants import auth_token
from tests import stack
from tests.support import free_media_port, free_udp_port, wait_until
from tests.test_call_digits import agents  # noqa: F401 - fixture: a WebSocket agent server
from tests.twilio_support import ACME_NUMBER, acme_client

pytestmark = pytest.mark.usefixtures("committed")
CALLER = "+15557770000"  # the From of scenarios/uac_media.xml


def gateway_sip_port(redis, since: float) -> int:
    """The SIP port of a gateway started after ``since`` (an earlier test's may not have expired yet)."""
    def port():
        for gateway_id in redis.smembers(keys.GATEWAYS_SET):
            state = {k.decode(): v.decode() for k, v in redis.hgetall(f"gw:{gateway_id.decode()}").items()}
            if state.get("state") == "running" and float(state.get("started_at") or 0) >= since:
                return int(state["sip_port"])
        return None
    return wait_until(port, 30, what="a live gateway")


@contextlib.contextmanager
def platform_taking_calls(folder, celery: bool = True):
    """A gateway pool, the call recorder and (unless ``celery`` is False) a Celery worker; yields the
    gateway's SIP port and the processes. Acme's inbound calls are removed after."""
    started = time.time()
    processes = [stack.gateway_pool(folder, 1), stack.recorder(folder)]
    if celery:
        processes.append(stack.celery_worker(folder, "calls"))
    try:
        yield gateway_sip_port(get_redis(), started), processes
    finally:
        for process in processes:
            process.stop()
        with schema_context("acme"):
            Call.objects.filter(to_number=ACME_NUMBER).delete()


def call_in(folder, port: int) -> stack.Process:
    scenario = folder / "uac_media_long.xml"
    scenario.write_text((stack.GATEWAY_SCENARIOS / "uac_media.xml").read_text()
                        .replace("@PLAY@", "").replace('<pause milliseconds="2500"/>', '<pause milliseconds="6000"/>'))
    return stack.Process("caller", [shutil.which("sipp"), "-sf", str(scenario), "-i", "127.0.0.1",
                                    "-p", str(free_udp_port()), "-mp", str(free_media_port()), "-nostdin", "-m", "1",
                                    "-s", ACME_NUMBER, f"127.0.0.1:{port}"], folder)


@pytest.mark.usefixtures("gateways_start_empty")
def test_an_inbound_call_runs_the_numbers_voice_url_and_reaches_the_twilio_agent(acme, web, app, agents, tmp_path):  # noqa: F811
    app.answers["/voice"] = (200, "text/xml", f'<Response><Connect><Stream url="{agents.url("/record")}">'
                                              '<Parameter name="line" value="sales"/></Stream></Connect></Response>')
    client = acme_client(acme, web)
    number, = client.incoming_phone_numbers.list(phone_number=ACME_NUMBER)
    assert number.voice_url is None and number.sid.startswith("PN")
    number = number.update(voice_url=app.url("/voice"), voice_method="POST")
    assert number.voice_url == app.url("/voice")
    assert client.incoming_phone_numbers(number.sid).fetch().voice_url == app.url("/voice")

    with platform_taking_calls(tmp_path) as (port, processes):
        caller = call_in(tmp_path, port)
        fetch = wait_until(lambda: next(iter(app.requests), None), 30, what="the voice URL fetched")
        params = dict(urllib.parse.parse_qsl(fetch["body"].decode()))
        assert (params["Direction"], params["CallStatus"]) == ("inbound", "ringing")
        assert (params["From"], params["To"], params["AccountSid"]) == (CALLER, ACME_NUMBER, acme.account_sid)
        assert app.validated(auth_token.current(acme), fetch)

        conn = agents.conn_for(params["CallSid"], timeout=20)  # the agent's `start` names the call
        start = conn.msgs[1]["start"]
        assert start["customParameters"]["line"] == "sales" and start["accountSid"] == acme.account_sid
        assert caller.proc.wait(30) == 0
        final = stack.final_call("acme", params["CallSid"], processes)
        assert (final.direction, final.status, final.outcome) == ("inbound", "completed", "answered")
        assert final.stream_url == agents.url("/record")
        caller.stop()


def call_refused(folder, port: int, code: int) -> stack.Process:
    """A caller whose INVITE rings (180) and is refused with ``code``; SIPp fails on any other answer."""
    scenario = folder / f"uac_expect_{code}.xml"
    scenario.write_text((stack.GATEWAY_SCENARIOS / "uac_expect_reject.xml").read_text().replace(
        '<recv response="403" optional="true" next="ack"/>\n  <recv response="404"/>',
        f'<recv response="180" optional="true"/>\n  <recv response="{code}"/>'))
    return stack.Process(f"caller-{code}", [shutil.which("sipp"), "-sf", str(scenario), "-i", "127.0.0.1",
                                            "-p", str(free_udp_port()), "-nostdin", "-m", "1", "-s", ACME_NUMBER,
                                            f"127.0.0.1:{port}"], folder)


@pytest.mark.usefixtures("gateways_start_empty")
def test_a_voice_url_answering_reject_refuses_the_call_unanswered(acme, web, app, tmp_path):
    """Acme blocks a caller: its voice URL answers <Reject reason="busy"/> (the caller hears busy, 486),
    then plain <Reject/> (603 Decline). Neither call is answered; each ends busy / no-answer, as Twilio's."""
    client = acme_client(acme, web)
    number, = client.incoming_phone_numbers.list(phone_number=ACME_NUMBER)
    number.update(voice_url=app.url("/voice"), voice_method="POST")
    with platform_taking_calls(tmp_path) as (port, processes):
        for document, code, status in (('<Response><Reject reason="busy"/><Say>never said</Say></Response>', 486, "busy"),
                                       ("<Response><Reject/></Response>", 603, "no-answer")):
            app.requests.clear()
            app.answers["/voice"] = (200, "text/xml", document)
            caller = call_refused(tmp_path, port, code)
            fetch = wait_until(lambda: next(iter(app.requests), None), 30, what="the voice URL fetched")
            params = dict(urllib.parse.parse_qsl(fetch["body"].decode()))
            assert (params["Direction"], params["CallStatus"]) == ("inbound", "ringing")
            assert app.validated(auth_token.current(acme), fetch)
            assert caller.proc.wait(30) == 0, caller.tail()  # SIPp saw the refusal it expects
            final = stack.final_call("acme", params["CallSid"], processes)
            assert (final.status, final.sip_code, final.reason) == (status, code, "twiml_reject")
            assert final.answered_at is None and not final.duration_s
            assert client.calls(params["CallSid"]).fetch().status == status
            caller.stop()


@pytest.mark.usefixtures("gateways_start_empty")
def test_a_ringing_call_whose_twiml_never_comes_is_refused_twiml_missing(acme, web, app, tmp_path):
    """The platform's workers are down: the voice URL is never fetched, and the caller is not left
    ringing; the gateway refuses the call (480) once it waited its TwiML in vain."""
    from voiceplatform.celery import app as celery_app

    number, = acme_client(acme, web).incoming_phone_numbers.list(phone_number=ACME_NUMBER)
    number.update(voice_url=app.url("/voice"))
    # A Celery worker another test of the run started stops taking tasks too, for this test.
    celery_app.control.cancel_consumer("celery", reply=True, timeout=2)
    try:
        with platform_taking_calls(tmp_path, celery=False) as (port, processes):
            caller = call_refused(tmp_path, port, 480)
            assert caller.proc.wait(60) == 0, caller.tail()
            with schema_context("acme"):
                sid = wait_until(lambda: Call.objects.filter(to_number=ACME_NUMBER).values_list("sid", flat=True).first(),
                                 30, what="the call recorded")
            final = stack.final_call("acme", sid, processes)
            assert (final.status, final.reason, final.sip_code, final.answered_at) == (
                "failed", "twiml_missing", 480, None)
            assert app.requests == []
            caller.stop()
    finally:
        celery_app.control.add_consumer("celery", reply=True, timeout=2)


def test_reject_in_a_calls_own_twiml_is_a_400(acme, web):
    with pytest.raises(TwilioRestException) as fault:
        acme_client(acme, web).calls.create(to="+15550001111", from_=ACME_NUMBER, twiml="<Response><Reject/></Response>")
    assert fault.value.status == 400 and "<Reject>" in fault.value.msg


def test_a_voice_url_the_guard_refuses_is_a_400(acme, web):
    number, = acme_client(acme, web).incoming_phone_numbers.list(phone_number=ACME_NUMBER)
    with pytest.raises(TwilioRestException) as fault:
        number.update(voice_url="http://169.254.169.254/latest")
    assert fault.value.status == 400 and fault.value.code == 21205
    with pytest.raises(TwilioRestException) as fault:
        number.update(sms_url="https://acme.example/sms")
    assert fault.value.status == 400 and "SmsUrl" in fault.value.msg
