"""Three gateways race for the originate queues of two tenants, each over its own connection as the worker
has it: every call is taken by exactly one of them and is its own in Redis from that moment (its
gateway's call set and the call's hash say so); a command that is not one and a call that already
ended are handed back flagged, never placed; the wake tokens are gone with the queue."""
import json
import threading

from core import keys
from telephony.gateway import client
from telephony.gateway.miniredis import MiniRedis
from telephony.gateway.store import Store

CALLS = 300
GATEWAYS = ("us-1-0", "us-1-1", "us-1-2")
TENANTS = ("acme", "globex")


def test_every_queued_call_is_taken_by_exactly_one_gateway(redis_url, redis_client):
    ended = "CA-ended-before-its-turn"
    redis_client.hset(keys.call_key(ended), "final", "failed")
    client.originate(redis_client, {"call_id": ended, "tenant": "acme", "to": "+14155550100",
                                    "legs": [{"uri": "sip:a@127.0.0.1:9"}]})
    Store(redis_client).push_originate("not a command", "acme")
    call_ids = [f"CA-spring-{n:03d}" for n in range(CALLS)]
    for n, call_id in enumerate(call_ids):
        client.originate(redis_client, {"call_id": call_id, "tenant": TENANTS[n % 2], "to": "+14155550100",
                                        "legs": [{"uri": "sip:a@127.0.0.1:9"}]})

    taken: dict[str, list[tuple[str, str]]] = {gateway: [] for gateway in GATEWAYS}

    def gateway_takes_calls(gateway_id: str) -> None:
        store = Store(MiniRedis.from_url(redis_url))
        while popped := store.pop_originates(gateway_id, 4):
            taken[gateway_id] += [(raw.decode(), flag) for raw, flag, _ in popped]

    threads = [threading.Thread(target=gateway_takes_calls, args=(g,)) for g in GATEWAYS]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)

    placed = {}
    flags = {}
    for gateway_id, commands in taken.items():
        for raw, flag in commands:
            call_id = json.loads(raw)["call_id"] if flag != "bad" else raw
            assert call_id not in flags, f"{call_id} taken twice"
            flags[call_id] = flag
            if flag == "ok":
                placed[call_id] = gateway_id
    assert flags == {ended: "done", "not a command": "bad", **{call_id: "ok" for call_id in call_ids}}
    for call_id, gateway_id in placed.items():
        assert redis_client.hget(keys.call_key(call_id), "gateway").decode() == gateway_id
        assert redis_client.sismember(keys.gw_calls_key(gateway_id), call_id)
    assert redis_client.hget(keys.call_key(ended), "gateway") is None
    assert not any(redis_client.exists(keys.tenant_queue("", tenant)) for tenant in TENANTS)
    assert not redis_client.exists(keys.originate_ring())
    assert not redis_client.exists(keys.ORIGINATE_WAKE)
