"""Turns gateway events (telephony/gateway/events.py, docs/gateway.md) into call records.

Events are applied idempotently and never move a call backwards: a repeated or late event changes
nothing, so the stream can be re-read after a crash (at-least-once delivery).
"""
from __future__ import annotations

import json
import logging
import time
from datetime import UTC, datetime

import redis
from django.db import InterfaceError, OperationalError, connection, models, transaction
from django.utils import timezone
from django_tenants.utils import tenant_context

from core.logs import call_context
from telephony.gateway import events as gw
from telephony.metrics.services import metrics_fields, record_abandonment, record_call_events
from telephony.models import Carrier
from tenants.models import Tenant

from . import recording_callbacks, webhooks
from .amd import MACHINE_ANSWERS
from .models import Call, CallLeg, Transfer

log = logging.getLogger(__name__)

STATUS_FOR_OUTCOME = {
    gw.OUTCOME_ANSWERED: Call.Status.COMPLETED,
    gw.OUTCOME_BUSY: Call.Status.BUSY,
    gw.OUTCOME_NO_ANSWER: Call.Status.NO_ANSWER,
    gw.OUTCOME_CANCELLED: Call.Status.CANCELED,
}
QUALITY_FIELDS = ("jitter_ms", "loss_percent", "rtt_ms", "mos", "bridge_in_p50_ms", "bridge_in_p99_ms",
                  "bridge_out_p50_ms", "bridge_out_p99_ms", "frames_to_agent", "frames_dropped", "dtmf_digits",
                  "ai_response_ms", "ai_response_turns", "marks")


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


