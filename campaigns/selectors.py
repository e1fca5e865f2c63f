"""Reads: contact lists, contacts, do-not-call entries, campaigns, progress and what to dial next."""
from __future__ import annotations

import datetime as dt
import zoneinfo

from django.db.models import Count, Exists, F, Min, OuterRef, Q, QuerySet
from django.utils import timezone

from telephony.calls.models import Call
from telephony.models import Carrier, Number
from telephony.routing import CarrierRoute, eligible_carriers

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


def contact_figures(via: str = "") -> dict[str, Count]:
    """The counts of a campaign's contacts shown everywhere (progress, API, campaign list), as
    aggregates over CampaignContact rows; `via` is the path from the rows aggregated to them (""
    for CampaignContact itself, "campaign_contacts__" to annotate campaigns)."""
    def where(**lookups) -> Q:
        return Q(**{via + name: value for name, value in lookups.items()})

    counted = via[:-2] if via else "id"
    return {
        "total": Count(counted),
        **{state.value: Count(counted, filter=where(state=state)) for state in ContactState},
        "answered": Count(counted, filter=where(last_outcome="answered")),
        "dialed": Count(counted, filter=where(attempts__gt=0) | where(state=ContactState.DIALING)),
        "remaining": Count(counted, filter=where(state__in=(ContactState.PENDING, ContactState.DIALING))),
    }


LIVE_CALL_STATUSES = [status for status in Call.Status if status not in Call.FINAL_STATUSES]


def calls_in_flight(campaign: Campaign) -> QuerySet[Call]:
    """The campaign's calls that have not ended (found through the status index: few at any time)."""
    return Call.objects.filter(status__in=LIVE_CALL_STATUSES, campaign_id=campaign.pk)


def campaigns_with_progress() -> QuerySet[Campaign]:
    """Campaigns annotated with contact_figures (the campaign list)."""
    return Campaign.objects.annotate(**contact_figures("campaign_contacts__"))


def campaign_progress(campaign: Campaign, now: dt.datetime | None = None) -> dict:
    """Where the campaign stands, from its records, whatever its state:

    - its contacts by dialing state (contact_figures; all zero before it starts: its contacts are
      taken from the list when it starts), and `in_call`, its calls not ended yet;
    - its pending contacts split into those that can be dialed now, those waiting for their calling
      window (`next_window_at`: when the first of those windows opens) and those waiting for a retry
      (`next_retry_at`);
    - `dial_rate`, the calls per second it really places, and `eta_seconds`: the time to dial the
      contacts that can be dialed now at that rate (0 when nothing remains; None when it is not
      running, or nothing can be dialed before a window opens or a retry is due);
    - its abandonment rate.
    """
    now = now or timezone.now()
    counts = CampaignContact.objects.filter(campaign=campaign).aggregate(**contact_figures())
    in_call = calls_in_flight(campaign).count()
    waiting = pending_now(campaign, now)
    rate = dial_rate(campaign, now)
    return {"campaign": campaign.pk, "state": campaign.state, **counts, "in_call": in_call, **waiting,
            "dial_rate": round(rate, 2), "eta_seconds": _eta_seconds(campaign, counts, waiting, rate),
            "abandonment_rate": abandonment_rate(campaign)}


def abandonment_rate(campaign: Campaign) -> float | None:
    """Abandoned / answered calls of the campaign (None before any answer)."""
    figures = Call.objects.filter(campaign_id=campaign.pk, answered_at__isnull=False).aggregate(
        answered=Count("id"), abandoned=Count("id", filter=Q(abandoned=True)))
    return round(figures["abandoned"] / figures["answered"], 4) if figures["answered"] else None


def _zone(name: str | None) -> zoneinfo.ZoneInfo | None:
    return zoneinfo.ZoneInfo(name) if name and name in known_time_zones() else None


def _window_zone(campaign: Campaign, tz_name: str | None) -> dt.tzinfo:
    return _zone(tz_name) or _zone(campaign.default_time_zone) or dt.UTC


def local_window_open(campaign: Campaign, tz_name: str | None, now: dt.datetime) -> bool:
    """Is `now` (an aware datetime) inside the campaign's calling window in time zone `tz_name`?
    The window is [window_start, window_end) local time on the campaign's weekdays; an empty or
    unknown time zone falls back to the campaign's default time zone (then UTC)."""
    local = now.astimezone(_window_zone(campaign, tz_name))
    return local.weekday() in campaign.weekdays and campaign.window_start <= local.time() < campaign.window_end


def next_window_opens(campaign: Campaign, tz_name: str | None, now: dt.datetime) -> dt.datetime | None:
    """When the campaign's calling window in time zone `tz_name` is next open: `now` when it is open,
    else when it opens (None: it never does, with no weekday)."""
    zone = _window_zone(campaign, tz_name)
    today = now.astimezone(zone).date()
    for day in (today + dt.timedelta(days=n) for n in range(8)):
        if day.weekday() in campaign.weekdays and now < dt.datetime.combine(day, campaign.window_end, tzinfo=zone):
            return max(now, dt.datetime.combine(day, campaign.window_start, tzinfo=zone))
    return None


def campaign_time_zones(campaign: Campaign) -> set[str | None]:
    """The time zones of the campaign's contacts (the dialer reads them once per slice)."""
    return set(CampaignContact.objects.filter(campaign=campaign).values_list("contact__time_zone", flat=True)
               .distinct().order_by())


