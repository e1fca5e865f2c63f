"""Acme's campaign progress tells the truth from its records: the time left counts only the contacts
that can be dialed now, at the pace the campaign really keeps, and says when a closed calling window
opens; contacts of a paused or cancelled campaign take the outcome of their calls when those end; a
call refused at a carrier's cap sends its contact back to be dialed again without using an attempt;
the campaign list shows the same counts as the campaign's page."""
import datetime as dt

import pytest
from django_tenants.utils import schema_context

from campaigns import selectors, services, tasks
from campaigns.models import Campaign, CampaignContact, Contact, ContactList
from telephony.calls.models import Call
from telephony.calls.recorder import record_event
from telephony.gateway import events as gw
from voiceplatform.ui.selectors import campaign_live_progress

pytestmark = pytest.mark.django_db
WEDNESDAY_4PM_UTC = dt.datetime(2024, 6, 5, 16, 0, tzinfo=dt.UTC)
ALL_WEEK = {"window_start": dt.time(0), "window_end": dt.time(23, 59, 59), "weekdays": list(range(7))}
State = CampaignContact.State


def new_campaign(name: str, people: list[tuple[str, str]], started: dt.datetime, **settings) -> Campaign:
    """A started campaign over a new list of (phone, time zone)."""
    contacts = ContactList.objects.create(name=name)
    Contact.objects.bulk_create(Contact(contact_list=contacts, phone=phone, name=f"{name} {i}", time_zone=zone)
                                for i, (phone, zone) in enumerate(people))
    campaign = Campaign.objects.create(name=name, contact_list=contacts, caller_ids=["+14155550199"],
                                       stream_url="wss://agent.example.com", **settings)
    return services.campaign_start(campaign.pk, now=started)


def place_call(campaign: Campaign, row: CampaignContact, at: dt.datetime | None = None) -> Call:
    """What the dialer does for one contact: claim it, record its call."""
    assert services.campaign_contacts_claim([row.pk], now=at) == [row.pk]
    call = Call.objects.create(from_number="+14155550199", to_number=row.contact.phone,
                               campaign_id=campaign.pk, campaign_contact_id=row.pk)
    if at is not None:
        Call.objects.filter(pk=call.pk).update(created_at=at)
    return call


def end_call(call: Call, outcome: str, **fields) -> None:
    """The gateway's final event for the call, recorded as the recorder does."""
    if outcome == "answered":
        record_event(gw.make_event(call.sid, gw.ANSWERED, leg=0), "acme")
        record_event(gw.make_event(call.sid, gw.COMPLETED, leg=0, outcome=outcome, duration=3.0), "acme")
    else:
        record_event(gw.make_event(call.sid, gw.FAILED, leg=0, outcome=outcome, **fields), "acme")


def counted_from_rows(campaign: Campaign) -> dict:
    """The progress figures, counted straight from the contact and call rows."""
    contacts = CampaignContact.objects.filter(campaign=campaign)
    calls = Call.objects.filter(campaign_id=campaign.pk)
    return {
        "total": contacts.count(),
        **{state.value: contacts.filter(state=state).count() for state in State},
        "answered": contacts.filter(last_outcome="answered").count(),
        "dialed": contacts.filter(attempts__gt=0).count() + contacts.filter(state=State.DIALING, attempts=0).count(),
        "remaining": contacts.filter(state__in=(State.PENDING, State.DIALING)).count(),
        "in_call": sum(1 for call in calls if not call.is_final),
    }


def progress_figures(campaign: Campaign, now=None) -> dict:
    progress = selectors.campaign_progress(campaign, now)
    return {name: progress[name] for name in counted_from_rows(campaign)}


def test_the_time_left_follows_the_pace_the_campaign_really_keeps(tenant_a):
    """40 contacts at 2 calls per second: 20 s at first. Its carrier only lets 10 calls through in
    20 s, so the time left for the 30 others is 60 s at that pace, not 15 s; paused, there is none."""
    with schema_context("acme"):
        started = WEDNESDAY_4PM_UTC
        campaign = new_campaign("Pace", [(f"+1415555{300 + i:04d}", "UTC") for i in range(40)], started,
                                cps=2, **ALL_WEEK)
        progress = selectors.campaign_progress(campaign, started)
        assert (progress["dialable_now"], progress["dial_rate"], progress["eta_seconds"]) == (40, 2.0, 20)

        rows = list(CampaignContact.objects.filter(campaign=campaign).select_related("contact").order_by("pk"))
        for i, row in enumerate(rows[:10]):
            end_call(place_call(campaign, row, at=started + dt.timedelta(seconds=2 * i)), "answered")
        services.campaign_calls_reconcile(campaign, started + dt.timedelta(seconds=20))
        later = started + dt.timedelta(seconds=20)  # 10 calls in 20 s: 0.5 a second, 30 left
        progress = selectors.campaign_progress(campaign, later)
        assert (progress["done"], progress["dialable_now"], progress["dial_rate"]) == (10, 30, 0.5)
        assert progress["eta_seconds"] == 60

        campaign = services.campaign_pause(campaign.pk)
        assert selectors.campaign_progress(campaign, later)["eta_seconds"] is None
        resumed = later + dt.timedelta(seconds=600)  # the pause is not part of its pace
        campaign = services.campaign_resume(campaign.pk, now=resumed)
        assert selectors.campaign_progress(campaign, resumed)["eta_seconds"] == 15  # 30 at 2 calls/s


