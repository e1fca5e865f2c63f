"""The dialer records a bookkeeping round's call outcomes in one go (`record_attempt_outcomes`):
the same rules as one at a time (`record_attempt_outcome`), whatever the mix of outcomes."""
import datetime as dt

import pytest
from django.db import connection
from django_tenants.utils import schema_context

from campaigns import services
from campaigns.models import Campaign, CampaignContact, Contact, ContactList, DoNotCall

pytestmark = pytest.mark.django_db
NOW = dt.datetime(2024, 6, 5, 16, 0, tzinfo=dt.UTC)


@pytest.fixture
def campaign(tenant_a):
    with schema_context(tenant_a.tenant):
        people = ContactList.objects.create(name="Acme renewals")
        for name, phone in (("Ada", "+14155550100"), ("Bob", "+14155550101"), ("Cy", "+14155550102"),
                            ("Di", "+14155550103")):
            Contact.objects.create(contact_list=people, phone=phone, name=name, time_zone="UTC")
        campaign = Campaign.objects.create(
            name="Renewals", contact_list=people, caller_ids=["+14155559000"], stream_url="wss://agent.example",
            retry_busy_max_attempts=2, retry_busy_delay_s=60, retry_no_answer_max_attempts=1, optout_digit="9",
        )
        services.campaign_start(campaign.pk, now=NOW)
        CampaignContact.objects.filter(campaign=campaign).update(state=CampaignContact.State.DIALING)
        yield campaign
    connection.set_schema_to_public()


def contact(campaign, name) -> CampaignContact:
    return CampaignContact.objects.get(campaign=campaign, contact__name=name)


def test_a_round_of_outcomes_is_recorded_at_once_by_the_one_at_a_time_rules(campaign):
    ada, bob, cy, di = (contact(campaign, name) for name in ("Ada", "Bob", "Cy", "Di"))
    counted = services.record_attempt_outcomes(campaign, [
        (ada.pk, "completed", "CA-1"), (bob.pk, "busy", "CA-2"), (cy.pk, "no-answer", "CA-3"),
        (di.pk, "opted_out", "CA-4"),
    ], now=NOW)
    assert counted == 4
    rows = {name: contact(campaign, name) for name in ("Ada", "Bob", "Cy", "Di")}
    assert [(r.state, r.attempts, r.last_outcome, r.last_call_sid) for r in rows.values()] == [
        ("done", 1, "answered", "CA-1"), ("pending", 1, "busy", "CA-2"), ("failed", 1, "no_answer", "CA-3"),
        ("dnc", 1, "opted_out", "CA-4")]
    assert rows["Bob"].next_attempt_at == NOW + dt.timedelta(seconds=60)
    assert DoNotCall.objects.filter(phone="+14155550103").exists()

    # the same report again counts nothing; Bob's retry, busy again, uses up his attempts
    assert services.record_attempt_outcomes(campaign, [(bob.pk, "busy", "CA-2")], now=NOW) == 0
    CampaignContact.objects.filter(pk=bob.pk).update(state=CampaignContact.State.DIALING)
    assert services.record_attempt_outcomes(campaign, [(bob.pk, "busy", "CA-5")], now=NOW) == 1
    bob = contact(campaign, "Bob")
    assert (bob.state, bob.attempts, bob.next_attempt_at) == ("failed", 2, None)
    campaign.refresh_from_db()
    assert campaign.state == Campaign.State.COMPLETED  # nobody left to call
