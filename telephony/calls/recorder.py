"""Turns gateway events (telephony/gateway/events.py, docs/gateway.md) into call records.

Events are applied idempotently and never move a call backwards: a repeated or late event changes
nothing, so the stream can be re-read after a crash (at-least-once delivery).
"""
from __future__ import annotations

import logging
from datetime import UTC, datetime

from django.db import transaction
from django.db.models import Q
from django_tenants.utils import schema_context
from voiceplatform.events import publish_tenant_event
from voiceplatform.logs import call_context

from telephony.gateway import events as gw
from telephony.metrics.services import metrics_fields, record_call_event
from telephony.models import Carrier
from tenants.models import Tenant

from . import webhooks
from .models import Call, CallLeg

log = logging.getLogger(__name__)

STATUS_FOR_OUTCOME = {
    gw.OUTCOME_ANSWERED: Call.Status.COMPLETED,
    gw.OUTCOME_BUSY: Call.Status.BUSY,
    gw.OUTCOME_NO_ANSWER: Call.Status.NO_ANSWER,
    gw.OUTCOME_CANCELLED: Call.Status.CANCELED,
}
NOT_FINAL = ~Q(status__in=Call.FINAL_STATUSES)
QUALITY_FIELDS = ("jitter_ms", "loss_percent", "rtt_ms", "mos", "bridge_in_p50_ms", "bridge_in_p99_ms",
                  "bridge_out_p50_ms", "bridge_out_p99_ms", "frames_to_agent", "frames_dropped", "dtmf_digits",
                  "ai_response_ms", "ai_response_turns")


def _at(event: dict) -> datetime:
    return datetime.fromtimestamp(float(event["ts"]), tz=UTC)


def _carrier(event: dict) -> dict:
    """carrier_id and carrier_name as they are now, to keep with the record."""
    try:
        carrier_id = int(event.get("carrier_id"))
    except (TypeError, ValueError):
        return {}
    name = Carrier.objects.filter(pk=carrier_id).values_list("name", flat=True).first()
    return {"carrier_id": carrier_id, "carrier_name": name or ""}


def _leg(call: Call, event: dict) -> CallLeg:
    leg, _ = CallLeg.objects.get_or_create(
        call=call, attempt=int(event.get("leg", 0)) + 1, defaults={**_carrier(event), "uri": event.get("uri", "")},
    )
    return leg


def _ms(value) -> int | None:
    return None if value is None else max(0, round(float(value)))


def _apply(call: Call, event: dict) -> None:
    kind, at = event["type"], _at(event)
    calls = Call.objects.filter(pk=call.pk)
    if kind == gw.INITIATED:
        calls.filter(status=Call.Status.QUEUED).update(
            status=Call.Status.INITIATED, started_at=at, gateway_id=event.get("gateway_id", "")
        )
    elif kind == gw.LEG_STARTED:
        CallLeg.objects.filter(pk=_leg(call, event).pk, started_at__isnull=True).update(started_at=at)
        calls.filter(carrier_id__isnull=True).update(**_carrier(event))
    elif kind == gw.RINGING:
        CallLeg.objects.filter(pk=_leg(call, event).pk, ringing_at__isnull=True).update(ringing_at=at)
        calls.filter(status__in=[Call.Status.QUEUED, Call.Status.INITIATED]).update(
            status=Call.Status.RINGING, ringing_at=at, post_dial_delay_ms=_ms(event.get("pdd_ms"))
        )
    elif kind == gw.LEG_FAILED:
        CallLeg.objects.filter(pk=_leg(call, event).pk).update(
            sip_code=event.get("sip_code"), reason=event.get("reason", "")[:255],
            failed_over=bool(event.get("failover")), ended_at=at,
        )
    elif kind == gw.ANSWERED:
        CallLeg.objects.filter(pk=_leg(call, event).pk).update(answered_at=at, sip_code=200)
        calls.filter(NOT_FINAL).update(
            status=Call.Status.IN_PROGRESS, answered_at=at, setup_ms=_ms(event.get("setup_ms")), **_carrier(event)
        )
    elif kind == gw.STREAM_STARTED:
        calls.filter(ai_connect_ms__isnull=True).update(ai_connect_ms=_ms(event.get("ai_connect_ms")))
    elif kind in gw.FINAL_TYPES:
        outcome = event.get("outcome") or (gw.OUTCOME_ANSWERED if kind == gw.COMPLETED else "failed")
        calls.filter(NOT_FINAL).update(
            status=STATUS_FOR_OUTCOME.get(outcome, Call.Status.FAILED), outcome=outcome,
            reason=(event.get("reason") or "")[:255], sip_code=event.get("sip_code"),
            hangup_by=event.get("hangup_by", ""), ended_at=at, duration_s=event.get("duration"),
            **{name: event[name] for name in QUALITY_FIELDS if event.get(name) is not None},
        )
        CallLeg.objects.filter(call=call, ended_at__isnull=True).update(ended_at=at)
        calls.filter(answered_at__isnull=False).exclude(stream_url="").filter(
            Q(ai_connect_ms__isnull=True) | Q(ai_connect_ms__gt=Call.ABANDON_AFTER_MS)
        ).update(abandoned=True)


def _call_for(event: dict) -> Call | None:
    if event.get("direction") == gw.DIRECTION_INBOUND and event["type"] == gw.INITIATED:
        call, _ = Call.objects.get_or_create(
            sid=event["call_id"],
            defaults={"direction": "inbound", "from_number": event.get("from", ""), "to_number": event.get("to", ""),
                      "stream_url": event.get("stream_url", "")},
        )
        return call
    return Call.objects.filter(sid=event["call_id"]).first()


def record_event(event: dict, tenant_schema: str) -> None:
    with call_context(event.get("call_id")):
        _record(event, tenant_schema)


def _record(event: dict, tenant_schema: str) -> None:
    if not tenant_schema or not Tenant.objects.filter(schema_name=tenant_schema).exists():
        log.warning("event for unknown tenant %r dropped: %s", tenant_schema, event)
        return
    with schema_context(tenant_schema), transaction.atomic():
        call = _call_for(event)
        if call is None:
            log.warning("event for unknown call %s in %s dropped", event.get("call_id"), tenant_schema)
            return
        _apply(call, event)
        call.refresh_from_db()
        log.debug("%s recorded: %s", event["type"], call.status)
        webhooks.enqueue(call, event["type"])
    record_call_event(tenant_schema, event, metrics_fields(call))
    publish_tenant_event(tenant_schema, {"type": f"call.{event['type']}", "call": call.sid, "status": call.status,
                                         "outcome": call.outcome, "reason": call.reason})
