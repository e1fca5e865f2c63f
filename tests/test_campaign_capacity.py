"""How many calls Acme's campaign may place now under the caps its calls meet (campaigns.capacity):
the free slots of the carriers it can use and of the tenant, as the gateways lease them in Redis,
less the campaign's own calls that are in flight but hold no slot yet."""
import pytest
from django_tenants.utils import schema_context

from campaigns import selectors
from campaigns.capacity import CapRoom, cap_room
from campaigns.models import Campaign, ContactList
from core import keys
from core.redis_client import get_redis
from telephony.calls.models import Call
from telephony.leases import ConcurrencyLimiter, acquire_all
from telephony.models import Carrier, Number
from tenants.models import Tenant

pytestmark = pytest.mark.django_db
REGION = "zz-caps"  # Acme's caller ID is in a region of its own: only these two trunks serve it


@pytest.fixture
def redis():
    """Redis, and the lease keys a test used (deleted afterwards)."""
    client = get_redis()
    client.used = []
    yield client
    if client.used:
        client.delete(*client.used)


def test_the_room_counts_every_lease_and_the_campaigns_calls_not_leased_yet(tenant_a, redis):
    """Acme's two trunks take 4 and 2 calls at once (3 and 2 a second), Acme itself 5. Another
    tenant holds a slot on the first trunk, one of Acme's API calls a tenant slot; 2 of the campaign's
    calls are up on the second trunk and 1 is still queued for the gateways: the carriers have room
    for 6 - 3 - 1 = 2 more calls, the tenant for 5 - 3 - 1 = 1."""
    east = Carrier.objects.create(name="East", host="127.0.0.1", region=REGION, max_concurrent=4, max_cps=3)
    west = Carrier.objects.create(name="West", host="127.0.0.1", region=REGION, max_concurrent=2, max_cps=2)
    Carrier.objects.create(name="Elsewhere", host="127.0.0.1", region="zz-other", max_concurrent=1, max_cps=1)
    acme = Tenant.objects.get(schema_name="acme")
    Number.objects.create(e164="+14155550177", tenant=acme, region=REGION)
    acme.max_concurrent_calls = 5
    tenant_slots = ConcurrencyLimiter(redis, keys.tenant_calls_key("acme"), 5)
    west_slots = ConcurrencyLimiter(redis, keys.carrier_calls_key(west.pk), 2)
    redis.used += [keys.tenant_calls_key("acme"), keys.carrier_calls_key(east.pk), keys.carrier_calls_key(west.pk)]
    with schema_context("acme"):
        campaign = Campaign.objects.create(name="Caps", contact_list=ContactList.objects.create(name="Caps"),
                                           caller_ids=["+14155550177"], stream_url="")
        assert {carrier.name for carrier in selectors.campaign_carriers(campaign)} == {"East", "West"}
        ConcurrencyLimiter(redis, keys.carrier_calls_key(east.pk), 4).acquire("CA-globex")
        tenant_slots.acquire("CA-api")
        up = [Call.objects.create(to_number="+14155550100", campaign_id=campaign.pk, status=Call.Status.IN_PROGRESS)
              for _ in range(2)]
        for call in up:
            assert acquire_all([west_slots, tenant_slots], call.sid)
        Call.objects.create(to_number="+14155550101", campaign_id=campaign.pk)  # queued
        Call.objects.create(to_number="+14155550102", campaign_id=campaign.pk, status=Call.Status.COMPLETED)

        carriers = selectors.campaign_carriers(campaign)
        assert cap_room(redis, campaign, acme, carriers) == CapRoom(calls=1, cps=5.0)
        acme.max_concurrent_calls = 0  # no tenant cap: the carriers' room is what is left
        assert cap_room(redis, campaign, acme, carriers) == CapRoom(calls=2, cps=5.0)

        west_slots.release(up[0].sid)  # ended at the gateway, not recorded yet: still counted as taking a slot
        assert cap_room(redis, campaign, acme, carriers).calls == 2
