"""Status callbacks: a signed HTTP request (POST, or GET with the parameters in the query, as the
call's status_callback_method says) to the call's status_callback (or else the tenant's, set in the
console's webhook settings) at the events it asked for
(initiated, ringing, answered, completed; Twilio's StatusCallbackEvent), and ``amd`` (the
answering-machine detection result, AnsweredBy) to the call's amd_status_callback (Twilio's
AsyncAmdStatusCallback) or else that status callback; ``rec-completed`` / ``rec-absent`` to its
recording status callback (telephony.calls.recording_callbacks). Delivered by Celery on their own queue, retried
with backoff, so a slow or failing
receiver never slows dialing. Every attempt is logged on a WebhookDelivery row.

Signatures, both with the tenant's account auth token (tenants/auth_token.py):
- X-Signature: hex HMAC-SHA256 of "<X-Signature-Timestamp>.<raw body>";
- X-Twilio-Signature: Twilio's scheme (base64 HMAC-SHA1 of the URL followed by each POST parameter
  name and value, sorted by name; for GET the URL with its query), so Twilio's
  RequestValidator(auth_token) accepts our callbacks.
Parameters are Twilio's (Direction outbound-api, Timestamp in RFC 2822, ApiVersion, CallbackSource,
SequenceNumber) plus the platform's (Outcome, Reason, SipResponseCode, SetupMs, …).
"""
from __future__ import annotations

import hashlib
import hmac
import json
import logging
import time
import urllib.parse

from django.conf import settings
from django.db import connection, transaction
from django.db.models import F
from django.utils import timezone

from core import egress
from core.logs import call_context
from tenants import auth_token
from tenants.models import Tenant
from tenants.selectors import current_tenant

from . import outbound, stream_access, twilio_values
from .models import CALLBACK_EVENTS, Call, WebhookDelivery

# The callback event of each gateway event (CALLBACK_EVENTS, which the call chooses from, and amd).
EVENT_OF = {"initiated": "initiated", "ringing": "ringing", "answered": "answered",
            "completed": "completed", "failed": "completed", "amd": "amd"}
RECORDING_EVENT_PREFIX = "rec-"  # RecordingStatusCallback events (telephony.calls.recording_callbacks)
MAX_ATTEMPTS = 6
TIMEOUT_S = 5.0

log = logging.getLogger(__name__)


def backoff_seconds(attempt: int) -> int:
    return min(2 ** attempt, 300)


def body_signature(secret: str, timestamp: str, body: bytes) -> str:
    return hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()


def sequence_number(call: Call, event: str) -> int | None:
    """Twilio's SequenceNumber: the place of this event among the call's status callbacks, from 0."""
    if event not in CALLBACK_EVENTS:
        return None
    return sum(1 for asked in call.status_callback_events if CALLBACK_EVENTS.index(asked) < CALLBACK_EVENTS.index(event))


def payload_for(call: Call, event: str, account_sid: str) -> dict[str, str]:
    fields = {
        "AccountSid": account_sid, "CallSid": call.sid, "CallStatus": call.status, "CallbackEvent": event,
        "From": call.from_number, "To": call.to_number, "Direction": twilio_values.direction(call.direction),
        "ApiVersion": twilio_values.API_VERSION, "CallbackSource": "call-progress-events",
        "SequenceNumber": sequence_number(call, event),
        "Timestamp": twilio_values.rfc2822(timezone.now()), "Outcome": call.outcome, "Reason": call.reason,
        "SipResponseCode": call.sip_code, "CallDuration": int(call.duration_s) if call.duration_s else None,
        "SetupMs": call.setup_ms, "PostDialDelayMs": call.post_dial_delay_ms,
        # answering-machine detection (Twilio's names)
        "AnsweredBy": call.answered_by, "MachineDetectionDuration": call.amd_ms,
    }
    if call.agent_connects and event != "completed":
        fields["StreamConnectUrl"] = stream_access.agent_connect_url(
            settings.PUBLIC_BASE_URL, connection.schema_name, call.sid)
    return {key: str(value) for key, value in fields.items() if value not in (None, "")}


def enqueue(call: Call, gateway_event: str) -> None:
    """Record and queue the callback for this event, at most once per call and event."""
    callback = callback_for(call, gateway_event, current_tenant())
    if callback is not None:
        enqueue_all([(call.pk, callback)])


def callback_for(call: Call, gateway_event: str, tenant: Tenant) -> tuple[str, str, dict] | None:
    """(callback event, url, payload) of the call as it is now, if it has a callback for this event."""
    event = EVENT_OF.get(gateway_event)
    status_callback = call.status_callback or tenant.status_callback
    url = (call.amd_status_callback or status_callback) if event == "amd" else status_callback
    if not url or event is None or (event != "amd" and event not in call.status_callback_events):
        return None
    return event, url, payload_for(call, event, tenant.account_sid)


