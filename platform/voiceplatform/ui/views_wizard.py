"""The campaign builder: a few pages, one question each, for business users of a tenant.

1 contacts (name + CSV upload, or an existing list) → 2 columns (preview and mapping) → 3 import
report → 4 calling (caller IDs, pacing, window, retries) → 5 AI agent → a draft Campaign is created
(campaigns.services.campaign_create) → 6 test call (optional) → 7 review, then start now or schedule
the start (Campaign.start_at: the campaign is `scheduled` and the dialer's periodic task starts it).

Until the draft exists the answers wait in the session (the upload in the cache, see ui.uploads); from
then on each step writes through campaigns.services.campaign_update, so the draft is the truth and
/campaigns/<id>/edit/ picks a draft up again in any browser.
"""
from __future__ import annotations

import datetime as dt

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.http import JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods

from campaigns import imports, services
from campaigns.dialer import campaign_call_request
from campaigns.models import Campaign, ContactList
from campaigns.selectors import contact_lists
from telephony.calls.models import Call
from telephony.calls.services import CallRequestError, place_call
from telephony.models import Number

from . import selectors as ui_selectors
from . import services as ui_services
from . import uploads
from .access import tenant_page
from .forms import (
    AgentForm,
    CallingForm,
    CampaignStartForm,
    ColumnMappingForm,
    ScheduleForm,
    TestCallForm,
    parameters_as_text,
)
from .forms_amd import AMD_FIELDS, MachineDetectionForm

SESSION_KEY = "ui_campaign_wizard"
STEPS = [
    ("contacts", "Contacts"), ("columns", "Columns"), ("report", "Import report"), ("calling", "Calling"),
    ("agent", "AI agent"), ("test", "Test call"), ("review", "Review & start"),
]
CALLING_FIELDS = list(CallingForm.base_fields)
AGENT_FIELDS = list(AgentForm.base_fields)


# --- wizard state --------------------------------------------------------------------------------


def _state(request) -> dict:
    return request.session.get(SESSION_KEY) or {}


def _save(request, state: dict) -> None:
    request.session[SESSION_KEY] = state
    request.session.modified = True


def _clear(request) -> None:
    state = _state(request)
    if state.get("upload"):
        uploads.drop(request.tenant.schema_name, state["upload"].get("token"))
    request.session.pop(SESSION_KEY, None)


def _draft(state: dict) -> Campaign | None:
    if not state.get("campaign_id"):
        return None
    return Campaign.objects.filter(pk=state["campaign_id"]).first()


def _json_safe(data: dict) -> dict:
    return {k: v.isoformat(timespec="minutes") if isinstance(v, dt.time) else v for k, v in data.items()}


def _campaign_values(data: dict) -> dict:
    out = dict(data)
    for name in ("window_start", "window_end"):
        if isinstance(out.get(name), str):
            out[name] = dt.time.fromisoformat(out[name])
    return out


def state_from_campaign(campaign: Campaign) -> dict:
    calling = {name: getattr(campaign, name) for name in CALLING_FIELDS}
    calling["weekdays"] = list(campaign.weekdays)
    agent = {name: getattr(campaign, name) for name in AGENT_FIELDS}
    amd = {name: getattr(campaign, name) for name in AMD_FIELDS}
    return {"name": campaign.name, "contact_list_id": campaign.contact_list_id, "campaign_id": campaign.pk,
            "calling": _json_safe(calling), "agent": agent, "amd": amd}


