from celery import shared_task

from . import webhooks


@shared_task(ignore_result=True, acks_late=True)
def deliver_webhook(delivery_id: int) -> None:
    """Runs in the tenant's schema (tenant-schemas-celery); reschedules itself until done."""
    retry_in = webhooks.deliver(delivery_id)
    if retry_in is not None:
        deliver_webhook.apply_async((delivery_id,), countdown=retry_in)
