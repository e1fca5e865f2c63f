"""Carrier caps hold across gateway processes: never more concurrent calls than a carrier allows
(the rest fail over, or fail with carrier_at_capacity), and never faster than its CPS."""
from __future__ import annotations

import uuid

from core import keys
from telephony.gateway import client
from telephony.gateway import events as ev
from tests.gateway.gwhelpers import call_events, leg, wait_final
from tests.support import max_overlap


def originate(r, legs, **kw):
    cmd = {"from": "+15550001111", "to": "+15550002222", "ring_timeout": 10, "tenant": "acme", "legs": legs, **kw}
    return client.originate(r, cmd)


def test_a_concurrency_cap_of_k_holds_with_3k_calls_across_two_gateways(r, new_gateway, sipp):
    new_gateway("caps-a")
    new_gateway("caps-b")
    uas = sipp("uas_answer.xml")
    carrier = f"capped-{uuid.uuid4().hex[:6]}"
    k = 2
    capped_leg = leg(uas.uri_host, carrier, max_concurrent=k)
    calls = [originate(r, [capped_leg], max_duration=2) for _ in range(3 * k)]

    finals = {call_id: wait_final(r, call_id, timeout=40) for call_id in calls}
    answered = []
    for events in finals.values():
        by_type = {e["type"]: e for e in events}
        if "answered" in by_type:
            answered.append((by_type["answered"]["ts"], by_type["completed"]["ts"]))
        else:
            assert by_type["failed"]["reason"] == ev.REASON_CARRIER_AT_CAPACITY, events
    assert len(answered) >= k
    assert max_overlap(answered) <= k
    assert r.zcard(keys.carrier_calls_key(carrier)) == 0  # every slot given back


def test_calls_over_the_cap_fail_over_to_the_next_carrier(r, new_gateway, sipp):
    new_gateway("caps-c")
    uas = sipp("uas_answer.xml")
    first, second = f"first-{uuid.uuid4().hex[:6]}", f"second-{uuid.uuid4().hex[:6]}"
    legs = [leg(uas.uri_host, first, max_concurrent=1), leg(uas.uri_host, second, max_concurrent=3)]
    calls = [originate(r, legs, max_duration=2) for _ in range(3)]
    carriers = []
    for call_id in calls:
        events = wait_final(r, call_id, timeout=30)
        answered = next(e for e in events if e["type"] == "answered")
        carriers.append(answered["carrier_id"])
    assert sorted(carriers) == sorted([first, second, second])


def test_an_api_call_over_the_first_carriers_cap_fails_over_rather_than_wait(r, new_gateway, sipp):
    # API calls wait at full caps only when every leg is full: with room on the second carrier they
    # go there at once, their first leg refused as carrier_at_capacity as for any call
    new_gateway("caps-f")
    uas = sipp("uas_answer.xml")
    first, second = f"first-{uuid.uuid4().hex[:6]}", f"second-{uuid.uuid4().hex[:6]}"
    legs = [leg(uas.uri_host, first, max_concurrent=1), leg(uas.uri_host, second, max_concurrent=3)]
    calls = [originate(r, legs, max_duration=2, wait_at_caps=60) for _ in range(3)]
    carriers = []
    for call_id in calls:
        events = wait_final(r, call_id, timeout=30)
        answered = next(e for e in events if e["type"] == "answered")
        carriers.append(answered["carrier_id"])
        if answered["carrier_id"] == second:
            refused = next(e for e in events if e["type"] == "leg_failed")
            assert (refused["leg"], refused["reason"], refused["failover"]) == (0, ev.REASON_CARRIER_AT_CAPACITY, True)
    assert sorted(carriers) == sorted([first, second, second])


def test_a_cps_cap_paces_invites(r, new_gateway, sipp):
    new_gateway("caps-d")
    new_gateway("caps-e")
    uas = sipp("uas_answer.xml")
    carrier = f"paced-{uuid.uuid4().hex[:6]}"
    r.delete(keys.carrier_cps_key(carrier))
    rate, n = 4.0, 9
    calls = [originate(r, [leg(uas.uri_host, carrier, max_cps=rate)], max_duration=1) for _ in range(n)]
    invite_times = []
    for call_id in calls:
        wait_final(r, call_id, timeout=40)
        ringing = next(e for e in call_events(r, call_id) if e["type"] == "ringing")
        invite_times.append(ringing["ts"] - ringing["pdd_ms"] / 1000)
    # GCRA with a burst of 1: n INVITEs need at least (n - 2) intervals whatever the load. An INVITE's
    # time is the worker's (ringing less its PDD, counted from when the leg started, a little before
    # the INVITE left): a few ms of slack, not a whole interval.
    assert max(invite_times) - min(invite_times) >= (n - 2) / rate - 0.02
