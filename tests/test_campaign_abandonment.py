"""A campaign whose agent leaves callees in silence slows itself down, and shows it."""
import datetime as dt

import pytest
from django_tenants.utils import schema_context

from campaigns import dialer, selectors
from campaigns.models import Campaign, ContactList
from telephony.calls.models import Call

pytestmark = pytest.mark.django_db



def test_over_3_percent_abandoned_halves_the_pace_and_progress_shows_the_rate(tenant_a):
    with schema_context("acme"):
        campaign = Campaign.objects.create(
            name="Winter", contact_list=ContactList.objects.create(name="Winter"), caller_ids=["+14155550123"],
            stream_url="wss://agent.acme.example", cps=10, window_start=dt.time(0), window_end=dt.time(23),
        )
        answered = dict(campaign_id=campaign.pk, from_number="+14155550123", to_number="+14155550199",
                        answered_at="2026-11-27T10:00:00Z", status="completed")
        Call.objects.bulk_create([Call(**answered) for _ in range(97)])
        assert selectors.abandonment_rate(campaign) == 0.0
        assert dialer.paced_cps(campaign) == 10

        Call.objects.bulk_create([Call(**answered, abandoned=True) for _ in range(3)])  # 3 of 100
        assert selectors.abandonment_rate(campaign) == 0.03
        assert dialer.paced_cps(campaign) == 10  # at the limit, not over it

        Call.objects.create(**answered, abandoned=True)  # 4 of 101
        assert dialer.paced_cps(campaign) == 5
        progress = selectors.campaign_progress(campaign)
        assert progress["abandonment_rate"] == round(4 / 101, 4)
