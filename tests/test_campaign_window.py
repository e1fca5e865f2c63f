"""Acme's campaign calls each contact inside 08:00-21:00 of the contact's own time zone, on weekdays,
and retries by outcome: what the dialer will ask (`due_contacts`) and tell (`record_attempt_outcome`)."""
import datetime as dt

import pytest
from django.db import connection
from django_tenants.utils import schema_context

from campaigns import selectors, services
from campaigns.models import Campaign, CampaignContact, Contact, ContactList, DoNotCall
from telephony.models import Number
from tenants.models import Tenant

pytestmark = pytest.mark.django_db

UTC = dt.UTC
# Wednesday 5 June 2024, 16:00 UTC: 09:00 Wednesday in Los Angeles, 01:00 Thursday in Tokyo.
WED_16_UTC = dt.datetime(2024, 6, 5, 16, 0, tzinfo=UTC)
# Wednesday 5 June 2024, 02:00 UTC: 19:00 Tuesday in Los Angeles, 11:00 Wednesday in Tokyo.
WED_02_UTC = dt.datetime(2024, 6, 5, 2, 0, tzinfo=UTC)
# Friday 7 June 2024, 23:30 UTC: 16:30 Friday in Los Angeles, 08:30 Saturday in Tokyo.
FRI_2330_UTC = dt.datetime(2024, 6, 7, 23, 30, tzinfo=UTC)


@pytest.fixture(autouse=True)
def acme_schema(tenant_a):
    Number.objects.create(e164="+14155559000", tenant=Tenant.objects.get(schema_name="acme"))
    with schema_context(tenant_a.tenant):
        yield
    connection.set_schema_to_public()


@pytest.fixture
def campaign():
    leads = ContactList.objects.create(name="Acme spring leads")
    people = [
        ("+14155550100", "Ada in Los Angeles", "America/Los_Angeles"),
        ("+819012345678", "Kenji in Tokyo", "Asia/Tokyo"),
        ("+14155550101", "Zone unknown", ""),
    ]
    for phone, name, zone in people:
        Contact.objects.create(contact_list=leads, phone=phone, name=name, time_zone=zone)
    campaign = services.campaign_create(
        name="Spring outreach", contact_list=leads, caller_ids=["+14155559000"],
        stream_url="wss://agent.acme.example/stream", default_time_zone="Europe/London",
    )
    services.campaign_start(campaign.pk, now=WED_16_UTC)
    campaign.refresh_from_db()
    return campaign


def names(campaign_contacts):
    return sorted(cc.contact.name for cc in campaign_contacts)


def cc_of(campaign, name) -> CampaignContact:
    return CampaignContact.objects.select_related("contact").get(campaign=campaign, contact__name=name)


def test_window_in_each_contacts_own_time_zone(campaign):
    assert selectors.local_window_open(campaign, "America/Los_Angeles", WED_16_UTC)  # 09:00 Wed
    assert not selectors.local_window_open(campaign, "Asia/Tokyo", WED_16_UTC)  # 01:00 Thu
    assert selectors.local_window_open(campaign, "America/Los_Angeles", WED_02_UTC)  # 19:00 Tue
    assert selectors.local_window_open(campaign, "Asia/Tokyo", WED_02_UTC)  # 11:00 Wed
    assert selectors.local_window_open(campaign, "America/Los_Angeles", FRI_2330_UTC)  # 16:30 Fri
    assert not selectors.local_window_open(campaign, "Asia/Tokyo", FRI_2330_UTC)  # 08:30 Sat: not a weekday


def test_window_bounds_are_start_inclusive_end_exclusive(campaign):
    eight_in_la = dt.datetime(2024, 6, 5, 15, 0, tzinfo=UTC)  # 08:00 PDT
    assert selectors.local_window_open(campaign, "America/Los_Angeles", eight_in_la)
    assert not selectors.local_window_open(campaign, "America/Los_Angeles", eight_in_la - dt.timedelta(seconds=1))
    nine_pm_in_la = dt.datetime(2024, 6, 6, 4, 0, tzinfo=UTC)  # 21:00 PDT Wednesday
    assert not selectors.local_window_open(campaign, "America/Los_Angeles", nine_pm_in_la)
    assert selectors.local_window_open(campaign, "America/Los_Angeles", nine_pm_in_la - dt.timedelta(minutes=1))


def test_unknown_time_zone_falls_back_to_the_campaigns(campaign):
    # 16:00 UTC is 17:00 in London (BST): open; 21:30 UTC is 22:30 in London: closed.
    assert selectors.local_window_open(campaign, "", WED_16_UTC)
    assert selectors.local_window_open(campaign, "Not/AZone", WED_16_UTC)
    assert not selectors.local_window_open(campaign, "", dt.datetime(2024, 6, 5, 21, 30, tzinfo=UTC))


