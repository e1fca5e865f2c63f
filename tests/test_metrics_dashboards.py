"""The live dashboards: a tenant's socket carries that tenant's figures only and shows a call that just
ended without a reload; the platform socket is for staff on the platform host; the pages and
plotly.js are served locally; /metrics exposes the totals with tenant labels."""
import asyncio
import json
import re
import time
import uuid

import pytest
from asgiref.sync import sync_to_async
from channels.routing import URLRouter
from channels.testing import WebsocketCommunicator
from django.conf import settings
from django.test import Client

from core import keys
from core.channels_tenancy import TenantWebsocketMiddleware
from core.redis_client import get_redis
from telephony.gateway import events as gw
from telephony.metrics.services import record_call_event
from telephony.metrics.ws_urls import websocket_urlpatterns
from telephony.models import Carrier
from tests.sessions import signed_in_session

pytestmark = [pytest.mark.usefixtures("committed"), pytest.mark.urls("tests.test_metrics_urls")]

# what voiceplatform.asgi serves once the lead adds the metrics routes
application = TenantWebsocketMiddleware(URLRouter(websocket_urlpatterns))




def socket(host: str, path: str, session_key: str = "") -> WebsocketCommunicator:
    headers = [(b"host", host.encode())]
    if session_key:
        headers.append((b"cookie", f"{settings.SESSION_COOKIE_NAME}={session_key}".encode()))
    return WebsocketCommunicator(application, path, headers=headers)


def a_call(schema: str, carrier_id: int = 900031) -> str:
    """One answered call of the tenant, from the first event to the last."""
    sid = f"CA{uuid.uuid4().hex}"
    fields = {"sid": sid, "region": "eu", "to": "+15550123"}
    for type_, extra in ((gw.INITIATED, {}), (gw.LEG_STARTED, {"leg": 0}),
                         (gw.ANSWERED, {"leg": 0, "setup_ms": 850}),
                         (gw.COMPLETED, {"leg": 0, "outcome": "answered", "duration": 12.5, "setup_ms": 850,
                                         "ai_response_ms": 640.0, "ai_response_turns": 2})):
        event = gw.make_event(sid, type_, ts=time.time(), carrier_id=carrier_id, **extra)
        assert record_call_event(schema, event, fields)
    return sid


async def updates_until(communicator, condition, max_messages: int = 6):
    """Pushes until one satisfies condition; each must arrive within 2 s (generous: the socket
    pushes at least every second)."""
    seen = []
    for _ in range(max_messages):
        message = await communicator.receive_json_from(timeout=2)
        seen.append(message)
        if condition(message):
            return seen
    raise AssertionError(f"no matching update in {max_messages} pushes; last: {json.dumps(seen[-1])[:1500]}")


def test_a_tenant_dashboard_shows_its_call_that_just_ended_and_never_another_tenants(tenant_a, tenant_b):
    acme_session = signed_in_session(tenant_a.tenant, "ada")
    globex_session = signed_in_session(tenant_b.tenant, "grace")

    async def scenario():
        acme = socket(tenant_a.domain, "/ws/dashboard", acme_session)
        globex = socket(tenant_b.domain, "/ws/dashboard", globex_session)
        assert (await acme.connect())[0] and (await globex.connect())[0]
        first = await acme.receive_json_from(timeout=2)
        assert first["type"] == "tenant.metrics" and first["data"]["tenant"] == "acme"
        globex_first = await globex.receive_json_from(timeout=2)
        globex_attempted = globex_first["data"]["series"]["totals"]["attempted"]

        sid = await sync_to_async(a_call)("acme")

        def shows_the_call(message):
            return any(call["sid"] == sid for call in message["data"]["latest_calls"])

        pushes = await updates_until(acme, shows_the_call)
        call = next(c for c in pushes[-1]["data"]["latest_calls"] if c["sid"] == sid)
        assert (call["outcome"], call["duration_s"], call["setup_ms"]) == ("answered", 12.5, 850)

        globex_pushes = [globex_first] + [await globex.receive_json_from(timeout=2) for _ in range(2)]
        for message in globex_pushes:
            assert message["data"]["tenant"] == "globex"
            assert sid not in json.dumps(message)
            assert message["data"]["series"]["totals"]["attempted"] == globex_attempted
        await acme.disconnect()
        await globex.disconnect()

    asyncio.run(scenario())


