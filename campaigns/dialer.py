"""The campaign dialer: paces each running campaign to its CPS and concurrency cap, within the free
capacity of the gateway pool and the free slots of the carrier and tenant caps its calls meet
(campaigns.capacity), and turns finished calls into attempt outcomes (and retries).

A cap slows the campaign down, it never uses up contacts: the dialer places no more calls than the
caps have room for, and a call refused at a cap all the same (another campaign took the slot) sends
its contact back to be dialed again, with no attempt counted, and holds the dialing for
REFUSAL_BACKOFF_S.

A campaign is dialed by `slices_for(cps)` loops at once (one per DIALER_CPS_PER_SLICE of its CPS, up
to DIALER_MAX_SLICES), each in whichever worker takes its task, so a large campaign uses as many
cores as there are worker processes. Loop `slot` of `n` paces 1/n of the CPS and takes its share of
the room under the caps; slot 0 alone does the bookkeeping of finished calls. One loop per slot at a
time, cluster-wide: a Redis lock with a short lease decides who dials it (a dead worker's lease runs
out within seconds and the next beat tick starts a new loop). Contacts are claimed (pending →
dialing) in the database before they are dialed, so two loops can never dial the same contact; a
contact claimed by a loop that died before placing its call goes back to pending.
"""
from __future__ import annotations

import datetime as dt
import math
import time
import uuid
from dataclasses import dataclass

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from core import keys
from core.redis_client import get_redis
from telephony.calls import amd
from telephony.calls.services import CallPlacer, CallRequest, CallRequestError
from telephony.gateway import client as gateway
from telephony.leases import ConcurrencyLimiter
from tenants.selectors import current_tenant

from . import capacity, selectors, services
from .models import Campaign, CampaignContact

ContactState = CampaignContact.State
SLICE_S = 5.0  # a loop dials for this long, then hands over; state is re-read every BOOKKEEPING_S
LEASE_S = 3.0
BOOKKEEPING_S = 0.4
ABANDONMENT_LIMIT = 0.03
# How far the pace may fall behind before the missed calls are given up rather than made up in a
# burst (the loop stalls on bookkeeping, the next slice starts a little late: on a busy machine,
# a few tenths of a second; a burst waits in the gateways' queue and for the carriers' CPS).
MAX_LAG_S = 1.0
REFUSAL_BACKOFF_S = 1.0
# A loop that used up the room it last saw looks again this soon (calls end all the time), without
# waiting for the next bookkeeping and without giving up its place in the pace.
ROOM_RECHECK_S = 0.1
CLAIM_TRIES = 3
# Calls that fall due are gathered this long and placed together: a batch costs one transaction and
# one Redis transaction whatever its size, so the cost per call falls as the CPS grows.
BATCH_S = 0.2


@dataclass
class SliceReport:
    placed: int = 0
    finished: int = 0
    running: bool = True


def slices_for(cps: float) -> int:
    """How many loops dial a campaign of `cps` at once."""
    return max(1, min(settings.DIALER_MAX_SLICES, math.ceil(cps / settings.DIALER_CPS_PER_SLICE)))


def share(room: int, slot: int, slices: int) -> int:
    """Slot `slot`'s part of `room` (the parts of all slots add up to `room`)."""
    return (room + slices - 1 - slot) // slices if room > 0 else room


class Pace:
    """The campaign's dial schedule on the monotonic clock: call n is due at start + n / cps.

    Calls that fall due are placed together BATCH_S after the first of them, and those that fall due
    while the loop is busy (bookkeeping, a batch) as soon as it is free, up to MAX_LAG_S of them; the
    schedule is handed to the next slice through Redis (wall time of the next due call), so slices
    follow each other without losing the pace.
    """

    def __init__(self, redis, key: str, cps: float):
        self.redis, self.key, self.cps = redis, key, cps
        stored = redis.get(key)
        offset = float(stored) - time.time() if stored else 0.0
        self.next_at = time.monotonic() + max(-MAX_LAG_S, min(offset, 1.0 / cps))

    def due(self) -> int:
        """Calls due now (0: the first one has not waited BATCH_S yet)."""
        now = time.monotonic()
        if self.next_at < now - MAX_LAG_S:
            self.next_at = now - MAX_LAG_S
        return int((now - self.next_at) * self.cps) + 1 if now >= self.next_at + BATCH_S else 0

    def wait(self) -> float:
        return max(0.0, self.next_at + BATCH_S - time.monotonic())

    def taken(self, count: int) -> None:
        self.next_at += count / self.cps

    def hold(self) -> None:
        """Nothing could be dialed (no room, no contact due): the pace starts again from now."""
        self.next_at = max(self.next_at, time.monotonic())

    def hand_over(self) -> None:
        wall = time.time() + (self.next_at - time.monotonic())
        self.redis.set(self.key, repr(wall), px=int((MAX_LAG_S + 1.0 / self.cps) * 1000) + 1000)


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


