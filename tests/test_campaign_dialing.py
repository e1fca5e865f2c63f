"""A business user's campaign, dialed for real: 200 contacts at 10 calls per second through the
gateway pool to a carrier (SIPp) that answers every call. One Celery worker is killed mid-campaign
and the campaign is paused and resumed; still every contact is called exactly once, and the
campaign completes with one answered call record per contact."""
import datetime as dt
import time
from collections import Counter

import pytest
from django.db import connection
from django_tenants.utils import schema_context

from campaigns import services
from campaigns.models import Campaign, CampaignContact, Contact, ContactList
from telephony.calls.models import Call
from telephony.models import Carrier, Number
from tenants.models import Tenant
from tests import stack
from tests.support import wait_until

pytestmark = pytest.mark.usefixtures("committed")
CALLER_ID = "+14155550123"
CONTACTS = 200


@pytest.fixture
def carrier(tmp_path):
    sipp, port = stack.sipp_carrier(tmp_path, "uas_answer_bye.xml", "-d", "300")
    row = Carrier.objects.create(name="Campaign trunk", host="127.0.0.1", port=port, max_cps=50, max_concurrent=50)
    number = Number.objects.create(e164=CALLER_ID, tenant=Tenant.objects.get(schema_name="acme"))
    yield row
    sipp.stop()
    number.delete()
    row.delete()


@pytest.fixture
def spring_campaign(tenant_a, carrier):
    with schema_context("acme"):
        contacts = ContactList.objects.create(name="Spring renewals")
        Contact.objects.bulk_create(
            Contact(contact_list=contacts, phone=f"+1415555{1000 + i:04d}", name=f"Contact {i}", time_zone="UTC")
            for i in range(CONTACTS)
        )
        campaign = Campaign.objects.create(
            name="Spring renewals", contact_list=contacts, caller_ids=[CALLER_ID],
            stream_url="", cps=10, max_concurrent=20, ring_timeout=15,
            window_start=dt.time(0, 0), window_end=dt.time(23, 59, 59), weekdays=list(range(7)),
        )
    yield campaign
    with schema_context("acme"):
        Call.objects.filter(campaign_id=campaign.pk).delete()
        campaign.delete()
        contacts.delete()
    connection.set_schema_to_public()


@pytest.fixture
def platform(tmp_path):
    processes = {
        "gateways": stack.gateway_pool(tmp_path, processes=3),
        "recorder": stack.recorder(tmp_path),
        "worker-1": stack.celery_worker(tmp_path, "worker-1", DIALER_UNPLACED_GRACE_S="3"),
        "worker-2": stack.celery_worker(tmp_path, "worker-2", DIALER_UNPLACED_GRACE_S="3"),
        "beat": stack.celery_beat(tmp_path),
    }
    yield processes
    for process in processes.values():
        process.stop()


def calls_placed(campaign) -> int:
    with schema_context("acme"):
        return Call.objects.filter(campaign_id=campaign.pk).count()


def test_a_campaign_calls_everyone_exactly_once_despite_a_dead_worker_and_a_pause(spring_campaign, platform):
    with schema_context("acme"):
        services.campaign_start(spring_campaign.pk)

    wait_until(lambda: calls_placed(spring_campaign) >= 30, 60, what="dialing to start")
    platform["worker-1"].kill()  # mid-campaign, without warning

    with schema_context("acme"):
        services.campaign_pause(spring_campaign.pk)
    time.sleep(1.5)  # a dialing slice in flight sees the pause within a second
    paused_at = calls_placed(spring_campaign)
    time.sleep(2.5)
    assert calls_placed(spring_campaign) == paused_at, "calls were placed while the campaign was paused"
    with schema_context("acme"):
        services.campaign_resume(spring_campaign.pk)

    def completed():
        with schema_context("acme"):
            return Campaign.objects.get(pk=spring_campaign.pk).state == Campaign.State.COMPLETED

    try:
        wait_until(completed, 120, interval=0.5, what="the campaign to complete")
    except AssertionError:
        raise AssertionError("\n".join(p.tail(1500) for p in platform.values())) from None

    with schema_context("acme"):
        calls = list(Call.objects.filter(campaign_id=spring_campaign.pk))
        per_contact = Counter(call.campaign_contact_id for call in calls)
        states = Counter(CampaignContact.objects.filter(campaign=spring_campaign).values_list("state", flat=True))
        assert len(per_contact) == CONTACTS and set(per_contact.values()) == {1}, "a contact called twice"
        assert Counter(call.outcome for call in calls) == {"answered": CONTACTS}
        assert states == {CampaignContact.State.DONE: CONTACTS}
