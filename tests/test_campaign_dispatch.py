"""The dispatcher (campaigns.tasks.dispatch_dialers, every second) visits the tenants with campaign
activity, not every tenant: the campaign services mark a tenant in Redis when a campaign of it is
scheduled, starts, resumes, is paused or cancelled; the dispatcher drops a tenant it found with
nothing to do; and every DIALER_FULL_SCAN_S it visits every tenant, so what Redis forgot is found again.
"""
import datetime as dt

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from django_tenants.utils import schema_context

from campaigns import activity, services, tasks
from campaigns.models import Campaign, CampaignContact, Contact, ContactList
from core import keys
from core.redis_client import get_redis

pytestmark = pytest.mark.django_db


@pytest.fixture
def dispatch(monkeypatch):
    """Runs dispatch_dialers (an empty registry, the full scan not due) and returns what it enqueued."""
    redis = get_redis()
    redis.delete(keys.CAMPAIGN_ACTIVITY)
    redis.set(keys.CAMPAIGN_FULL_SCAN, 1, px=600_000)
    enqueued: list[tuple] = []
    monkeypatch.setattr(tasks.dial_campaign, "delay", lambda *args: enqueued.append(("dial", *args)))
    monkeypatch.setattr(tasks.reconcile_campaign, "delay", lambda *args: enqueued.append(("reconcile", *args)))

    def run() -> list[tuple]:
        enqueued.clear()
        tasks.dispatch_dialers()
        return list(enqueued)

    yield run
    redis.delete(keys.CAMPAIGN_ACTIVITY, keys.CAMPAIGN_FULL_SCAN)


@pytest.fixture
def acme(django_capture_on_commit_callbacks):
    """Runs a campaign service in Acme as a request would, committed: what it does on commit is done."""
    def run(action, *args):
        with django_capture_on_commit_callbacks(execute=True), schema_context("acme"):
            return action(*args)
    return run


def visits(dispatch) -> tuple[list[tuple], list[str], int]:
    """What one dispatch enqueued, the schemas it switched to, and the queries it made in all."""
    with CaptureQueriesContext(connection) as queries:
        enqueued = dispatch()
    switches = [q["sql"] for q in queries if q["sql"].startswith("SET search_path")]
    return enqueued, [sql.split('"')[1] for sql in switches], len(queries)


def registry() -> dict[str, float]:
    return {member.decode(): score
            for member, score in get_redis().zrange(keys.CAMPAIGN_ACTIVITY, 0, -1, withscores=True)}


def acme_campaign(name: str, people: int = 1) -> Campaign:
    with schema_context("acme"):
        contacts = ContactList.objects.create(name=name)
        for n in range(people):
            Contact.objects.create(contact_list=contacts, phone=f"+1415555{n:04d}", name=f"person {n}")
        return Campaign.objects.create(name=name, contact_list=contacts, caller_ids=["+14155550123"],
                                       stream_url="wss://agent.example", cps=1, window_start=dt.time(0),
                                       window_end=dt.time(23, 59, 59), weekdays=list(range(7)))


def test_tenants_without_campaign_activity_cost_the_dispatcher_no_query(tenant_a, tenant_b, dispatch, acme):
    # Acme and Globex not visited (before the registry: a schema switch and 3 queries per tenant)
    assert visits(dispatch) == ([], [], 0)

    campaign = acme_campaign("Renewals")
    acme(services.campaign_start, campaign.pk)
    assert list(registry()) == ["acme"]
    # Acme alone: its due, running and settling campaigns
    assert visits(dispatch) == ([("dial", campaign.pk, 0)], ["acme"], 1 + 3)


def test_a_tenant_whose_last_campaign_completed_leaves_the_registry(tenant_a, dispatch, acme):
    campaign = acme_campaign("Renewals")
    acme(services.campaign_start, campaign.pk)
    assert dispatch() == [("dial", campaign.pk, 0)]
    assert "acme" in registry()  # running: visited again next second

    with schema_context("acme"):  # its last contact answered
        CampaignContact.objects.filter(campaign=campaign).update(state=CampaignContact.State.DONE)
        assert services.complete_if_finished(campaign.pk, timezone.now())
    assert dispatch() == []
    assert "acme" not in registry()
    assert dispatch() == []


def test_a_mark_made_after_the_dispatcher_looked_is_not_lost(tenant_a, dispatch):
    activity.mark("acme")
    marked_at = registry()["acme"]
    # The dispatcher found Acme idle in a round that began at t0; a campaign started at or after t0:
    assert not activity.forget("acme", t0=marked_at - 3)
    assert not activity.forget("acme", t0=marked_at)
    assert "acme" in registry()
    # marked before the round began: nothing to do indeed
    assert activity.forget("acme", t0=marked_at + 1)
    assert "acme" not in registry()


def test_a_running_campaign_that_redis_forgot_is_dialed_again_at_the_next_full_scan(tenant_a, tenant_b, dispatch,
                                                                                    acme, settings):
    settings.DIALER_FULL_SCAN_S = 5
    campaign = acme_campaign("Renewals")
    acme(services.campaign_start, campaign.pk)
    redis = get_redis()
    redis.delete(keys.CAMPAIGN_ACTIVITY)  # Redis restarted without its data (or an upgrade)
    assert dispatch() == []  # not dialed until the full scan is due

    redis.delete(keys.CAMPAIGN_FULL_SCAN)  # DIALER_FULL_SCAN_S passed
    assert dispatch() == [("dial", campaign.pk, 0)]
    assert list(registry()) == ["acme"]  # marked again; idle Globex not
    assert 0 < redis.pttl(keys.CAMPAIGN_FULL_SCAN) <= 5000  # the next full scan in DIALER_FULL_SCAN_S
    assert visits(dispatch) == ([("dial", campaign.pk, 0)], ["acme"], 1 + 3)  # back to visiting Acme alone


def test_a_paused_campaign_is_settled_until_its_calls_in_flight_end(tenant_a, dispatch, acme):
    campaign = acme_campaign("Renewals", people=2)
    acme(services.campaign_start, campaign.pk)
    with schema_context("acme"):
        first = CampaignContact.objects.filter(campaign=campaign).order_by("pk").first()
        assert services.campaign_contacts_claim([first.pk]) == [first.pk]  # its call is ringing
    get_redis().delete(keys.CAMPAIGN_ACTIVITY)  # to see that pausing marks Acme
    acme(services.campaign_pause, campaign.pk)
    assert "acme" in registry()

    assert dispatch() == [("reconcile", campaign.pk)]
    assert dispatch() == [("reconcile", campaign.pk)]  # every second while the call is up
    acme(services.record_attempt_outcome, first.pk, "answered")  # the call ended
    assert dispatch() == []
    assert "acme" not in registry()

    acme(services.campaign_resume, campaign.pk)
    assert dispatch() == [("dial", campaign.pk, 0)]