class _Batch:
    """One tenant's events read together, applied to its calls and legs in memory (each event as the
    single conditional UPDATE it stands for), then written back in a few statements."""

    def __init__(self, tenant, events: list[dict]):
        self.tenant, self.events = tenant, events
        self.calls: dict[str, Call] = {}
        self.legs: dict[int, dict[int, CallLeg]] = {}  # call pk -> attempt -> leg
        self.dirty_calls: dict[int, set[str]] = {}  # call pk -> fields changed
        self.dirty_legs: dict[tuple[int, int], CallLeg] = {}
        self.callbacks: list[tuple[int, tuple[str, str, dict]]] = []  # (call pk, (event, url, payload))
        self.recorded: list[tuple[dict, dict]] = []  # (event, metrics call fields as at the event)
        self.recordings: list[tuple[str, str, float]] = []  # (call sid, spooled file, duration) to store
        self.ended: list[int] = []  # pks of the calls that got their final event
        self.twiml_fetches: list[tuple[str, str, str]] = []  # (call sid, url, method): TwiML to fetch and run
        self.transfers_ended: list[str] = []  # sids of transfers that may have ended (their <Dial action>)

    def load(self) -> None:
        """The batch's calls, locked (in pk order: recorders sharing calls do not deadlock), and their legs.
        An inbound call's record is made by the first of its events read: recorders sharing the stream
        may read its answer or its end before its initiated, and every inbound event says who called whom."""
        sids = sorted({event["call_id"] for event in self.events})
        inbound: dict[str, dict] = {}
        for event in self.events:
            if event.get("direction") == gw.DIRECTION_INBOUND:
                inbound.setdefault(event["call_id"], event)
        self.calls = {call.sid: call for call in Call.objects.select_for_update().filter(sid__in=sids).order_by("pk")}
        missing = sorted(set(inbound) - set(self.calls))
        if missing:
            Call.objects.bulk_create([
                Call(sid=sid, direction="inbound", from_number=inbound[sid].get("from", ""),
                     to_number=inbound[sid].get("to", ""), stream_url=inbound[sid].get("stream_url", ""),
                     twiml_url=(inbound[sid].get("route") or {}).get("twiml_url"))
                for sid in missing], ignore_conflicts=True)
            self.calls.update({call.sid: call for call in
                               Call.objects.select_for_update().filter(sid__in=missing).order_by("pk")})
        for leg in CallLeg.objects.filter(call_id__in=[call.pk for call in self.calls.values()]):
            self.legs.setdefault(leg.call_id, {})[leg.attempt] = leg

    def apply(self, event: dict) -> None:
        if event.get("transfer_of"):  # a transfer's leg to a person: its Transfer record, not a call
            _apply_transfer_leg(event)
            if event["type"] in gw.FINAL_TYPES:
                self.transfers_ended.append(event["call_id"])
            return
        call = self.calls.get(event["call_id"])
        if call is None:
            log.warning("event for unknown call %s in %s dropped", event.get("call_id"), self.tenant.schema_name)
            return
        _apply(self, call, event)
        log.debug("%s recorded: %s", event["type"], call.status)
        callback = webhooks.callback_for(call, event["type"], self.tenant)
        if callback is not None:
            self.callbacks.append((call.pk, callback))
        self.recorded.append((event, metrics_fields(call)))

    def set(self, call: Call, **values) -> None:
        changed = self.dirty_calls.setdefault(call.pk, set())
        for name, value in values.items():
            setattr(call, name, value)
            changed.add(name)

    def leg(self, call: Call, event: dict) -> CallLeg:
        legs, attempt = self.legs.setdefault(call.pk, {}), int(event.get("leg", 0)) + 1
        leg = legs.get(attempt)
        if leg is None:
            leg = legs[attempt] = CallLeg(call_id=call.pk, attempt=attempt, uri=event.get("uri", ""), **_carrier(event))
        self.dirty_legs[call.pk, attempt] = leg
        return leg

    def write(self) -> None:
        rows: dict[frozenset, list[Call]] = {}
        calls = {call.pk: call for call in self.calls.values()}
        for pk, names in self.dirty_calls.items():
            if names:
                rows.setdefault(frozenset(names), []).append(calls[pk])
        for columns, changed in rows.items():
            _update(Call, sorted(columns), changed)
        if self.dirty_legs:
            _upsert_legs(list(self.dirty_legs.values()))
        if self.ended:  # a transfer to a list of numbers: those never dialed end with their call
            Transfer.objects.filter(call_id__in=self.ended, status=Call.Status.QUEUED).update(
                status=Call.Status.CANCELED, outcome=gw.OUTCOME_CANCELLED, reason="the call ended first",
                ended_at=timezone.now())
        webhooks.enqueue_all(self.callbacks)
        if self.recordings:
            from .tasks import store_recording

            transaction.on_commit(lambda: [store_recording.delay(*r) for r in self.recordings])
        if self.twiml_fetches:
            from .tasks import run_twiml_url

            transaction.on_commit(lambda: [run_twiml_url.delay(*f) for f in self.twiml_fetches])
        if self.transfers_ended:
            from .tasks import run_dial_action

            actions = list(Transfer.objects.filter(sid__in=self.transfers_ended, dial_action__isnull=False,
                                                   dial_action_at__isnull=True).values_list("sid", flat=True))
            transaction.on_commit(lambda: [run_dial_action.delay(sid) for sid in actions])