def _page(request, step: str, template: str, context: dict):
    state = _state(request)
    done = {
        "contacts": bool(state.get("contact_list_id") or state.get("upload")),
        "columns": bool(state.get("contact_list_id")),
        "report": bool(state.get("contact_list_id")),
        "calling": bool(state.get("calling")),
        "agent": bool(state.get("campaign_id")),
        "test": bool(state.get("campaign_id")),
        "review": False,
    }
    campaign_id = state.get("campaign_id")
    urls = {
        "contacts": reverse("ui:wizard-contacts"), "columns": reverse("ui:wizard-columns"),
        "report": reverse("ui:wizard-report"), "calling": reverse("ui:wizard-calling"),
        "agent": reverse("ui:wizard-agent"),
        "test": reverse("ui:wizard-test", args=[campaign_id]) if campaign_id else None,
        "review": reverse("ui:wizard-review", args=[campaign_id]) if campaign_id else None,
    }
    if state.get("contact_list_id") and not state.get("upload"):
        urls["columns"] = urls["report"] = None  # an existing list: nothing was imported here
    steps = [{"key": key, "label": label, "number": i + 1, "current": key == step, "done": done[key],
              "url": urls[key]} for i, (key, label) in enumerate(STEPS)]
    return render(request, template, {"steps": steps, "step": step, "wizard": state, **context})


# --- steps ---------------------------------------------------------------------------------------


@tenant_page(change=True)
@require_http_methods(["GET", "POST"])
def contacts(request):
    """Step 1: the campaign's name and its contacts (a CSV to upload, or a list already there)."""
    if request.GET.get("restart"):
        _clear(request)
        return redirect("ui:wizard-contacts")
    state = _state(request)
    draft = _draft(state)
    if draft is not None and draft.state != Campaign.State.DRAFT:
        _clear(request)
        state, draft = {}, None
    lists = contact_lists().order_by("-created_at")[:200]
    if request.method == "POST":
        form = CampaignStartForm(request.POST, request.FILES, contact_lists=lists)
        data = None
        if form.is_valid() and form.cleaned_data.get("file"):
            data = b"".join(form.cleaned_data["file"].chunks())
            try:
                uploads.preview(data)
            except uploads.UnreadableFile as exc:
                form.add_error("file", str(exc))
        if form.is_valid():
            name = form.cleaned_data["name"]
            schema = request.tenant.schema_name
            if state.get("upload"):
                uploads.drop(schema, state["upload"].get("token"))
            state.update(name=name, upload=None, mapping=None, report=None, contact_list_id=None)
            if draft is not None:
                services.campaign_update(draft, name=name)
            upload = form.cleaned_data.get("file")
            if upload:
                state["upload"] = {"token": uploads.stash(schema, data), "filename": upload.name}
                _save(request, state)
                return redirect("ui:wizard-columns")
            state["contact_list_id"] = form.cleaned_data["contact_list"]
            if draft is not None:
                services.campaign_update(draft, contact_list=ContactList.objects.get(pk=state["contact_list_id"]))
            _save(request, state)
            return redirect("ui:wizard-calling")
    else:
        form = CampaignStartForm(initial={"name": state.get("name", "")}, contact_lists=lists)
    return _page(request, "contacts", "ui/wizard/contacts.html", {"form": form, "limit": uploads.limit_text(),
                                                                  "accepted": uploads.ACCEPTED})


