"""Campaigns of a tenant: the list, a campaign's page with live progress (a small JSON view the page
polls every second), pause / resume / cancel / start, and the results as CSV."""
from __future__ import annotations

from django.contrib import messages
from django.http import JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils.text import slugify
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_POST

from campaigns import services
from campaigns.models import Campaign

from . import selectors
from .access import tenant_page
from .csv_export import csv_download

ACTIONS = {
    "start": services.campaign_start,
    "pause": services.campaign_pause,
    "resume": services.campaign_resume,
    "cancel": services.campaign_cancel,
}


@tenant_page()
@require_GET
def campaign_list(request):
    return render(request, "ui/campaigns/list.html", {
        "campaigns": selectors.campaigns_with_counts().order_by("-created_at")[:500],
    })


@tenant_page()
@require_GET
def campaign_detail(request, pk: int):
    campaign = get_object_or_404(Campaign.objects.select_related("contact_list"), pk=pk)
    return render(request, "ui/campaigns/detail.html", {
        "campaign": campaign,
        "progress": selectors.campaign_live_progress(campaign),
        "contact_count": campaign.contact_list.contacts.count(),
        "weekdays": ", ".join(("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")[d] for d in campaign.weekdays),
    })


@tenant_page()
@never_cache
@require_GET
def campaign_progress(request, pk: int):
    campaign = get_object_or_404(Campaign, pk=pk)
    return JsonResponse(selectors.campaign_live_progress(campaign))


@tenant_page(change=True)
@require_POST
def campaign_action(request, pk: int, action: str):
    campaign = get_object_or_404(Campaign, pk=pk)
    service = ACTIONS.get(action)
    if service is None:
        messages.error(request, f"Unknown action {action!r}.")
        return redirect("ui:campaign", pk=pk)
    try:
        campaign = service(campaign.pk)
    except services.TransitionNotAllowed as exc:
        messages.error(request, f"Could not {action}: the campaign is {exc.state}.")
    else:
        done = {"start": "started", "pause": "paused", "resume": "resumed", "cancel": "cancelled"}[action]
        messages.success(request, f"Campaign {done}.")
    return redirect("ui:campaign", pk=pk)


@tenant_page()
@require_GET
def campaign_export(request, pk: int):
    campaign = get_object_or_404(Campaign.objects.select_related("contact_list"), pk=pk)
    filename = f"campaign-{campaign.pk}-{slugify(campaign.name) or 'results'}.csv"
    return csv_download(request.tenant, selectors.EXPORT_COLUMNS, lambda: selectors.campaign_results(campaign),
                        filename)