def _apply(batch: _Batch, call: Call, event: dict) -> None:
    """The event's change to the call and its legs; never moves a call backwards."""
    kind, at, set_ = event["type"], _at(event), batch.set
    if kind == gw.INITIATED:
        if call.status == Call.Status.QUEUED:
            set_(call, status=Call.Status.INITIATED)
        if call.started_at is None:  # also when read after the call's later events
            set_(call, started_at=at, gateway_id=event.get("gateway_id", ""))
            if call.direction == "inbound" and call.twiml_url:  # its number's voice URL: the call rings meanwhile
                batch.twiml_fetches.append((call.sid, "", ""))
    elif kind == gw.LEG_STARTED:
        leg = batch.leg(call, event)
        if leg.started_at is None:
            leg.started_at = at
        if call.carrier_id is None:
            set_(call, **_carrier(event))
    elif kind == gw.RINGING:
        leg = batch.leg(call, event)
        if leg.ringing_at is None:
            leg.ringing_at = at
        if call.status in (Call.Status.QUEUED, Call.Status.INITIATED):
            set_(call, status=Call.Status.RINGING, ringing_at=at, post_dial_delay_ms=_ms(event.get("pdd_ms")))
    elif kind == gw.LEG_FAILED:
        leg = batch.leg(call, event)
        leg.sip_code, leg.reason = event.get("sip_code"), event.get("reason", "")[:255]
        leg.failed_over, leg.ended_at = bool(event.get("failover")), at
    elif kind == gw.ANSWERED:
        leg = batch.leg(call, event)
        leg.answered_at, leg.sip_code = at, 200
        if not call.is_final:
            set_(call, status=Call.Status.IN_PROGRESS, answered_at=at, setup_ms=_ms(event.get("setup_ms")),
                 **_carrier(event))
            if call.twiml_url and call.direction != "inbound":  # Twilio's Url: fetched now that the call is answered
                batch.twiml_fetches.append((call.sid, "", ""))
        elif call.answered_at is None:  # read after the final event (a recorder restarted): its facts, not its status
            set_(call, answered_at=at, setup_ms=_ms(event.get("setup_ms")))
            _mark_abandoned(batch, call)
    elif kind == gw.STREAM_STARTED:
        if call.ai_connect_ms is None:
            set_(call, ai_connect_ms=_ms(event.get("ai_connect_ms")))
    elif kind in (gw.TRANSFER_FAILED, gw.TRANSFERRED):
        _apply_transfer_outcome(event, at)
        if kind == gw.TRANSFER_FAILED and event.get("transfer_sid"):
            batch.transfers_ended.append(event["transfer_sid"])
    elif kind == gw.TWIML_REDIRECT:
        if not call.is_final:
            batch.twiml_fetches.append((call.sid, event.get("url", ""), event.get("method", "")))
    elif kind == gw.AMD:
        if _amd_fields(event) and call.answered_by == "":
            set_(call, **_amd_fields(event))
    elif kind in gw.FINAL_TYPES:
        outcome = event.get("outcome") or (gw.OUTCOME_ANSWERED if kind == gw.COMPLETED else "failed")
        if not call.is_final:
            set_(call, status=STATUS_FOR_OUTCOME.get(outcome, Call.Status.FAILED), outcome=outcome,
                 reason=(event.get("reason") or "")[:255], sip_code=event.get("sip_code"),
                 hangup_by=event.get("hangup_by", ""), ended_at=at, duration_s=event.get("duration"),
                 **{name: event[name] for name in QUALITY_FIELDS if event.get(name) is not None})
        for attempt, leg in batch.legs.get(call.pk, {}).items():
            if leg.ended_at is None:
                leg.ended_at = at
                batch.dirty_legs[call.pk, attempt] = leg
        if _amd_fields(event) and call.answered_by == "":
            set_(call, **_amd_fields(event))
        batch.ended.append(call.pk)
        if event.get("recording_file"):
            batch.recordings.append((call.sid, event["recording_file"], float(event.get("recording_duration_s") or 0)))
        elif call.record and call.answered_at is not None:  # answered, yet nothing was recorded
            if callback := recording_callbacks.callback_for(call, "absent", batch.tenant.account_sid):
                batch.callbacks.append((call.pk, callback))
        _mark_abandoned(batch, call)


def _apply_transfer_leg(event: dict) -> None:
    """A transfer leg's event, as one conditional UPDATE of its Transfer (transfers are few; a repeated or
    late event changes nothing)."""
    kind, at = event["type"], _at(event)
    rows = Transfer.objects.filter(sid=event["call_id"])
    if kind == gw.LEG_STARTED:
        rows.filter(carrier_id__isnull=True).update(status=Call.Status.INITIATED, **_carrier(event))
    elif kind == gw.RINGING:
        rows.filter(answered_at__isnull=True, ended_at__isnull=True).update(status=Call.Status.RINGING)
    elif kind == gw.ANSWERED:
        rows.filter(answered_at__isnull=True).exclude(status__in=Call.FINAL_STATUSES).update(
            status=Call.Status.IN_PROGRESS, answered_at=at, **_carrier(event))
        rows.filter(answered_at__isnull=True).update(answered_at=at)
    elif kind in gw.FINAL_TYPES:
        outcome = event.get("outcome") or (gw.OUTCOME_ANSWERED if kind == gw.COMPLETED else "failed")
        rows.filter(ended_at__isnull=True).update(
            status=STATUS_FOR_OUTCOME.get(outcome, Call.Status.FAILED), outcome=outcome,
            reason=(event.get("reason") or "")[:255], sip_code=event.get("sip_code"),
            hangup_by=event.get("hangup_by", ""), ended_at=at, duration_s=event.get("duration"))