@tenant_page(change=True)
@require_http_methods(["GET", "POST"])
def columns(request):
    """Step 2: the first rows of the file, and which column is the phone, the name, the time zone."""
    state = _state(request)
    upload = state.get("upload") or {}
    data = uploads.fetch(request.tenant.schema_name, upload.get("token"))
    if data is None:
        messages.warning(request, "Upload the contacts file first (an upload is kept for two hours).")
        return redirect("ui:wizard-contacts")
    try:
        headers, rows = uploads.preview(data)
    except uploads.UnreadableFile as exc:
        messages.error(request, str(exc))
        return redirect("ui:wizard-contacts")
    guess = uploads.guess_mapping(headers)
    if request.method == "POST":
        form = ColumnMappingForm(request.POST, headers=headers)
        if form.is_valid():
            mapping = form.cleaned_data
            header = uploads.mapped_header(headers, mapping["phone"], mapping["name"], mapping["time_zone"])
            list_name = f"{state.get('name') or 'Campaign'} · {upload.get('filename', 'upload')}"
            try:
                contact_list, report = ui_services.contact_list_from_upload(
                    name=list_name, data=data, header=header, default_region=mapping["default_region"])
            except imports.ImportRejected as exc:
                form.add_error(None, f"Nothing was imported: {exc}")
            except ValidationError as exc:
                form.add_error(None, "; ".join(exc.messages))
            else:
                draft = _draft(state)
                if draft is not None:
                    services.campaign_update(draft, contact_list=contact_list)
                state.update(contact_list_id=contact_list.pk, mapping=mapping, report=report.as_dict())
                _save(request, state)
                return redirect("ui:wizard-report")
    else:
        initial = state.get("mapping") or {**guess, "default_region": "US"}
        form = ColumnMappingForm(initial=initial, headers=headers)
    width = len(headers)
    return _page(request, "columns", "ui/wizard/columns.html", {
        "form": form, "headers": headers, "rows": [row + [""] * (width - len(row)) for row in rows],
        "filename": upload.get("filename"), "guessed_phone": guess["phone"] is not None,
    })


@tenant_page(change=True)
@require_GET
def report(request):
    """Step 3: what the import did, bad rows listed by line; the good rows are in the list already."""
    state = _state(request)
    if not state.get("report"):
        return redirect("ui:wizard-contacts")
    contact_list = ContactList.objects.filter(pk=state.get("contact_list_id")).first()
    return _page(request, "report", "ui/wizard/report.html", {"report": state["report"], "contact_list": contact_list})


@tenant_page(change=True)
@require_http_methods(["GET", "POST"])
def calling(request):
    """Step 4: caller IDs, pacing, calling window and days, retries."""
    state = _state(request)
    if not state.get("contact_list_id"):
        messages.warning(request, "Choose the contacts first.")
        return redirect("ui:wizard-contacts")
    numbers = list(Number.objects.filter(tenant=request.tenant).order_by("e164"))
    if request.method == "POST":
        form = CallingForm(request.POST, numbers=numbers)
        if form.is_valid():
            values = form.as_fields()
            draft = _draft(state)
            try:
                if draft is not None:
                    services.campaign_update(draft, **values)
            except ValidationError as exc:
                _attach(form, exc)
            except services.CampaignLocked as exc:
                messages.error(request, str(exc))
                _clear(request)
                return redirect("ui:campaign", pk=draft.pk)
            else:
                state["calling"] = _json_safe(values)
                _save(request, state)
                if warning := ui_selectors.gateway_capacity(values.get("max_concurrent"))["capacity_warning"]:
                    messages.warning(request, warning)
                return redirect("ui:wizard-agent")
    else:
        initial = state.get("calling") or {"caller_ids": [n.e164 for n in numbers[:1]]}
        form = CallingForm(initial=initial, numbers=numbers)
    return _page(request, "calling", "ui/wizard/calling.html", {
        "form": form, "numbers": numbers, "time_zones": sorted(_common_zones()),
    })


