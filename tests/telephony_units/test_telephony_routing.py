import random
from collections import Counter

import pytest

from telephony.routing import (
    CarrierRoute,
    Outcome,
    eligible_carriers,
    outcome_for,
    plan_route,
    rewrite_number,
    should_fail_over,
    sip_uri,
)

NUMBER = "+14155550123"


def carrier(id, **kw):
    kw.setdefault("host", f"{id}.example.net")
    return CarrierRoute(id=id, **kw)


def ids(legs):
    return [leg.carrier.id for leg in legs]


def test_orders_by_priority_and_builds_uris():
    carriers = [
        carrier("b", priority=20, transport="tcp", port=5080),
        carrier("a", priority=10),
        carrier("c", priority=30, transport="tls", port=5061),
    ]
    legs = plan_route(carriers, None, NUMBER, random.Random(1), max_attempts=5)
    assert ids(legs) == ["a", "b", "c"]
    assert [leg.attempt for leg in legs] == [1, 2, 3]
    assert legs[0].uri == "sip:+14155550123@a.example.net:5060;transport=udp"
    assert legs[1].uri == "sip:+14155550123@b.example.net:5080;transport=tcp"
    assert legs[2].uri == "sip:+14155550123@c.example.net:5061;transport=tls"


def test_skips_disabled_and_unhealthy_and_caps_attempts():
    carriers = [
        carrier("off", priority=1, enabled=False),
        carrier("sick", priority=1, healthy=False),
        carrier("a", priority=2),
        carrier("b", priority=3),
        carrier("c", priority=4),
    ]
    assert ids(plan_route(carriers, None, NUMBER, random.Random(0), max_attempts=2)) == ["a", "b"]
    assert plan_route([carrier("off", enabled=False)], None, NUMBER) == []
    with pytest.raises(ValueError):
        plan_route(carriers, None, NUMBER, max_attempts=0)


def test_region_rule():
    carriers = [
        carrier("eu1", region="eu", priority=1),
        carrier("us1", region="US", priority=1),
        carrier("us2", region="us", priority=2, healthy=False),
        carrier("global", region=None, priority=0),
        carrier("any", region="any", priority=5),
    ]
    # Regional carriers only, case-insensitive, unhealthy ones dropped; globals not mixed in.
    assert ids(plan_route(carriers, "us", NUMBER, random.Random(0))) == ["us1"]
    # Region with no usable carrier of its own: global ones ("", None or "any").
    assert ids(plan_route(carriers, "apac", NUMBER, random.Random(0))) == ["global", "any"]
    carriers_eu_down = [c if c.id != "eu1" else carrier("eu1", region="eu", healthy=False) for c in carriers]
    assert ids(plan_route(carriers_eu_down, "eu", NUMBER, random.Random(0))) == ["global", "any"]
    # No region: everything usable.
    assert {c.id for c in eligible_carriers(carriers, None)} == {"eu1", "us1", "global", "any"}
    assert {c.id for c in eligible_carriers(carriers, "any")} == {"eu1", "us1", "global", "any"}


def test_weights_are_honoured_statistically():
    carriers = [
        carrier("light", priority=1, weight=1),
        carrier("heavy", priority=1, weight=3),
        carrier("backup", priority=2, weight=100),
    ]
    rng = random.Random(12345)
    n = 20000
    first = Counter()
    for _ in range(n):
        legs = plan_route(carriers, None, NUMBER, rng)
        assert legs[2].carrier.id == "backup"  # priority always wins over weight
        first[legs[0].carrier.id] += 1
    assert first["heavy"] / n == pytest.approx(0.75, abs=0.015)
    assert first["light"] / n == pytest.approx(0.25, abs=0.015)