def _apply_transfer_outcome(event: dict, at: datetime) -> None:
    """The call's word on its transfer: refused, or failed, before any leg (or its leg's own final event
    came first: nothing to change); a blind transfer's NOTIFY outcome."""
    rows = Transfer.objects.filter(sid=event.get("transfer_sid"), ended_at__isnull=True)
    if event["type"] == gw.TRANSFER_FAILED:
        outcome = event.get("outcome") or "failed"
        rows.update(status=STATUS_FOR_OUTCOME.get(outcome, Call.Status.FAILED), outcome=outcome,
                    reason=(event.get("reason") or "")[:255], sip_code=event.get("sip_code"), ended_at=at)
    elif event.get("notify_code"):  # blind: the carrier connected the person, and the platform left
        rows.update(status=Call.Status.COMPLETED, outcome=gw.OUTCOME_ANSWERED, reason=gw.REASON_TRANSFERRED,
                    sip_code=event["notify_code"], answered_at=at, ended_at=at)


def _mark_abandoned(batch: _Batch, call: Call) -> None:
    """An answered, ended call whose agent never came (in time) was abandoned; a machine answer is
    not: no person waited for the agent."""
    if call.is_final and call.answered_at is not None and call.stream_url and call.answered_by not in MACHINE_ANSWERS \
            and (call.ai_connect_ms is None or call.ai_connect_ms > Call.ABANDON_AFTER_MS) and not call.abandoned:
        batch.set(call, abandoned=True)


def _columns(model, names) -> tuple[list, str, str]:
    """The fields, their columns, and `unnest(%s::type[], …)`: one array parameter per column, so a
    statement's text and parameters do not grow with its rows (JSON goes as text: see _params)."""
    fields = [model._meta.get_field(name) for name in names]
    arrays = ", ".join(f"%s::{'text' if _is_json(field) else field.db_type(connection)}[]" for field in fields)
    return fields, ", ".join(field.column for field in fields), f"unnest({arrays})"


def _is_json(field) -> bool:
    return isinstance(field, models.JSONField)


def _params(fields, objects) -> list[list]:
    return [[_json_text(getattr(obj, field.attname)) if _is_json(field) else getattr(obj, field.attname)
             for obj in objects] for field in fields]


def _json_text(value) -> str | None:
    return None if value is None else json.dumps(value)


def _update(model, names: list[str], objects: list) -> None:
    """UPDATE the named fields of objects (by id), one statement."""
    fields, columns, rows = _columns(model, ["id", *names])
    assignments = ", ".join(f"{field.column} = v.{field.column}{'::jsonb' if _is_json(field) else ''}"
                            for field in fields[1:])
    with connection.cursor() as cursor:
        cursor.execute(f"UPDATE {model._meta.db_table} AS t SET {assignments} FROM {rows} AS v({columns}) "
                       "WHERE t.id = v.id", _params(fields, objects))


LEG_FIELDS = [field.name for field in CallLeg._meta.concrete_fields if not field.primary_key]


def _upsert_legs(legs: list[CallLeg]) -> None:
    """New legs inserted, known ones updated, one statement (the batch holds its calls' locks)."""
    fields, columns, rows = _columns(CallLeg, LEG_FIELDS)
    updates = ", ".join(f"{field.column} = EXCLUDED.{field.column}" for field in fields
                        if field.column not in ("call_id", "attempt"))
    with connection.cursor() as cursor:
        cursor.execute(f"INSERT INTO {CallLeg._meta.db_table} ({columns}) SELECT * FROM {rows} "
                       f"ON CONFLICT (call_id, attempt) DO UPDATE SET {updates}", _params(fields, legs))


