"""Forms of the browser UI. They check the shape of what was typed and say what is wrong next to the
field; the rules about other rows (caller IDs owned by the tenant, state transitions, tenant creation)
stay in the services, whose ValidationErrors the views attach back to these fields."""
from __future__ import annotations

import datetime as dt
import json
import zoneinfo

from django import forms
from django.contrib.auth import get_user_model
from django.contrib.auth.forms import AuthenticationForm
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.utils import timezone

from campaigns.models import (
    DTMF_DIGITS,
    STREAM_URL_SCHEMES,
    WEEKDAY_NAMES,
    known_time_zones,
    platform_parameters_problem,
    validate_region,
)
from telephony import forms as telephony_forms
from telephony.calls import outbound
from telephony.models import Number
from tenants.models import Tenant

from . import uploads

WEEKDAY_CHOICES = [(str(i), name) for i, name in enumerate(WEEKDAY_NAMES)]


# --- sign-in -------------------------------------------------------------------------------------


class SignInForm(AuthenticationForm):
    """Django's sign-in form; a suspended company account cannot sign in."""

    def confirm_login_allowed(self, user):
        super().confirm_login_allowed(user)
        tenant = getattr(self.request, "tenant", None)
        if tenant is not None and getattr(tenant, "is_suspended", False):
            raise ValidationError("This account is suspended. Contact the platform operator.", code="suspended")


# --- helpers -------------------------------------------------------------------------------------


def parse_parameters(text: str) -> dict:
    """Custom parameters typed as a JSON object or as `name=value` lines."""
    text = (text or "").strip()
    if not text:
        return {}
    if text.startswith("{"):
        try:
            value = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValidationError(f"not valid JSON (line {exc.lineno}, column {exc.colno}): {exc.msg}") from None
        if not isinstance(value, dict):
            raise ValidationError("must be a JSON object")
        return value
    params, problems = {}, []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        key, sep, value = line.partition("=")
        if not sep or not key.strip():
            problems.append(f"line {number}: write name=value")
            continue
        params[key.strip()] = value.strip()
    if problems:
        raise ValidationError(problems)
    return params


def parameters_as_text(params: dict) -> str:
    if params and all(isinstance(v, str | int | float | bool) for v in params.values()):
        return "\n".join(f"{k}={v}" for k, v in params.items())
    return json.dumps(params, indent=2) if params else ""


class UploadField(forms.FileField):
    """A CSV upload: refused with a message saying what is accepted when too big or not CSV."""

    def clean(self, data, initial=None):
        upload = super().clean(data, initial)
        if upload:
            problem = uploads.refusal(upload)
            if problem:
                raise ValidationError(problem)
        return upload


# --- campaign builder ----------------------------------------------------------------------------


