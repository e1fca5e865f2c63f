"""Acme may hold 2 calls at once. Its code places 10 calls through the REST API in one burst, against
a trunk that holds each call 2 s: the calls beyond its cap wait in Acme's queue (queued in its
records, counted on /metrics) instead of failing, and all are answered, never more than 2 up at once,
each initiated once; meanwhile Globex's call goes through at once, not behind Acme's. A waiting call
hung up through the API ends cancelled and is never dialed; one that waits longer than
CALL_QUEUE_TIMEOUT_S fails as carrier_at_capacity."""
import pytest
from django.db import connection
from django.test import Client
from django_tenants.utils import schema_context

from core import keys
from core.redis_client import get_redis
from telephony.calls.models import Call
from telephony.gateway import client as gateway
from telephony.metrics import selectors
from telephony.models import Carrier, Number
from tenants.models import Tenant
from tests import stack
from tests.support import max_overlap, wait_until

pytestmark = pytest.mark.usefixtures("committed")
ACME_NUMBER, GLOBEX_NUMBER = "+14155550140", "+14155550340"


@pytest.fixture(scope="module")
def platform(tmp_path_factory):
    log_dir = tmp_path_factory.mktemp("platform")
    processes = [stack.gateway_pool(log_dir), stack.recorder(log_dir)]
    yield processes
    for process in processes:
        process.stop()


@pytest.fixture
def numbers(tenant_a, tenant_b):
    made = [Number.objects.create(e164=ACME_NUMBER, tenant=Tenant.objects.get(schema_name="acme")),
            Number.objects.create(e164=GLOBEX_NUMBER, tenant=Tenant.objects.get(schema_name="globex"))]
    yield
    for number in made:
        number.delete()


@pytest.fixture
def trunk(tmp_path):
    """A carrier whose far end (SIPp) answers every call and hangs up after hold_ms."""
    made = []

    def start(hold_ms: int) -> Carrier:
        sipp, port = stack.sipp_carrier(tmp_path, "uas_answer_bye.xml", "-d", str(hold_ms))
        made.append((sipp, Carrier.objects.create(name="Trunk", host="127.0.0.1", port=port, priority=1)))
        return made[-1][1]

    yield start
    for sipp, carrier in made:
        sipp.stop()
        carrier.delete()


@pytest.fixture
def acme_capped():
    def cap(calls: int) -> None:
        Tenant.objects.filter(schema_name="acme").update(max_concurrent_calls=calls)

    yield cap
    Tenant.objects.filter(schema_name="acme").update(max_concurrent_calls=100)


@pytest.fixture
def placed():
    """Places a call through Acme's or Globex's REST API; every call placed is removed after the test,
    passed or failed (a left-over call would show in the next tests' call lists)."""
    made: list[tuple[str, str]] = []

    def place(tenant, from_: str, to: str) -> str:
        response = Client(HTTP_AUTHORIZATION=f"Bearer {tenant.api_key}").post(
            "/api/v1/calls", {"to": to, "from": from_, "timeout": 15}, content_type="application/json")
        connection.set_schema_to_public()
        assert response.status_code == 201, response.content
        assert response.json()["status"] == "queued"
        made.append((tenant.tenant, response.json()["sid"]))
        return made[-1][1]

    yield place
    for schema in {schema for schema, _ in made}:
        with schema_context(schema):
            Call.objects.filter(sid__in=[sid for s, sid in made if s == schema]).delete()


def records(schema: str, sids: list[str]) -> dict[str, Call]:
    with schema_context(schema):
        return {call.sid: call for call in Call.objects.filter(sid__in=sids)}


def answered(schema: str, sids: list[str]) -> int:
    return sum(call.answered_at is not None for call in records(schema, sids).values())


def all_final(schema: str, sids: list[str], platform) -> dict[str, Call]:
    for sid in sids:
        stack.final_call(schema, sid, platform, timeout=90)
    return records(schema, sids)


def initiated(sid: str) -> int:
    return [event["type"] for event in gateway.call_events(get_redis(), sid)].count("initiated")


