"""Gateway events become call metrics in Redis: counters, ASR, ACD, failovers, calls in flight and
histogram buckets, per tenant and per carrier, counted once however often an event is delivered."""
import time
import uuid

import pytest

from telephony.gateway import events as gw
from telephony.metrics import histograms as H
from telephony.metrics import selectors
from telephony.metrics.services import (
    record_abandonment,
    record_call_event,
    record_call_events,
    record_call_quality,
)


@pytest.fixture
def schema():
    """A tenant name of its own, so the counts start at zero (metrics need only Redis)."""
    return "m_" + uuid.uuid4().hex[:12]


def event(call_id, type_, **fields):
    return gw.make_event(call_id, type_, ts=time.time(), tenant="x", **fields)


def calls_of_a_short_campaign():
    """Three calls: the first fails over from carrier 7 to 9 and is answered; the second is busy;
    the third is answered at once and reports its media quality."""
    c1, c2, c3 = (f"CA{uuid.uuid4().hex}" for _ in range(3))
    return [
        (c1, event(c1, gw.INITIATED)),
        (c1, event(c1, gw.LEG_STARTED, leg=0, carrier_id=900007)),
        (c1, event(c1, gw.LEG_FAILED, leg=0, carrier_id=900007, sip_code=503, failover=True)),
        (c1, event(c1, gw.LEG_STARTED, leg=1, carrier_id=900009)),
        (c1, event(c1, gw.RINGING, leg=1, carrier_id=900009, pdd_ms=400)),  # PDD bucket le 500
        (c1, event(c1, gw.ANSWERED, leg=1, carrier_id=900009, setup_ms=900)),  # setup bucket le 1000
        (c1, event(c1, gw.COMPLETED, leg=1, carrier_id=900009, outcome="answered", duration=30.0)),
        (c2, event(c2, gw.INITIATED)),
        (c2, event(c2, gw.LEG_STARTED, leg=0, carrier_id=900009)),
        (c2, event(c2, gw.RINGING, leg=0, carrier_id=900009, pdd_ms=250)),  # PDD bucket le 300
        (c2, event(c2, gw.FAILED, leg=0, carrier_id=900009, outcome="busy", sip_code=486)),
        (c3, event(c3, gw.INITIATED)),
        (c3, event(c3, gw.LEG_STARTED, leg=0, carrier_id=900009)),
        (c3, event(c3, gw.ANSWERED, leg=0, carrier_id=900009, setup_ms=1800)),  # setup bucket le 2000
        (c3, event(c3, gw.COMPLETED, leg=0, carrier_id=900009, outcome="answered", duration=90.0, setup_ms=1800,
                   jitter_ms=12.0, loss_percent=1.5, latency_ms=80, ai_response_ms=640.0, ai_response_turns=3)),
    ]


def fields(call_id):
    return {"sid": call_id, "campaign": "12", "region": "eu", "to": "+15550100"}


def test_a_short_campaign_yields_counts_asr_acd_and_histograms(schema):
    for call_id, ev in calls_of_a_short_campaign():
        assert record_call_event(schema, ev, fields(call_id)) is True

    series = selectors.tenant_series(schema, "1h")
    totals = series["totals"]
    assert (totals["attempted"], totals["answered"], totals["failed"], totals["ended"]) == (3, 2, 1, 3)
    assert totals["asr"] == pytest.approx(2 / 3, abs=1e-4)
    assert totals["acd_s"] == pytest.approx(60.0)  # (30 + 90) / 2
    assert totals["failovers"] == 1
    assert totals["outcomes"] == {"answered": 2, "busy": 1}

    # a carrier's attempts are its legs: 7 got one and failed it over, 9 got three and answered two
    carrier_7, carrier_9 = series["by"]["carrier"]["900007"], series["by"]["carrier"]["900009"]
    assert (carrier_7["attempted"], carrier_7["answered"], carrier_7["failovers"]) == (1, 0, 1)
    assert (carrier_9["attempted"], carrier_9["answered"], carrier_9["asr"]) == (3, 2, pytest.approx(0.6667))
    assert series["by"]["campaign"]["12"]["attempted"] == 3
    assert series["by"]["region"]["eu"]["answered"] == 2

    setup = series["histograms"]["setup_ms"]
    assert setup["count"] == 2 and setup["mean"] == pytest.approx(1350)
    assert setup["counts"][H.SETUP.bounds.index(1000)] == 1
    assert setup["counts"][H.SETUP.bounds.index(2000)] == 1
    pdd = series["histograms"]["pdd_ms"]
    assert pdd["counts"][H.PDD.bounds.index(300)] == 1 and pdd["counts"][H.PDD.bounds.index(500)] == 1
    # one quality report: jitter 12 ms (le 20), loss 1.5 % (le 2); no MOS given, so it is estimated:
    # eff = 80 + 24 + 10 = 114 -> R = 93.2 - 2.85 - 3.75 = 86.6 -> MOS = 1 + 3.031 + 7e-6*86.6*26.6*13.4 = 4.247 (le 4.3)
    assert series["histograms"]["jitter_ms"]["counts"][H.JITTER.bounds.index(20)] == 1
    assert series["histograms"]["loss_percent"]["counts"][H.LOSS.bounds.index(2)] == 1
    assert series["histograms"]["mos"]["counts"][H.MOS.bounds.index(4.3)] == 1
    # its AI response time (median of its turns) is one observation of the distribution: le 750 ms
    ai = series["histograms"]["ai_response_ms"]
    assert ai["count"] == 1 and ai["counts"][H.AI_RESPONSE.bounds.index(750)] == 1
    assert series["by"]["carrier"]["900009"]["ai_response_ms_p50"] == pytest.approx(640, abs=150)

    now = selectors.tenant_now(schema)
    assert now["active"] == 0
    assert sum(now["attempted"]) == 3

    latest = selectors.latest_calls(schema)
    assert [c["outcome"] for c in latest] == ["answered", "busy", "answered"]
    assert latest[0]["mos"] == pytest.approx(4.247, abs=0.001) and latest[0]["jitter_ms"] == 12
    assert latest[0]["ai_response_ms"] == 640 and latest[1]["ai_response_ms"] is None
    assert latest[0]["duration_s"] == 90 and latest[0]["setup_ms"] == 1800 and latest[0]["carrier"] == "900009"