def enqueue_all(callbacks: list[tuple[int, tuple[str, str, dict]]]) -> None:
    """Record (call id, callback_for(…)) deliveries in one statement, and queue each new one when the
    transaction commits: at most one per call and event (the first; an event read twice adds none)."""
    if not callbacks:
        return
    now = timezone.now()
    columns = [[call_id for call_id, _ in callbacks], [event for _, (event, _, _) in callbacks],
               [url for _, (_, url, _) in callbacks], [json.dumps(payload) for _, (_, _, payload) in callbacks]]
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {WebhookDelivery._meta.db_table} (call_id, event, url, payload, attempts, error, created_at) "
            "SELECT call_id, event, url, payload::jsonb, 0, '', %s "
            "FROM unnest(%s::bigint[], %s::text[], %s::text[], %s::text[]) AS v(call_id, event, url, payload) "
            "ON CONFLICT (call_id, event) DO NOTHING RETURNING id", [now, *columns])
        created = [delivery_id for (delivery_id,) in cursor.fetchall()]
    from .tasks import deliver_webhook

    transaction.on_commit(lambda: [deliver_webhook.delay(delivery_id) for delivery_id in created])


def redeliver(delivery_id: int) -> None:
    """Send a callback again (a person asked for it): a fresh round of attempts, queued after commit."""
    WebhookDelivery.objects.filter(pk=delivery_id).update(attempts=0, delivered_at=None, gave_up_at=None,
                                                          status_code=None, error="")
    from .tasks import deliver_webhook

    transaction.on_commit(lambda: deliver_webhook.delay(delivery_id))


def deliver(delivery_id: int) -> int | None:
    """One attempt; returns the seconds until the next one, or None when done (delivered or given up)."""
    delivery = WebhookDelivery.objects.select_related("call").get(pk=delivery_id)
    if delivery.delivered_at or delivery.gave_up_at:
        return None
    with call_context(delivery.call.sid):
        return _attempt(delivery)


def callback_method(delivery: WebhookDelivery) -> str:
    if delivery.event == "amd":
        return "POST"
    if delivery.event.startswith(RECORDING_EVENT_PREFIX):
        return delivery.call.recording_status_callback["method"]
    return delivery.call.status_callback_method


def _attempt(delivery: WebhookDelivery) -> int | None:
    WebhookDelivery.objects.filter(pk=delivery.pk).update(attempts=F("attempts") + 1)
    attempt = delivery.attempts + 1
    encoded = urllib.parse.urlencode(delivery.payload)
    timestamp = str(int(time.time()))
    secret = auth_token.current(current_tenant())
    method = callback_method(delivery)
    if method == "GET":
        # As Twilio: the parameters go in the query, and the signature covers the whole URL.
        url = delivery.url + ("&" if "?" in delivery.url else "?") + encoded
        body, signed_params = None, {}
    else:
        url, body, signed_params = delivery.url, encoded.encode(), delivery.payload
    headers = {
        "User-Agent": "voiceplatform-webhooks/1",
        "X-Signature-Timestamp": timestamp,
        "X-Signature": body_signature(secret, timestamp, body if body is not None else encoded.encode()),
        "X-Twilio-Signature": twilio_values.signature(secret, url, signed_params),
    }
    if body is not None:
        headers["Content-Type"] = "application/x-www-form-urlencoded"
    status_code, error, refused = None, "", False
    try:
        # Redirects are not followed: the signature is for this URL, and a body is not re-posted.
        response = outbound.request(url, method=method, body=body, headers=headers, timeout=TIMEOUT_S,
                                    max_bytes=0, max_redirects=0)
        status_code = response.status
        if not 200 <= status_code < 300:
            error = f"HTTP {status_code}"
    except egress.EgressRefused as exc:
        error, refused = f"refused: {exc}"[:255], True  # the target is never contacted, so never retried
    except egress.EgressFailed as exc:
        error = str(exc)[:255]
    now = timezone.now()
    if status_code is not None and 200 <= status_code < 300:
        WebhookDelivery.objects.filter(pk=delivery.pk).update(status_code=status_code, error="", delivered_at=now)
        log.info("%s callback delivered to %s (HTTP %s, attempt %d)", delivery.event, delivery.url, status_code, attempt)
        return None
    gave_up = refused or attempt >= MAX_ATTEMPTS
    WebhookDelivery.objects.filter(pk=delivery.pk).update(
        status_code=status_code, error=error, gave_up_at=now if gave_up else None
    )
    retry_in = None if gave_up else backoff_seconds(attempt)
    log.warning("%s callback to %s failed (attempt %d): %s; %s", delivery.event, delivery.url, attempt, error,
                "gave up" if gave_up else f"retry in {retry_in} s")
    return retry_in