def campaign_call_request(campaign: Campaign, to: str, from_: str, contact=None,
                          campaign_contact_id: int | None = None) -> CallRequest:
    """The call a campaign places: to one of its contacts (the dialer), or with no contact the
    wizard's test call (the agent is told it is one; it counts in no figure of the campaign)."""
    if contact is None:
        return CallRequest(
            to=to, from_=from_, stream_url=ws_url(campaign.stream_url),
            custom_parameters={**{k: str(v) for k, v in campaign.custom_parameters.items()},
                               "test_call": "true", "campaign": str(campaign.pk)},
            ring_timeout=campaign.ring_timeout,
        )
    return CallRequest(
        to=to, from_=from_, stream_url=ws_url(campaign.stream_url),
        custom_parameters=agent_parameters(campaign, contact, from_),
        status_callback=campaign.status_callback, ring_timeout=campaign.ring_timeout,
        fallback_message=campaign.fallback_message,
        campaign_id=campaign.pk, campaign_contact_id=campaign_contact_id, **amd_request_fields(campaign),
        record=campaign.record_calls, transfer_numbers=list(campaign.transfer_numbers or []),
        recording_announcement=campaign.recording_announcement if campaign.record_calls else "",
    )


def amd_request_fields(campaign: Campaign) -> dict:
    """The CallRequest fields of the campaign's answering-machine detection (none when it is off)."""
    if not campaign.machine_detection:
        return {}
    return {"machine_detection": amd.config(campaign.machine_detection, on_machine=campaign.on_machine,
                                            timeout_s=campaign.machine_detection_timeout,
                                            silence_timeout_ms=campaign.machine_detection_silence_timeout),
            "voicemail_message": campaign.voicemail_message, "voicemail_audio": campaign.voicemail_audio.name or ""}


def _dial(campaign: Campaign, rows: list[CampaignContact], claimed_at: dt.datetime, placer: CallPlacer,
          turn: int) -> int:
    """Place one call per contact still held by the claim made at `claimed_at` (one transaction: a
    claim handed back meanwhile as unplaced, which another loop may have won since, is not dialed);
    returns how many were placed."""
    with transaction.atomic():
        held = services.campaign_contacts_confirm([row.pk for row in rows], claimed_at, timezone.now())
        return _place(campaign, [row for row in rows if row.pk in held], placer, turn)


def _place(campaign: Campaign, rows: list[CampaignContact], placer: CallPlacer, turn: int) -> int:
    requests = []
    for i, row in enumerate(rows):
        contact = row.contact
        caller_id = caller_id_for(campaign.caller_ids, contact.phone, turn + i)
        requests.append(campaign_call_request(campaign, contact.phone, caller_id, contact, row.pk))
    placed = 0
    for row, result in zip(rows, placer.place(requests), strict=True):
        if isinstance(result, CallRequestError):
            services.record_attempt_outcome(row.pk, "failed", f"rejected:{result.field}")
        else:
            placed += 1
    return placed


def paced_cps(campaign: Campaign) -> float:
    """The campaign's CPS, halved while its abandonment rate is over ABANDONMENT_LIMIT (agents not
    streaming in time: dial slower rather than leave more callees in silence)."""
    rate = selectors.abandonment_rate(campaign)
    return campaign.cps / 2 if rate is not None and rate > ABANDONMENT_LIMIT else campaign.cps


def _claimed_batch(campaign: Campaign, now: dt.datetime, size: int,
                   zones: set[str | None] | None = None) -> list[CampaignContact]:
    """Up to `size` due contacts, claimed by this loop. The campaign's other loops read the same head
    of the line: when one of them claimed every row first, the next rows are read at once (up to
    CLAIM_TRIES times), rather than the loop pausing as if no contact were due."""
    for _ in range(CLAIM_TRIES):
        due = selectors.due_contacts(campaign, now, limit=size, zones=zones)
        won = set(services.campaign_contacts_claim([row.pk for row in due], now))
        if won or not due:
            return [row for row in due if row.pk in won]
    return []


