"""Acme's spring campaign hands interested leads to its sales desk: the campaign keeps the desk's
numbers (E.164, or a SIP URI), every call it places carries them, and an agent's transfer with no
number goes to the first. Numbers that cannot be dialed are refused by field."""
import pytest
from django_tenants.utils import schema_context

from campaigns.dialer import campaign_call_request
from campaigns.models import Campaign
from tests.test_campaign_api import campaign_body, create, numbers, spring_leads  # noqa: F401 - fixtures

pytestmark = pytest.mark.django_db
DESK = "+14155550177"


def test_a_campaign_keeps_its_transfer_numbers_and_its_calls_carry_them(tenant_a, numbers, spring_leads):  # noqa: F811
    response = create(tenant_a.api_key, campaign_body(spring_leads, transfer_numbers=[DESK, "sip:desk@127.0.0.1:5070"]))
    assert response.status_code == 201, response.content
    assert response.json()["transfer_numbers"] == [DESK, "sip:desk@127.0.0.1:5070"]
    with schema_context(tenant_a.tenant):
        campaign = Campaign.objects.get(pk=response.json()["id"])
        contact = spring_leads.contacts.first()
        request = campaign_call_request(campaign, contact.phone, campaign.caller_ids[0], contact=contact,
                                        campaign_contact_id=None)
    assert request.transfer_numbers == [DESK, "sip:desk@127.0.0.1:5070"]


@pytest.mark.parametrize(("numbers_given", "words"), [
    (["12"], "12:"),
    (["sip:desk@10.0.0.5"], "sip:desk@10.0.0.5:"),  # a private address the platform may not reach
    (["tel:+14155550177"], "tel:+14155550177:"),
    ("+14155550177", "must be a list"),
])
def test_numbers_that_cannot_be_dialed_are_refused(tenant_a, numbers, spring_leads, numbers_given, words):  # noqa: F811
    response = create(tenant_a.api_key, campaign_body(spring_leads, transfer_numbers=numbers_given))
    assert response.status_code == 400, response.content
    assert any(words in message for message in response.json()["transfer_numbers"]), response.json()
