"""Acme's campaigns dialed for real through the gateway pool, with SIPp as the carrier, where the
numbers must stay true and caps must slow the campaign rather than use up its contacts:

- a carrier that takes only 2 calls at once, and a campaign of 20 contacts that would dial 10 at
  once: every contact is called exactly once and answered, none fails for capacity, and the carrier
  (counting from its own SIP messages) never has more than 2 calls;
- two campaigns on that carrier at once: calls refused at its cap are dialed again, none is lost;
- a campaign paused, resumed and cancelled while its calls are up: the calls in flight end and are
  counted, and the progress (API, page, list) agrees with the contact and call rows at every step.

One platform (gateway pool, recorder, dialer worker, beat) serves the module.
"""
from collections import Counter
from pathlib import Path

import pytest
from django.db.models import Q
from django.test import Client
from django_tenants.utils import schema_context

from campaigns import selectors, services
from campaigns.models import Campaign, CampaignContact
from telephony.calls.models import Call
from telephony.gateway import events as gw
from tests.campaign_support import (
    ALL_DAY,
    calls_of,
    contacts_of,
    new_campaign,
    platform_logs,
    running_platform,
    wait_completed,
)
from tests.support import max_overlap, wait_until
from voiceplatform.ui.selectors import EXPORT_COLUMNS, campaign_results, campaigns_with_counts

pytestmark = pytest.mark.usefixtures("committed")
State = CampaignContact.State


@pytest.fixture(scope="module")
def platform(tmp_path_factory, django_db_setup):
    yield from running_platform(tmp_path_factory.mktemp("platform"))


def calls_at_the_carrier(message_log: Path) -> dict[str, tuple[float, float]]:
    """Each call as SIPp saw it (its -trace_shortmsg log): Call-ID -> (first message, last message)."""
    seen: dict[str, list[float]] = {}
    for line in message_log.read_text().splitlines():
        _date, _time, ts, _direction, call_id, *_ = line.split("\t")
        seen.setdefault(call_id, []).append(float(ts))
    return {call_id: (min(times), max(times)) for call_id, times in seen.items()}


def test_a_carrier_capped_at_2_calls_slows_the_campaign_and_uses_up_no_contact(platform, trunks, campaigns_made,
                                                                               tmp_path):
    """Acme's only trunk takes 2 calls at once; each callee talks for a second. Its campaign of 20
    contacts may dial 10 at once at 10 calls per second: it dials 2 at a time instead."""
    message_log = tmp_path / "carrier-messages.log"
    trunks.carrier("Small trunk", "uas_answer_bye.xml", "-d", "1000", "-trace_shortmsg",
                   "-shortmessage_file", str(message_log), max_concurrent=2)
    caller = trunks.number("+14155550123")
    people = [(f"+1415557{1000 + i:04d}", f"Customer {i}", "UTC") for i in range(20)]
    campaign = new_campaign(campaigns_made, "Capped", people, caller_ids=[caller], cps=10, max_concurrent=10,
                            **ALL_DAY)

    wait_completed(campaign, platform, 120)

    calls = calls_of(campaign)
    refused = [call.sid for call in calls if call.reason == gw.REASON_CARRIER_AT_CAPACITY]
    assert refused == [], f"{len(refused)} calls were refused at the carrier's cap"
    assert Counter(call.campaign_contact_id for call in calls).most_common(1)[0][1] == 1, "a contact called twice"
    assert Counter(call.outcome for call in calls) == {"answered": 20}
    assert {(cc.state, cc.attempts) for cc in contacts_of(campaign).values()} == {(State.DONE, 1)}

    trunks.processes[0].stop()  # SIPp writes its message log out
    at_the_carrier = calls_at_the_carrier(message_log)
    assert len(at_the_carrier) == 20
    assert max_overlap(at_the_carrier.values()) == 2  # the cap, used in full and never exceeded


def test_two_campaigns_on_one_capped_carrier_share_it_and_use_up_no_contact(platform, trunks, campaigns_made,
                                                                              tmp_path):
    """Two of Acme's teams start a campaign of 10 contacts each at the same moment, on the same trunk
    that takes 2 calls at once. Neither dialer sees the other's calls before the gateway leases them,
    so some calls meet a full trunk and are refused: their contacts are dialed again, and in the end
    every contact of both campaigns was answered exactly once, with one attempt counted."""
    message_log = tmp_path / "carrier-messages.log"
    trunks.carrier("Shared trunk", "uas_answer_bye.xml", "-d", "1000", "-trace_shortmsg",
                   "-shortmessage_file", str(message_log), max_concurrent=2)
    caller = trunks.number("+14155550123")
    teams = [
        new_campaign(campaigns_made, f"Team {team}", [(f"+1415559{team}{i:03d}", f"{team} {i}", "UTC") for i in range(10)],
                     caller_ids=[caller], cps=10, max_concurrent=10, **ALL_DAY)
        for team in (1, 2)
    ]
    for campaign in teams:
        wait_completed(campaign, platform, 120)

    for campaign in teams:
        calls = calls_of(campaign)
        answered = Counter(call.campaign_contact_id for call in calls if call.outcome == "answered")
        others = {(call.outcome, call.reason) for call in calls if call.outcome != "answered"}
        assert others <= {("carrier_error", gw.REASON_CARRIER_AT_CAPACITY)}, others
        assert len(answered) == 10 and set(answered.values()) == {1}, "a contact called twice or not at all"
        assert {(cc.state, cc.attempts) for cc in contacts_of(campaign).values()} == {(State.DONE, 1)}
    trunks.processes[0].stop()
    at_the_carrier = calls_at_the_carrier(message_log)
    assert len(at_the_carrier) == 20 and max_overlap(at_the_carrier.values()) <= 2


