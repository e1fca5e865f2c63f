"""The percentiles on the dashboards are measured, not bucket edges: they equal PostgreSQL's
percentile_cont over the same calls (and the textbook linear interpolation)."""
import random
import statistics

import pytest
from django.db import connection
from django_tenants.utils import schema_context

from tests.ui_support import make_user, signed_in

pytestmark = pytest.mark.django_db


@pytest.fixture
def acme_calls(tenant_a):
    """Forty answered calls of Acme with setup around 1 s and AI responses of 21–41 ms, on two carriers."""
    from telephony.calls.models import Call

    rnd = random.Random(19)
    with schema_context(tenant_a.tenant):
        Call.objects.all().delete()
        Call.objects.bulk_create(Call(
            from_number="+14155550100", to_number=f"+1415555{i:04d}", status="completed", outcome="answered",
            carrier_id=7 if i % 2 else 8, setup_ms=rnd.randint(990, 1020), ai_response_ms=rnd.uniform(21, 41),
            jitter_ms=rnd.uniform(0.5, 3), mos=rnd.uniform(4.1, 4.4), duration_s=12.0) for i in range(40))
        yield
        Call.objects.all().delete()


def _postgres(schema: str, column: str, q: float, where: str = "") -> float:
    with connection.cursor() as cursor:
        cursor.execute(f'SELECT percentile_cont(%s) WITHIN GROUP (ORDER BY {column}) '
                       f'FROM "{schema}".calls_call {where}', [q])
        return cursor.fetchone()[0]


def test_the_dashboard_shows_postgresql_percentiles_of_the_calls(tenant_a, acme_calls):
    make_user(tenant_a.tenant, "mia")
    page = signed_in(tenant_a.domain, "mia").get("/dashboard/")
    series = page.context["initial"]["series"]
    with schema_context(tenant_a.tenant):
        from telephony.calls.models import Call

        setups = list(Call.objects.values_list("setup_ms", flat=True))
    for name, column in (("setup_ms", "setup_ms"), ("ai_response_ms", "ai_response_ms"), ("mos", "mos"),
                         ("jitter_ms", "jitter_ms")):
        shown = series["histograms"][name]
        assert shown["count"] == 40 and shown["exact"] is True
        for label, q in (("p50", 0.5), ("p90", 0.9), ("p99", 0.99)):
            assert shown[label] == pytest.approx(_postgres(tenant_a.tenant, column, q), abs=1e-3), (name, label)
    # percentile_cont is linear interpolation between ranks: the same as Python's inclusive quantiles
    cuts = statistics.quantiles(setups, n=100, method="inclusive")
    assert series["histograms"]["setup_ms"]["p50"] == pytest.approx(cuts[49], abs=1e-3)
    assert 990 <= series["histograms"]["setup_ms"]["p99"] <= 1020  # not a bucket edge (1000, 1500)
    ai = series["histograms"]["ai_response_ms"]
    assert 21 <= ai["p50"] <= ai["p90"] <= ai["p99"] <= 41


def test_a_breakdown_per_carrier_has_its_own_percentiles(tenant_a, acme_calls):
    import datetime as dt

    from telephony.metrics.percentiles import call_percentiles

    since = dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)
    exact = call_percentiles([tenant_a.tenant], since, ("carrier",))
    for carrier in (7, 8):
        assert exact["carrier"][str(carrier)]["setup_ms"]["count"] == 20
        assert exact["carrier"][str(carrier)]["setup_ms"]["p50"] == pytest.approx(
            _postgres(tenant_a.tenant, "setup_ms", 0.5, f"WHERE carrier_id = {carrier}"), abs=1e-3)
    assert exact["all"]["setup_ms"]["count"] == 40
    assert call_percentiles([tenant_a.tenant], dt.datetime.now(dt.UTC) + dt.timedelta(hours=1))["all"][
        "setup_ms"] == {"count": 0, "p50": None, "p90": None, "p99": None}


def test_conversation_completion_counts_answered_calls_that_ended_normally(tenant_a, acme_calls):
    """Of the forty answered calls, three lost their agent: 37 of 40 completed. A call still in
    progress is not counted yet."""
    import datetime as dt

    from django.utils import timezone

    from telephony.calls.models import Call
    from telephony.metrics.percentiles import call_percentiles

    now = timezone.now()
    with schema_context(tenant_a.tenant):
        Call.objects.update(answered_at=now, ended_at=now)
        broken = list(Call.objects.order_by("id").values_list("id", flat=True)[:3])
        Call.objects.filter(id__in=broken[:2]).update(reason="agent_connect_failed")
        Call.objects.filter(id=broken[2]).update(abandoned=True)
        Call.objects.create(from_number="+14155550100", to_number="+14155550999", status="in-progress",
                            answered_at=now)
    since = dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)
    talks = call_percentiles([tenant_a.tenant], since)["all"]["conversations"]
    assert talks == {"answered": 40, "completed": 37, "rate": pytest.approx(37 / 40, abs=1e-4)}
