"""A caller dials Acme's number, and Acme's agent server, written for Twilio, takes the call unchanged:
Acme points the number at its voice URL with Twilio's client (IncomingPhoneNumbers), the platform
fetches that URL when the call is answered (signed with Acme's auth token, Twilio's parameters with
Direction inbound), and the <Connect><Stream> it answers brings the call to the agent.

Real parts: daphne serving the API, Twilio's client and validator, Acme's app as an HTTP server, the
gateway pool, the call recorder, a Celery worker, SIPp as the caller (real RTP) and a WebSocket agent.
"""
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
from tests.support import free_udp_port, wait_until
from tests.test_call_digits import agents  # noqa: F401 - fixture: a WebSocket agent server
from tests.twilio_support import ACME_NUMBER, TenantApp, acme_client

pytestmark = pytest.mark.usefixtures("committed")
CALLER = "+15557770000"  # the From of scenarios/uac_media.xml


@pytest.fixture
def app(agents):  # noqa: F811
    app = TenantApp()
    app.answers["/voice"] = (200, "text/xml", f'<Response><Connect><Stream url="{agents.url("/record")}">'
                                              '<Parameter name="line" value="sales"/></Stream></Connect></Response>')
    yield app
    app.stop()


def gateway_sip_port(redis, since: float) -> int:
    """The SIP port of a gateway started after ``since`` (an earlier test's may not have expired yet)."""
    def port():
        for gateway_id in redis.smembers(keys.GATEWAYS_SET):
            state = {k.decode(): v.decode() for k, v in redis.hgetall(f"gw:{gateway_id.decode()}").items()}
            if state.get("state") == "running" and float(state.get("started_at") or 0) >= since:
                return int(state["sip_port"])
        return None
    return wait_until(port, 30, what="a live gateway")


def call_in(folder, port: int) -> stack.Process:
    scenario = folder / "uac_media_long.xml"
    scenario.write_text((stack.GATEWAY_SCENARIOS / "uac_media.xml").read_text()
                        .replace("@PLAY@", "").replace('<pause milliseconds="2500"/>', '<pause milliseconds="6000"/>'))
    return stack.Process("caller", [shutil.which("sipp"), "-sf", str(scenario), "-i", "127.0.0.1",
                                    "-p", str(free_udp_port()), "-mp", str(free_udp_port()), "-nostdin", "-m", "1",
                                    "-s", ACME_NUMBER, f"127.0.0.1:{port}"], folder)


@pytest.mark.usefixtures("gateways_start_empty")
def test_an_inbound_call_runs_the_numbers_voice_url_and_reaches_the_twilio_agent(acme, web, app, agents, tmp_path):  # noqa: F811
    client = acme_client(acme, web)
    number, = client.incoming_phone_numbers.list(phone_number=ACME_NUMBER)
    assert number.voice_url is None and number.sid.startswith("PN")
    number = number.update(voice_url=app.url("/voice"), voice_method="POST")
    assert number.voice_url == app.url("/voice")
    assert client.incoming_phone_numbers(number.sid).fetch().voice_url == app.url("/voice")

    started = time.time()
    processes = [stack.gateway_pool(tmp_path, 1), stack.recorder(tmp_path), stack.celery_worker(tmp_path, "calls")]
    try:
        caller = call_in(tmp_path, gateway_sip_port(get_redis(), started))
        fetch = wait_until(lambda: next(iter(app.requests), None), 30, what="the voice URL fetched")
        params = dict(urllib.parse.parse_qsl(fetch["body"].decode()))
        assert (params["Direction"], params["CallStatus"]) == ("inbound", "in-progress")
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
    finally:
        for process in processes:
            process.stop()
        with schema_context("acme"):
            Call.objects.filter(to_number=ACME_NUMBER).delete()


def test_a_voice_url_the_guard_refuses_is_a_400(acme, web):
    number, = acme_client(acme, web).incoming_phone_numbers.list(phone_number=ACME_NUMBER)
    with pytest.raises(TwilioRestException) as fault:
        number.update(voice_url="http://169.254.169.254/latest")
    assert fault.value.status == 400 and fault.value.code == 21205
    with pytest.raises(TwilioRestException) as fault:
        number.update(sms_url="https://acme.example/sms")
    assert fault.value.status == 400 and "SmsUrl" in fault.value.msg
