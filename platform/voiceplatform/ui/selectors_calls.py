"""Reads for the calls log and the call page: the tenant's calls searched, filtered, sorted; one
call's timeline from its record and SIP legs. No writes here."""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from django.db.models import Q, QuerySet

from campaigns.models import Campaign, CampaignContact
from telephony.calls.models import Call, CallLeg, Recording, Transfer, WebhookDelivery

SORTS = {"created": "created_at", "duration": "duration_s", "setup": "setup_ms", "to": "to_number",
         "status": "status", "outcome": "outcome"}
DEFAULT_SORT = "-created"
EXPORT_COLUMNS = ["sid", "direction", "from_number", "to_number", "status", "outcome", "reason", "sip_code",
                  "hangup_by", "carrier_name", "campaign_id", "created_at", "answered_at", "ended_at", "setup_ms",
                  "duration_s", "jitter_ms", "loss_percent", "rtt_ms", "mos", "ai_response_ms", "answered_by", "amd_ms"]


def _day(value: str) -> dt.date | None:
    try:
        return dt.date.fromisoformat(value)
    except (TypeError, ValueError):
        return None


def call_log(params) -> QuerySet[Call]:
    """Calls matching the log's filters: q (part of a number, or a sid), outcome, campaign, carrier
    (by name), direction, from/to (days, UTC, both included), sort (a SORTS key, '-' for newest first)."""
    calls = Call.objects.defer("marks")  # the log never shows them; up to 200 a call
    if q := params.get("q", "").strip():
        digits = q.replace(" ", "").replace("-", "").replace("(", "").replace(")", "")
        calls = calls.filter(Q(sid__istartswith=q) | Q(to_number__contains=digits) | Q(from_number__contains=digits))
    if outcome := params.get("outcome"):
        calls = calls.filter(outcome=outcome)
    if (campaign := params.get("campaign", "")).isdigit():
        calls = calls.filter(campaign_id=int(campaign))
    if carrier := params.get("carrier"):
        calls = calls.filter(carrier_name=carrier)
    if direction := params.get("direction"):
        calls = calls.filter(direction=direction)
    if since := _day(params.get("from")):
        calls = calls.filter(created_at__date__gte=since)
    if until := _day(params.get("to")):
        calls = calls.filter(created_at__date__lte=until)
    sort = params.get("sort") or DEFAULT_SORT
    field = SORTS.get(sort.lstrip("-"), "created_at")
    order = f"-{field}" if sort.startswith("-") else field
    return calls.order_by(order, "-id")


def call_log_choices() -> dict:
    """What the log's filter menus offer: the outcomes, carriers and campaigns calls have."""
    return {
        "outcomes": sorted(o for o in Call.objects.values_list("outcome", flat=True).distinct() if o),
        "carriers": sorted(c for c in Call.objects.values_list("carrier_name", flat=True).distinct() if c),
        "campaigns": list(Campaign.objects.order_by("-created_at").values_list("pk", "name")[:200]),
        "directions": sorted(Call.objects.values_list("direction", flat=True).distinct()),
    }


def campaign_names(calls) -> dict[int, str]:
    ids = {c.campaign_id for c in calls if c.campaign_id}
    return dict(Campaign.objects.filter(pk__in=ids).values_list("pk", "name")) if ids else {}


@dataclass
class Step:
    at: dt.datetime | None
    what: str
    detail: str = ""
    kind: str = ""  # a badge class: failed, completed, pending…


def _ms_after(start: dt.datetime | None, ms) -> dt.datetime | None:
    return start + dt.timedelta(milliseconds=ms) if start and ms is not None else None


AMD_RESULTS = {"human": "a person answered", "machine_start": "an answering machine (greeting)",
               "machine_end_beep": "an answering machine (after the beep)",
               "machine_end_silence": "an answering machine (greeting over)", "machine_end_other": "an answering machine",
               "fax": "a fax machine", "unknown": "not sure (unknown)"}