class CampaignStartForm(forms.Form):
    name = forms.CharField(max_length=200, label="Campaign name")
    file = UploadField(
        required=False, label="Contacts (CSV file)",
        help_text=f"UTF-8 CSV with a header row and a phone column, up to {uploads.limit_text()}.",
        widget=forms.ClearableFileInput(attrs={"accept": ".csv,text/csv"}),
    )
    contact_list = forms.TypedChoiceField(
        required=False, coerce=int, empty_value=None, label="…or use a contact list you already have",
    )

    def __init__(self, *args, contact_lists=(), **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["contact_list"].choices = [("", "— upload a new file —")] + [
            (cl.pk, f"{cl.name} ({cl.contact_count} contacts)") for cl in contact_lists
        ]

    def clean(self):
        data = super().clean()
        if not self.errors and not data.get("file") and not data.get("contact_list"):
            self.add_error("file", "Choose a CSV file to upload, or pick a contact list below.")
        if data.get("file") and data.get("contact_list"):
            self.add_error("contact_list", "Either upload a file or pick a list, not both.")
        return data


class ColumnMappingForm(forms.Form):
    phone = forms.TypedChoiceField(coerce=int, label="Phone number column")
    name = forms.TypedChoiceField(coerce=int, empty_value=None, required=False, label="Name column")
    time_zone = forms.TypedChoiceField(coerce=int, empty_value=None, required=False, label="Time zone column",
                                       help_text="empty: derived from each number")
    default_region = forms.CharField(
        max_length=2, required=False, label="Country for numbers without +",
        help_text="two-letter code such as US or GB; empty: every number must start with +",
    )

    def __init__(self, *args, headers=(), **kwargs):
        super().__init__(*args, **kwargs)
        columns = [(i, header or f"(column {i + 1})") for i, header in enumerate(headers)]
        self.fields["phone"].choices = columns
        self.fields["name"].choices = [("", "— none —")] + columns
        self.fields["time_zone"].choices = [("", "— none —")] + columns

    def clean_default_region(self):
        region = self.cleaned_data["default_region"].strip().upper()
        validate_region(region)
        return region

    def clean(self):
        data = super().clean()
        chosen = [(name, data.get(name)) for name in ("phone", "name", "time_zone") if data.get(name) is not None]
        seen = {}
        for name, column in chosen:
            if column in seen:
                self.add_error(name, f"This column is already used as the {seen[column].replace('_', ' ')} column.")
            else:
                seen[column] = name
        return data


class CallingForm(forms.Form):
    caller_ids = forms.MultipleChoiceField(
        widget=forms.CheckboxSelectMultiple, label="Caller IDs",
        help_text="your numbers shown to the people called; used in turn, local ones first",
    )
    cps = forms.FloatField(min_value=0.1, max_value=1000, label="Calls per second", initial=1.0)
    max_concurrent = forms.IntegerField(min_value=1, max_value=100000, label="Max concurrent calls", initial=10)
    window_start = forms.TimeField(label="Calling window opens", initial=dt.time(9, 0),
                                   widget=forms.TimeInput(attrs={"type": "time"}, format="%H:%M"))
    window_end = forms.TimeField(label="Calling window closes", initial=dt.time(20, 0),
                                 widget=forms.TimeInput(attrs={"type": "time"}, format="%H:%M"),
                                 help_text="in each contact's own time zone")
    weekdays = forms.MultipleChoiceField(choices=WEEKDAY_CHOICES, widget=forms.CheckboxSelectMultiple,
                                         label="Calling days", initial=["0", "1", "2", "3", "4"])
    default_time_zone = forms.CharField(
        max_length=64, initial="UTC", label="Time zone for contacts without one",
        widget=forms.TextInput(attrs={"list": "time-zones", "autocomplete": "off"}),
    )
    ring_timeout = forms.IntegerField(min_value=15, max_value=300, initial=30, label="Ring for (seconds)")
    retry_busy_max_attempts = forms.IntegerField(min_value=1, max_value=20, initial=2, label="Busy: attempts")
    retry_busy_delay_s = forms.IntegerField(min_value=0, max_value=7 * 86400, initial=300, label="Busy: wait (s)")
    retry_no_answer_max_attempts = forms.IntegerField(min_value=1, max_value=20, initial=2, label="No answer: attempts")
    retry_no_answer_delay_s = forms.IntegerField(min_value=0, max_value=7 * 86400, initial=3600,
                                                 label="No answer: wait (s)")
    retry_failed_max_attempts = forms.IntegerField(min_value=1, max_value=20, initial=1, label="Failed: attempts")
    retry_failed_delay_s = forms.IntegerField(min_value=0, max_value=7 * 86400, initial=600, label="Failed: wait (s)")

    def __init__(self, *args, numbers=(), **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["caller_ids"].choices = [
            (n.e164, f"{n.e164}{' · ' + n.region if n.region else ''}") for n in numbers
        ]
        if not numbers:
            self.fields["caller_ids"].help_text = (
                "Your account has no phone numbers yet: ask the platform operator to assign one."
            )

    def clean_default_time_zone(self):
        zone = self.cleaned_data["default_time_zone"].strip()
        if zone not in known_time_zones():
            raise ValidationError(f"Unknown time zone {zone!r}: use a name such as Europe/Paris or America/New_York.")
        return zone

    def clean(self):
        data = super().clean()
        start, end = data.get("window_start"), data.get("window_end")
        if start and end and start >= end:
            self.add_error("window_end", "Must be later than the opening time (windows across midnight are "
                                         "not supported).")
        return data

    def as_fields(self) -> dict:
        """Campaign fields from the cleaned data."""
        data = dict(self.cleaned_data)
        data["weekdays"] = sorted(int(d) for d in data["weekdays"])
        return data


class AgentForm(forms.Form):
    stream_url = forms.CharField(
        max_length=500, label="AI endpoint URL", widget=forms.URLInput(attrs={"placeholder": "wss://agent.example.com/media"}),
        help_text="your agent's WebSocket (Twilio Media Streams protocol): wss://, ws://, https:// or http://",
    )
    custom_parameters = forms.CharField(
        required=False, label="Custom parameters", widget=forms.Textarea(attrs={"rows": 4}),
        help_text="passed to the agent with every call: one name=value per line, or a JSON object. "
                  "The CSV's extra columns are passed too.",
    )
    fallback_message = forms.CharField(required=False, label="Fallback message", widget=forms.Textarea(attrs={"rows": 2}),
                                       help_text="played when the agent cannot be reached")
    optout_digit = forms.CharField(required=False, max_length=1, label="Opt-out key",
                                   help_text="a key (0-9, * or #) that puts the person on your do-not-call list")

    def clean_stream_url(self):
        url = self.cleaned_data["stream_url"].strip()
        if not url.lower().startswith(tuple(f"{scheme}://" for scheme in STREAM_URL_SCHEMES)):
            raise ValidationError("Must start with wss://, ws://, https:// or http://.")
        return url

    def clean_custom_parameters(self):
        parameters = parse_parameters(self.cleaned_data["custom_parameters"])
        if why := platform_parameters_problem(parameters):
            raise ValidationError(why)
        return parameters

    def clean_optout_digit(self):
        digit = self.cleaned_data["optout_digit"].strip()
        if digit and digit not in DTMF_DIGITS:
            raise ValidationError("Use one key: 0-9, * or #.")
        return digit


class ScheduleForm(forms.Form):
    """A start time typed as a date and a wall-clock time in a named time zone (the browser's, filled in
    by ui.js when the page opens; the campaign's default time zone without JavaScript)."""

    start_at = forms.DateTimeField(
        label="Start on (date and time)",
        input_formats=["%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M", "%Y-%m-%d %H:%M:%S"],
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}, format="%Y-%m-%dT%H:%M"),
        help_text="the campaign starts by itself at this moment; until then you can still change or cancel it",
    )
    time_zone = forms.CharField(
        max_length=64, label="Time zone of that time",
        widget=forms.TextInput(attrs={"list": "time-zones", "autocomplete": "off"}),
        help_text="the zone the date and time above are in, such as Europe/Paris",
    )

    def __init__(self, *args, browser_zone: bool = False, **kwargs):
        super().__init__(*args, **kwargs)
        if browser_zone:  # ui.js fills in the browser's time zone
            self.fields["time_zone"].widget.attrs["data-browser-zone"] = ""
            self.fields["time_zone"].help_text = ("filled in with your browser's time zone; change it to schedule "
                                                  "in another one, such as Europe/Paris")

    def clean_time_zone(self):
        zone = self.cleaned_data["time_zone"].strip()
        if zone not in known_time_zones():
            raise ValidationError(f"Unknown time zone {zone!r}: use a name such as Europe/Paris or America/New_York.")
        return zone

    def clean(self):
        data = super().clean()
        typed, zone = data.get("start_at"), data.get("time_zone")
        if typed is not None and zone:
            # The field made the wall-clock time aware in the server's zone: it is meant in `zone`.
            wall_clock = timezone.make_naive(typed) if timezone.is_aware(typed) else typed
            local = wall_clock.replace(tzinfo=zoneinfo.ZoneInfo(zone))
            now = timezone.now().astimezone(local.tzinfo)
            if local.astimezone(dt.UTC).astimezone(local.tzinfo).replace(tzinfo=None) != wall_clock:
                self.add_error("start_at", f"This time does not exist in {zone}: the clocks skip it that day. "
                                           "Pick another time.")
            elif local <= now:
                self.add_error("start_at", f"This time has passed (it is now {now:%Y-%m-%d %H:%M} in {zone}): "
                                           "pick a later one, or start the campaign now.")
            else:
                data["start_at"] = local
        return data


