"""Every request the platform makes to an address a tenant gave goes through one guard: a tenant who
points its TwiML Url, status callback or agent stream at the platform's own machine or network gets a
400 naming the rule (or a refused delivery in its log), never the target's answer - directly, by a
redirect, or by a name that resolves there. An operator allows what it trusts with OUTBOUND_ALLOW.

The run allows 127.0.0.1 (the tests' agents and receivers); the targets here listen on 127.0.0.2,
another loopback address nothing allows."""
import asyncio
import base64
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.conf import settings
from django.core.exceptions import ValidationError
from django.test import Client, override_settings
from django_tenants.utils import schema_context

from core import egress
from media import ws_client
from telephony.calls import webhooks
from telephony.calls.models import Call, WebhookDelivery
from telephony.gateway import events as gw
from tests.support import free_tcp_port

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("acme_can_call")]
ACME_NUMBER = "+14155550100"
CALLEE = "+14155550199"
HANGUP_TWIML = b"<Response><Hangup/></Response>"


class Target(ThreadingHTTPServer):
    """An internal service an attacker would like to reach: it counts every request it gets."""

    daemon_threads = True

    def __init__(self, host: str, port: int = 0, redirect_to: str = "", body: bytes = HANGUP_TWIML):
        self.hits, self.redirect_to, self.body = [], redirect_to, body
        super().__init__((host, port), TargetHandler)
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}/twiml"

    def close(self):
        self.shutdown()
        self.server_close()


class TargetHandler(BaseHTTPRequestHandler):
    def _answer(self):
        self.server.hits.append(self.path)
        if self.server.redirect_to:
            self.send_response(302)
            self.send_header("Location", self.server.redirect_to)
            self.end_headers()
            return
        self.send_response(200)
        self.send_header("Content-Type", "text/xml")
        self.end_headers()
        self.wfile.write(self.server.body)

    do_GET = do_POST = _answer

    def log_message(self, *args):
        pass


@pytest.fixture
def internal():
    """A secret service on 127.0.0.2 (loopback, not allowed)."""
    server = Target("127.0.0.2", body=b"<secret>internal metrics</secret>")
    yield server
    server.close()


def twilio_create(tenant, **fields):
    client = Client()
    credentials = f"{tenant.account_sid}:{tenant.api_key}"
    auth = "Basic " + base64.b64encode(credentials.encode()).decode()
    return client.post(f"/2010-04-01/Accounts/{tenant.account_sid}/Calls.json",
                       {"To": CALLEE, "From": ACME_NUMBER, **fields}, HTTP_AUTHORIZATION=auth)


def rest_create(tenant, **fields):
    return Client(HTTP_AUTHORIZATION=f"Bearer {tenant.api_key}").post(
        "/api/v1/calls", {"to": CALLEE, "from": ACME_NUMBER, **fields}, content_type="application/json")


# --- TwiML Url ---------------------------------------------------------------------------------------


def test_a_twiml_url_on_the_platforms_own_machine_is_refused_without_being_fetched(tenant_a, internal):
    response = twilio_create(tenant_a, Url=internal.url)
    assert response.status_code == 400
    message = response.json()["message"]
    assert "loopback" in message and "OUTBOUND_ALLOW" in message
    assert "secret" not in message and internal.hits == []


@pytest.mark.parametrize("url, rule", [
    ("http://10.1.2.3/twiml", "private"),
    ("http://169.254.169.254/latest/meta-data/", "link-local"),
    ("http://[::1]:8000/twiml", "loopback"),
    ("http://0.0.0.0:8000/twiml", "unspecified"),
    ("http://224.0.0.1/twiml", "multicast"),
    ("file:///etc/passwd", "not file://"),
    ("gopher://127.0.0.1:6379/_INFO", "not gopher://"),
])
def test_twiml_urls_to_private_or_odd_targets_are_refused_by_rule(tenant_a, url, rule):
    response = twilio_create(tenant_a, Url=url)
    assert response.status_code == 400 and rule in response.json()["message"]