def due_contacts(campaign: Campaign, now: dt.datetime, limit: int,
                 zones: set[str | None] | None = None) -> list[CampaignContact]:
    """Pending contacts of the campaign that are due (next_attempt_at is empty or has come), whose own
    local time is inside the calling window, and whose number is not on the do-not-call list; the
    earliest-due first, with their contact. Does not look at the campaign's state: the dialer only
    asks for running campaigns, and claims the rows (services.campaign_contacts_claim) before dialing.

    The window is evaluated once per distinct time zone among the due contacts (or among `zones`, any
    set holding theirs: campaign_time_zones), then applied in SQL.
    """
    due = CampaignContact.objects.filter(campaign=campaign, state=ContactState.PENDING).filter(
        Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=now)
    )
    if zones is None:
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


def campaigns_scheduled() -> QuerySet[Campaign]:
    return Campaign.objects.filter(state=Campaign.State.SCHEDULED)


def campaigns_running() -> QuerySet[Campaign]:
    return Campaign.objects.filter(state=Campaign.State.RUNNING)


def campaigns_settling() -> QuerySet[Campaign]:
    """Campaigns that are not running but still have calls in flight (paused or cancelled meanwhile):
    their contacts take the outcome of those calls when they end."""
    dialing = CampaignContact.objects.filter(campaign=OuterRef("pk"), state=ContactState.DIALING)
    return Campaign.objects.filter(state__in=(Campaign.State.PAUSED, Campaign.State.CANCELLED)).filter(Exists(dialing))


def campaign_carriers(campaign: Campaign) -> list[Carrier]:
    """The carriers the campaign's calls can be routed to now: for the region of each of its caller
    IDs, the usable carriers routing picks from (telephony.routing.eligible_carriers)."""
    carriers = {carrier.pk: carrier for carrier in Carrier.objects.filter(enabled=True, healthy=True)}
    routes = [CarrierRoute(id=pk, host=carrier.host, region=carrier.region or None)
              for pk, carrier in carriers.items()]
    regions = set(Number.objects.filter(e164__in=campaign.caller_ids).values_list("region", flat=True))
    usable = {}
    for region in regions or {""}:
        for route in eligible_carriers(routes, region or None):
            usable[route.id] = carriers[route.id]
    return list(usable.values())


PACE_CALLS = 20  # the dial rate is measured over the campaign's last calls since it (re)started
PACE_MIN_CALLS = 5  # with fewer, the rate it is allowed is used


def dial_rate(campaign: Campaign, now: dt.datetime) -> float:
    """Calls per second the campaign really places: its last PACE_CALLS calls since it last started
    or resumed, over the time from the first of them to now (so a stall shows at once), never above
    the rate it is allowed (its CPS, at most its carriers' combined CPS), which is also the answer
    until it has made PACE_MIN_CALLS calls."""
    carriers = campaign_carriers(campaign)
    allowed = campaign.cps
    if carriers and all(carrier.max_cps for carrier in carriers):
        allowed = min(allowed, sum(carrier.max_cps for carrier in carriers))
    if campaign.state != Campaign.State.RUNNING or campaign.dialing_since is None:
        return allowed
    recent = list(Call.objects.filter(campaign_id=campaign.pk, created_at__gte=campaign.dialing_since,
                                      created_at__lte=now)
                  .order_by("-created_at").values_list("created_at", flat=True)[:PACE_CALLS])
    if len(recent) < PACE_MIN_CALLS:
        return allowed
    span = (now - recent[-1]).total_seconds()
    return min(allowed, len(recent) / span) if span > 0 else allowed


def pending_now(campaign: Campaign, now: dt.datetime) -> dict:
    """The campaign's pending contacts (not on do-not-call) by what they wait for: `dialable_now`,
    `waiting_for_window` (their local calling window is closed; `next_window_at`: when the first of
    those windows opens) and `waiting_for_retry` (`next_retry_at`: when the first retry is due)."""
    blocked = DoNotCall.objects.filter(phone=OuterRef("contact__phone"))
    due = Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=now)
    by_zone = (
        CampaignContact.objects.filter(campaign=campaign, state=ContactState.PENDING).filter(~Exists(blocked))
        .values("contact__time_zone").order_by()
        .annotate(contacts=Count("id"), due=Count("id", filter=due),
                  next_retry=Min("next_attempt_at", filter=Q(next_attempt_at__gt=now)))
    )
    figures = {"dialable_now": 0, "waiting_for_window": 0, "waiting_for_retry": 0,
               "next_window_at": None, "next_retry_at": None}
    for row in by_zone:
        zone = row["contact__time_zone"]
        if local_window_open(campaign, zone, now):
            figures["dialable_now"] += row["due"]
            figures["waiting_for_retry"] += row["contacts"] - row["due"]
            if row["next_retry"]:
                figures["next_retry_at"] = min(filter(None, (figures["next_retry_at"], row["next_retry"])))
        else:
            figures["waiting_for_window"] += row["contacts"]
            opens = next_window_opens(campaign, zone, now)
            if opens:
                figures["next_window_at"] = min(filter(None, (figures["next_window_at"], opens)))
    return figures


def _eta_seconds(campaign: Campaign, counts: dict, waiting: dict, rate: float) -> int | None:
    if campaign.state == Campaign.State.COMPLETED or (counts["total"] and not counts["remaining"]):
        return 0
    if campaign.state != Campaign.State.RUNNING:
        return None
    if waiting["dialable_now"]:
        return round(waiting["dialable_now"] / rate)
    if waiting["waiting_for_window"] or waiting["waiting_for_retry"]:
        return None
    return 0  # only calls in flight are left
