"""Acme records every call of a campaign and tells each callee first: the campaign's calls go to the
gateways marked for recording, with the announcement's audio (rendered once, kept in Redis)."""
import json

import pytest
from django.db import connection
from django_tenants.utils import schema_context

from campaigns import dialer, services
from campaigns.models import Campaign, CampaignContact, Contact, ContactList
from core import keys
from core.redis_client import get_redis
from media import fallback
from telephony.calls.models import Call
from telephony.calls.services import CallPlacer
from telephony.models import Carrier, Number
from tenants.models import Tenant

pytestmark = pytest.mark.django_db
CALLER_ID = "+14155559001"


def test_a_recorded_campaigns_calls_are_recorded(tenant_a, django_capture_on_commit_callbacks):
    Carrier.objects.create(name="Primary", host="127.0.0.1", port=5099, priority=1)
    Number.objects.create(e164=CALLER_ID, tenant=Tenant.objects.get(schema_name="acme"))
    get_redis().delete(keys.tenant_queue("", "acme"))
    with schema_context("acme"):
        people = ContactList.objects.create(name="Quality checks")
        for phone in ("+14155550181", "+14155550182"):
            Contact.objects.create(contact_list=people, phone=phone, time_zone="UTC")
        campaign = Campaign.objects.create(name="Recorded", contact_list=people, caller_ids=[CALLER_ID],
                                           stream_url="wss://agent.example", record_calls=True,
                                           recording_announcement="This call is recorded.")
        services.campaign_start(campaign.pk)
        rows = list(CampaignContact.objects.filter(campaign=campaign).select_related("contact"))
        with django_capture_on_commit_callbacks(execute=True):
            assert dialer._place(campaign, rows, CallPlacer(Tenant.objects.get(schema_name="acme")), 0) == 2
        commands = [json.loads(raw) for raw in get_redis().lrange(keys.tenant_queue("", "acme"), 0, -1)]
        assert [c.get("record") for c in commands] == [True, True]
        assert {c["recording_announcement_key"] for c in commands} == {fallback.audio_key("This call is recorded.")}
        assert get_redis().get(fallback.audio_key("This call is recorded.")) == fallback.render("This call is recorded.")
        assert Call.objects.filter(campaign_id=campaign.pk, record=True).count() == 2
    connection.set_schema_to_public()