def test_a_redirect_to_a_refused_target_is_not_followed(tenant_a, internal):
    bouncer = Target("127.0.0.1", redirect_to=internal.url)  # an allowed host that redirects inside
    try:
        assert twilio_create(tenant_a, Url=bouncer.url).status_code == 201  # fetched when the call is answered
        from telephony.calls import twiml

        with pytest.raises(twiml.TwimlError, match="loopback"):
            twiml.fetch(bouncer.url, {"CallSid": "CA1"}, settings.OUTBOUND_ALLOW)
    finally:
        bouncer.close()
    assert bouncer.hits and internal.hits == []


def test_a_name_that_resolves_to_loopback_is_refused(tenant_a):
    port = free_tcp_port()
    with override_settings(OUTBOUND_ALLOW=[]):
        response = twilio_create(tenant_a, Url=f"http://localhost:{port}/twiml")
    assert response.status_code == 400 and "localhost is a loopback address" in response.json()["message"]


def test_an_explicitly_allowed_internal_host_is_fetched(tenant_a, internal):
    internal.body = HANGUP_TWIML
    host, port = internal.server_address[:2]
    with override_settings(OUTBOUND_ALLOW=[f"{host}:{port}"]):
        response = twilio_create(tenant_a, Url=internal.url)
    assert response.status_code == 201, response.content
    from telephony.calls import twiml

    assert twiml.fetch(internal.url, {"CallSid": "CA1"}, [f"{host}:{port}"]).steps == [{"verb": "hangup"}]
    assert internal.hits


def test_an_oversized_twiml_answer_is_refused():
    big = Target("127.0.0.1", body=b"<Response>" + b" " * (70 * 1024) + b"</Response>")
    try:
        from telephony.calls import twiml

        with pytest.raises(twiml.TwimlError, match="larger than"):
            twiml.fetch(big.url, {}, ["127.0.0.1"])
    finally:
        big.close()


# --- stream_url and status callbacks at the API ------------------------------------------------------


@pytest.mark.parametrize("field, url, rule", [
    ("stream_url", "ws://127.0.0.2:8765/", "loopback"),
    ("stream_url", "wss://192.168.1.10/agent", "private"),
    ("stream_url", "ws://localhost:8000/ws/internal/calls/acme/CA1/relay", "loopback"),
    ("status_callback", "http://127.0.0.2:8400/metrics", "loopback"),
    ("status_callback", "http://172.16.0.5/hook", "private"),
    ("status_callback", "file:///root/.ssh/id_rsa", "not file://"),
])
def test_stream_urls_and_callbacks_pointing_inside_are_a_400_naming_the_rule(tenant_a, field, url, rule):
    with override_settings(OUTBOUND_ALLOW=["127.0.0.1:5099"]):
        response = rest_create(tenant_a, **{field: url})
    assert response.status_code == 400 and rule in response.json()[field][0]


def test_twilio_stream_urls_and_status_callbacks_are_guarded_too(tenant_a):
    twiml = '<Response><Connect><Stream url="ws://127.0.0.2:8765/"/></Connect></Response>'
    refused = twilio_create(tenant_a, Twiml=twiml)
    assert refused.status_code == 400 and "loopback" in refused.json()["message"]
    callback = twilio_create(tenant_a, Twiml="<Response><Hangup/></Response>", StatusCallback="file:///etc/hostname")
    assert callback.status_code == 400 and "not file://" in callback.json()["message"]


def test_a_campaign_cannot_point_inside_either(tenant_a):
    from campaigns.models import Campaign

    with schema_context("acme"):
        campaign = Campaign(name="x", stream_url="ws://127.0.0.2/agent", status_callback="http://10.0.0.8/cb")
        with pytest.raises(ValidationError) as refused:
            campaign.clean()
    errors = refused.value.message_dict
    assert "loopback" in errors["stream_url"][0] and "private" in errors["status_callback"][0]


def test_an_allowed_stream_host_is_accepted(tenant_a):
    with override_settings(OUTBOUND_ALLOW=["127.0.0.2:8765"]):
        response = rest_create(tenant_a, stream_url="ws://127.0.0.2:8765/")
    assert response.status_code == 201, response.content