def acme_waiting() -> int:
    return selectors.originate_queue().get("acme", (0, 0.0))[0]


def test_a_burst_over_acmes_cap_waits_its_turn_while_globex_calls_at_once(
        platform, numbers, trunk, acme_capped, placed, tenant_a, tenant_b):
    trunk(hold_ms=3000)
    acme_capped(2)
    acme = [placed(tenant_a, ACME_NUMBER, f"+1415555{1100 + n:04d}") for n in range(10)]

    # two are taken; the others wait in Acme's queue, queued in its records and on the dashboards
    # (each pair holds 3 s: by the time this looks, a second pair may have been taken, never more)
    wait_until(lambda: acme_waiting() <= 8, 30, what="Acme's first two calls taken")
    assert acme_waiting() >= 6
    assert [call.status for call in records("acme", acme).values()].count(Call.Status.QUEUED) >= 6

    globex = placed(tenant_b, GLOBEX_NUMBER, "+14155552100")
    globex_call = all_final("globex", [globex], platform)[globex]
    calls = all_final("acme", acme, platform)

    assert {(call.status, call.outcome) for call in calls.values()} == {("completed", "answered")}
    assert max_overlap([(call.answered_at, call.ended_at) for call in calls.values()]) <= 2
    assert [initiated(sid) for sid in acme] == [1] * 10  # taken and sent back often, initiated once
    assert globex_call.outcome == "answered"
    # Globex's call was not behind Acme's backlog: answered while Acme's were still being started
    assert sum(call.started_at > globex_call.answered_at for call in calls.values()) >= 4


def test_a_call_waiting_at_acmes_cap_hung_up_through_the_api_ends_cancelled(
        platform, numbers, trunk, acme_capped, placed, tenant_a):
    trunk(hold_ms=6000)
    acme_capped(1)
    up = placed(tenant_a, ACME_NUMBER, "+14155551200")
    wait_until(lambda: answered("acme", [up]) == 1, 30, what="Acme's first call answered")
    waiting = placed(tenant_a, ACME_NUMBER, "+14155551201")
    redis = get_redis()
    wait_until(lambda: redis.zscore(keys.originate_held(), "acme"), 10, what="the call sent back at Acme's cap")
    assert records("acme", [waiting])[waiting].status == Call.Status.QUEUED

    response = Client(HTTP_AUTHORIZATION=f"Bearer {tenant_a.api_key}").post(f"/api/v1/calls/{waiting}/hangup")
    connection.set_schema_to_public()
    assert response.status_code == 202 and response.json()["hangup"] == "finalized"
    calls = all_final("acme", [up, waiting], platform)
    wait_until(lambda: acme_waiting() == 0, 10, what="the hung-up call's command gone from Acme's queue")
    with schema_context("acme"):
        legs = calls[waiting].legs.count()

    assert (calls[waiting].status, calls[waiting].outcome) == ("canceled", "cancelled")
    assert (calls[waiting].reason, legs, initiated(waiting)) == ("hangup_requested", 0, 0)  # never dialed
    assert calls[up].outcome == "answered"


def test_a_call_waiting_longer_than_the_queue_timeout_fails_at_capacity(
        platform, numbers, trunk, acme_capped, placed, tenant_a, settings):
    settings.CALL_QUEUE_TIMEOUT_S = 2
    trunk(hold_ms=8000)
    acme_capped(1)
    up = placed(tenant_a, ACME_NUMBER, "+14155551300")
    wait_until(lambda: answered("acme", [up]) == 1, 30, what="Acme's first call answered")
    late = placed(tenant_a, ACME_NUMBER, "+14155551301")
    late_call = all_final("acme", [late], platform)[late]
    up_call = all_final("acme", [up], platform)[up]

    assert (late_call.status, late_call.reason) == ("failed", "carrier_at_capacity")
    assert (late_call.ended_at - late_call.created_at).total_seconds() >= 2  # it waited its time first
    assert late_call.ended_at < up_call.ended_at  # while the call holding the cap was still up
    assert up_call.outcome == "answered"
