"""What a tenant dials: contact lists, contacts, do-not-call entries, campaigns and the per-contact
dialing state of a campaign. Tenant schema.

Models hold data and the invariants that need nothing but the row itself (`clean()` plus database
check constraints); anything that needs other rows (caller IDs owned by the tenant, state transitions)
lives in campaigns.services.
"""
from __future__ import annotations

import datetime as dt
import zoneinfo
from functools import lru_cache

import phonenumbers
from django.core.exceptions import ValidationError
from django.db import models

from media.amd import MODES as AMD_MODES
from media.amd import AmdParams
from media.amd_call import HANGUP, ON_MACHINE, VOICEMAIL
from telephony.calls import outbound
from telephony.calls.services import custom_parameters_problem
from telephony.calls.transfers import transfer_target_problem
from telephony.calls.voicemail_audio import voicemail_storage

STREAM_URL_SCHEMES = ("ws", "wss", "http", "https")
DTMF_DIGITS = "0123456789*#"
WEEKDAY_NAMES = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")


@lru_cache(maxsize=1)
def known_time_zones() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones())


def validate_time_zone(value: str) -> None:
    if value not in known_time_zones():
        raise ValidationError(f"unknown time zone {value!r}: use an IANA name such as 'America/New_York'")


def validate_region(value: str) -> None:
    if value and value.upper() not in phonenumbers.SUPPORTED_REGIONS:
        raise ValidationError(f"unknown region {value!r}: use a two-letter country code such as 'US'")


def default_weekdays() -> list[int]:
    return [0, 1, 2, 3, 4]  # Monday to Friday (Python's weekday(): Monday is 0)


class ContactList(models.Model):
    name = models.CharField(max_length=200)
    default_region = models.CharField(
        max_length=2, default="US", blank=True, validators=[validate_region],
        help_text="country assumed for numbers written without '+' (ISO 3166 code); empty: '+' required",
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return self.name


class Contact(models.Model):
    contact_list = models.ForeignKey(ContactList, related_name="contacts", on_delete=models.CASCADE)
    phone = models.CharField(max_length=20, help_text="E.164")
    name = models.CharField(max_length=200, blank=True)
    time_zone = models.CharField(max_length=64, blank=True)
    # Every other CSV column, passed to the AI agent as custom parameters.
    variables = models.JSONField(default=dict, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["contact_list", "phone"], name="unique_phone_per_list")]

    def __str__(self) -> str:
        return self.phone


class DoNotCall(models.Model):
    """A number the tenant must never dial, whatever the list or campaign."""

    phone = models.CharField(max_length=20, unique=True, help_text="E.164")
    reason = models.CharField(max_length=255, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]
        verbose_name = "do-not-call entry"
        verbose_name_plural = "do-not-call list"

    def __str__(self) -> str:
        return self.phone


# The parameters the dialer sets on each call's stream (dialer.agent_parameters); a campaign's own
# parameter or a contact's column of one of these names would be replaced, so neither may use them.
PLATFORM_PARAMETERS = ("campaign", "contact_name", "from_number", "to_number", "test_call")


def platform_parameters_problem(parameters: dict) -> str:
    """Why these custom parameters are refused for a campaign (names the platform sets), or ""."""
    taken = [str(name) for name in parameters if name in PLATFORM_PARAMETERS]
    if not taken:
        return ""
    return (f"{', '.join(taken)}: the platform sets {'this name' if len(taken) == 1 else 'these names'} on every "
            f"call ({', '.join(PLATFORM_PARAMETERS)}). Choose another name.")


