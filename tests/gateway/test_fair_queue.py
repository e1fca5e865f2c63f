"""A real gateway worker takes waiting calls tenant by tenant: Acme queued 40 calls before Globex
queued 3, yet Globex's are among the first the worker dials, and every call gets its final event."""
from __future__ import annotations

from core import keys
from telephony.gateway import client
from telephony.gateway import events as ev
from tests.gateway.gwhelpers import leg, wait_final


def originate(r, tenant: str, legs) -> str:
    return client.originate(r, {"from": "+15550001111", "to": "+15550002222", "ring_timeout": 10,
                                "max_duration": 10, "tenant": tenant, "legs": legs})


def initiated_order(r, call_ids: set[str]) -> list[str]:
    """The calls in the order the gateway took them (their initiated events in the stream)."""
    return [e["call_id"] for _, e in ev.decode_entries(r.xrange(keys.EVENTS_STREAM))
            if e["type"] == ev.INITIATED and e["call_id"] in call_ids]


def test_globex_is_dialed_among_the_first_although_acme_queued_40_before_it(r, new_gateway, sipp):
    r.delete(keys.tenant_queue("", "acme"), keys.tenant_queue("", "globex"), keys.originate_ring(),
             keys.originate_depth(), keys.ORIGINATE_WAKE)
    uas = sipp("uas_answer_bye.xml", ["-d", "100"])
    carrier = [leg(uas.uri_host, "c1")]
    acme = [originate(r, "acme", carrier) for _ in range(40)]  # no gateway is running yet: they wait
    globex = [originate(r, "globex", carrier) for _ in range(3)]
    assert client.waiting_calls(r).keys() == {"acme", "globex"}

    new_gateway("fair-gw")  # one worker, 4 call slots
    for call_id in acme + globex:
        assert wait_final(r, call_id, timeout=60)[-1]["type"] == ev.COMPLETED

    order = initiated_order(r, set(acme + globex))
    assert len(order) == 43
    assert max(order.index(call_id) for call_id in globex) < 8  # FIFO would have dialed them 41st to 43rd
    assert [call_id for call_id in order if call_id in set(acme)] == acme
    assert client.waiting_calls(r) == {}
