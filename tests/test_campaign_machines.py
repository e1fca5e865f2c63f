"""Acme's renewal campaign asks for answering-machine detection and leaves a voicemail: its calls carry
the detection settings and the spoken message; an answer by a machine (or a fax) is an outcome of its
own, called again per the campaign's machine retry policy, and done, not failed, once the retries
are used up."""
import datetime as dt
import json

import pytest
from django.core.exceptions import ValidationError
from django.db import connection
from django.utils import timezone
from django_tenants.utils import schema_context

from campaigns import dialer, services
from campaigns.models import Campaign, CampaignContact, Contact, ContactList
from core import keys
from core.redis_client import get_redis
from telephony.calls.models import Call
from telephony.calls.services import CallPlacer
from telephony.models import Carrier, Number
from tenants.models import Tenant

pytestmark = pytest.mark.django_db
CALLER_ID = "+14155559000"
VOICEMAIL = "Hi, this is Acme about your renewal. Please call us back at your convenience."


@pytest.fixture
def campaign(tenant_a):
    Carrier.objects.create(name="Primary", host="127.0.0.1", port=5099, priority=1)
    Number.objects.create(e164=CALLER_ID, tenant=Tenant.objects.get(schema_name="acme"))
    get_redis().delete(keys.tenant_queue("", "acme"))
    with schema_context(tenant_a.tenant):
        people = ContactList.objects.create(name="Acme renewals")
        for name, phone in (("Ada", "+14155550100"), ("Bob", "+14155550101"), ("Cy", "+14155550102")):
            Contact.objects.create(contact_list=people, phone=phone, name=name, time_zone="UTC")
        campaign = Campaign.objects.create(
            name="Renewals", contact_list=people, caller_ids=[CALLER_ID], stream_url="wss://agent.example",
            machine_detection="DetectMessageEnd", on_machine="voicemail", voicemail_message=VOICEMAIL,
            retry_machine_max_attempts=2, retry_machine_delay_s=7200,
        )
        services.campaign_start(campaign.pk)
        yield campaign
    connection.set_schema_to_public()


def contact(campaign, name) -> CampaignContact:
    return CampaignContact.objects.get(campaign=campaign, contact__name=name)


def answered(campaign, row: CampaignContact, answered_by: str) -> Call:
    return Call.objects.create(
        from_number=CALLER_ID, to_number=row.contact.phone, campaign_id=campaign.pk, campaign_contact_id=row.pk,
        status=Call.Status.COMPLETED, outcome="answered", answered_by=answered_by, stream_url="wss://agent.example")


def test_the_campaigns_calls_carry_detection_and_the_voicemail_message(campaign, django_capture_on_commit_callbacks):
    rows = list(CampaignContact.objects.filter(campaign=campaign).select_related("contact"))
    with django_capture_on_commit_callbacks(execute=True):
        assert dialer._place(campaign, rows, CallPlacer(Tenant.objects.get(schema_name="acme")), 0) == 3
    commands = [json.loads(raw) for raw in get_redis().lrange(keys.tenant_queue("", "acme"), 0, -1)]
    assert len(commands) == 3
    for command in commands:
        detection = command["machine_detection"]
        assert (detection["mode"], detection["on_machine"], detection["async"]) == ("DetectMessageEnd", "voicemail", False)
        assert len(get_redis().get(detection["voicemail_key"])) > 8000


def test_machines_and_faxes_are_retried_by_their_own_policy_then_done(campaign):
    now = timezone.now()
    CampaignContact.objects.filter(campaign=campaign).update(state=CampaignContact.State.DIALING,
                                                             updated_at=now - dt.timedelta(seconds=5))
    ada, bob, cy = (contact(campaign, name) for name in ("Ada", "Bob", "Cy"))
    answered(campaign, ada, "machine_end_beep")
    answered(campaign, bob, "human")
    answered(campaign, cy, "fax")
    assert services.campaign_calls_reconcile(campaign, now).outcomes == 3

    ada, bob, cy = (contact(campaign, name) for name in ("Ada", "Bob", "Cy"))
    assert (ada.state, ada.last_outcome, ada.next_attempt_at) == ("pending", "machine", now + dt.timedelta(hours=2))
    assert (bob.state, bob.last_outcome) == ("done", "answered")
    assert (cy.state, cy.last_outcome) == ("pending", "machine")

    # Ada's second call reaches her voicemail again: her attempts are used up, she is done (not failed)
    later = now + dt.timedelta(hours=2, seconds=5)
    CampaignContact.objects.filter(pk=ada.pk).update(state=CampaignContact.State.DIALING,
                                                     updated_at=timezone.now())
    answered(campaign, ada, "machine_end_silence")
    assert services.campaign_calls_reconcile(campaign, later).outcomes == 1
    ada = contact(campaign, "Ada")
    assert (ada.state, ada.attempts, ada.last_outcome, ada.next_attempt_at) == ("done", 2, "machine", None)


def test_voicemail_without_a_message_is_refused(campaign):
    with pytest.raises(ValidationError) as refused:
        services.campaign_update(campaign, voicemail_message="  ")
    assert "voicemail_message" in refused.value.message_dict