class Campaign(models.Model):
    class State(models.TextChoices):
        DRAFT = "draft"
        SCHEDULED = "scheduled"
        RUNNING = "running"
        PAUSED = "paused"
        COMPLETED = "completed"
        CANCELLED = "cancelled"

    FINAL_STATES = (State.COMPLETED, State.CANCELLED)

    name = models.CharField(max_length=200)
    contact_list = models.ForeignKey(ContactList, related_name="campaigns", on_delete=models.PROTECT)
    state = models.CharField(max_length=16, choices=State.choices, default=State.DRAFT, db_index=True)
    start_at = models.DateTimeField(null=True, blank=True, help_text="set: the campaign is scheduled to start then")
    # E.164 numbers of the tenant's own inventory (telephony.Number), used in turn as caller ID.
    caller_ids = models.JSONField(default=list)
    # The tenant's AI endpoint, and the parameters passed to it with every call.
    stream_url = models.CharField(max_length=500)
    custom_parameters = models.JSONField(default=dict, blank=True)
    # Status callbacks of the campaign's calls (as with single calls); delivered off the dialer's path.
    status_callback = models.URLField(max_length=500, blank=True)
    cps = models.FloatField(default=1.0, help_text="calls started per second")
    max_concurrent = models.PositiveIntegerField(default=10)
    # Calling window, evaluated in each contact's own time zone ([start, end), on the given weekdays).
    window_start = models.TimeField(default=dt.time(8, 0))
    window_end = models.TimeField(default=dt.time(21, 0))
    weekdays = models.JSONField(default=default_weekdays, help_text="0 = Monday … 6 = Sunday")
    default_time_zone = models.CharField(
        max_length=64, default="UTC", validators=[validate_time_zone],
        help_text="window time zone for contacts whose own time zone is unknown",
    )
    # Retry policy per outcome. max attempts counts every call placed to the contact, the first one
    # included: busy with max 2 means one retry after a busy signal.
    retry_busy_max_attempts = models.PositiveSmallIntegerField(default=2)
    retry_busy_delay_s = models.PositiveIntegerField(default=300)
    retry_no_answer_max_attempts = models.PositiveSmallIntegerField(default=2)
    retry_no_answer_delay_s = models.PositiveIntegerField(default=3600)
    retry_failed_max_attempts = models.PositiveSmallIntegerField(default=1)
    retry_failed_delay_s = models.PositiveIntegerField(default=600)
    ring_timeout = models.PositiveSmallIntegerField(default=30, help_text="seconds, at least 15")
    fallback_message = models.TextField(blank=True, help_text="played when the AI endpoint cannot be reached")
    optout_digit = models.CharField(max_length=1, blank=True, help_text="DTMF digit that puts the callee on do-not-call")
    # Answering-machine detection on every call (media/amd.py; Twilio's default thresholds): what to
    # do on a machine, the message left on voicemail, and the retry policy of machine answers.
    machine_detection = models.CharField(max_length=16, blank=True, choices=[(m, m) for m in AMD_MODES],
                                         help_text="empty: no detection")
    on_machine = models.CharField(max_length=16, default=HANGUP, choices=[(a, a) for a in ON_MACHINE])
    voicemail_message = models.TextField(blank=True, help_text="spoken after the machine's beep (on_machine voicemail)")
    voicemail_audio = models.FileField(storage=voicemail_storage, blank=True, max_length=255,
                                       help_text="8 kHz mu-law from an uploaded WAV, played instead of voicemail_message")
    machine_detection_timeout = models.PositiveSmallIntegerField(
        default=30, help_text="seconds to decide (and with voicemail to wait for the beep), 3..59")
    machine_detection_silence_timeout = models.PositiveIntegerField(
        default=5000, help_text="ms of silence after the answer that end detection as unknown, 2000..10000")
    retry_machine_max_attempts = models.PositiveSmallIntegerField(default=1)
    retry_machine_delay_s = models.PositiveIntegerField(default=4 * 3600)
    record_calls = models.BooleanField(default=False, help_text="record every call (dual-channel WAV: /api/v1/recordings)")
    transfer_numbers = models.JSONField(
        default=list, blank=True,
        help_text="E.164 numbers or SIP URIs a call's agent may hand the callee to (POST /api/v1/calls/{sid}/transfer "
                  "with no number: each in turn until one answers)")
    recording_announcement = models.TextField(
        blank=True, help_text="spoken to each callee before its call is recorded (consent); the agent starts after it")
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    # When it last started or resumed: its dial rate is measured from then (campaigns.selectors).
    dialing_since = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.CheckConstraint(condition=models.Q(cps__gt=0), name="campaign_cps_positive"),
            models.CheckConstraint(condition=models.Q(max_concurrent__gt=0), name="campaign_max_concurrent_positive"),
            models.CheckConstraint(condition=models.Q(ring_timeout__gte=15), name="campaign_ring_timeout_min_15"),
            models.CheckConstraint(condition=models.Q(window_start__lt=models.F("window_end")), name="campaign_window_opens"),
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def is_final(self) -> bool:
        return self.state in self.FINAL_STATES

    def retry_policy(self, outcome: str) -> tuple[int, int] | None:
        """(max attempts, delay seconds) for a retryable outcome, None for any other."""
        return {
            "busy": (self.retry_busy_max_attempts, self.retry_busy_delay_s),
            "no_answer": (self.retry_no_answer_max_attempts, self.retry_no_answer_delay_s),
            "failed": (self.retry_failed_max_attempts, self.retry_failed_delay_s),
            "machine": (self.retry_machine_max_attempts, self.retry_machine_delay_s),
        }.get(outcome)

    def clean(self) -> None:
        errors: dict[str, list[str]] = {}

        def error(field: str, message: str) -> None:
            errors.setdefault(field, []).append(message)

        for field, schemes in (("stream_url", STREAM_URL_SCHEMES), ("status_callback", outbound.CALLBACK_SCHEMES)):
            if why := outbound.refusal(getattr(self, field), schemes):
                error(field, why)
        if self.cps is not None and not self.cps > 0:
            error("cps", "must be greater than 0")
        if self.max_concurrent is not None and self.max_concurrent < 1:
            error("max_concurrent", "must be at least 1")
        if self.ring_timeout is not None and self.ring_timeout < 15:
            error("ring_timeout", "must be at least 15 seconds")
        if self.window_start is not None and self.window_end is not None and self.window_start >= self.window_end:
            error("window_end", "must be later than window_start: this calling window never opens "
                                "(windows across midnight are not supported)")
        if not isinstance(self.weekdays, list) or not self.weekdays:
            error("weekdays", "give at least one weekday (0 = Monday … 6 = Sunday): with none the window never opens")
        elif not all(isinstance(day, int) and not isinstance(day, bool) and 0 <= day <= 6 for day in self.weekdays):
            error("weekdays", "each weekday must be an integer from 0 (Monday) to 6 (Sunday)")
        else:
            self.weekdays = sorted(set(self.weekdays))
        if not isinstance(self.caller_ids, list) or not all(isinstance(n, str) for n in self.caller_ids):
            error("caller_ids", "must be a list of E.164 numbers")
        elif not self.caller_ids:
            error("caller_ids", "give at least one caller ID (a number the tenant owns)")
        if why := custom_parameters_problem(self.custom_parameters):
            error("custom_parameters", why)
        elif why := platform_parameters_problem(self.custom_parameters):
            error("custom_parameters", why)
        if not isinstance(self.transfer_numbers, list) or not all(isinstance(n, str) for n in self.transfer_numbers):
            error("transfer_numbers", "must be a list of E.164 numbers or SIP URIs")
        else:
            for target in self.transfer_numbers:
                if why := transfer_target_problem(target):
                    error("transfer_numbers", f"{target}: {why}")
        if self.optout_digit and self.optout_digit not in DTMF_DIGITS:
            error("optout_digit", "must be one DTMF digit: 0-9, * or #")
        if self.on_machine == VOICEMAIL and self.machine_detection and not (self.voicemail_message.strip()
                                                                            or self.voicemail_audio):
            error("voicemail_message", "on_machine voicemail needs the message to leave (text or audio file)")
        for name, param in (("machine_detection_timeout", "timeout_s"),
                            ("machine_detection_silence_timeout", "silence_timeout_ms")):
            lo, hi = AmdParams.RANGES[param]
            if getattr(self, name) is not None and not lo <= getattr(self, name) <= hi:
                error(name, f"must be between {lo} and {hi}")
        for outcome in ("busy", "no_answer", "failed", "machine"):
            if getattr(self, f"retry_{outcome}_max_attempts") < 1:
                error(f"retry_{outcome}_max_attempts", "must be at least 1 (the first call counts)")
        if errors:
            raise ValidationError(errors)


