"""Celery entry points of the dialer; thin: the work is in campaigns.dialer and campaigns.services."""
from celery import shared_task
from django_tenants.utils import get_tenant_model, schema_context

from . import dialer, selectors, services
from .models import Campaign, ContactList


@shared_task
def count_contacts(contact_list_id: int) -> int:
    """Counted in the tenant's schema: tenant-schemas-celery passes the schema with the task."""
    return ContactList.objects.get(pk=contact_list_id).contacts.count()


@shared_task(ignore_result=True)
def dispatch_dialers() -> None:
    """Every second (beat): start due campaigns, make sure each running one has a dialing loop, and
    bring the contacts of paused or cancelled campaigns up to date with their calls that ended."""
    for schema in get_tenant_model().objects.exclude(schema_name="public").values_list("schema_name", flat=True):
        with schema_context(schema):
            services.campaigns_start_due()
            for campaign_id, cps in selectors.campaigns_running().values_list("pk", "cps"):
                for slot in range(dialer.slices_for(cps)):
                    dial_campaign.delay(campaign_id, slot)
            for campaign_id in selectors.campaigns_settling().values_list("pk", flat=True):
                reconcile_campaign.delay(campaign_id)


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