@tenant_page(change=True)
@require_http_methods(["GET", "POST"])
def agent(request):
    """Step 5: the AI endpoint and its parameters; saving it creates (or updates) the draft."""
    state = _state(request)
    if not state.get("calling"):
        return redirect("ui:wizard-calling" if state.get("contact_list_id") else "ui:wizard-contacts")
    draft = _draft(state)
    has_audio = bool(draft and draft.voicemail_audio)
    if request.method == "POST":
        form = AgentForm(request.POST)
        amd_form = MachineDetectionForm(request.POST, request.FILES, has_audio=has_audio)
        if form.is_valid() and amd_form.is_valid():
            values = {**_campaign_values(state["calling"]), **form.cleaned_data, **amd_form.as_fields()}
            try:
                if draft is None:
                    draft = services.campaign_create(
                        name=state["name"], contact_list=ContactList.objects.get(pk=state["contact_list_id"]), **values)
                else:
                    draft = services.campaign_update(draft, **values)
            except ValidationError as exc:
                _attach(form, exc, amd_form)
            except services.CampaignLocked as exc:
                messages.error(request, str(exc))
                _clear(request)
                return redirect("ui:campaign", pk=draft.pk)
            else:
                amd = {name: getattr(draft, name) for name in AMD_FIELDS}
                state.update(campaign_id=draft.pk, agent=form.cleaned_data, amd=amd)
                _save(request, state)
                return redirect("ui:wizard-test", pk=draft.pk)
    else:
        initial = dict(state.get("agent") or {})
        if "custom_parameters" in initial:
            initial["custom_parameters"] = parameters_as_text(initial["custom_parameters"])
        form = AgentForm(initial=initial)
        amd_form = MachineDetectionForm(initial=MachineDetectionForm.initial_from(state.get("amd") or {}),
                                        has_audio=has_audio)
    return _page(request, "agent", "ui/wizard/agent.html", {"form": form, "amd_form": amd_form,
                                                             "voicemail_audio": draft.voicemail_audio if has_audio else None})


@tenant_page(change=True)
@require_http_methods(["GET", "POST"])
def test_call(request, pk: int):
    """Step 6 (optional): one real call to one number, with the campaign's agent and caller ID."""
    campaign = get_object_or_404(Campaign, pk=pk)
    _adopt(request, campaign)
    # The card of the last test call comes back on reload: the call is named in the URL.
    call = Call.objects.filter(sid=request.GET.get("call", ""), campaign_id=None,
                               custom_parameters__campaign=str(campaign.pk)).first()
    if request.method == "POST":
        form = TestCallForm(request.POST, caller_ids=campaign.caller_ids)
        if form.is_valid():
            try:
                call = place_call(request.tenant, campaign_call_request(
                    campaign, form.cleaned_data["to"], form.cleaned_data["from_"]))
            except CallRequestError as exc:
                form.add_error("from_" if exc.field == "from" else "to", str(exc))
            else:
                return redirect(f"{reverse('ui:wizard-test', args=[campaign.pk])}?call={call.sid}")
    else:
        form = TestCallForm(caller_ids=campaign.caller_ids, initial={"from_": (campaign.caller_ids or [""])[0]})
    return _page(request, "test", "ui/wizard/test_call.html", {"form": form, "campaign": campaign, "call": call})


@tenant_page()
@require_GET
def test_call_status(request, pk: int, sid: str):
    call = get_object_or_404(Call, sid=sid, campaign_id=None)
    return JsonResponse({"sid": call.sid, "status": call.status, "outcome": call.outcome or "–",
                         "reason": call.reason or "–", "sip_code": call.sip_code or "–",
                         "final": call.is_final})


