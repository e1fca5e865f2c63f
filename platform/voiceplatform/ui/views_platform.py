"""Platform admin, on the public host, for staff: carriers (with health, OPTIONS test and history),
numbers (assignment and inbound routing, then the inventory is published to the gateways), tenants
(created with their credentials shown once; suspension and limits) and the gateway pool."""
from __future__ import annotations

from django.contrib import messages
from django.db.models import Count
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from core.redis_client import get_redis
from telephony import services as telephony_services
from telephony.gateway.client import pool_status
from telephony.models import Carrier, CarrierHealthEvent, Number
from tenants import services as tenant_services
from tenants.models import Tenant

from . import services
from .access import platform_page
from .forms import CarrierForm, NumberForm, TenantCreateForm, TenantEditForm

NEW_CREDENTIALS = "ui_new_tenant_credentials"


def _published(request, what: str) -> None:
    problem = services.publish_inventory_quietly()
    if problem:
        messages.warning(request, f"{what} saved, but the gateways could not be told yet ({problem}); "
                                  "they pick it up within 30 seconds once Redis answers.")
    else:
        messages.success(request, f"{what} saved and published to the gateways.")


@platform_page
@require_GET
def index(request):
    return redirect("ui:carriers")


# --- carriers ------------------------------------------------------------------------------------


@platform_page
@never_cache
@require_GET
def carriers(request):
    return render(request, "ui/platform/carriers.html", {
        "carriers": Carrier.objects.annotate(event_count=Count("health_events")),
        "events": CarrierHealthEvent.objects.select_related("carrier")[:20],
    })


@platform_page
@require_http_methods(["GET", "POST"])
def carrier_edit(request, pk: int | None = None):
    carrier = get_object_or_404(Carrier, pk=pk) if pk else None
    if request.method == "POST":
        form = CarrierForm(request.POST, instance=carrier)
        if form.is_valid():
            carrier = form.save()
            _published(request, f"Carrier “{carrier.name}”")
            return redirect("ui:carrier", pk=carrier.pk)
    else:
        form = CarrierForm(instance=carrier)
    return render(request, "ui/platform/carrier_form.html", {
        "form": form, "carrier": carrier,
        "events": carrier.health_events.all()[:50] if carrier else [],
        "has_password": bool(carrier and carrier.password_encrypted),
    })


@platform_page
@require_POST
def carrier_test(request, pk: int):
    """SIP OPTIONS to the trunk now; the result counts toward its health like a scheduled check
    (telephony.services.check_carrier, split in its two halves to show the answer)."""
    carrier = get_object_or_404(Carrier, pk=pk)
    result = telephony_services.ping_carrier(carrier)
    flip = telephony_services.record_health(carrier.pk, result)
    if result.ok:
        rtt = f" in {result.rtt_ms:.1f} ms" if result.rtt_ms is not None else ""
        messages.success(request, f"OPTIONS to {carrier.name}: answered {result.code}{rtt}.")
    else:
        messages.error(request, f"OPTIONS to {carrier.name} failed: {result.error or result.code}.")
    if flip:
        messages.warning(request, f"{carrier.name} is now {flip}.")
    if request.POST.get("next") == "list":
        return redirect("ui:carriers")
    return redirect("ui:carrier", pk=pk)


@platform_page
@require_POST
def carrier_delete(request, pk: int):
    carrier = get_object_or_404(Carrier, pk=pk)
    carrier.delete()
    _published(request, f"Carrier “{carrier.name}” deleted;")
    return redirect("ui:carriers")


# --- numbers -------------------------------------------------------------------------------------


@platform_page
@require_GET
def numbers(request):
    query = request.GET.get("q", "").strip()
    rows = Number.objects.select_related("tenant")
    if query:
        rows = rows.filter(e164__contains=query.replace(" ", ""))
    tenant = request.GET.get("tenant", "")
    if tenant == "none":
        rows = rows.filter(tenant__isnull=True)
    elif tenant:
        rows = rows.filter(tenant__schema_name=tenant)
    return render(request, "ui/platform/numbers.html", {
        "numbers": rows[:1000], "q": query, "tenant": tenant,
        "tenants": Tenant.objects.exclude(schema_name="public").order_by("name"),
    })


@platform_page
@require_http_methods(["GET", "POST"])
def number_edit(request, pk: int | None = None):
    number = get_object_or_404(Number, pk=pk) if pk else None
    if request.method == "POST":
        form = NumberForm(request.POST, instance=number)
        if form.is_valid():
            number = form.save()
            _published(request, f"Number {number.e164}")
            return redirect("ui:numbers")
    else:
        form = NumberForm(instance=number)
    return render(request, "ui/platform/number_form.html", {"form": form, "number": number})


# --- tenants -------------------------------------------------------------------------------------


@platform_page
@never_cache
@require_http_methods(["GET", "POST"])
def tenants(request):
    if request.method == "POST":
        form = TenantCreateForm(request.POST)
        if form.is_valid():
            data = form.cleaned_data
            try:
                credentials = tenant_services.create_tenant(data["slug"], data["domain"], name=data["name"] or None)
            except tenant_services.TenantError as exc:
                text = str(exc)
                form.add_error("domain" if text.startswith(("invalid domain", "domain")) else "slug", text)
            else:
                request.session[NEW_CREDENTIALS] = credentials.as_dict()
                tenant = Tenant.objects.get(schema_name=credentials.tenant)
                return redirect("ui:tenant", pk=tenant.pk)
    else:
        form = TenantCreateForm()
    return render(request, "ui/platform/tenants.html", {
        "form": form,
        "tenants": Tenant.objects.exclude(schema_name="public").prefetch_related("domains")
        .annotate(number_count=Count("numbers")).order_by("name"),
    })


@platform_page
@never_cache
@require_http_methods(["GET", "POST"])
def tenant_edit(request, pk: int):
    tenant = get_object_or_404(Tenant.objects.exclude(schema_name="public"), pk=pk)
    if request.method == "POST":
        form = TenantEditForm(request.POST, instance=tenant)
        if form.is_valid():
            form.save()
            messages.success(request, f"{tenant.name} saved.")
            return redirect("ui:tenant", pk=tenant.pk)
    else:
        form = TenantEditForm(instance=tenant)
    credentials = request.session.pop(NEW_CREDENTIALS, None)
    if credentials and credentials.get("tenant") != tenant.schema_name:
        credentials = None
    return render(request, "ui/platform/tenant_form.html", {
        "form": form, "tenant": tenant, "credentials": credentials,
        "domains": tenant.domains.all(), "numbers": tenant.numbers.all(),
    })


# --- gateway pool --------------------------------------------------------------------------------


@platform_page
@never_cache
@require_GET
def gateways(request):
    problem, pool = None, []
    try:
        pool = pool_status(get_redis())
    except Exception as exc:  # Redis unreachable: say so on the page
        problem = str(exc)
    alive = [g for g in pool if g["alive"]]
    return render(request, "ui/platform/gateways.html", {
        "pool": pool, "problem": problem, "alive": len(alive),
        "capacity": sum(g["capacity"] for g in alive), "active": sum(g["active"] for g in alive),
    })