class TestCallForm(forms.Form):
    to = forms.CharField(max_length=32, label="Call this number", help_text="with + and the country code",
                         widget=forms.TextInput(attrs={"type": "tel", "placeholder": "+14155550123"}))
    from_ = forms.ChoiceField(label="From")

    def __init__(self, *args, caller_ids=(), **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["from_"].choices = [(n, n) for n in caller_ids]


# --- tenant settings -----------------------------------------------------------------------------


class ApiKeyForm(forms.Form):
    name = forms.CharField(max_length=100, label="Key name", help_text="what it is for, e.g. CRM integration")
    read_only = forms.BooleanField(required=False, label="Read-only",
                                   help_text="can read calls, campaigns and contacts, and change nothing")


class WebhookUrlForm(forms.Form):
    status_callback = forms.URLField(
        max_length=500, required=False, assume_scheme="https", label="Status callback URL",
        help_text="where the status callbacks of calls go when neither the call nor its campaign names one; "
                  "empty: such calls send none")

    def clean_status_callback(self) -> str:
        url = self.cleaned_data["status_callback"]
        if why := outbound.refusal(url, outbound.CALLBACK_SCHEMES):
            raise ValidationError(why)
        return url


class DoNotCallForm(forms.Form):
    phone = forms.CharField(max_length=32, label="Phone number", help_text="with + and the country code",
                            widget=forms.TextInput(attrs={"type": "tel"}))
    reason = forms.CharField(max_length=255, required=False, label="Reason")


class DoNotCallUploadForm(forms.Form):
    file = UploadField(label="CSV file", help_text=f"UTF-8 CSV; phone numbers in a column named phone (or the first "
                                                   f"column), an optional reason column; up to {uploads.limit_text()}.",
                       widget=forms.ClearableFileInput(attrs={"accept": ".csv,text/csv"}))


class UserCreateForm(forms.Form):
    username = forms.CharField(max_length=150, label="User name")
    email = forms.EmailField(required=False, label="Email")
    password = forms.CharField(label="Password", strip=False, widget=forms.PasswordInput(render_value=False),
                               help_text="at least 8 characters; tell it to the person, they can change it later")
    role = forms.ChoiceField(choices=[("member", "member: builds and runs campaigns"),
                                      ("viewer", "viewer: sees everything, changes nothing"),
                                      ("admin", "admin: also manages API keys, webhooks, do-not-call and users")],
                             initial="member", required=False, label="Role", widget=forms.RadioSelect)

    def clean_role(self):
        return self.cleaned_data.get("role") or "member"

    def clean_username(self):
        username = self.cleaned_data["username"].strip()
        user_model = get_user_model()
        try:
            user_model.username_validator(username)
        except ValidationError as exc:
            raise ValidationError(exc.messages) from None
        if user_model.objects.filter(username__iexact=username).exists():
            raise ValidationError("This user name is taken.")
        return username

    def clean_password(self):
        password = self.cleaned_data["password"]
        validate_password(password)
        return password


# --- platform ------------------------------------------------------------------------------------

CarrierForm = telephony_forms.CarrierForm  # one form for the admin and these pages



def _guarded(url: str) -> str:
    """A URL the platform will request (a number's voice URL), if the outbound guard allows it."""
    if why := outbound.refusal(url, outbound.CALLBACK_SCHEMES):
        raise ValidationError(f"refused: {why}")
    return url


class NumberForm(forms.ModelForm):
    inbound_parameters_text = forms.CharField(
        required=False, label="Inbound parameters", widget=forms.Textarea(attrs={"rows": 3}),
        help_text="passed to the agent on inbound calls: name=value per line, or a JSON object",
    )

    class Meta:
        model = Number
        fields = ["e164", "tenant", "region", "inbound_stream_url", "voice_url", "voice_method", "voice_fallback_url",
                  "voice_fallback_method"]
        labels = {"e164": "Number (E.164)", "tenant": "Assigned to", "inbound_stream_url": "Inbound AI endpoint"}
        help_texts = {"e164": "e.g. +14155550123", "inbound_stream_url": "wss:// URL that answers calls to this number",
                      "voice_url": "or, as Twilio: the app whose TwiML answers calls to this number (signed with "
                                   "the tenant's auth token; takes the place of the AI endpoint)"}

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["tenant"].queryset = Tenant.objects.exclude(schema_name="public").order_by("name")
        self.fields["tenant"].empty_label = "— not assigned —"
        self.fields["tenant"].label_from_instance = lambda tenant: f"{tenant.name} ({tenant.schema_name})"
        for method in ("voice_method", "voice_fallback_method"):
            self.fields[method].required = False
        if self.instance.pk:
            self.fields["inbound_parameters_text"].initial = parameters_as_text(self.instance.inbound_parameters)

    def clean_voice_url(self):
        return _guarded(self.cleaned_data["voice_url"])

    def clean_voice_fallback_url(self):
        return _guarded(self.cleaned_data["voice_fallback_url"])

    def clean_voice_method(self):
        return self.cleaned_data["voice_method"] or "POST"

    def clean_voice_fallback_method(self):
        return self.cleaned_data["voice_fallback_method"] or "POST"

    def clean_inbound_parameters_text(self):
        return parse_parameters(self.cleaned_data["inbound_parameters_text"])

    def save(self, commit=True):
        number = super().save(commit=False)
        number.inbound_parameters = self.cleaned_data["inbound_parameters_text"]
        if commit:
            number.save()
        return number


class TenantCreateForm(forms.Form):
    slug = forms.CharField(max_length=41, label="Account name",
                           help_text="lower-case letters, digits and _, starting with a letter; names its database schema")
    domain = forms.CharField(max_length=253, label="Host name", help_text="e.g. acme.example.com")
    name = forms.CharField(max_length=200, required=False, label="Company name")


class TenantEditForm(forms.ModelForm):
    class Meta:
        model = Tenant
        fields = ["name", "is_suspended", "max_concurrent_calls"]
        labels = {"is_suspended": "Suspended", "max_concurrent_calls": "Max concurrent calls"}
        help_texts = {"is_suspended": "a suspended account cannot sign in nor use the API",
                      "max_concurrent_calls": "over all the account's calls; 0: no cap"}