def test_the_pace_of_a_campaign_with_long_calls_is_its_real_one(tenant_a):
    """Acme's callees talk for minutes and its trunk takes few calls at once: the campaign places
    one call every 10 s although it may place 2 a second. With 50 contacts left, that is 500 s."""
    with schema_context("acme"):
        started = WEDNESDAY_4PM_UTC
        campaign = new_campaign("Long calls", [(f"+1415555{500 + i:04d}", "UTC") for i in range(60)], started,
                                cps=2, **ALL_WEEK)
        rows = list(CampaignContact.objects.filter(campaign=campaign).select_related("contact").order_by("pk"))
        for i, row in enumerate(rows[:10]):
            end_call(place_call(campaign, row, at=started + dt.timedelta(seconds=10 * i)), "answered")
        now = started + dt.timedelta(seconds=100)
        services.campaign_calls_reconcile(campaign, now)
        progress = selectors.campaign_progress(campaign, now)
        assert (progress["dialable_now"], progress["dial_rate"], progress["eta_seconds"]) == (50, 0.1, 500)


def test_contacts_whose_window_is_closed_are_not_in_the_time_left_which_says_when_it_opens(tenant_a):
    """Acme calls 09:00-17:00 local time. On a Wednesday at 16:00 UTC it is noon in New York and
    01:00 on Thursday in Tokyo: the 2 New Yorkers are dialable (1 s at 2 calls per second), the 3
    Tokyo contacts wait for 09:00 in Tokyo, 8 h later. Once the New Yorkers are done, there is no
    time left to tell, only when the window opens."""
    with schema_context("acme"):
        now = WEDNESDAY_4PM_UTC
        campaign = new_campaign("Windows", [
            ("+12125550001", "America/New_York"), ("+12125550002", "America/New_York"),
            ("+81355550001", "Asia/Tokyo"), ("+81355550002", "Asia/Tokyo"), ("+81355550003", "Asia/Tokyo"),
        ], now, cps=2, window_start=dt.time(9), window_end=dt.time(17), weekdays=[0, 1, 2, 3, 4])
        tokyo_opens = dt.datetime(2024, 6, 6, 0, 0, tzinfo=dt.UTC)  # Thursday 09:00 in Tokyo

        progress = selectors.campaign_progress(campaign, now)
        assert (progress["dialable_now"], progress["waiting_for_window"]) == (2, 3)
        assert progress["next_window_at"] == tokyo_opens and progress["eta_seconds"] == 1
        page = campaign_live_progress(campaign, now)["eta_text"]  # what the campaign page shows
        assert page == "1 s, the rest when their window opens in 8 h 00 min"

        for row in CampaignContact.objects.filter(campaign=campaign, contact__time_zone="America/New_York"):
            services.record_attempt_outcome(row.pk, "answered", f"CA-{row.pk}", now=now)
        progress = selectors.campaign_progress(campaign, now)
        assert (progress["dialable_now"], progress["remaining"], progress["eta_seconds"]) == (0, 3, None)
        assert progress["next_window_at"] == tokyo_opens
        assert campaign_live_progress(campaign, now)["eta_text"] == "calling window opens in 8 h 00 min"

        friday_night = dt.datetime(2024, 6, 7, 22, 0, tzinfo=dt.UTC)  # Saturday 07:00 in Tokyo
        monday_9am_tokyo = dt.datetime(2024, 6, 10, 0, 0, tzinfo=dt.UTC)
        assert selectors.campaign_progress(campaign, friday_night)["next_window_at"] == monday_9am_tokyo