def test_dashboard_sockets_refuse_the_wrong_people(tenant_a, tenant_b):
    acme_session = signed_in_session(tenant_a.tenant, "ada")
    clerk_session = signed_in_session("public", "clerk", staff=False)

    async def refused(host, path, session=""):
        connected, code = await socket(host, path, session).connect()
        assert not connected
        return code

    async def scenario():
        assert await refused(tenant_b.domain, "/ws/dashboard", acme_session) == 4401  # another tenant's host
        assert await refused(tenant_a.domain, "/ws/dashboard") == 4401  # not signed in
        assert await refused("localhost", "/ws/dashboard", acme_session) == 4404  # the platform host
        assert await refused(tenant_a.domain, "/ws/platform-dashboard", acme_session) == 4404
        assert await refused("localhost", "/ws/platform-dashboard") == 4401
        assert await refused("localhost", "/ws/platform-dashboard", clerk_session) == 4403  # not staff

    asyncio.run(scenario())


@pytest.fixture
def carrier_and_gateway():
    """A carrier that is down and one gateway process with a restart, as the pool records them."""
    carrier = Carrier.objects.create(name=f"metrics-{uuid.uuid4().hex[:6]}", host="192.0.2.10", region="eu",
                                     healthy=False)
    gateway_id = f"gw-metrics-{uuid.uuid4().hex[:6]}"
    redis = get_redis()
    redis.sadd(keys.GATEWAYS_SET, gateway_id)
    redis.hset(keys.gw_key(gateway_id), mapping={"capacity": 40, "active": 3, "pid": 4242, "node": "node-1",
                                                "updated_at": time.time()})
    redis.set(keys.gw_alive_key(gateway_id), 1, ex=60)
    redis.hset(keys.POOL_HASH, f"{gateway_id}:restarts", 2)
    yield carrier, gateway_id
    redis.srem(keys.GATEWAYS_SET, gateway_id)
    redis.delete(keys.gw_key(gateway_id), keys.gw_alive_key(gateway_id))
    redis.hdel(keys.POOL_HASH, f"{gateway_id}:restarts")
    carrier.delete()


def test_the_platform_dashboard_shows_carriers_and_the_gateway_pool_to_staff(tenant_a, carrier_and_gateway):
    carrier, gateway_id = carrier_and_gateway
    ops_session = signed_in_session("public", "ops", staff=True)

    async def scenario():
        ops = socket("localhost", "/ws/platform-dashboard", ops_session)
        assert (await ops.connect())[0]
        await sync_to_async(a_call)("acme", carrier.pk)

        def counts_the_call(message):
            by_carrier = message["data"]["by"]["carrier"].get(str(carrier.pk), {})
            return by_carrier.get("answered") == 1

        pushes = await updates_until(ops, counts_the_call)
        data = pushes[-1]["data"]
        row = next(c for c in data["carriers"] if c["id"] == carrier.pk)
        assert row["up"] is False and row["concurrency"] == 0 and row["asr"] == 1.0
        assert data["regions"]["eu"]["setup_ms"]["count"] >= 1
        gateway = next(g for g in data["gateways"] if g["gateway_id"] == gateway_id)
        assert (gateway["alive"], gateway["capacity"], gateway["active"], gateway["restarts"]) == (True, 40, 3, 2)
        await ops.disconnect()

    asyncio.run(scenario())


def test_metrics_exposes_totals_with_tenant_labels_on_the_platform_host(tenant_a, carrier_and_gateway):
    carrier, gateway_id = carrier_and_gateway
    a_call("acme", carrier.pk)

    response = Client(HTTP_HOST="localhost").get("/metrics")
    assert response.status_code == 200 and response["Content-Type"].startswith("text/plain")
    text = response.content.decode()
    for line_start in (
        'voice_calls_attempted_total{tenant="acme"}',
        f'voice_calls_answered_total{{carrier="{carrier.pk}",tenant="acme"}}',
        f'voice_calls_ended_total{{carrier="{carrier.pk}",outcome="answered",tenant="acme"}}',
        'voice_calls_active{tenant="acme"}',
        'voice_call_setup_seconds_bucket{le="1.0",tenant="acme"}',
        'voice_call_setup_seconds_count{tenant="acme"}',
        'voice_ai_response_seconds_bucket{le="0.75",tenant="acme"}',
        f'voice_carrier_up{{carrier="{carrier.pk}",name="{carrier.name}",region="eu"}} 0.0',
        f'voice_gateway_capacity{{gateway="{gateway_id}",node="node-1"}} 40.0',
        f'voice_gateway_restarts_total{{gateway="{gateway_id}",node="node-1"}} 2.0',
    ):
        assert any(line.startswith(line_start) for line in text.splitlines()), line_start
    assert "# TYPE voice_call_mos histogram" in text

    assert Client(HTTP_HOST=tenant_a.domain).get("/metrics").status_code == 404  # never on a tenant host