@tenant_page(change=True)
@require_http_methods(["GET", "POST"])
def review(request, pk: int):
    """Step 7: everything on one page; start now, schedule the start, or keep it as a draft."""
    campaign = get_object_or_404(Campaign.objects.select_related("contact_list"), pk=pk)
    _adopt(request, campaign)
    schedule_form = None
    action = request.POST.get("action") if request.method == "POST" else None
    if action == "start":
        try:
            services.campaign_start(campaign.pk)
        except services.TransitionNotAllowed as exc:
            messages.error(request, f"Not started: {exc}.")
            return redirect("ui:campaign", pk=campaign.pk)
        messages.success(request, f"Campaign “{campaign.name}” started.")
        _clear(request)
        return redirect("ui:campaign", pk=campaign.pk)
    if action == "schedule":
        schedule_form = ScheduleForm(request.POST)
        if schedule_form.is_valid():
            try:
                campaign = _schedule(campaign, schedule_form.cleaned_data["start_at"])
            except ValidationError as exc:
                _attach(schedule_form, exc)
            except services.CampaignLocked as exc:
                messages.error(request, f"Not scheduled: {exc}.")
                return redirect("ui:campaign", pk=campaign.pk)
            else:
                when = schedule_form.cleaned_data["start_at"]
                messages.success(request, f"Campaign “{campaign.name}” scheduled: it starts by itself on "
                                          f"{when:%Y-%m-%d at %H:%M} ({schedule_form.cleaned_data['time_zone']}).")
                _clear(request)
                return redirect("ui:campaign", pk=campaign.pk)
    elif action == "unschedule":
        if campaign.state == Campaign.State.SCHEDULED:
            services.campaign_update(campaign, start_at=None)
            messages.info(request, f"Campaign “{campaign.name}” is no longer scheduled: it is a draft again.")
        _clear(request)
        return redirect("ui:campaign", pk=campaign.pk)
    elif action is not None:
        messages.info(request, f"Campaign “{campaign.name}” saved as a draft.")
        _clear(request)
        return redirect("ui:campaign", pk=campaign.pk)
    if schedule_form is None:
        if campaign.start_at:  # already scheduled: shown in UTC, and the zone field says so
            schedule_form = ScheduleForm(initial={"time_zone": "UTC",
                                                  "start_at": campaign.start_at.astimezone(dt.UTC).replace(tzinfo=None)})
        else:  # a fresh form: ui.js puts the browser's time zone in (the campaign's default without script)
            schedule_form = ScheduleForm(initial={"time_zone": campaign.default_time_zone}, browser_zone=True)
    weekdays = ", ".join(name for value, name in CallingForm.base_fields["weekdays"].choices
                         if int(value) in campaign.weekdays)
    return _page(request, "review", "ui/wizard/review.html", {
        "campaign": campaign, "contact_count": campaign.contact_list.contacts.count(), "weekdays": weekdays,
        "can_start": campaign.state in (Campaign.State.DRAFT, Campaign.State.SCHEDULED),
        "schedule_form": schedule_form, "time_zones": sorted(_common_zones()),
    })


def _schedule(campaign: Campaign, start_at: dt.datetime) -> Campaign:
    if campaign.state not in (Campaign.State.DRAFT, Campaign.State.SCHEDULED):
        raise services.CampaignLocked(f"the campaign is {campaign.state}")
    return services.campaign_update(campaign, start_at=start_at)


@tenant_page(change=True)
@require_GET
def edit(request, pk: int):
    """Pick a draft up again (in this or another browser) at the calling step."""
    campaign = get_object_or_404(Campaign, pk=pk)
    if campaign.state not in (Campaign.State.DRAFT, Campaign.State.SCHEDULED):
        messages.error(request, f"A {campaign.state} campaign cannot be edited.")
        return redirect("ui:campaign", pk=pk)
    _clear(request)
    _save(request, state_from_campaign(campaign))
    return redirect("ui:wizard-calling")


# --- helpers -------------------------------------------------------------------------------------


def _adopt(request, campaign: Campaign) -> None:
    """Opened by URL: make this draft the wizard's, so the step links lead back to it."""
    state = _state(request)
    if state.get("campaign_id") != campaign.pk:
        _save(request, state_from_campaign(campaign))


def _attach(form, exc: ValidationError, *others) -> None:
    """A service's ValidationError, next to the field it names in ``form`` or ``others`` (or above ``form``)."""
    errors = exc.message_dict if hasattr(exc, "error_dict") else {None: exc.messages}
    for field, problems in errors.items():
        for problem in problems:
            if owner := next((other for other in others if field in other.fields), None):
                owner.add_error(field, problem)
            elif field in form.fields:
                form.add_error(field, problem)
            else:
                label = (field or "").replace("_", " ")
                form.add_error(None, f"{label}: {problem}" if label else problem)


def _common_zones() -> set[str]:
    from campaigns.models import known_time_zones

    return {z for z in known_time_zones() if "/" in z and not z.startswith(("Etc/", "SystemV/", "posix/", "right/"))} | {"UTC"}
