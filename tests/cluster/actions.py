"""What an operator and a tenant do to the test cluster, run in a process of its own against the
cluster's PostgreSQL and Redis: `python -m tests.cluster.actions NAME JSON` prints a JSON answer.
(The test process's own Django is bound to the run's embedded servers.)"""
from __future__ import annotations

import datetime as dt
import json
import os
import sys
from collections import Counter

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "voiceplatform.settings")

import django  # noqa: E402

django.setup()

from django.core.management import call_command  # noqa: E402
from django_tenants.utils import schema_context  # noqa: E402

CALLER_ID = "+14155550123"
INBOUND_NUMBER = "+14155550199"
EU_NUMBER = "+14155550198"  # answered in the EU


def prepare(carriers: list[dict], inbound_stream_url: str = "") -> dict:
    """The cluster's database once, a tenant, its carriers (one per region) and numbers."""
    from telephony.models import Carrier, Number
    from telephony.services import publish_inventory
    from tenants.models import Tenant
    from tenants.services import create_tenant, ensure_public_tenant

    call_command("migrate_schemas", interactive=False, verbosity=0)
    ensure_public_tenant()
    if not Tenant.objects.filter(schema_name="acme").exists():
        create_tenant("acme", "acme.localhost", name="Acme")
    acme = Tenant.objects.get(schema_name="acme")
    rows = [Carrier.objects.create(name=c["name"], host=c.get("host", "127.0.0.1"), port=c["port"], region=c.get("region", ""),
                                   max_cps=c.get("max_cps", 100), max_concurrent=c.get("max_concurrent", 100))
            for c in carriers]
    Number.objects.get_or_create(e164=CALLER_ID, defaults={"tenant": acme})
    Number.objects.get_or_create(e164=INBOUND_NUMBER, defaults={"tenant": acme,
                                                                "inbound_stream_url": inbound_stream_url})
    Number.objects.get_or_create(e164=EU_NUMBER, defaults={"tenant": acme, "region": "eu",
                                                           "inbound_stream_url": inbound_stream_url})
    publish_inventory()
    return {"carriers": [row.pk for row in rows]}


def contact_number(n: int) -> str:
    """The n-th contact's number, unique for n < 440,000 (+1 415 556-0000 onwards, then 557-…)."""
    return f"+1415{556 + n // 10_000}{n % 10_000:04d}"


def start_campaign(name: str, contacts: int, cps: int, max_concurrent: int, first: int = 1000,
                   stream_url: str = "") -> dict:
    from campaigns import services
    from campaigns.models import Campaign, Contact, ContactList

    with schema_context("acme"):
        contact_list = ContactList.objects.create(name=name)
        Contact.objects.bulk_create(
            Contact(contact_list=contact_list, phone=contact_number(first + i), name=f"Contact {i}", time_zone="UTC")
            for i in range(contacts))
        campaign = Campaign.objects.create(
            name=name, contact_list=contact_list, caller_ids=[CALLER_ID], stream_url=stream_url, cps=cps,
            max_concurrent=max_concurrent, ring_timeout=15, window_start=dt.time(0, 0),
            window_end=dt.time(23, 59, 59), weekdays=list(range(7)))
        services.campaign_start(campaign.pk)
    return {"campaign": campaign.pk}


def start_campaigns(copies: int, name: str, contacts: int, first: int, **settings) -> dict:
    """`copies` campaigns started together (bench/cluster.py), each with contacts of its own."""
    return {"campaigns": [start_campaign(f"{name} #{k}", contacts, first=first + k * contacts, **settings)["campaign"]
                          for k in range(copies)]}


def campaign_report(campaign: int) -> dict:
    from campaigns.models import Campaign, CampaignContact
    from telephony.calls.models import Call

    with schema_context("acme"):
        calls = list(Call.objects.filter(campaign_id=campaign))
        return {
            "state": Campaign.objects.get(pk=campaign).state,
            "calls": len(calls),
            "contacts_called": Counter(Counter(c.campaign_contact_id for c in calls).values()),
            "contacts": dict(Counter(CampaignContact.objects.filter(campaign_id=campaign)
                                     .values_list("state", flat=True))),
            "outcomes": dict(Counter(c.outcome for c in calls)),
            "reasons": dict(Counter(c.reason for c in calls)),
            "durations": sorted(c.duration_s for c in calls if c.duration_s is not None),
            "non_final": sum(1 for c in calls if not c.is_final),
            "gateways": dict(Counter(c.gateway_id for c in calls)),
            "placements": sorted({(c.gateway_id, str(c.carrier_id)) for c in calls if c.gateway_id}),
        }


def campaign_pace(campaign: int) -> dict:
    """How fast a campaign's calls started and how they ended (bench/cluster.py)."""
    from campaigns.models import Campaign
    from telephony.calls.models import Call

    with schema_context("acme"):
        calls = list(Call.objects.filter(campaign_id=campaign))
        starts = sorted(c.started_at.timestamp() for c in calls if c.started_at)
        return {"state": Campaign.objects.get(pk=campaign).state, "calls": len(calls), "started": len(starts),
                "first_start": starts[0] if starts else None, "last_start": starts[-1] if starts else None,
                "outcomes": dict(Counter(c.outcome for c in calls)),
                "non_final": sum(1 for c in calls if not c.is_final)}


def inbound_report() -> dict:
    from telephony.calls.models import Call

    with schema_context("acme"):
        calls = list(Call.objects.filter(direction="inbound"))
        return {"calls": len(calls), "statuses": dict(Counter(c.status for c in calls)),
                "outcomes": dict(Counter(c.outcome for c in calls)),
                "gateways": dict(Counter(c.gateway_id for c in calls)),
                "to": dict(Counter(c.to_number for c in calls)),
                "gateways_by_number": {number: dict(Counter(c.gateway_id for c in calls if c.to_number == number))
                                       for number in {c.to_number for c in calls}},
                "agent_streams": sum(1 for c in calls if c.ai_connect_ms is not None)}


def live_gateways() -> dict:
    from core.redis_client import get_redis
    from telephony.gateway.client import pool_status

    return {"gateways": sorted(g["gateway_id"] for g in pool_status(get_redis()) if g["alive"])}


def record(events: list[dict]) -> dict:
    """Acme's events recorded as one recorder reads them (a recorder of the cluster's consumer group)."""
    from telephony.calls.recorder import record_events

    return {"done": record_events([(event, "acme") for event in events])}


def inbound_call(sid: str) -> dict:
    from telephony.calls.models import Call

    with schema_context("acme"):
        call = Call.objects.get(sid=sid)
        return {"status": call.status, "from": call.from_number, "to": call.to_number, "gateway": call.gateway_id,
                "started_at": call.started_at and call.started_at.timestamp(),
                "answered_at": call.answered_at and call.answered_at.timestamp(), "duration": call.duration_s}


if __name__ == "__main__":
    answer = globals()[sys.argv[1]](**json.loads(sys.argv[2] if len(sys.argv) > 2 else "{}"))
    print(json.dumps({k: ({str(a): b for a, b in v.items()} if isinstance(v, dict) else v)
                      for k, v in answer.items()}))
