"""A large campaign is dialed by several loops at once (one per slice of its CPS, campaigns/dialer.py),
as several dialer workers would: each loop places its share of the calls, and still every contact is
called exactly once and the campaign completes with one answered call per contact."""
import datetime as dt
import threading
import time
from collections import Counter

import pytest
from django.db import connection
from django.utils import timezone
from django_tenants.utils import schema_context

from campaigns import dialer, selectors, services
from campaigns.models import Campaign, CampaignContact
from telephony.calls.models import Call
from telephony.calls.services import CallPlacer
from tenants.models import Tenant
from tests import stack
from tests.campaign_support import ALL_DAY, calls_of, campaign_state, new_campaign, platform_logs

pytestmark = pytest.mark.usefixtures("committed")
CONTACTS = 90


@pytest.fixture
def pool_and_recorder(tmp_path):
    processes = {"gateways": stack.gateway_pool(tmp_path, processes=4), "recorder": stack.recorder(tmp_path)}
    yield processes
    for process in processes.values():
        process.stop()


def dial_until_stopped(campaign_id: int, slot: int, placed: Counter, deadline: float) -> None:
    """One dialing loop, slice after slice, as dial_campaign tasks would run it in one worker."""
    try:
        with schema_context("acme"):
            while time.monotonic() < deadline:
                report = dialer.dial_slice(campaign_id, slot, slice_s=2.0)
                placed[slot] += report.placed
                if not report.running:
                    return
    finally:
        connection.close()


def test_three_loops_dial_one_campaign_and_no_contact_is_called_twice(trunks, campaigns_made, pool_and_recorder,
                                                                       settings):
    settings.DIALER_CPS_PER_SLICE = 10
    trunks.carrier("Renewals trunk", "uas_answer_bye.xml", "-d", "300", max_concurrent=40)
    people = [(f"+1415556{i:04d}", f"Customer {i}", "UTC") for i in range(CONTACTS)]
    campaign = new_campaign(campaigns_made, "Autumn renewals", people, caller_ids=[trunks.number("+14155550123")],
                            cps=30, max_concurrent=30, ring_timeout=15, **ALL_DAY)
    assert dialer.slices_for(campaign.cps) == 3

    placed: Counter = Counter()
    deadline = time.monotonic() + 120
    loops = [threading.Thread(target=dial_until_stopped, args=(campaign.pk, slot, placed, deadline))
             for slot in range(3)]
    for loop in loops:
        loop.start()
    for loop in loops:
        loop.join()

    assert campaign_state(campaign) == "completed", platform_logs(pool_and_recorder)
    assert all(placed[slot] > 0 for slot in range(3)), f"a loop placed nothing: {placed}"
    calls = calls_of(campaign)
    per_contact = Counter(call.campaign_contact_id for call in calls)
    assert len(per_contact) == CONTACTS and set(per_contact.values()) == {1}, "a contact called twice"
    assert sum(placed.values()) == CONTACTS
    assert Counter(call.outcome for call in calls) == {"answered": CONTACTS}
    with schema_context("acme"):
        states = Counter(CampaignContact.objects.filter(campaign=campaign).values_list("state", flat=True))
    assert states == {CampaignContact.State.DONE: CONTACTS}


def test_a_loop_beyond_what_the_campaigns_cps_needs_stops_at_once(trunks, campaigns_made, settings):
    settings.DIALER_CPS_PER_SLICE = 10
    campaign = new_campaign(campaigns_made, "Small list", [("+14155569999", "Only one", "UTC")],
                            caller_ids=[trunks.number("+14155550123")], cps=5, **ALL_DAY)
    with schema_context("acme"):
        report = dialer.dial_slice(campaign.pk, slot=1, slice_s=2.0)
    assert not report.running and report.placed == 0


def test_a_contact_handed_back_while_a_stalled_loop_held_it_is_called_by_one_loop_only(trunks, campaigns_made,
                                                                                        settings):
    settings.DIALER_UNPLACED_GRACE_S = 3
    campaign = new_campaign(campaigns_made, "Stalled loop", [("+14155568888", "Pat", "UTC")],
                            caller_ids=[trunks.number("+14155550123")], cps=5, **ALL_DAY)
    placer = CallPlacer(Tenant.objects.get(schema_name="acme"))
    with schema_context("acme"):
        campaign = Campaign.objects.get(pk=campaign.pk)
        claimed_at = timezone.now()
        stalled = dialer._claimed_batch(campaign, claimed_at, 5)  # loop A claims Pat, then stalls
        assert len(stalled) == 1
        # past the grace with no call placed: the bookkeeping hands Pat back, and loop B claims her
        services.campaign_calls_reconcile(campaign, claimed_at + dt.timedelta(seconds=4))
        reclaimed_at = timezone.now()
        fresh = dialer._claimed_batch(campaign, reclaimed_at, 5)
        assert [row.pk for row in fresh] == [row.pk for row in stalled]

        assert dialer._dial(campaign, stalled, claimed_at, placer, 0) == 0  # loop A wakes up: not hers any more
        assert dialer._dial(campaign, fresh, reclaimed_at, placer, 0) == 1
        assert Call.objects.filter(campaign_id=campaign.pk).count() == 1


def test_a_loop_that_loses_the_head_of_the_line_to_another_loop_claims_the_next_contacts(trunks, campaigns_made,
                                                                                         monkeypatch):
    """The campaign's loops read the same head of the line. The one whose claim comes second used to
    get nothing and pause as if no contact were due, losing its place in the pace (about 1% of a
    150 CPS campaign's calls in bench/burst.py)."""
    people = [(f"+1415557{i:04d}", f"Customer {i}", "UTC") for i in range(6)]
    campaign = new_campaign(campaigns_made, "Race for the head", people, caller_ids=[trunks.number("+14155550123")],
                            cps=30, **ALL_DAY)
    taken_by_the_other_loop: list[int] = []
    read = selectors.due_contacts

    def read_then_lose_the_race(*args, **kwargs):
        rows = read(*args, **kwargs)
        if not taken_by_the_other_loop:  # the other loop claims what this one has just read
            taken_by_the_other_loop.extend(services.campaign_contacts_claim([row.pk for row in rows]))
        return rows

    monkeypatch.setattr(selectors, "due_contacts", read_then_lose_the_race)
    with schema_context("acme"):
        campaign = Campaign.objects.get(pk=campaign.pk)
        mine = dialer._claimed_batch(campaign, timezone.now(), 3)
        dialing = CampaignContact.objects.filter(campaign=campaign, state=CampaignContact.State.DIALING).count()
    assert len(taken_by_the_other_loop) == 3
    assert len(mine) == 3 and not {row.pk for row in mine} & set(taken_by_the_other_loop)
    assert dialing == 6
