"""Tenant settings, for the tenant's admins on the tenant's host: API keys, webhooks (signing secret
and delivery log), the do-not-call list, users. A secret made here is shown once, on the page right
after it was made (kept in the session until then), and never again."""
from __future__ import annotations

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.core.paginator import Paginator
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_http_methods, require_POST

from campaigns import dnc
from campaigns import services as campaign_services
from campaigns.selectors import do_not_call_entries
from telephony.calls.models import WebhookDelivery
from tenants import auth_token
from tenants import services as tenant_services
from tenants.accounts import selectors as account_selectors
from tenants.accounts import services as account_services

from . import uploads
from .access import tenant_page
from .forms import ApiKeyForm, DoNotCallForm, DoNotCallUploadForm, UserCreateForm, WebhookUrlForm

NEW_KEY = "ui_new_api_key"
PAGE_SIZE = 50


@tenant_page(admin=True)
@never_cache
@require_http_methods(["GET", "POST"])
def api_keys(request):
    if request.method == "POST":
        form = ApiKeyForm(request.POST)
        if form.is_valid():
            key = account_services.issue_api_key(request.tenant.account_sid, name=form.cleaned_data["name"],
                                                 read_only=form.cleaned_data["read_only"])
            request.session[NEW_KEY] = {"name": form.cleaned_data["name"], "key": key}
            return redirect("ui:api-keys")
    else:
        form = ApiKeyForm()
    return render(request, "ui/settings/api_keys.html", {
        "form": form, "keys": account_selectors.api_keys(), "new_key": request.session.pop(NEW_KEY, None),
        "account_sid": request.tenant.account_sid,
    })


@tenant_page(admin=True)
@require_POST
def api_key_revoke(request, pk: int):
    key = get_object_or_404(account_selectors.api_keys(), pk=pk)
    if account_services.revoke_api_key(key.pk):
        messages.success(request, f"Key “{key.name}” ({key.prefix}…) revoked: it no longer works.")
    else:
        messages.info(request, f"Key “{key.name}” was already revoked.")
    return redirect("ui:api-keys")


@tenant_page(admin=True)
@never_cache
@require_http_methods(["GET", "POST"])
def webhooks(request):
    if request.method == "POST":
        url_form = WebhookUrlForm(request.POST)
        if url_form.is_valid():
            url = url_form.cleaned_data["status_callback"]
            tenant_services.set_status_callback(request.tenant, url)
            messages.success(request, f"Calls without their own status callback now report to {url}." if url else
                             "Calls without their own status callback no longer send any.")
            return redirect("ui:webhooks")
    else:
        url_form = WebhookUrlForm(initial={"status_callback": request.tenant.status_callback})
    deliveries = WebhookDelivery.objects.select_related("call").order_by("-created_at")
    status = request.GET.get("status", "")
    if status == "failed":
        deliveries = deliveries.filter(gave_up_at__isnull=False)
    elif status == "delivered":
        deliveries = deliveries.filter(delivered_at__isnull=False)
    elif status == "pending":
        deliveries = deliveries.filter(delivered_at__isnull=True, gave_up_at__isnull=True)
    page = Paginator(deliveries, PAGE_SIZE).get_page(request.GET.get("page"))
    return render(request, "ui/settings/webhooks.html", {
        "auth_token": auth_token.current(request.tenant), "page": page, "status": status, "url_form": url_form,
        "previous_until": request.tenant.previous_auth_token_until if auth_token.previous(request.tenant) else None,
    })


@tenant_page(admin=True)
@require_POST
def auth_token_rotate(request):
    auth_token.rotate(request.tenant)
    messages.success(request, "New auth token: requests to you are signed with it from now on; the previous "
                              f"one still authenticates for {auth_token.ROTATION_GRACE.total_seconds() / 3600:g} hours.")
    return redirect("ui:webhooks")