def _amd_fields(event: dict) -> dict:
    """answered_by, amd_ms and amd_evidence of an ``amd`` or final event (empty when it has none)."""
    if not event.get("answered_by"):
        return {}
    return {"answered_by": str(event["answered_by"])[:32], "amd_ms": _ms(event.get("amd_ms")),
            "amd_evidence": event.get("amd_evidence")}


def _ms(value) -> int | None:
    return None if value is None else max(0, round(float(value)))


def record_event(event: dict, tenant_schema: str) -> None:
    """Record one event (raises if it could not be recorded)."""
    if not record_events([(event, tenant_schema)])[0]:
        raise RuntimeError(f"event {event.get('type')} of call {event.get('call_id')} not recorded (see the log)")


TENANT_TTL_S = 30.0
_tenants: dict[str, tuple[Tenant, float]] = {}  # schema -> (tenant, when read)


def _tenants_of(schemas: set[str]) -> dict[str, Tenant]:
    """The tenants by schema (read at most every TENANT_TTL_S; an unknown name is asked again)."""
    now = time.monotonic()
    stale = {name for name in schemas if now - _tenants.get(name, (None, -TENANT_TTL_S))[1] >= TENANT_TTL_S}
    if stale:
        found = {tenant.schema_name: tenant for tenant in Tenant.objects.filter(schema_name__in=stale)}
        for name in stale:
            if name in found:
                _tenants[name] = (found[name], now)
            else:
                _tenants.pop(name, None)
    return {name: _tenants[name][0] for name in schemas if name in _tenants}


def record_events(batch: list[tuple[dict, str]]) -> list[bool]:
    """Record events read together from the stream, in order: each tenant's in one transaction (its
    calls locked, a few statements whatever the batch's size), counted in the metrics (which feed the
    dashboards) after the commit in one Redis round trip. Should a tenant's
    batch fail, its events are recorded again one at a time, so that one bad event holds back only
    itself. Returns, per event, whether it is done with (recorded, or dropped as unknown); an event
    that failed is logged and left False, to be read again. Raises if the database is unreachable."""
    done = [False] * len(batch)
    by_tenant: dict[str, list[int]] = {}
    for index, (_, tenant_schema) in enumerate(batch):
        by_tenant.setdefault(tenant_schema, []).append(index)  # a call's events keep their order
    tenants = _tenants_of(set(by_tenant))
    for tenant_schema, indexes in by_tenant.items():
        tenant = tenants.get(tenant_schema)
        if tenant is None:
            for index in indexes:
                log.warning("event for unknown tenant %r dropped: %s", tenant_schema, batch[index][0])
                done[index] = True
            continue
        with tenant_context(tenant):
            recorded = _record_or_isolate(tenant, [batch[index][0] for index in indexes])
        for index, ok in zip(indexes, recorded, strict=True):
            done[index] = ok
    return done


def _record_or_isolate(tenant, events: list[dict]) -> list[bool]:
    """_record the events together; if that fails, one at a time (only the bad one stays False)."""
    try:
        _record(tenant, events)
        return [True] * len(events)
    except (OperationalError, InterfaceError, redis.ConnectionError, redis.TimeoutError):
        raise  # the database or Redis is gone: nothing of this batch is acknowledged (read again)
    except Exception:
        if len(events) == 1:
            with call_context(events[0].get("call_id")):
                log.exception("%s event not recorded", events[0].get("type"))
            return [False]
    log.warning("%d events of %s not recorded together; recording them one at a time",
                len(events), tenant.schema_name)
    return [ok for event in events for ok in _record_or_isolate(tenant, [event])]


def _record(tenant, events: list[dict]) -> None:
    """Apply the events in the current (tenant) schema, commit, then count them in the metrics."""
    with transaction.atomic():
        batch = _Batch(tenant, events)
        batch.load()
        for event in events:
            with call_context(event.get("call_id")):
                batch.apply(event)
        batch.write()
    record_call_events(tenant.schema_name, batch.recorded)
    for event, fields in batch.recorded:
        call = batch.calls[event["call_id"]]
        if call.abandoned and (event["type"] in gw.FINAL_TYPES or event["type"] == gw.ANSWERED):  # once per call
            record_abandonment(tenant.schema_name, call.sid, fields, ts=float(event["ts"]))
