"""A callee who presses the campaign's opt-out digit is never called again by this tenant."""
import datetime as dt

import pytest
from django.test import Client
from django.utils import timezone
from django_tenants.utils import schema_context

from campaigns import services
from campaigns.models import Campaign, CampaignContact, Contact, ContactList, DoNotCall
from telephony.calls.models import Call
from telephony.calls.recorder import record_event
from telephony.gateway import events as gw

pytestmark = pytest.mark.django_db



def test_pressing_the_opt_out_digit_puts_the_number_on_do_not_call(tenant_a):
    with schema_context("acme"):
        contacts = ContactList.objects.create(name="Renewals")
        ada = Contact.objects.create(contact_list=contacts, phone="+14155550142", name="Ada")
        campaign = Campaign.objects.create(
            name="Renewals", contact_list=contacts, caller_ids=["+14155550123"], stream_url="wss://agent.example",
            cps=1, optout_digit="9", window_start=dt.time(0), window_end=dt.time(23), state=Campaign.State.RUNNING,
        )
        row = CampaignContact.objects.create(campaign=campaign, contact=ada, state=CampaignContact.State.DIALING)
        call = Call.objects.create(from_number="+14155550123", to_number=ada.phone, stream_url=campaign.stream_url,
                                   campaign_id=campaign.pk, campaign_contact_id=row.pk)
    record_event(gw.make_event(call.sid, gw.ANSWERED, leg=0, setup_ms=700), "acme")
    record_event(gw.make_event(call.sid, gw.COMPLETED, leg=0, outcome="answered", duration=9.0,
                               dtmf_digits="19"), "acme")
    with schema_context("acme"):
        assert services.campaign_calls_reconcile(campaign, timezone.now()).outcomes == 1
        row.refresh_from_db()
        assert row.state == CampaignContact.State.DNC and row.last_outcome == "opted_out"
        assert DoNotCall.objects.filter(phone=ada.phone).exists()


def test_the_agent_reports_an_opt_out_through_the_api_and_the_campaign_counts_it(tenant_a, tenant_b):
    """Twilio's stream protocol has no opt-out message: the agent's code calls the API mid-call."""
    with schema_context("acme"):
        contacts = ContactList.objects.create(name="Winback")
        bo = Contact.objects.create(contact_list=contacts, phone="+14155550143", name="Bo")
        campaign = Campaign.objects.create(
            name="Winback", contact_list=contacts, caller_ids=["+14155550123"], stream_url="wss://agent.example",
            cps=1, window_start=dt.time(0), window_end=dt.time(23), state=Campaign.State.RUNNING,
        )
        row = CampaignContact.objects.create(campaign=campaign, contact=bo, state=CampaignContact.State.DIALING)
        call = Call.objects.create(from_number="+14155550123", to_number=bo.phone, stream_url=campaign.stream_url,
                                   campaign_id=campaign.pk, campaign_contact_id=row.pk)
    record_event(gw.make_event(call.sid, gw.ANSWERED, leg=0, setup_ms=700), "acme")

    assert Client(HTTP_AUTHORIZATION=f"Bearer {tenant_b.api_key}").post(
        f"/api/v1/calls/{call.sid}/opt-out").status_code == 404  # not Globex's call
    response = Client(HTTP_AUTHORIZATION=f"Bearer {tenant_a.api_key}").post(f"/api/v1/calls/{call.sid}/opt-out")
    assert response.status_code == 200 and response.json()["phone"] == bo.phone

    record_event(gw.make_event(call.sid, gw.COMPLETED, leg=0, outcome="answered", duration=12.0), "acme")
    with schema_context("acme"):
        assert DoNotCall.objects.filter(phone=bo.phone).exists()
        assert services.campaign_calls_reconcile(campaign, timezone.now()).outcomes == 1
        row.refresh_from_db()
        assert row.state == CampaignContact.State.DNC and row.last_outcome == "opted_out"