def counted_from_rows(campaign: Campaign) -> dict:
    """The progress figures, counted straight from the contact and call rows."""
    with schema_context("acme"):
        contacts = CampaignContact.objects.filter(campaign=campaign)
        calls = list(Call.objects.filter(campaign_id=campaign.pk))
        return {
            "total": contacts.count(),
            **{state.value: contacts.filter(state=state).count() for state in State},
            "answered": contacts.filter(last_outcome="answered").count(),
            "answered_calls": sum(1 for call in calls if call.outcome == "answered"),
            "dialed": contacts.filter(Q(attempts__gt=0) | Q(state=State.DIALING)).count(),
            "remaining": contacts.filter(state__in=(State.PENDING, State.DIALING)).count(),
            "in_call": sum(1 for call in calls if not call.is_final),
            "calls": len(calls),
        }


def api_progress(campaign: Campaign, api_key: str) -> dict:
    response = Client(HTTP_AUTHORIZATION=f"Bearer {api_key}").get(f"/api/v1/campaigns/{campaign.pk}/progress")
    assert response.status_code == 200, response.content
    return response.json()


def agrees_with_rows(campaign: Campaign, api_key: str) -> dict:
    """Once the campaign's calls have ended and been counted: the API, the campaign list and the
    export say what the rows say; returns the figures."""
    rows = counted_from_rows(campaign)
    progress = api_progress(campaign, api_key)
    assert {name: progress[name] for name in rows if name in progress} == {
        name: value for name, value in rows.items() if name in progress}
    assert rows["in_call"] == rows[State.DIALING] == 0
    assert rows["answered"] == rows["answered_calls"] == rows[State.DONE]
    with schema_context("acme"):
        listed = campaigns_with_counts().get(pk=campaign.pk)
        assert (listed.total, listed.answered, listed.remaining) == (rows["total"], rows["answered"], rows["remaining"])
        exported = [dict(zip(EXPORT_COLUMNS, row, strict=True)) for row in campaign_results(campaign)]
        calls_per_phone = Counter(call.to_number for call in Call.objects.filter(campaign_id=campaign.pk))
    assert Counter(row["state"] for row in exported) == {
        state: rows[state] for state in State.values if rows[state]}
    assert {row["phone"]: row["attempts"] for row in exported if row["attempts"]} == dict(calls_per_phone)
    return rows


def test_pause_resume_and_cancel_keep_the_progress_true_to_the_calls(platform, trunks, campaigns_made, tenant_a):
    """Acme's callees talk for 3 s. It pauses its campaign with calls up: nothing new is dialed, and
    the calls still up end and are counted while it is paused. It resumes, then cancels with calls
    up again: those end and are counted too; nobody is left "dialing" or "in call"."""
    trunks.carrier("Trunk", "uas_answer_bye.xml", "-d", "3000")
    caller = trunks.number("+14155550123")
    people = [(f"+1415558{1000 + i:04d}", f"Customer {i}", "UTC") for i in range(40)]
    campaign = new_campaign(campaigns_made, "Pause and cancel", people, caller_ids=[caller], cps=4,
                            max_concurrent=6, **ALL_DAY)
    key = tenant_a.api_key

    def in_call() -> int:
        return api_progress(campaign, key)["in_call"]

    def settled() -> bool:
        rows = counted_from_rows(campaign)
        return rows["in_call"] == 0 and rows[State.DIALING] == 0

    try:
        wait_until(lambda: in_call() >= 4, 60, 0.2, what="calls to be up")
        with schema_context("acme"):
            services.campaign_pause(campaign.pk)
        at_pause = api_progress(campaign, key)
        assert at_pause["state"] == "paused" and at_pause["in_call"] >= 4 and at_pause["eta_seconds"] is None
        wait_until(settled, 30, 0.2, what="the calls up at the pause to end and be counted")
    except AssertionError:
        raise AssertionError(platform_logs(platform)) from None
    paused = agrees_with_rows(campaign, key)
    assert paused["answered"] >= at_pause["answered"] + at_pause["in_call"]  # counted while paused

    with schema_context("acme"):
        services.campaign_resume(campaign.pk)
    try:
        wait_until(lambda: counted_from_rows(campaign)["calls"] >= paused["calls"] + 6 and in_call() >= 3, 60, 0.2,
                   what="dialing to resume")
        with schema_context("acme"):
            services.campaign_cancel(campaign.pk)
        at_cancel = api_progress(campaign, key)
        assert at_cancel["state"] == "cancelled" and at_cancel["in_call"] >= 3
        wait_until(settled, 30, 0.2, what="the calls up at the cancel to end and be counted")
    except AssertionError:
        raise AssertionError(platform_logs(platform)) from None
    cancelled = agrees_with_rows(campaign, key)
    assert cancelled["answered"] == cancelled["calls"] >= at_cancel["answered"] + 3
    assert cancelled[State.PENDING] == 40 - cancelled["calls"]  # never dialed, and never will be
    with schema_context("acme"):
        assert Campaign.objects.get(pk=campaign.pk).state == Campaign.State.CANCELLED
        assert selectors.campaign_progress(Campaign.objects.get(pk=campaign.pk))["eta_seconds"] is None
