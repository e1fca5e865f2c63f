"""Celery entry points of the dialer; thin: the work is in campaigns.dialer and campaigns.services."""
import logging

from celery import shared_task
from django.db import DatabaseError
from django_tenants.utils import schema_context

from tenants.selectors import tenant_schemas

from . import activity, dialer, selectors, services
from .models import Campaign, ContactList

log = logging.getLogger(__name__)


@shared_task
def count_contacts(contact_list_id: int) -> int:
    """Counted in the tenant's schema: tenant-schemas-celery passes the schema with the task."""
    return ContactList.objects.get(pk=contact_list_id).contacts.count()


@shared_task(ignore_result=True)
def dispatch_dialers() -> None:
    """Every second (beat), in each tenant with campaign activity (campaigns.activity): start due
    campaigns, make sure each running one has a dialing loop, and bring the contacts of paused or
    cancelled campaigns up to date with their calls that ended. A tenant found with nothing to do
    leaves the activity set; every DIALER_FULL_SCAN_S every tenant is visited, and those with
    something to do are marked again."""
    visit = activity.dispatch_round()
    listed = set(visit.schemas)
    schemas = tenant_schemas() if visit.full_scan else visit.schemas
    for schema in schemas:
        try:
            with schema_context(schema):
                busy = _dispatch_schema()
        except DatabaseError:  # one tenant's broken schema does not hold the others' campaigns up
            log.exception("dispatching the campaigns of schema %s failed", schema)
            continue
        if busy and schema not in listed:
            activity.mark(schema)
        elif not busy and schema in listed:
            activity.forget(schema, visit.t0)
    if visit.full_scan:
        for schema in listed.difference(schemas):  # tenants deleted since they were marked
            activity.forget(schema, visit.t0)


def _dispatch_schema() -> bool:
    """The current schema's campaigns dispatched; False when none is scheduled, running or settling."""
    services.campaigns_start_due()
    running = list(selectors.campaigns_running().values_list("pk", "cps"))
    for campaign_id, cps in running:
        for slot in range(dialer.slices_for(cps)):
            dial_campaign.delay(campaign_id, slot)
    settling = list(selectors.campaigns_settling().values_list("pk", flat=True))
    for campaign_id in settling:
        reconcile_campaign.delay(campaign_id)
    return bool(running or settling) or selectors.campaigns_scheduled().exists()


@shared_task(ignore_result=True)
def dial_campaign(campaign_id: int, slot: int = 0) -> None:
    """One slice of dialing loop `slot`; hands over to a fresh task while the campaign runs."""
    report = dialer.dial_slice(campaign_id, slot)
    if report.running and report.placed + report.finished:
        dial_campaign.delay(campaign_id, slot)


@shared_task(ignore_result=True)
def reconcile_campaign(campaign_id: int) -> None:
    """Contacts of a campaign that is not dialing take the outcomes of its calls that ended."""
    campaign = Campaign.objects.filter(pk=campaign_id).first()
    if campaign is not None:
        services.campaign_calls_reconcile(campaign)
