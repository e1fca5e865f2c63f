from celery import shared_task
from django_tenants.utils import get_tenant_model, schema_context

from . import services, webhooks


@shared_task(ignore_result=True, acks_late=True)
def deliver_webhook(delivery_id: int) -> None:
    """Runs in the tenant's schema (tenant-schemas-celery); reschedules itself until done."""
    retry_in = webhooks.deliver(delivery_id)
    if retry_in is not None:
        deliver_webhook.apply_async((delivery_id,), countdown=retry_in)


@shared_task(ignore_result=True)
def give_up_unplaced_calls() -> None:
    """Every few seconds (beat): calls whose originate never reached Redis end as not placed."""
    for schema in get_tenant_model().objects.exclude(schema_name="public").values_list("schema_name", flat=True):
        with schema_context(schema):
            services.give_up_unplaced_calls()