def call_timeline(call: Call, legs: list[CallLeg], transfers: list[Transfer]) -> list[Step]:
    """What happened to the call, in order: queued, each carrier leg (INVITE, ringing, answer or its
    SIP code and whether it failed over), the answering-machine result, the agent's stream and its
    marks, each transfer leg, the hang-up and who hung up."""
    steps = [Step(call.created_at, "queued", f"{call.from_number} → {call.to_number}")]
    for leg in legs:
        name = leg.carrier_name or f"carrier {leg.carrier_id}"
        steps.append(Step(leg.started_at, f"leg {leg.attempt}: INVITE via {name}", leg.uri))
        if leg.ringing_at:
            steps.append(Step(leg.ringing_at, f"leg {leg.attempt}: ringing", "180/183"))
        if leg.answered_at:
            steps.append(Step(leg.answered_at, f"leg {leg.attempt}: answered", "200 OK", "completed"))
        elif leg.ended_at or leg.sip_code:
            code = f"SIP {leg.sip_code}" if leg.sip_code else "no answer"
            detail = f"{code} {leg.reason}".strip() + (" · failed over to the next carrier" if leg.failed_over else "")
            steps.append(Step(leg.ended_at, f"leg {leg.attempt}: ended", detail, "failed"))
    if not legs and call.started_at:
        steps.append(Step(call.started_at, "INVITE sent"))
    if call.ringing_at and not any(leg.ringing_at for leg in legs):
        steps.append(Step(call.ringing_at, "ringing"))
    if call.answered_at and not any(leg.answered_at for leg in legs):
        steps.append(Step(call.answered_at, "answered", "", "completed"))
    if call.answered_by:
        steps.append(Step(_ms_after(call.answered_at, call.amd_ms), "answering-machine detection",
                          f"{AMD_RESULTS.get(call.answered_by, call.answered_by)}"
                          + (f" after {call.amd_ms} ms" if call.amd_ms is not None else ""),
                          "completed" if call.answered_by == "human" else ""))
    if call.ai_connect_ms is not None:
        steps.append(Step(_ms_after(call.answered_at, call.ai_connect_ms), "agent stream connected",
                          f"{call.ai_connect_ms} ms after answer" + (" · abandoned" if call.abandoned else ""),
                          "failed" if call.abandoned else "completed"))
    steps.extend(_mark_steps(call.marks))
    for n, transfer in enumerate(transfers, start=1):
        steps.append(Step(transfer.created_at, f"transfer {n}: dialing {transfer.to}",
                          f"{transfer.mode} transfer, caller ID {transfer.caller_id}"))
        if transfer.answered_at:
            steps.append(Step(transfer.answered_at, f"transfer {n}: answered", transfer.carrier_name, "completed"))
        if transfer.ended_at:
            detail = ", ".join(p for p in (transfer.outcome, transfer.reason,
                                           f"SIP {transfer.sip_code}" if transfer.sip_code else "") if p)
            steps.append(Step(transfer.ended_at, f"transfer {n}: ended", detail,
                              "" if transfer.answered_at else "failed"))
    if call.ended_at:
        who = {"caller": "the caller", "callee": "the callee", "agent": "the agent", "platform": "the platform"}
        by = who.get(call.hangup_by, call.hangup_by) if call.hangup_by else ""
        detail = ", ".join(p for p in (f"hung up by {by}" if by else "", call.outcome, call.reason,
                                       f"SIP {call.sip_code}" if call.sip_code else "") if p)
        steps.append(Step(call.ended_at, "ended", detail, "failed" if call.status == Call.Status.FAILED else ""))
    return sorted(steps, key=lambda s: (s.at is None, s.at or call.created_at))


def _mark_steps(marks: list[dict]) -> list[Step]:
    """One step per stream mark: when the agent sent it, and how long until its audio had played."""
    steps = []
    for mark in marks:
        sent, played = mark.get("sent_at"), mark.get("played_at")
        if played is None:
            detail, kind = "sent / never played (the call ended first)", "pending"
        else:
            wait = f"+{round((played - sent) * 1000)} ms"
            detail, kind = (f"sent / cleared ({wait})", "") if mark.get("cleared") else (f"sent / played ({wait})", "")
        steps.append(Step(dt.datetime.fromtimestamp(sent, dt.UTC), f"mark {mark.get('name', '')}", detail, kind))
    return steps


def call_page(sid: str) -> dict | None:
    call = Call.objects.filter(sid=sid).first()
    if call is None:
        return None
    legs = list(call.legs.all())
    transfers = list(call.transfers.all())
    campaign = contact = None
    if call.campaign_id:
        campaign = Campaign.objects.filter(pk=call.campaign_id).first()
        contact = (CampaignContact.objects.select_related("contact").filter(pk=call.campaign_contact_id).first()
                   if call.campaign_contact_id else None)
    return {
        "call": call, "legs": legs, "transfers": transfers, "timeline": call_timeline(call, legs, transfers),
        "campaign": campaign,
        "contact": contact and contact.contact, "campaign_contact": contact,
        "deliveries": list(WebhookDelivery.objects.filter(call=call).order_by("created_at")),
        "recording": Recording.objects.filter(call=call).first(),
    }


def _sort_key(call: Call, field: str):
    value = getattr(call, field)
    return (value is not None, value) if value is not None else (False, 0)


def platform_call_log(params, page: int, page_size: int) -> tuple[list[Call], int]:
    """For platform admins: the calls of every tenant (or of the tenant named by `tenant`), with the
    log's filters and sort, one page of them merged across the tenants' schemas, and how many match.
    Each call carries `schema` and `tenant_name`."""
    from django_tenants.utils import schema_context

    from tenants.models import Tenant
    from tenants.selectors import tenant_schemas

    names = dict(Tenant.objects.values_list("schema_name", "name"))
    schemas = [s for s in tenant_schemas() if not params.get("tenant") or s == params["tenant"]]
    wanted = page * page_size
    merged, total = [], 0
    for schema in schemas:
        with schema_context(schema):
            calls = call_log(params)
            total += calls.count()
            for call in calls[:wanted]:
                call.schema, call.tenant_name = schema, names.get(schema, schema)
                merged.append(call)
    sort = params.get("sort") or DEFAULT_SORT
    field = SORTS.get(sort.lstrip("-"), "created_at")
    merged.sort(key=lambda c: _sort_key(c, field), reverse=sort.startswith("-"))
    return merged[wanted - page_size:wanted], total


def platform_call_log_choices() -> dict:
    """The log's filter menus over every tenant."""
    from django_tenants.utils import schema_context

    from tenants.selectors import tenant_schemas

    outcomes, carriers, directions = set(), set(), set()
    for schema in tenant_schemas():
        with schema_context(schema):
            choices = call_log_choices()
        outcomes.update(choices["outcomes"])
        carriers.update(choices["carriers"])
        directions.update(choices["directions"])
    return {"outcomes": sorted(outcomes), "carriers": sorted(carriers), "directions": sorted(directions),
            "campaigns": [], "tenants": tenant_schemas()}
