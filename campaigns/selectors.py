"""Reads: contact lists, contacts, do-not-call entries, campaigns, progress and what to dial next."""
from __future__ import annotations

import datetime as dt
import zoneinfo

from django.db.models import Count, Exists, F, OuterRef, Q, QuerySet
from django.utils import timezone

from .models import Campaign, CampaignContact, Contact, ContactList, DoNotCall, known_time_zones

ContactState = CampaignContact.State


def contact_lists() -> QuerySet[ContactList]:
    return ContactList.objects.annotate(contact_count=Count("contacts"))


def contacts_of(contact_list: ContactList) -> QuerySet[Contact]:
    return contact_list.contacts.order_by("id")


def do_not_call_entries() -> QuerySet[DoNotCall]:
    return DoNotCall.objects.all()


def campaigns() -> QuerySet[Campaign]:
    return Campaign.objects.all()


def campaign_progress(campaign: Campaign, now: dt.datetime | None = None) -> dict:
    """Counts of the campaign's contacts by dialing state (all zero before it starts: its contacts
    are taken from the list when it starts), contacts dialed so far, the ETA and the abandonment rate."""
    counts = CampaignContact.objects.filter(campaign=campaign).aggregate(
        total=Count("id"),
        **{state.value: Count("id", filter=Q(state=state)) for state in ContactState},
        answered=Count("id", filter=Q(last_outcome="answered")),
        dialed=Count("id", filter=Q(attempts__gt=0) | Q(state=ContactState.DIALING)),
    )
    counts["remaining"] = counts[ContactState.PENDING] + counts[ContactState.DIALING]
    eta = _eta_seconds(campaign, counts, now or timezone.now())
    return {"campaign": campaign.pk, "state": campaign.state, **counts,
            "eta_seconds": None if eta is None else round(eta), "abandonment_rate": abandonment_rate(campaign)}


def abandonment_rate(campaign: Campaign) -> float | None:
    """Abandoned / answered calls of the campaign (None before any answer)."""
    from telephony.calls.models import Call

    figures = Call.objects.filter(campaign_id=campaign.pk, answered_at__isnull=False).aggregate(
        answered=Count("id"), abandoned=Count("id", filter=Q(abandoned=True)))
    return round(figures["abandoned"] / figures["answered"], 4) if figures["answered"] else None


def _zone(name: str | None) -> zoneinfo.ZoneInfo | None:
    return zoneinfo.ZoneInfo(name) if name and name in known_time_zones() else None


def local_window_open(campaign: Campaign, tz_name: str | None, now: dt.datetime) -> bool:
    """Is `now` (an aware datetime) inside the campaign's calling window in time zone `tz_name`?
    The window is [window_start, window_end) local time on the campaign's weekdays; an empty or
    unknown time zone falls back to the campaign's default time zone (then UTC)."""
    zone = _zone(tz_name) or _zone(campaign.default_time_zone) or dt.UTC
    local = now.astimezone(zone)
    return local.weekday() in campaign.weekdays and campaign.window_start <= local.time() < campaign.window_end


def due_contacts(campaign: Campaign, now: dt.datetime, limit: int) -> list[CampaignContact]:
    """Pending contacts of the campaign that are due (next_attempt_at is empty or has come), whose own
    local time is inside the calling window, and whose number is not on the do-not-call list; the
    earliest-due first, with their contact. Does not look at the campaign's state: the dialer only
    asks for running campaigns, and claims the rows (services.campaign_contacts_claim) before dialing.

    The window is evaluated once per distinct time zone among the due contacts, then applied in SQL.
    """
    due = CampaignContact.objects.filter(campaign=campaign, state=ContactState.PENDING).filter(
        Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=now)
    )
    zones = set(due.values_list("contact__time_zone", flat=True).distinct().order_by())
    open_zones = [zone for zone in zones if local_window_open(campaign, zone, now)]
    if not open_zones:
        return []
    blocked = DoNotCall.objects.filter(phone=OuterRef("contact__phone"))
    return list(
        due.filter(contact__time_zone__in=open_zones)
        .filter(~Exists(blocked))
        .select_related("contact")
        .order_by(F("next_attempt_at").asc(nulls_first=True), "id")[:limit]
    )


def campaigns_running() -> QuerySet[Campaign]:
    return Campaign.objects.filter(state=Campaign.State.RUNNING)


PACE_MIN_ELAPSED_S = 5  # before this, the pace so far says little: the configured CPS is used


def _eta_seconds(campaign: Campaign, progress: dict, now: dt.datetime) -> float | None:
    """Seconds until the campaign's remaining contacts are done, from its contact counts:
    for a running campaign, from the pace so far (contacts that ended with a call, per second since
    it started; contacts skipped as do-not-call at the start do not count) once it has run
    PACE_MIN_ELAPSED_S, else from the configured CPS; 0 when nothing remains; None otherwise
    (a draft, scheduled or paused campaign has no pace)."""
    total, remaining = progress["total"], progress["remaining"]
    if campaign.state == Campaign.State.RUNNING and remaining:
        called = total - remaining - progress[ContactState.DNC]
        elapsed = (now - campaign.started_at).total_seconds() if campaign.started_at else 0
        if called and elapsed > PACE_MIN_ELAPSED_S:
            return remaining / (called / elapsed)
        return remaining / campaign.cps if campaign.cps else None
    if campaign.state == Campaign.State.COMPLETED or (total and not remaining):
        return 0
    return None
