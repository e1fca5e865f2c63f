"""Turns gateway events (telephony/gateway/events.py, docs/gateway.md) into call records.

Events are applied idempotently and never move a call backwards: a repeated or late event changes
nothing, so the stream can be re-read after a crash (at-least-once delivery).
"""
from __future__ import annotations

import logging
import time
from datetime import UTC, datetime

from django.db import InterfaceError, OperationalError, transaction
from django.db.models import Q
from django_tenants.utils import schema_context
from voiceplatform.events import publish_tenant_events
from voiceplatform.logs import call_context

from telephony.gateway import events as gw
from telephony.metrics.services import metrics_fields, record_call_event
from telephony.models import Carrier
from tenants.models import Tenant

from . import webhooks
from .amd import MACHINE_ANSWERS
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


CARRIER_NAME_TTL_S = 30.0
_carrier_names: dict[int, tuple[str, float]] = {}  # carrier id -> (name, when read)


def _carrier(event: dict) -> dict:
    """carrier_id and carrier_name as they are now (read at most every CARRIER_NAME_TTL_S), to keep
    with the record."""
    try:
        carrier_id = int(event.get("carrier_id"))
    except (TypeError, ValueError):
        return {}
    name, read_at = _carrier_names.get(carrier_id, ("", 0.0))
    if time.monotonic() - read_at > CARRIER_NAME_TTL_S:
        name = Carrier.objects.filter(pk=carrier_id).values_list("name", flat=True).first() or ""
        _carrier_names[carrier_id] = (name, time.monotonic())
    return {"carrier_id": carrier_id, "carrier_name": name}


def _leg(call: Call, event: dict) -> CallLeg:
    leg, _ = CallLeg.objects.get_or_create(
        call=call, attempt=int(event.get("leg", 0)) + 1, defaults={**_carrier(event), "uri": event.get("uri", "")},
    )
    return leg


def _amd_fields(event: dict) -> dict:
    """answered_by, amd_ms and amd_evidence of an ``amd`` or final event (empty when it has none)."""
    if not event.get("answered_by"):
        return {}
    return {"answered_by": str(event["answered_by"])[:32], "amd_ms": _ms(event.get("amd_ms")),
            "amd_evidence": event.get("amd_evidence")}


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
        # recorded after the final event (a recorder restarted): its facts, not its status
        if calls.filter(answered_at__isnull=True).update(answered_at=at, setup_ms=_ms(event.get("setup_ms"))):
            _mark_abandoned(calls)
    elif kind == gw.STREAM_STARTED:
        calls.filter(ai_connect_ms__isnull=True).update(ai_connect_ms=_ms(event.get("ai_connect_ms")))
    elif kind == gw.AMD and _amd_fields(event):
        calls.filter(answered_by="").update(**_amd_fields(event))
    elif kind in gw.FINAL_TYPES:
        outcome = event.get("outcome") or (gw.OUTCOME_ANSWERED if kind == gw.COMPLETED else "failed")
        calls.filter(NOT_FINAL).update(
            status=STATUS_FOR_OUTCOME.get(outcome, Call.Status.FAILED), outcome=outcome,
            reason=(event.get("reason") or "")[:255], sip_code=event.get("sip_code"),
            hangup_by=event.get("hangup_by", ""), ended_at=at, duration_s=event.get("duration"),
            **{name: event[name] for name in QUALITY_FIELDS if event.get(name) is not None},
        )
        CallLeg.objects.filter(call=call, ended_at__isnull=True).update(ended_at=at)
        if _amd_fields(event):
            calls.filter(answered_by="").update(**_amd_fields(event))
        _mark_abandoned(calls)


def _mark_abandoned(calls) -> None:
    """An answered, ended call whose agent never came (in time) was abandoned; a machine answer is
    not: no person waited for the agent."""
    calls.filter(status__in=Call.FINAL_STATUSES, answered_at__isnull=False).exclude(stream_url="").exclude(
        answered_by__in=MACHINE_ANSWERS
    ).filter(Q(ai_connect_ms__isnull=True) | Q(ai_connect_ms__gt=Call.ABANDON_AFTER_MS)).update(abandoned=True)


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
    """Record one event (raises if it could not be recorded)."""
    if not record_events([(event, tenant_schema)])[0]:
        raise RuntimeError(f"event {event.get('type')} of call {event.get('call_id')} not recorded (see the log)")


def record_events(batch: list[tuple[dict, str]]) -> list[bool]:
    """Record events read together from the stream, in order: each in its own transaction, each
    tenant's in one visit to its schema, their dashboard notices published together at the end.
    Returns, per event, whether it is done with (recorded, or dropped as unknown); an event that
    failed is logged and left False, to be read again. Raises if the database is unreachable."""
    done = [False] * len(batch)
    notices: list[tuple[str, dict]] = []
    by_tenant: dict[str, list[int]] = {}
    for index, (_, tenant_schema) in enumerate(batch):
        by_tenant.setdefault(tenant_schema, []).append(index)  # a call's events keep their order
    known = set(Tenant.objects.filter(schema_name__in=list(by_tenant)).values_list("schema_name", flat=True))
    for tenant_schema, indexes in by_tenant.items():
        if tenant_schema not in known:
            for index in indexes:
                log.warning("event for unknown tenant %r dropped: %s", tenant_schema, batch[index][0])
                done[index] = True
            continue
        with schema_context(tenant_schema):
            for index in indexes:
                event = batch[index][0]
                with call_context(event.get("call_id")):
                    try:
                        notice = _record(event, tenant_schema)
                    except (OperationalError, InterfaceError):
                        raise  # the database is gone: nothing of this batch is acknowledged (read again)
                    except Exception:
                        log.exception("%s event not recorded", event.get("type"))
                        continue
                done[index] = True
                if notice is not None:
                    notices.append((tenant_schema, notice))
    try:
        publish_tenant_events(notices)
    except Exception:  # noqa: BLE001 - dashboards miss a beat; the records are written
        log.exception("dashboard notices not published")
    return done


def _record(event: dict, tenant_schema: str) -> dict | None:
    """Apply one event in the current (tenant) schema; the dashboard notice to publish, if any."""
    with transaction.atomic():
        call = _call_for(event)
        if call is None:
            log.warning("event for unknown call %s in %s dropped", event.get("call_id"), tenant_schema)
            return None
        _apply(call, event)
        call.refresh_from_db()
        log.debug("%s recorded: %s", event["type"], call.status)
        webhooks.enqueue(call, event["type"])
    record_call_event(tenant_schema, event, metrics_fields(call))
    return {"type": f"call.{event['type']}", "call": call.sid, "status": call.status, "outcome": call.outcome,
            "reason": call.reason}
