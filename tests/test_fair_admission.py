"""Fair admission: beyond what the gateway pool can take at once, calls wait in one queue per tenant,
and the gateways take them tenant by tenant in turn. Acme's campaign bursts 500 calls; Globex's few
API calls, queued after all of them, are still among the first the gateways take, and nothing Acme
queued is lost or taken twice. Order is proven by position in the gateways' taking order."""
import json

import pytest
from django.db import connection
from django.test import Client
from django_tenants.utils import schema_context

from core import keys
from core.redis_client import get_redis
from telephony.calls.models import Call
from telephony.calls.services import CallPlacer, CallRequest
from telephony.gateway import client as gateway
from telephony.gateway.store import Store
from telephony.metrics import selectors
from telephony.models import Carrier, Number
from tenants.models import Tenant

pytestmark = pytest.mark.django_db

ACME_NUMBER, GLOBEX_NUMBER = "+14155550100", "+14155550300"
GATEWAY_SLOTS = 4  # one pjsua gateway process holds 4 calls


def clear_queues(redis):
    redis.delete(keys.tenant_queue("", "acme"), keys.tenant_queue("", "globex"), keys.originate_ring(),
                 keys.originate_depth(), keys.ORIGINATE_WAKE, keys.gw_calls_key("gw-fair"))


@pytest.fixture
def two_tenants(tenant_a, tenant_b):
    Carrier.objects.create(name="Primary", host="127.0.0.1", port=5099, priority=1)  # nobody listens: calls only queue
    Number.objects.create(e164=ACME_NUMBER, tenant=Tenant.objects.get(schema_name="acme"))
    Number.objects.create(e164=GLOBEX_NUMBER, tenant=Tenant.objects.get(schema_name="globex"))
    clear_queues(get_redis())
    yield
    clear_queues(get_redis())
    connection.set_schema_to_public()


def acme_bursts(calls: int, capture) -> list[str]:
    """Acme's campaign places `calls` calls in one batch (as the dialer does)."""
    requests = [CallRequest(to=f"+1415555{1000 + i:04d}", from_=ACME_NUMBER) for i in range(calls)]
    with schema_context("acme"), capture(execute=True):
        placed = CallPlacer(Tenant.objects.get(schema_name="acme")).place(requests)
    return [call.sid for call in placed]


def globex_calls_by_api(tenant_b, calls: int, capture) -> list[str]:
    sids = []
    for i in range(calls):
        with capture(execute=True):
            response = Client(HTTP_AUTHORIZATION=f"Bearer {tenant_b.api_key}").post(
                "/api/v1/calls", {"to": f"+1415555{2000 + i:04d}", "from": GLOBEX_NUMBER},
                content_type="application/json")
        assert response.status_code == 201, response.content
        assert response.json()["status"] == "queued"
        sids.append(response.json()["sid"])
    return sids


def gateways_take_everything(redis) -> list[dict]:
    """A gateway with four slots takes calls as its slots free, until nothing waits: the commands
    in the order it took them."""
    taken = []
    while popped := Store(redis).pop_originates("gw-fair", GATEWAY_SLOTS):
        assert {flag for _, flag, _ in popped} == {"ok"}
        taken += [json.loads(raw) for raw, _, _ in popped]
    return taken


def test_globex_calls_are_taken_among_the_first_while_acme_bursts_500(
        two_tenants, tenant_b, django_capture_on_commit_callbacks):
    redis = get_redis()
    acme = acme_bursts(500, django_capture_on_commit_callbacks)
    globex = globex_calls_by_api(tenant_b, 3, django_capture_on_commit_callbacks)

    # waiting, not lost: Globex's calls are queued records and show on /metrics with Acme's backlog
    with schema_context("globex"):
        assert set(Call.objects.filter(sid__in=globex).values_list("status", flat=True)) == {Call.Status.QUEUED}
    metrics = Client(HTTP_HOST="localhost").get("/metrics").content.decode()
    queued = dict(line.rsplit(" ", 1) for line in metrics.splitlines() if line.startswith("voice_calls_queued{"))
    assert float(queued['voice_calls_queued{tenant="acme"}']) == 500
    assert float(queued['voice_calls_queued{tenant="globex"}']) == 3
    assert selectors.tenant_dashboard("globex")["pool"]["waiting"] == 3  # the tenant's dashboard
    assert {w["tenant"]: w["calls"] for w in selectors.platform_series()["waiting"]} == {"acme": 500, "globex": 3}

    taken = gateways_take_everything(redis)
    order = [command["call_id"] for command in taken]
    # served in turn, the gateway's four slots shared: Acme 2, Globex 2, then Acme 2, Globex 1...
    # although all of Globex's came after Acme's 500
    assert [order.index(sid) + 1 for sid in globex] == [3, 4, 7]
    # every call taken exactly once, each tenant's in the order it placed them
    assert sorted(order) == sorted(acme + globex) and len(set(order)) == 503
    assert [sid for sid in order if sid in set(acme)] == acme
    assert gateway.waiting_calls(redis) == {}
    assert redis.llen(keys.ORIGINATE_WAKE) == 0  # no wake token left once nothing waits


def test_a_tenant_whose_calls_wait_keeps_its_share_of_a_full_pool(two_tenants, tenant_b,
                                                                  django_capture_on_commit_callbacks):
    """The dialer asks for room before it queues a campaign's calls: Acme's backlog leaves the pool
    no room at all, yet Globex may still queue half the pool's slots, as two tenants are served in turn."""
    redis = get_redis()
    redis.sadd(keys.GATEWAYS_SET, "gw-fair")
    redis.hset(keys.gw_key("gw-fair"), mapping={"capacity": 8, "active": 8, "region": ""})  # every slot busy
    redis.set(keys.gw_alive_key("gw-fair"), 1, ex=30)
    try:
        acme_bursts(40, django_capture_on_commit_callbacks)
        assert gateway.pool_room(redis) == -40
        assert gateway.pool_room(redis, "acme") < 0
        assert gateway.pool_room(redis, "globex") == 4
        globex_calls_by_api(tenant_b, 3, django_capture_on_commit_callbacks)
        assert gateway.pool_room(redis, "globex") == 1
    finally:
        redis.srem(keys.GATEWAYS_SET, "gw-fair")
        redis.delete(keys.gw_key("gw-fair"), keys.gw_alive_key("gw-fair"))
        gateways_take_everything(redis)