# --- callback delivery -------------------------------------------------------------------------------


def a_delivery(url: str) -> WebhookDelivery:
    call = Call.objects.create(from_number=ACME_NUMBER, to_number=CALLEE, status_callback=url, status="completed",
                               outcome="answered")
    webhooks.enqueue(call, gw.COMPLETED)
    return WebhookDelivery.objects.get(call=call)


@pytest.mark.parametrize("make_url, rule", [
    (lambda internal: internal.url, "loopback"),
    (lambda internal: "file:///etc/passwd", "not file://"),
])
def test_a_callback_to_a_refused_target_is_logged_as_refused_and_never_sent(tenant_a, internal, make_url, rule):
    with schema_context("acme"):
        delivery = a_delivery(make_url(internal))
        assert webhooks.deliver(delivery.pk) is None  # given up at once: retrying cannot help
        delivery.refresh_from_db()
    assert delivery.error.startswith("refused:") and rule in delivery.error
    assert delivery.gave_up_at and delivery.status_code is None and internal.hits == []


def test_a_callback_redirected_inside_is_not_followed(tenant_a, internal):
    bouncer = Target("127.0.0.1", redirect_to=internal.url)
    try:
        with schema_context("acme"):
            delivery = a_delivery(bouncer.url)
            webhooks.deliver(delivery.pk)
            delivery.refresh_from_db()
    finally:
        bouncer.close()
    assert delivery.error == "redirects are not followed" and not delivery.delivered_at
    assert bouncer.hits and internal.hits == []


# --- the guard itself: resolve once, connect to what was checked -------------------------------------


def test_the_connection_goes_to_the_address_that_was_checked(monkeypatch):
    """DNS rebinding: the name answers an allowed address when checked and a forbidden one after;
    the request still goes to the checked address (no second lookup)."""
    port = free_tcp_port()
    checked, rebound = Target("127.0.0.1", port), Target("127.0.0.2", port)
    answers = iter(["127.0.0.1", "127.0.0.2", "127.0.0.2"])
    real_getaddrinfo = socket.getaddrinfo

    def rebinding(host, *args, **kwargs):
        if host == "agent.rebind.test":
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (next(answers), port))]
        return real_getaddrinfo(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", rebinding)
    try:
        response = egress.request(f"http://agent.rebind.test:{port}/twiml", allow=["127.0.0.1"])
    finally:
        checked.close()
        rebound.close()
    assert response.status == 200 and checked.hits == ["/twiml"] and rebound.hits == []


def test_the_gateways_websocket_client_connects_to_the_checked_address():
    """media/ws_client.py is given the checked address: the URL's host is only the Host header."""
    port = free_tcp_port()
    seen = []

    async def scenario():
        async def handle(reader, writer):
            seen.append((await reader.readuntil(b"\r\n\r\n")).decode())
            writer.close()

        server = await asyncio.start_server(handle, "127.0.0.1", port)
        async with server:
            with pytest.raises((ws_client.HandshakeError, OSError)):
                await ws_client.connect(f"ws://agent.nowhere.test:{port}/stream", address="127.0.0.1")

    asyncio.run(scenario())
    assert f"Host: agent.nowhere.test:{port}" in seen[0]


@pytest.mark.parametrize("entry, host, address, port, allowed", [
    ("127.0.0.1", "127.0.0.1", "127.0.0.1", 9, True),
    ("127.0.0.1:8765", "127.0.0.1", "127.0.0.1", 8766, False),
    ("10.0.0.0/8", "db.internal", "10.2.3.4", 5432, True),
    ("agent.internal", "agent.internal", "10.9.9.9", 443, True),
    ("agent.internal:443", "agent.internal", "10.9.9.9", 80, False),
    ("[::1]:8765", "::1", "::1", 8765, True),
])
def test_allow_list_entries(entry, host, address, port, allowed):
    import ipaddress

    assert egress.parse_entry(entry).covers(host, ipaddress.ip_address(address), port) is allowed
