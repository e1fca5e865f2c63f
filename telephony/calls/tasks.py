from celery import shared_task
from django_tenants.utils import get_tenant_model, schema_context

from . import recordings, services, twiml_runner, webhooks

SPOOL_RETRY_S = 2
SPOOL_RETRIES = 30  # the media host writes the file when the call ends: a minute is ample


@shared_task(ignore_result=True, acks_late=True)
def deliver_webhook(delivery_id: int) -> None:
    """Runs in the tenant's schema (tenant-schemas-celery); reschedules itself until done."""
    retry_in = webhooks.deliver(delivery_id)
    if retry_in is not None:
        deliver_webhook.apply_async((delivery_id,), countdown=retry_in)


@shared_task(ignore_result=True, acks_late=True)
def store_recording(call_sid: str, file_name: str, duration_s: float, attempt: int = 0) -> None:
    """Runs in the tenant's schema: the recorded call's WAV into storage (recordings.store_recording)."""
    try:
        recordings.store_recording(call_sid, file_name, duration_s)
    except recordings.NotSpooledYet:
        if attempt < SPOOL_RETRIES:
            store_recording.apply_async((call_sid, file_name, duration_s, attempt + 1), countdown=SPOOL_RETRY_S)
        else:
            recordings.give_up(call_sid)


@shared_task(ignore_result=True)
def run_twiml_url(call_sid: str, url: str = "", method: str = "") -> None:
    """Runs in the tenant's schema: the answered call's TwiML Url, or the <Redirect> it reached."""
    twiml_runner.run_url(call_sid, url, method)


@shared_task(ignore_result=True)
def run_dial_action(transfer_sid: str) -> None:
    """Runs in the tenant's schema: an ended transfer's <Dial action>."""
    twiml_runner.run_dial_action(transfer_sid)


@shared_task(ignore_result=True)
def delete_expired_recordings() -> None:
    """Daily (beat): each tenant's recordings older than its retention are deleted."""
    for schema, days in get_tenant_model().objects.exclude(schema_name="public").values_list(
            "schema_name", "recording_retention_days"):
        with schema_context(schema):
            recordings.delete_expired(days)


@shared_task(ignore_result=True)
def give_up_unplaced_calls() -> None:
    """Every few seconds (beat): calls whose originate never reached Redis end as not placed."""
    for schema in get_tenant_model().objects.exclude(schema_name="public").values_list("schema_name", flat=True):
        with schema_context(schema):
            services.give_up_unplaced_calls()