def dial_slice(campaign_id: int, slot: int = 0, slice_s: float = SLICE_S) -> SliceReport:
    """Dial loop `slot` of one campaign for about `slice_s` seconds, if no other loop is dialing it.
    Not running in the report: the campaign stopped, or needs no loop `slot` at its CPS.

    The bookkeeping (state, finished calls, room under the caps) is refreshed every BOOKKEEPING_S,
    not per call, so the pace is set by the CPS pacer rather than by database round trips; contacts
    are claimed a batch at a time, and those not dialed by the end of the slice are handed back.
    """
    redis, token = get_redis(), uuid.uuid4().hex
    lease = ConcurrencyLimiter(redis, keys.dialer_lease_key(connection.schema_name, campaign_id, slot), 1)
    if not lease.acquire(token, LEASE_S):
        return SliceReport(running=True)
    tenant = current_tenant()
    report, placer = SliceReport(), CallPlacer(tenant)
    queue: list[CampaignContact] = []
    claimed_at = timezone.now()
    pace = None
    try:
        campaign = Campaign.objects.get(pk=campaign_id)
        carriers = selectors.campaign_carriers(campaign)
        zones = selectors.campaign_time_zones(campaign)
        slowdown = paced_cps(campaign) / campaign.cps
        pace = Pace(redis, keys.dialer_pace_key(connection.schema_name, campaign_id, slot), campaign.cps * slowdown / slices_for(campaign.cps))
        deadline = time.monotonic() + slice_s
        next_bookkeeping, room_read_at, room, full = 0.0, 0.0, 0, False
        while time.monotonic() < deadline:
            read_room = False
            if time.monotonic() >= next_bookkeeping:
                next_bookkeeping = time.monotonic() + BOOKKEEPING_S
                lease.renew([token], LEASE_S)
                campaign.refresh_from_db(fields=["state", "cps", "max_concurrent"])
                slices = slices_for(campaign.cps)
                if campaign.state != Campaign.State.RUNNING or slot >= slices:
                    report.running = False
                    break
                if slot == 0:
                    reconciled = services.campaign_calls_reconcile(campaign, timezone.now())
                    report.finished += reconciled.outcomes + reconciled.refused
                    if reconciled.refused:  # a cap was fuller than it looked: let it drain a little
                        redis.set(keys.dialer_held_key(connection.schema_name, campaign_id), 1, px=int(REFUSAL_BACKOFF_S * 1000))
                read_room = True
            elif room <= 0 and not full and time.monotonic() >= room_read_at + ROOM_RECHECK_S:
                read_room = True  # this loop used up the room it saw, and calls have ended since
            if read_room:
                caps = capacity.cap_room(redis, campaign, tenant, carriers)
                pace.cps = min(campaign.cps * slowdown, caps.cps or campaign.cps) / slices
                in_flight = CampaignContact.objects.filter(campaign=campaign, state=ContactState.DIALING).count()
                room = min(campaign.max_concurrent - in_flight + len(queue), gateway.pool_room(redis, tenant.schema_name))
                if caps.calls is not None:
                    room = min(room, caps.calls)
                room = 0 if redis.exists(keys.dialer_held_key(connection.schema_name, campaign_id)) else share(room, slot, slices)
                room_read_at, full = time.monotonic(), room <= 0
            if room <= 0:
                if full:  # the pool or a cap is full: the calls missed meanwhile are not made up
                    pace.hold()
                time.sleep(0.02)
                continue
            if not queue:
                claimed_at = timezone.now()
                queue = _claimed_batch(campaign, claimed_at, max(1, int(pace.cps * BOOKKEEPING_S * 2) + 1), zones)
                if not queue:
                    pace.hold()
                    services.complete_if_finished(campaign.pk, timezone.now())
                    next_bookkeeping = 0.0
                    time.sleep(0.1)
                    continue
            due = pace.due()
            if not due:
                time.sleep(min(pace.wait(), max(0.0, next_bookkeeping - time.monotonic()),
                               max(0.0, deadline - time.monotonic())))
                continue
            batch, queue = queue[:min(due, room)], queue[min(due, room):]
            room -= len(batch)
            pace.taken(len(batch))
            report.placed += _dial(campaign, batch, claimed_at, placer, report.placed)
    finally:
        if queue:  # claimed, not dialed: back to the front of the line
            CampaignContact.objects.filter(pk__in=[row.pk for row in queue], state=ContactState.DIALING,
                                           updated_at=claimed_at).update(
                state=ContactState.PENDING, updated_at=timezone.now())
        if pace is not None and report.running:
            pace.hand_over()
        lease.release(token)
    return report