def test_metrics_show_each_tenants_calls_waiting_for_a_gateway_and_how_long(tenant_a):
    from telephony.gateway import client as gateway

    redis = get_redis()
    leg = [{"carrier_id": "1", "uri": "sip:+14155550199@127.0.0.1:5999"}]
    burst = [gateway.originate(redis, {"tenant": "acme", "from": "+14155550100", "to": "+14155550199",
                                       "legs": leg, "queued_at": time.time() - 6}) for _ in range(3)]
    burst.append(gateway.originate(redis, {"tenant": "globex", "from": "+14155550100", "to": "+14155550199",
                                           "legs": leg}))
    try:  # no gateway is running: the calls wait
        text = Client(HTTP_HOST="localhost").get("/metrics").content.decode()
    finally:
        redis.delete(keys.tenant_queue("", "acme"), keys.tenant_queue("", "globex"), keys.originate_ring(),
                     keys.originate_depth(), keys.ORIGINATE_WAKE, *[keys.call_key(call_id) for call_id in burst])
    lines = dict(line.rsplit(" ", 1) for line in text.splitlines() if line.startswith("voice_calls_queued"))
    assert float(lines['voice_calls_queued{tenant="acme"}']) == 3
    assert float(lines['voice_calls_queued{tenant="globex"}']) == 1
    assert float(lines['voice_calls_queued_oldest_seconds{tenant="acme"}']) >= 6
    assert float(lines['voice_calls_queued_oldest_seconds{tenant="globex"}']) < 6


def test_dashboard_pages_are_for_signed_in_users_and_plotly_is_served_locally(tenant_a):
    acme = Client(HTTP_HOST=tenant_a.domain)
    assert acme.get("/dashboard/")["Location"].startswith("/accounts/login/")
    acme.cookies[settings.SESSION_COOKIE_NAME] = signed_in_session(tenant_a.tenant, "ada")
    page = acme.get("/dashboard/")
    assert page.status_code == 200
    html = page.content.decode()
    assert '/ws/dashboard' in html and 'id="initial-metrics"' in html
    assert "cdn" not in html.lower()

    # plotly.js's basic bundle (bar, scatter, pie: all the dashboards draw), a static file kept for good
    # (its version is in its name); the full one was 4.8 MB to parse on every cold load.
    [plotly_url] = re.findall(r'<script src="(/static/vendor/plotly-basic-[^"]+\.min\.js)"', html)
    bundle = acme.get(plotly_url)
    assert bundle.status_code == 200 and "immutable" in bundle["Cache-Control"]
    assert bundle["Content-Type"].startswith("text/javascript")
    content = bundle.getvalue()
    assert len(content) < 1_500_000
    assert b"plotly.js (basic - minified) v4.1.1" in content[:200] and b"MIT license" in content[:300]

    platform = Client(HTTP_HOST="localhost")
    platform.cookies[settings.SESSION_COOKIE_NAME] = signed_in_session("public", "clerk", staff=False)
    assert platform.get("/platform/dashboard/").status_code == 403
    platform.cookies[settings.SESSION_COOKIE_NAME] = signed_in_session("public", "ops", staff=True)
    assert platform.get("/platform/dashboard/").status_code == 200
    assert acme.get("/platform/dashboard/").status_code == 404


def test_a_carrier_never_checked_is_not_shown_as_up():
    """A carrier just added (healthy by default, for routing) is "not checked yet" on the platform
    dashboard until its first OPTIONS check, then up."""
    from django.utils import timezone

    from telephony.metrics import selectors

    carrier = Carrier.objects.create(name=f"new-{uuid.uuid4().hex[:6]}", host="192.0.2.11")
    try:
        selectors.carriers(max_age=0)  # the inventory is cached for 2 s: read it now
        row = next(c for c in selectors.platform_series()["carriers"] if c["id"] == carrier.pk)
        assert (row["checked"], row["up"]) == (False, False)
        Carrier.objects.filter(pk=carrier.pk).update(health_checked_at=timezone.now())
        selectors.carriers(max_age=0)
        row = next(c for c in selectors.platform_series()["carriers"] if c["id"] == carrier.pk)
        assert (row["checked"], row["up"]) == (True, True)
    finally:
        carrier.delete()