def test_a_redelivered_event_is_counted_once(schema):
    sid = f"CA{uuid.uuid4().hex}"
    initiated, final = event(sid, gw.INITIATED), event(sid, gw.FAILED, outcome="no_answer")
    assert record_call_event(schema, initiated, {"sid": sid}) is True
    assert record_call_event(schema, initiated, {"sid": sid}) is False
    assert selectors.tenant_now(schema)["active"] == 1
    assert record_call_event(schema, final, {"sid": sid}) is True
    assert record_call_event(schema, final, {"sid": sid}) is False

    totals = selectors.tenant_series(schema, "15m")["totals"]
    assert (totals["attempted"], totals["failed"], totals["outcomes"]) == (1, 1, {"no_answer": 1})
    assert selectors.tenant_now(schema)["active"] == 0


def test_a_campaigns_events_counted_together_match_one_by_one_and_count_a_replay_once(schema):
    """The recorder counts the events it read together in one go: the same figures as one at a
    time, an event already counted (or twice in the batch) not again, the rest all the same."""
    events = calls_of_a_short_campaign()
    first_call = events[0][0]
    assert record_call_event(schema, events[0][1], fields(first_call)) is True  # counted before the batch
    batch = [(ev, fields(call_id)) for call_id, ev in events] + [(events[5][1], fields(first_call))]
    counted = record_call_events(schema, batch)
    assert counted == [False] + [True] * (len(events) - 1) + [False]

    totals = selectors.tenant_series(schema, "1h")["totals"]
    assert (totals["attempted"], totals["answered"], totals["failed"], totals["failovers"]) == (3, 2, 1, 1)
    assert totals["acd_s"] == pytest.approx(60.0)
    assert selectors.tenant_now(schema)["active"] == 0
    assert [c["outcome"] for c in selectors.latest_calls(schema)] == ["answered", "busy", "answered"]


def test_calls_in_flight_follow_the_call_and_its_carrier(schema):
    sid = f"CA{uuid.uuid4().hex}"
    record_call_event(schema, event(sid, gw.INITIATED), {"sid": sid, "region": "us"})
    record_call_event(schema, event(sid, gw.LEG_STARTED, leg=0, carrier_id=904242), {"sid": sid, "region": "us"})
    record_call_event(schema, event(sid, gw.ANSWERED, leg=0, carrier_id=904242, setup_ms=700),
                      {"sid": sid, "region": "us"})
    assert selectors.tenant_now(schema)["active"] == 1
    assert selectors.active_by_tenant([schema]) == {schema: 1}

    record_call_event(schema, event(sid, gw.COMPLETED, leg=0, carrier_id=904242, outcome="answered", duration=5),
                      {"sid": sid, "region": "us"})
    assert selectors.tenant_now(schema)["active"] == 0


def test_quality_and_abandonment_reported_on_their_own(schema):
    sid = f"CA{uuid.uuid4().hex}"
    report = {"jitter_ms": 3.0, "loss_percent": 0.0, "latency_ms": 40, "mos": 4.35}
    assert record_call_quality(schema, sid, report, {"sid": sid}) is True
    assert record_call_quality(schema, sid, report, {"sid": sid}) is False  # once per call
    assert record_abandonment(schema, sid) is True

    series = selectors.tenant_series(schema, "1h")
    assert series["histograms"]["mos"]["counts"][H.MOS.bounds.index(4.4)] == 1
    assert series["histograms"]["jitter_ms"]["counts"][H.JITTER.bounds.index(5)] == 1
    assert series["totals"]["abandoned"] == 1


def test_percentiles_are_interpolated_inside_the_bucket():
    counts = [0] * H.SETUP.size
    counts[H.SETUP.bounds.index(500)] = 10  # ten setups between 300 and 500 ms
    assert H.percentile(H.SETUP, counts, 0.5) == pytest.approx(400)
    assert H.percentile(H.SETUP, counts, 1.0) == pytest.approx(500)
    assert H.percentile(H.SETUP, [0] * H.SETUP.size, 0.5) is None


@pytest.mark.django_db
def test_a_tenant_series_never_mixes_in_another_tenants_calls(schema):
    other = schema + "_b"
    sid = f"CA{uuid.uuid4().hex}"
    record_call_event(schema, event(sid, gw.INITIATED), {"sid": sid})
    assert selectors.tenant_series(other, "1h")["totals"]["attempted"] == 0
    assert selectors.latest_calls(other) == []
    platform = selectors.platform_series("1h")
    assert platform["by"]["tenant"][schema]["attempted"] == 1
    assert other not in platform["by"]["tenant"]