def test_contacts_of_a_paused_and_then_cancelled_campaign_take_the_outcomes_of_their_calls(tenant_a):
    """Acme pauses its campaign with 3 calls in flight, then cancels it with 2 more in flight. Every
    call that ends is counted: answered contacts are done, busy ones keep their attempt, and nothing
    stays "dialing" or "in call" once the calls have ended; the page agrees with the rows."""
    with schema_context("acme"):
        campaign = new_campaign("Pause", [(f"+1415556{i:04d}", "UTC") for i in range(8)], WEDNESDAY_4PM_UTC,
                                cps=5, retry_busy_max_attempts=2, retry_busy_delay_s=60, **ALL_WEEK)
        rows = list(CampaignContact.objects.filter(campaign=campaign).select_related("contact").order_by("pk"))
        first = [place_call(campaign, row) for row in rows[:3]]
        campaign = services.campaign_pause(campaign.pk)
        assert progress_figures(campaign) == counted_from_rows(campaign)
        assert (selectors.campaign_progress(campaign)["in_call"], counted_from_rows(campaign)["dialing"]) == (3, 3)

        end_call(first[0], "answered")
        end_call(first[1], "busy", sip_code=486)
        end_call(first[2], "answered")
        assert [c.pk for c in selectors.campaigns_settling()] == [campaign.pk]
        tasks.reconcile_campaign(campaign.pk)  # what beat asks for every second
        figures = progress_figures(campaign)
        assert figures == counted_from_rows(campaign)
        assert (figures["answered"], figures["dialing"], figures["in_call"], figures["done"]) == (2, 0, 0, 2)
        busy = CampaignContact.objects.get(pk=rows[1].pk)
        assert (busy.state, busy.attempts, busy.last_outcome) == (State.PENDING, 1, "busy")

        campaign = services.campaign_resume(campaign.pk)
        second = [place_call(campaign, row) for row in rows[3:5]]
        campaign = services.campaign_cancel(campaign.pk)
        end_call(second[0], "answered")
        end_call(second[1], "no_answer", reason="ring_timeout")
        tasks.reconcile_campaign(campaign.pk)
        figures = progress_figures(campaign)
        assert figures == counted_from_rows(campaign)
        assert (figures["answered"], figures["dialing"], figures["in_call"], figures["done"]) == (3, 0, 0, 3)
        assert list(selectors.campaigns_settling()) == []
        campaign.refresh_from_db()
        assert campaign.state == Campaign.State.CANCELLED

        listed = selectors.campaigns_with_progress().get(pk=campaign.pk)
        progress = selectors.campaign_progress(campaign)
        assert {name: getattr(listed, name) for name in ("total", "answered", "remaining", "done", "dialed")} == {
            name: progress[name] for name in ("total", "answered", "remaining", "done", "dialed")}


def test_a_call_refused_at_a_carriers_cap_sends_its_contact_back_without_using_an_attempt(tenant_a):
    """Acme allows one attempt for failed calls. Its call to Ada is refused by the gateway because
    the carrier's concurrent-call cap is full: Ada is not failed, she is dialed again 2 s later
    with her one attempt still to use; a late second report of the refused call changes nothing."""
    with schema_context("acme"):
        now = WEDNESDAY_4PM_UTC
        campaign = new_campaign("Caps", [("+14155557001", "UTC")], now, retry_failed_max_attempts=1, **ALL_WEEK)
        ada = CampaignContact.objects.select_related("contact").get(campaign=campaign)
        refused = place_call(campaign, ada, at=now)
        end_call(refused, "carrier_error", reason=gw.REASON_CARRIER_AT_CAPACITY)

        assert services.campaign_calls_reconcile(campaign, now) == (0, 1)
        ada.refresh_from_db()
        assert (ada.state, ada.attempts, ada.next_attempt_at) == (State.PENDING, 0, now + dt.timedelta(seconds=2))
        assert selectors.due_contacts(campaign, now, limit=5) == []
        assert selectors.due_contacts(campaign, now + dt.timedelta(seconds=2), limit=5) == [ada]

        again = place_call(campaign, ada, at=now + dt.timedelta(seconds=2))
        assert services.campaign_calls_reconcile(campaign, now + dt.timedelta(seconds=3)) == (0, 0)
        ada.refresh_from_db()
        assert ada.state == State.DIALING  # still waiting for its second call
        end_call(again, "answered")
        assert services.campaign_calls_reconcile(campaign, now + dt.timedelta(seconds=9)) == (1, 0)
        ada.refresh_from_db()
        assert (ada.state, ada.attempts, ada.last_call_sid) == (State.DONE, 1, again.sid)
        campaign.refresh_from_db()
        assert campaign.state == Campaign.State.COMPLETED


def test_a_campaign_asking_more_calls_at_once_than_the_pool_holds_is_warned_until_it_ends(tenant_a):
    """Acme's campaign asks for 10,000 calls at once: the page warns while it can still dial, and
    not once it has completed (a newcomer's finished campaign on the 8-call demo pool was warned)."""
    with schema_context("acme"):
        campaign = new_campaign("Too wide", [("+12125550009", "America/New_York")], WEDNESDAY_4PM_UTC,
                                cps=2, max_concurrent=10_000, **ALL_WEEK)
        assert "the gateway pool holds" in campaign_live_progress(campaign)["capacity_warning"]

        row = CampaignContact.objects.get(campaign=campaign)
        services.record_attempt_outcome(row.pk, "answered", "CA-wide", now=WEDNESDAY_4PM_UTC)
        campaign.refresh_from_db()
        assert campaign.state == Campaign.State.COMPLETED  # its last contact answered
        assert campaign_live_progress(campaign)["capacity_warning"] == ""