def test_due_contacts_are_those_whose_local_window_is_open(campaign):
    assert names(selectors.due_contacts(campaign, WED_16_UTC, 10)) == ["Ada in Los Angeles", "Zone unknown"]
    assert names(selectors.due_contacts(campaign, WED_02_UTC, 10)) == ["Ada in Los Angeles", "Kenji in Tokyo"]
    # 05:00 UTC: 22:00 in Los Angeles, 06:00 in London, 14:00 in Tokyo.
    assert names(selectors.due_contacts(campaign, WED_02_UTC + dt.timedelta(hours=3), 10)) == ["Kenji in Tokyo"]
    assert names(selectors.due_contacts(campaign, FRI_2330_UTC, 10)) == ["Ada in Los Angeles"]
    assert len(selectors.due_contacts(campaign, WED_16_UTC, 1)) == 1


def test_a_weekend_campaign_calls_tokyo_on_saturday_morning(campaign):
    services.campaign_update(campaign, weekdays=[5, 6])
    assert names(selectors.due_contacts(campaign, FRI_2330_UTC, 10)) == ["Kenji in Tokyo"]


def test_busy_is_retried_after_its_delay_then_fails(campaign):
    ada = cc_of(campaign, "Ada in Los Angeles")
    first = services.record_attempt_outcome(ada.pk, "busy", "CA-busy-1", now=WED_16_UTC)
    assert (first.state, first.attempts, first.last_outcome) == ("pending", 1, "busy")
    assert first.next_attempt_at == WED_16_UTC + dt.timedelta(seconds=300)
    # Not due before its retry time, due after it.
    assert "Ada in Los Angeles" not in names(selectors.due_contacts(campaign, WED_16_UTC + dt.timedelta(seconds=299), 10))
    assert "Ada in Los Angeles" in names(selectors.due_contacts(campaign, WED_16_UTC + dt.timedelta(seconds=300), 10))

    # The same call reported twice counts once.
    assert services.record_attempt_outcome(ada.pk, "busy", "CA-busy-1", now=WED_16_UTC) is None
    second = services.record_attempt_outcome(ada.pk, "busy", "CA-busy-2", now=WED_16_UTC + dt.timedelta(seconds=300))
    assert (second.state, second.attempts, second.next_attempt_at, second.last_call_sid) == ("failed", 2, None, "CA-busy-2")
    # A finished contact takes no more outcomes.
    assert services.record_attempt_outcome(ada.pk, "answered", "CA-late") is None


def test_no_answer_follows_its_own_policy(campaign):
    services.campaign_update(campaign, retry_no_answer_max_attempts=3, retry_no_answer_delay_s=1800)
    kenji = cc_of(campaign, "Kenji in Tokyo")
    states = []
    for attempt in range(3):
        now = WED_02_UTC + dt.timedelta(hours=attempt)
        result = services.record_attempt_outcome(kenji.pk, "no-answer", f"CA-na-{attempt}", now=now)
        states.append((result.state, result.attempts, result.next_attempt_at and result.next_attempt_at - now))
    assert states == [
        ("pending", 1, dt.timedelta(seconds=1800)),
        ("pending", 2, dt.timedelta(seconds=1800)),
        ("failed", 3, None),
    ]


def test_failed_is_not_retried_by_default_and_unknown_outcomes_count_as_failed(campaign):
    ada, kenji = cc_of(campaign, "Ada in Los Angeles"), cc_of(campaign, "Kenji in Tokyo")
    assert services.record_attempt_outcome(ada.pk, "failed", "CA-f").state == "failed"
    result = services.record_attempt_outcome(kenji.pk, "carrier_error", "CA-ce")
    assert (result.state, result.last_outcome) == ("failed", "carrier_error")


def test_answered_is_done_and_the_last_contact_completes_the_campaign(campaign):
    for name in ("Ada in Los Angeles", "Kenji in Tokyo"):
        assert services.record_attempt_outcome(cc_of(campaign, name).pk, "answered", f"CA-{name}").state == "done"
    assert Campaign.objects.get(pk=campaign.pk).state == "running"
    services.record_attempt_outcome(cc_of(campaign, "Zone unknown").pk, "answered", "CA-last")
    finished = Campaign.objects.get(pk=campaign.pk)
    assert finished.state == "completed" and finished.finished_at is not None


def test_opting_out_puts_the_number_on_do_not_call(campaign):
    kenji = cc_of(campaign, "Kenji in Tokyo")
    assert services.record_attempt_outcome(kenji.pk, "opted_out", "CA-opt").state == "dnc"
    assert DoNotCall.objects.filter(phone="+819012345678").exists()


def test_do_not_call_added_mid_campaign_stops_pending_contacts(campaign):
    services.do_not_call_add(phone="+14155550100", reason="complained")
    assert cc_of(campaign, "Ada in Los Angeles").state == "dnc"
    assert names(selectors.due_contacts(campaign, WED_16_UTC, 10)) == ["Zone unknown"]


def test_two_dialers_claiming_the_same_contacts_never_both_win(campaign):
    due = [cc.pk for cc in selectors.due_contacts(campaign, WED_16_UTC, 10)]
    first = services.campaign_contacts_claim(due)
    second = services.campaign_contacts_claim(due)
    assert sorted(first) == sorted(due) and second == []
    assert selectors.due_contacts(campaign, WED_16_UTC, 10) == []
    # A claimed (dialing) contact takes its outcome as usual.
    assert services.record_attempt_outcome(first[0], "busy", "CA-claimed", now=WED_16_UTC).state == "pending"
