"""Reads the pages need beyond the apps' own selectors: a campaign's live progress as its page shows
it (the figures come from campaigns.selectors; only their wording is here), the campaign list with
counts, and a campaign's results for export. No writes here."""
from __future__ import annotations

import time

from django.utils import timezone

from campaigns.models import Campaign, CampaignContact
from campaigns.selectors import campaign_progress, campaigns_with_progress
from core.redis_client import get_redis
from telephony.gateway.client import pool_capacity

ContactState = CampaignContact.State


def _duration_text(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    if 0 < seconds < 1:
        return "< 1 s"
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {seconds:02d} s"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours} h {minutes:02d} min"
    return f"{hours // 24} days {hours % 24} h"


def gateway_capacity(max_concurrent: int | None = None) -> dict:
    """The gateway pool's capacity and use (gateways alive now), and a warning when a campaign's
    concurrency is more than the pool holds or the pool is full."""
    capacity, active = pool_capacity(get_redis())
    warning = ""
    if max_concurrent and max_concurrent > capacity:
        warning = (f"At most {max_concurrent} calls at once were asked for, but the gateway pool holds "
                   f"{capacity} now: no more than {capacity} run at a time. Add gateway processes "
                   f"(GATEWAY_PROCESSES, 4 calls each) or lower the concurrency.")
    return {"pool_capacity": capacity, "pool_active": active, "pool_full": bool(capacity) and active >= capacity,
            "capacity_warning": warning}


def campaign_live_progress(campaign: Campaign, now=None) -> dict:
    """campaign_progress plus what a person watching the campaign page wants, as the page shows it:
    failed, percent done, the ETA and the abandonment rate as text."""
    now = now or timezone.now()
    progress = campaign_progress(campaign, now)
    total, remaining = progress["total"], progress["remaining"]
    abandonment = progress["abandonment_rate"]
    return {
        **progress,
        "failed": progress[ContactState.FAILED],
        "percent_done": round((total - remaining) * 100 / total, 1) if total else 0,
        "eta_text": _eta_text(campaign, progress, now),
        "abandonment_text": "–" if abandonment is None else f"{abandonment * 100:.1f} %",
        "state_label": campaign.get_state_display(),
        "start_at": campaign.start_at.isoformat() if campaign.start_at else None,
        "updated_at": time.time(),
        # a campaign that has ended dials nobody more: its concurrency is no concern of the pool's
        **gateway_capacity(None if campaign.is_final else campaign.max_concurrent),
    }


def _eta_text(campaign: Campaign, progress: dict, now) -> str:
    if campaign.state == Campaign.State.PAUSED and progress["remaining"]:
        return "paused"
    text = _duration_text(progress["eta_seconds"])
    opens = progress["next_window_at"]
    if campaign.state != Campaign.State.RUNNING or opens is None:
        return text
    opens_in = _duration_text((opens - now).total_seconds())
    if progress["eta_seconds"] is None:
        return f"calling window opens in {opens_in}"
    return f"{text}, the rest when their window opens in {opens_in}"


def campaigns_with_counts():
    return campaigns_with_progress().select_related("contact_list")


EXPORT_COLUMNS = ["phone", "name", "time_zone", "state", "attempts", "last_outcome", "last_call_sid",
                  "next_attempt_at", "updated_at", "variables"]


def campaign_results(campaign: Campaign):
    """One row per contact of the campaign (after it started; before that, the list's contacts as
    not started), in the order of EXPORT_COLUMNS, streamed from the database."""
    import json

    if campaign.started_at or CampaignContact.objects.filter(campaign=campaign).exists():
        rows = (CampaignContact.objects.filter(campaign=campaign).select_related("contact").order_by("id")
                .iterator(chunk_size=2000))
        for cc in rows:
            c = cc.contact
            yield [c.phone, c.name, c.time_zone, cc.state, cc.attempts, cc.last_outcome, cc.last_call_sid,
                   cc.next_attempt_at.isoformat() if cc.next_attempt_at else "", cc.updated_at.isoformat(),
                   json.dumps(c.variables, ensure_ascii=False) if c.variables else ""]
    else:
        for c in campaign.contact_list.contacts.order_by("id").iterator(chunk_size=2000):
            yield [c.phone, c.name, c.time_zone, "not started", 0, "", "", "", "",
                   json.dumps(c.variables, ensure_ascii=False) if c.variables else ""]
