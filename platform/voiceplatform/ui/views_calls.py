"""The calls log (search, filters, sort, pages, CSV of what is shown) and the call page (timeline,
quality, campaign and contact, webhook deliveries, recording), with hang-up and webhook resend."""
from __future__ import annotations

from django.contrib import messages
from django.core.paginator import Paginator
from django.http import FileResponse, Http404
from django.shortcuts import get_object_or_404, redirect, render
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_POST

from telephony.calls import services as call_services
from telephony.calls import webhooks
from telephony.calls.models import Call, Recording, WebhookDelivery

from . import selectors_calls
from .access import platform_page, tenant_page
from .csv_export import csv_download

PAGE_SIZE = 50
COLUMNS = [("time", "created"), ("to", "to"), ("status", "status"), ("outcome", "outcome"),
           ("setup", "setup"), ("duration", "duration")]


def _sortable(sort: str) -> list[dict]:
    """The log's sortable headers: each links to its sort (descending first), and says if it is the one."""
    columns = []
    for label, key in COLUMNS:
        current = sort.lstrip("-") == key
        descending = sort.startswith("-")
        columns.append({"label": label, "next": key if current and descending else f"-{key}",
                        "aria": ("descending" if descending else "ascending") if current else ""})
    return columns


@tenant_page()
@never_cache
@require_GET
def call_log(request):
    calls = selectors_calls.call_log(request.GET)
    page = Paginator(calls, PAGE_SIZE).get_page(request.GET.get("page"))
    sort = request.GET.get("sort") or selectors_calls.DEFAULT_SORT
    names = selectors_calls.campaign_names(page)
    for call in page:
        call.campaign_name = names.get(call.campaign_id, "")
    return render(request, "ui/calls/list.html", {
        "page": page, "calls": page, "f": request.GET, "columns": _sortable(sort), "choices": selectors_calls.call_log_choices(),
    })


@tenant_page()
@require_GET
def call_log_export(request):
    params, columns = request.GET.copy(), selectors_calls.EXPORT_COLUMNS
    return csv_download(request.tenant, columns,
                        lambda: selectors_calls.call_log(params).values_list(*columns).iterator(chunk_size=2000),
                        "calls.csv")


@tenant_page()
@never_cache
@require_GET
def call_detail(request, sid: str):
    data = selectors_calls.call_page(sid)
    if data is None:
        raise Http404("no such call")
    return render(request, "ui/calls/detail.html", data)


@tenant_page()
@require_GET
def call_recording(request, sid: str):
    """The call's recording, played in the call page's audio player (viewers too)."""
    recording = get_object_or_404(Recording, call__sid=sid)
    return FileResponse(recording.file.open("rb"), content_type="audio/wav", filename=f"{recording.sid}.wav")


@tenant_page(change=True)
@require_POST
def call_hangup(request, sid: str):
    call = get_object_or_404(Call, sid=sid)
    if call.is_final:
        messages.info(request, "This call had already ended.")
    else:
        call_services.hang_up(call)
        messages.success(request, "Hang-up sent: the call ends in a moment.")
    back = request.POST.get("next", "")
    if back and url_has_allowed_host_and_scheme(back, allowed_hosts={request.get_host()}):
        return redirect(back)
    return redirect("ui:call", sid=sid)


@tenant_page(change=True)
@require_POST
def delivery_resend(request, sid: str, pk: int):
    delivery = get_object_or_404(WebhookDelivery, pk=pk, call__sid=sid)
    webhooks.redeliver(delivery.pk)
    messages.success(request, f"The {delivery.event} callback is sent again to {delivery.url}.")
    return redirect("ui:call", sid=sid)


@platform_page
@never_cache
@require_GET
def platform_call_log(request):
    """Platform admins: the calls of every tenant, on the public host (read-only)."""
    try:
        number = max(1, int(request.GET.get("page", "1")))
    except ValueError:
        number = 1
    calls, total = selectors_calls.platform_call_log(request.GET, number, PAGE_SIZE)
    page = Paginator(range(total), PAGE_SIZE).get_page(number)
    return render(request, "ui/calls/list.html", {
        "page": page, "calls": calls, "f": request.GET, "platform_view": True,
        "columns": _sortable(request.GET.get("sort") or selectors_calls.DEFAULT_SORT),
        "choices": selectors_calls.platform_call_log_choices(),
    })


@platform_page
@never_cache
@require_GET
def platform_call_detail(request, schema: str, sid: str):
    from django_tenants.utils import schema_context

    from tenants.selectors import tenant_schemas

    if schema not in tenant_schemas():
        raise Http404("no such tenant")
    with schema_context(schema):
        data = selectors_calls.call_page(sid)
        if data is None:
            raise Http404("no such call")
        return render(request, "ui/calls/detail.html", {**data, "platform_view": True, "schema": schema})
