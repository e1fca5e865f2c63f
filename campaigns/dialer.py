"""The campaign dialer: paces each running campaign to its CPS and concurrency cap, within the free
capacity of the gateway pool, and turns finished calls into attempt outcomes (and retries).

One loop per campaign at a time, cluster-wide: a Redis lock with a short lease decides who dials
(a dead worker's lease runs out within seconds and the next beat tick starts a new loop). Contacts
are claimed (pending → dialing) in the database before they are dialed, so two loops can never dial
the same contact; a contact claimed by a loop that died before placing its call goes back to pending.
"""
from __future__ import annotations

import datetime as dt
import time
import uuid
from dataclasses import dataclass

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Exists, OuterRef
from django.utils import timezone
from voiceplatform.redis_client import get_redis

from telephony.calls.models import Call
from telephony.calls.services import CallRequest, CallRequestError, place_call
from telephony.gateway import client as gateway
from telephony.gateway import events as gw
from telephony.limits import RateLimiter
from tenants.selectors import current_tenant

from . import selectors, services
from .models import Campaign, CampaignContact

ContactState = CampaignContact.State
SLICE_S = 5.0  # a loop dials for this long, then hands over; state is re-read every BOOKKEEPING_S
LEASE_MS = 3000
BOOKKEEPING_S = 0.2
ABANDONMENT_LIMIT = 0.03

_RELEASE = "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0"
_RENEW = "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end return 0"


@dataclass
class SliceReport:
    placed: int = 0
    finished: int = 0
    running: bool = True


def lock_key(campaign_id: int) -> str:
    return f"dialer:{connection.schema_name}:{campaign_id}"


def caller_id_for(caller_ids: list[str], to: str, turn: int) -> str:
    """Rotate through the campaign's numbers, preferring those local to the callee (same country and
    area prefix, e.g. +1415…) when the tenant owns any."""
    local = [number for number in caller_ids if number[:5] == to[:5]]
    pool = local or caller_ids
    return pool[turn % len(pool)]


def ws_url(url: str) -> str:
    return "ws" + url[4:] if url.startswith("http") else url


def agent_parameters(campaign: Campaign, contact, caller_id: str) -> dict:
    return {**{k: str(v) for k, v in campaign.custom_parameters.items()},
            **{k: str(v) for k, v in contact.variables.items()},
            "contact_name": contact.name, "from_number": caller_id, "to_number": contact.phone,
            "campaign": str(campaign.pk)}


def reconcile(campaign: Campaign, now: dt.datetime) -> int:
    """Outcomes of the campaign's finished calls → attempt outcomes (retries scheduled by policy)."""
    finished = Call.objects.filter(
        campaign_id=campaign.pk, status__in=Call.FINAL_STATUSES,
        campaign_contact_id__in=CampaignContact.objects.filter(campaign=campaign, state=ContactState.DIALING)
        .values("pk"),
    ).values_list("campaign_contact_id", "outcome", "sid", "dtmf_digits")
    count = 0
    for contact_id, outcome, sid, digits in finished:
        if campaign.optout_digit and campaign.optout_digit in digits:
            outcome = "opted_out"  # the callee pressed the opt-out digit: onto the do-not-call list
        if services.record_attempt_outcome(contact_id, outcome or "failed", sid, now) is not None:
            count += 1
    # Claimed, but the loop that claimed them died before recording a call: dial them again.
    placed = Call.objects.filter(campaign_contact_id=OuterRef("pk"), campaign_id=campaign.pk)
    CampaignContact.objects.filter(
        campaign=campaign, state=ContactState.DIALING,
        updated_at__lt=now - dt.timedelta(seconds=settings.DIALER_UNPLACED_GRACE_S),
    ).filter(~Exists(placed)).update(state=ContactState.PENDING, updated_at=now)
    return count


def gateway_room(redis) -> int:
    """Calls the pool can take now: free slots of live gateways minus calls already queued for them."""
    capacity, active = gateway.pool_capacity(redis)
    return capacity - active - redis.llen(gw.ORIGINATE_QUEUE)


