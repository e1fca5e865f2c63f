"""A callee who presses the campaign's opt-out digit is never called again by this tenant."""
import datetime as dt

import pytest
from django.utils import timezone
from django_tenants.utils import schema_context

from campaigns import dialer
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
        assert dialer.reconcile(campaign, timezone.now()) == 1
        row.refresh_from_db()
        assert row.state == CampaignContact.State.DNC and row.last_outcome == "opted_out"
        assert DoNotCall.objects.filter(phone=ada.phone).exists()