@tenant_page(admin=True)
@require_http_methods(["GET", "POST"])
def do_not_call(request):
    add_form, upload_form, result = DoNotCallForm(), DoNotCallUploadForm(), None
    if request.method == "POST" and request.POST.get("form") == "add":
        add_form = DoNotCallForm(request.POST)
        if add_form.is_valid():
            try:
                entry, created = campaign_services.do_not_call_add(**add_form.cleaned_data)
            except ValidationError as exc:
                for problem in exc.message_dict.get("phone", exc.messages):
                    add_form.add_error("phone", problem)
            else:
                if created:
                    messages.success(request, f"{entry.phone} is on the do-not-call list.")
                else:
                    messages.info(request, f"{entry.phone} was already on the do-not-call list.")
                return redirect("ui:do-not-call")
    elif request.method == "POST" and request.POST.get("form") == "upload":
        upload_form = DoNotCallUploadForm(request.POST, request.FILES)
        if upload_form.is_valid():
            data = b"".join(upload_form.cleaned_data["file"].chunks())
            try:
                result = dnc.do_not_call_import(data)
            except UnicodeDecodeError:
                upload_form.add_error("file", f"This file is not UTF-8. Save it as CSV UTF-8: {uploads.ACCEPTED} "
                                              "is accepted.")
            else:
                upload_form = DoNotCallUploadForm()
    query = request.GET.get("q", "").strip()
    entries = do_not_call_entries()
    if query:
        entries = entries.filter(phone__contains=query.replace(" ", ""))
    page = Paginator(entries, PAGE_SIZE).get_page(request.GET.get("page"))
    return render(request, "ui/settings/do_not_call.html", {
        "add_form": add_form, "upload_form": upload_form, "result": result, "page": page, "q": query,
    })


@tenant_page(admin=True)
@require_POST
def do_not_call_remove(request, pk: int):
    entry = get_object_or_404(do_not_call_entries(), pk=pk)
    campaign_services.do_not_call_delete(entry)
    messages.success(request, f"{entry.phone} removed from the do-not-call list.")
    return redirect("ui:do-not-call")


ROLE_NAMES = {"admin": "an admin", "member": "a member", "viewer": "a viewer (read-only)"}


@tenant_page(admin=True)
@require_http_methods(["GET", "POST"])
def users(request):
    if request.method == "POST":
        form = UserCreateForm(request.POST)
        if form.is_valid():
            user = account_services.user_create(
                username=form.cleaned_data["username"], email=form.cleaned_data["email"],
                password=form.cleaned_data["password"], role=form.cleaned_data["role"],
            )
            messages.success(request, f"{user.username} can now sign in at {request.get_host()} as "
                                      f"{ROLE_NAMES[form.cleaned_data['role']]}.")
            return redirect("ui:users")
    else:
        form = UserCreateForm()
    people = list(account_selectors.users())
    for person in people:
        person.role = account_selectors.role_of(person)
    return render(request, "ui/settings/users.html", {"form": form, "users": people, "roles": ROLE_NAMES})


@tenant_page(admin=True)
@require_POST
def user_role(request, pk: int):
    user = get_object_or_404(account_selectors.users(), pk=pk)
    role = request.POST.get("role", "")
    try:
        account_services.user_set_role(user, role=role, changed_by=request.user)
    except account_services.RoleChangeRefused as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, f"{user.username} is now {ROLE_NAMES[role]}.")
    return redirect("ui:users")


@tenant_page(admin=True)
@require_POST
def user_access(request, pk: int):
    user = get_object_or_404(account_selectors.users(), pk=pk)
    active = request.POST.get("active") == "yes"
    try:
        account_services.user_set_active(user, active=active, changed_by=request.user)
    except account_services.RoleChangeRefused as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, f"{user.username} can sign in again." if active else
                         f"{user.username} is deactivated: they can no longer sign in (nothing of theirs is deleted).")
    return redirect("ui:users")