def _dial_one(campaign: Campaign, contact_row: CampaignContact, tenant, turn: int) -> bool:
    contact = contact_row.contact
    caller_id = caller_id_for(campaign.caller_ids, contact.phone, turn)
    try:
        with transaction.atomic():
            place_call(tenant, CallRequest(
                to=contact.phone, from_=caller_id, stream_url=ws_url(campaign.stream_url),
                custom_parameters=agent_parameters(campaign, contact, caller_id),
                ring_timeout=campaign.ring_timeout, campaign_id=campaign.pk, campaign_contact_id=contact_row.pk,
            ))
    except CallRequestError as error:
        services.record_attempt_outcome(contact_row.pk, "failed", f"rejected:{error.field}")
        return False
    return True


def paced_cps(campaign: Campaign) -> float:
    """The campaign's CPS, halved while its abandonment rate is over ABANDONMENT_LIMIT (agents not
    streaming in time: dial slower rather than leave more callees in silence)."""
    rate = selectors.abandonment_rate(campaign)
    return campaign.cps / 2 if rate is not None and rate > ABANDONMENT_LIMIT else campaign.cps


def _claimed_batch(campaign: Campaign, now: dt.datetime, size: int) -> list[CampaignContact]:
    due = selectors.due_contacts(campaign, now, limit=size)
    won = set(services.campaign_contacts_claim([row.pk for row in due], now))
    return [row for row in due if row.pk in won]


def dial_slice(campaign_id: int, slice_s: float = SLICE_S) -> SliceReport:
    """Dial one campaign for about `slice_s` seconds, if no other loop is dialing it.

    The bookkeeping (state, finished calls, room under the caps) is refreshed every BOOKKEEPING_S,
    not per call, so the pace is set by the CPS pacer rather than by database round trips; contacts
    are claimed a batch at a time, and those not dialed by the end of the slice are handed back.
    """
    redis, token = get_redis(), uuid.uuid4().hex
    key = lock_key(campaign_id)
    if not redis.set(key, token, nx=True, px=LEASE_MS):
        return SliceReport(running=True)
    report, tenant = SliceReport(), current_tenant()
    queue: list[CampaignContact] = []
    try:
        campaign = Campaign.objects.get(pk=campaign_id)
        pacer = RateLimiter(redis, f"cps:campaign:{connection.schema_name}:{campaign_id}", paced_cps(campaign))
        deadline = time.monotonic() + slice_s
        next_bookkeeping, room = 0.0, 0
        while time.monotonic() < deadline:
            if time.monotonic() >= next_bookkeeping:
                next_bookkeeping = time.monotonic() + BOOKKEEPING_S
                redis.eval(_RENEW, 1, key, token, LEASE_MS)
                campaign.refresh_from_db(fields=["state", "cps", "max_concurrent"])
                if campaign.state != Campaign.State.RUNNING:
                    report.running = False
                    break
                now = timezone.now()
                report.finished += reconcile(campaign, now)
                in_flight = CampaignContact.objects.filter(campaign=campaign, state=ContactState.DIALING).count()
                room = min(campaign.max_concurrent - in_flight + len(queue), gateway_room(redis))
            if room <= 0:
                time.sleep(0.02)
                continue
            if not queue:
                queue = _claimed_batch(campaign, timezone.now(), max(1, int(campaign.cps * BOOKKEEPING_S) + 1))
                if not queue:
                    services.complete_if_finished(campaign.pk, timezone.now())
                    next_bookkeeping = 0.0
                    time.sleep(0.1)
                    continue
            wait = pacer.try_acquire()
            if wait > 0:
                time.sleep(min(wait, max(0.0, deadline - time.monotonic())))
                continue
            room -= 1
            if _dial_one(campaign, queue.pop(0), tenant, report.placed):
                report.placed += 1
    finally:
        if queue:  # claimed, not dialed: back to the front of the line
            CampaignContact.objects.filter(pk__in=[row.pk for row in queue], state=ContactState.DIALING).update(
                state=ContactState.PENDING, updated_at=timezone.now())
        redis.eval(_RELEASE, 1, key, token)
    return report
