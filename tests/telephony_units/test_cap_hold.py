"""An API call a gateway took but could not place (its tenant at its concurrent-call cap) goes back to
the front of its tenant's queue, and the tenant is held back for a moment: meanwhile the gateways pass
it over and take Globex's calls, no gateway is woken for Acme's, and once the hold ends Acme's calls
are taken again in their order. Each gateway pop here runs as the worker's does (its own connection)."""
import json

from core import keys
from telephony.gateway import client
from telephony.gateway.miniredis import MiniRedis
from telephony.gateway.store import Store
from tests.support import wait_until

HOLD_MS = 200


def api_call(redis, call_id: str, tenant: str) -> None:
    client.originate(redis, {"call_id": call_id, "tenant": tenant, "to": "+14155550100", "wait_at_caps": 600,
                             "legs": [{"uri": "sip:a@127.0.0.1:9"}]})


def taken(popped) -> list[tuple[str, str]]:
    return [(json.loads(raw)["call_id"], flag) for raw, flag, _ in popped]


def wake_tokens(redis) -> int:
    return redis.llen(keys.ORIGINATE_WAKE)


def test_a_call_sent_back_at_full_caps_waits_at_the_front_while_others_are_taken(redis_url, redis_client):
    for n in (1, 2, 3):
        api_call(redis_client, f"CA-acme-{n}", "acme")
    api_call(redis_client, "CA-globex-1", "globex")
    gateway = Store(MiniRedis.from_url(redis_url))

    first = gateway.pop_originates("gw-1", 2)
    assert taken(first) == [("CA-acme-1", "ok"), ("CA-globex-1", "ok")]
    acme_1 = next(raw for raw, _, _ in first if b"CA-acme-1" in raw)

    # Acme is at its cap: its call goes back, ahead of its others, and is no longer gw-1's
    assert gateway.requeue_originates("gw-1", "", "acme", [(acme_1, "CA-acme-1")], hold_ms=HOLD_MS) == 1
    acme_queue = [json.loads(raw)["call_id"] for raw in redis_client.lrange(keys.tenant_queue("", "acme"), 0, -1)]
    assert acme_queue == ["CA-acme-1", "CA-acme-2", "CA-acme-3"]
    assert client.call_state(redis_client, "CA-acme-1")["state"] == "queued"
    assert "gateway" not in client.call_state(redis_client, "CA-acme-1")
    assert not redis_client.sismember(keys.gw_calls_key("gw-1"), "CA-acme-1")
    assert b"acme" in redis_client.lrange(keys.originate_ring(), 0, -1)
    # the same undo again (a reply lost on the way) changes nothing
    assert gateway.requeue_originates("gw-1", "", "acme", [(acme_1, "CA-acme-1")], hold_ms=HOLD_MS) == 0
    assert redis_client.llen(keys.tenant_queue("", "acme")) == 3

    # held back: three calls wait, none a gateway may take, so no gateway is woken for them
    assert wake_tokens(redis_client) == 0
    api_call(redis_client, "CA-acme-4", "acme")
    assert wake_tokens(redis_client) == 0
    api_call(redis_client, "CA-globex-2", "globex")
    assert wake_tokens(redis_client) == 1
    assert taken(gateway.pop_originates("gw-2", 4)) == [("CA-globex-2", "ok")]
    assert wake_tokens(redis_client) == 0
    assert client.waiting_calls(redis_client)["acme"][0] == 4  # counted on /metrics as waiting

    # the hold over, Acme's calls are taken again, oldest first
    again = wait_until(lambda: gateway.pop_originates("gw-2", 2), timeout=10, what="Acme's calls after the hold")
    assert taken(again) == [("CA-acme-1", "ok"), ("CA-acme-2", "ok")]
    assert wake_tokens(redis_client) == 2  # one per call still waiting


def test_a_waiting_call_hung_up_is_never_dialed(redis_url, redis_client):
    api_call(redis_client, "CA-acme-5", "acme")
    gateway = Store(MiniRedis.from_url(redis_url))
    ((raw, flag, region),) = gateway.pop_originates("gw-1", 1)
    gateway.requeue_originates("gw-1", region, "acme", [(raw, "CA-acme-5")], hold_ms=HOLD_MS)

    assert client.hangup(redis_client, "CA-acme-5") == "finalized"  # no gateway holds it: ended at once
    (final,) = client.call_events(redis_client, "CA-acme-5")
    assert (final["type"], final["outcome"], final["reason"]) == ("failed", "cancelled", "hangup_requested")
    popped = wait_until(lambda: gateway.pop_originates("gw-1", 1), timeout=10, what="the command after the hold")
    assert taken(popped) == [("CA-acme-5", "done")]