class CampaignContact(models.Model):
    """One contact's dialing state within one campaign. Created in bulk when the campaign starts
    (a snapshot of its list at that moment; contacts added later are not dialed by it)."""

    class State(models.TextChoices):
        PENDING = "pending"  # waiting for its turn (next_attempt_at) and its calling window
        DIALING = "dialing"  # a call is in flight
        DONE = "done"  # answered
        DNC = "dnc"  # on the do-not-call list (at start, or opted out during a call)
        FAILED = "failed"  # retries exhausted

    FINAL_STATES = (State.DONE, State.DNC, State.FAILED)

    campaign = models.ForeignKey(Campaign, related_name="campaign_contacts", on_delete=models.CASCADE)
    contact = models.ForeignKey(Contact, related_name="campaign_contacts", on_delete=models.CASCADE)
    state = models.CharField(max_length=16, choices=State.choices, default=State.PENDING)
    attempts = models.PositiveSmallIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    last_outcome = models.CharField(max_length=32, blank=True)
    last_call_sid = models.CharField(max_length=34, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["campaign", "contact"], name="one_dialing_state_per_contact")]
        indexes = [models.Index(fields=["campaign", "state", "next_attempt_at"], name="campaign_contact_due")]

    def __str__(self) -> str:
        return f"{self.campaign_id}:{self.contact_id} {self.state}"