def test_weighted_three_way_and_zero_weight_last():
    carriers = [carrier("a", weight=1), carrier("b", weight=2), carrier("c", weight=7), carrier("z", weight=0)]
    rng = random.Random(7)
    n = 20000
    first = Counter(plan_route(carriers, None, NUMBER, rng, max_attempts=4)[0].carrier.id for _ in range(n))
    assert first["a"] / n == pytest.approx(0.1, abs=0.015)
    assert first["b"] / n == pytest.approx(0.2, abs=0.015)
    assert first["c"] / n == pytest.approx(0.7, abs=0.015)
    assert first["z"] == 0
    assert plan_route(carriers, None, NUMBER, rng, max_attempts=4)[-1].carrier.id == "z"


def test_same_seed_same_plan():
    carriers = [carrier(str(i), weight=i + 1) for i in range(6)]
    assert ids(plan_route(carriers, None, NUMBER, random.Random(99), 6)) == ids(
        plan_route(carriers, None, NUMBER, random.Random(99), 6)
    )


def test_prefix_rules():
    assert rewrite_number(NUMBER) == "+14155550123"
    assert rewrite_number(NUMBER, add_prefix="") == "14155550123"
    assert rewrite_number(NUMBER, strip_digits=1, add_prefix="") == "4155550123"
    assert rewrite_number(NUMBER, add_prefix="00") == "0014155550123"
    assert rewrite_number(NUMBER, strip_digits=1, add_prefix="9") == "94155550123"
    with pytest.raises(ValueError, match="leaves nothing"):
        rewrite_number(NUMBER, strip_digits=20)
    with pytest.raises(ValueError, match="E.164"):
        rewrite_number("+1415abc")
    legs = plan_route([carrier("a", strip_digits=1, add_prefix="", host="10.0.0.1")], "x", NUMBER)
    assert legs[0].dialed == "4155550123"
    assert legs[0].uri == "sip:4155550123@10.0.0.1:5060;transport=udp"


def test_ipv6_host_in_brackets():
    assert sip_uri("+1", "2001:db8::1", 5060, "UDP") == "sip:+1@[2001:db8::1]:5060;transport=udp"


def test_carrier_route_rejects_bad_values():
    with pytest.raises(ValueError, match="transport"):
        carrier("a", transport="sctp")
    with pytest.raises(ValueError, match="weight"):
        carrier("a", weight=-1)


@pytest.mark.parametrize(
    "code,timed_out,transport_error,expected",
    [
        (408, False, False, True),
        (500, False, False, True),
        (502, False, False, True),
        (503, False, False, True),
        (504, False, False, True),
        (403, False, False, True),
        (None, True, False, True),
        (None, False, True, True),
        (None, False, False, True),
        (486, False, False, False),
        (404, False, False, False),
        (480, False, False, False),
        (487, False, False, False),
        (603, False, False, False),
        (600, False, False, False),
        (200, False, False, False),
    ],
)
def test_should_fail_over(code, timed_out, transport_error, expected):
    assert should_fail_over(code, timed_out=timed_out, transport_error=transport_error) is expected


@pytest.mark.parametrize(
    "code,expected",
    [
        (200, Outcome.ANSWERED),
        (486, Outcome.BUSY),
        (600, Outcome.BUSY),
        (487, Outcome.NO_ANSWER),
        (603, Outcome.DECLINED),
        (404, Outcome.NOT_FOUND),
        (484, Outcome.NOT_FOUND),
        (604, Outcome.NOT_FOUND),
        (480, Outcome.UNAVAILABLE),
        (408, Outcome.CARRIER_ERROR),
        (503, Outcome.CARRIER_ERROR),
        (403, Outcome.CARRIER_ERROR),
        (415, Outcome.FAILED),
        (606, Outcome.FAILED),
        (None, Outcome.FAILED),
    ],
)
def test_outcome_for(code, expected):
    assert outcome_for(code) == expected
    assert expected in Outcome.ALL


def test_outcome_for_timeouts_and_transport_errors():
    assert outcome_for(None, timed_out=True) == Outcome.CARRIER_ERROR
    assert outcome_for(None, transport_error=True) == Outcome.CARRIER_ERROR
