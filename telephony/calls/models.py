"""Call records, one per call, with every SIP leg. Tenant schema.

A call is written when it is requested and then only from gateway events (telephony.calls.recorder);
every call ends with an outcome, none stays in progress: the gateway pool reports calls of a dead
gateway as failed with reason gateway_died.
"""
import uuid

from django.core.files.storage import storages
from django.db import models


def new_call_sid() -> str:
    return "CA" + uuid.uuid4().hex


CALLBACK_EVENTS = ("initiated", "ringing", "answered", "completed")


def all_callback_events() -> list[str]:
    return list(CALLBACK_EVENTS)


class Call(models.Model):
    class Status(models.TextChoices):
        # Twilio's call statuses, so Twilio-style clients read them unchanged.
        QUEUED = "queued"
        INITIATED = "initiated"
        RINGING = "ringing"
        IN_PROGRESS = "in-progress"
        COMPLETED = "completed"
        BUSY = "busy"
        NO_ANSWER = "no-answer"
        FAILED = "failed"
        CANCELED = "canceled"

    ABANDON_AFTER_MS = 2000
    FINAL_STATUSES = {Status.COMPLETED, Status.BUSY, Status.NO_ANSWER, Status.FAILED, Status.CANCELED}

    sid = models.CharField(max_length=34, unique=True, default=new_call_sid)
    direction = models.CharField(max_length=16, default="outbound")
    from_number = models.CharField(max_length=32)
    to_number = models.CharField(max_length=32)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED, db_index=True)
    outcome = models.CharField(max_length=32, blank=True, help_text="answered, busy, no_answer, carrier_error…")
    reason = models.CharField(max_length=255, blank=True)
    sip_code = models.PositiveSmallIntegerField(null=True, blank=True)
    hangup_by = models.CharField(max_length=16, blank=True)
    gateway_id = models.CharField(max_length=64, blank=True)
    # The carrier as it was when the call ran (carriers live in the public schema and may be deleted).
    carrier_id = models.PositiveIntegerField(null=True, blank=True)
    carrier_name = models.CharField(max_length=100, blank=True)
    stream_url = models.CharField(max_length=500, blank=True)
    # The agent connects in to our WebSocket (stream_access.agent_connect_url) instead of us to stream_url.
    agent_connects = models.BooleanField(default=False)
    custom_parameters = models.JSONField(default=dict, blank=True)
    status_callback = models.URLField(max_length=500, blank=True)
    # Which of CALLBACK_EVENTS are sent (Twilio's StatusCallbackEvent), and how (StatusCallbackMethod).
    status_callback_events = models.JSONField(default=all_callback_events, blank=True)
    status_callback_method = models.CharField(max_length=4, default="POST")
    ring_timeout = models.PositiveSmallIntegerField(default=30)
    max_duration = models.PositiveIntegerField(default=3600)
    # Set for calls a campaign placed (plain ids: calls do not depend on campaigns).
    campaign_id = models.PositiveIntegerField(null=True, blank=True, db_index=True)
    campaign_contact_id = models.PositiveIntegerField(null=True, blank=True, db_index=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    started_at = models.DateTimeField(null=True, blank=True)
    ringing_at = models.DateTimeField(null=True, blank=True)
    answered_at = models.DateTimeField(null=True, blank=True)
    ended_at = models.DateTimeField(null=True, blank=True)
    post_dial_delay_ms = models.PositiveIntegerField(null=True, blank=True)
    # Answer to the agent's stream starting; an answered call whose agent was not streaming within
    # ABANDON_AFTER_MS is abandoned (the callee heard silence).
    ai_connect_ms = models.PositiveIntegerField(null=True, blank=True)
    abandoned = models.BooleanField(default=False)
    # Quality, from the gateway's final event (docs/gateway.md, "Media bridge"): RTP as received from
    # the caller (RFC 3550 jitter, loss), RTCP round trip when the far end reports, estimated MOS, and
    # the bridge's own latency each way (p50/p99).
    jitter_ms = models.FloatField(null=True, blank=True)
    loss_percent = models.FloatField(null=True, blank=True)
    rtt_ms = models.FloatField(null=True, blank=True)
    mos = models.FloatField(null=True, blank=True)
    bridge_in_p50_ms = models.FloatField(null=True, blank=True)
    bridge_in_p99_ms = models.FloatField(null=True, blank=True)
    bridge_out_p50_ms = models.FloatField(null=True, blank=True)
    bridge_out_p99_ms = models.FloatField(null=True, blank=True)
    frames_to_agent = models.PositiveIntegerField(null=True, blank=True)
    frames_dropped = models.PositiveIntegerField(null=True, blank=True)
    # End of the caller's speech to the agent's first audio back: median over the caller's turns
    # the agent answered (media/speech.py), and how many turns that was.
    ai_response_ms = models.FloatField(null=True, blank=True)
    ai_response_turns = models.PositiveIntegerField(null=True, blank=True)
    # The agent's stream marks (media/marks.py): [{"name", "sent_at", "played_at", "cleared"?}], epoch
    # seconds, the first 200 of the call; played_at null when the call ended before their audio played.
    marks = models.JSONField(default=list, blank=True)
    record = models.BooleanField(default=False, help_text="the call is recorded (dual-channel WAV)")
    # where a transfer without a number goes (the campaign's transfer_numbers; the first is dialed)
    transfer_numbers = models.JSONField(default=list, blank=True)
    # Twilio's RecordingStatusCallback: {"url", "method", "events"} (telephony.calls.recording_callbacks).
    recording_status_callback = models.JSONField(null=True, blank=True)
    dtmf_digits = models.CharField(max_length=32, blank=True, help_text="the caller's DTMF digits, in order")
    setup_ms = models.PositiveIntegerField(null=True, blank=True)
    duration_s = models.FloatField(null=True, blank=True)
    # Answering-machine detection (media/amd.py): the settings asked for (null: none), where the
    # asynchronous result goes, and the result: Twilio's AnsweredBy value, when it was decided (ms of
    # call audio after the answer) and why (initial silence, greeting length, words, tones…).
    machine_detection = models.JSONField(null=True, blank=True)
    amd_status_callback = models.URLField(max_length=500, blank=True)
    answered_by = models.CharField(max_length=32, blank=True, db_index=True)
    amd_ms = models.PositiveIntegerField(null=True, blank=True)
    amd_evidence = models.JSONField(null=True, blank=True)
    # TwiML fetched when the call is answered (Twilio's Url): {"url", "method", "fallback_url",
    # "fallback_method"}; null for calls that carry their program (or none).
    twiml_url = models.JSONField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return self.sid

    @property
    def is_final(self) -> bool:
        return self.status in self.FINAL_STATUSES


class CallLeg(models.Model):
    """One SIP attempt of a call on one carrier."""

    call = models.ForeignKey(Call, related_name="legs", on_delete=models.CASCADE)
    attempt = models.PositiveSmallIntegerField()
    carrier_id = models.PositiveIntegerField(null=True, blank=True)
    carrier_name = models.CharField(max_length=100, blank=True)
    uri = models.CharField(max_length=500, blank=True)
    sip_code = models.PositiveSmallIntegerField(null=True, blank=True)
    reason = models.CharField(max_length=255, blank=True)
    failed_over = models.BooleanField(default=False)
    started_at = models.DateTimeField(null=True, blank=True)
    ringing_at = models.DateTimeField(null=True, blank=True)
    answered_at = models.DateTimeField(null=True, blank=True)
    ended_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["call", "attempt"]
        constraints = [models.UniqueConstraint(fields=["call", "attempt"], name="one_leg_per_attempt")]


class WebhookDelivery(models.Model):
    """One status callback for one call event, and what became of it (the tenant's delivery log)."""

    call = models.ForeignKey(Call, related_name="webhook_deliveries", on_delete=models.CASCADE)
    event = models.CharField(max_length=16)  # initiated, ringing, answered, completed
    url = models.CharField(max_length=500)
    payload = models.JSONField()
    attempts = models.PositiveSmallIntegerField(default=0)
    status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    error = models.CharField(max_length=255, blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)
    gave_up_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [models.UniqueConstraint(fields=["call", "event"], name="one_delivery_per_call_event")]


def new_recording_sid() -> str:
    return "RE" + uuid.uuid4().hex


def recordings_storage():
    """Where recordings are kept: settings.STORAGES["recordings"] (the var directory by default, any
    django-storages backend, S3-compatible stores included, when configured)."""
    return storages["recordings"]


class Recording(models.Model):
    """A recorded call's dual-channel WAV (left: the callee, right: the agent), written by the media
    host and moved into storage by telephony.calls.recordings."""

    sid = models.CharField(max_length=34, unique=True, default=new_recording_sid, editable=False)
    call = models.OneToOneField(Call, on_delete=models.CASCADE, related_name="recording")
    file = models.FileField(storage=recordings_storage, max_length=255)
    duration_s = models.FloatField()
    channels = models.PositiveSmallIntegerField(default=2)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]


class Transfer(models.Model):
    """A call handed to a person (telephony.calls.transfers): the second leg the platform dialed and
    joined to the call's audio. Written when requested, then from the leg's gateway events."""

    class Mode(models.TextChoices):
        COLD = "cold"  # the agent's stream ends when the person answers
        WARM = "warm"  # the agent stays, hearing both sides, until it closes its stream
        BLIND = "blind"  # a SIP REFER to the call's carrier (Carrier.allows_refer), which connects the person

    class OnFail(models.TextChoices):
        AGENT = "agent"  # the call goes on with its agent
        MESSAGE = "message"  # the caller hears failed_message, then the call ends
        HANGUP = "hangup"

    sid = models.CharField(max_length=34, unique=True, default=new_call_sid, help_text="the person's leg")
    call = models.ForeignKey(Call, related_name="transfers", on_delete=models.CASCADE)
    to = models.CharField(max_length=500, help_text="E.164 number (through the carriers) or SIP URI")
    caller_id = models.CharField(max_length=32)
    mode = models.CharField(max_length=8, choices=Mode.choices, default=Mode.COLD)
    on_fail = models.CharField(max_length=8, choices=OnFail.choices, default=OnFail.AGENT)
    status = models.CharField(max_length=16, choices=Call.Status.choices, default=Call.Status.QUEUED)
    outcome = models.CharField(max_length=32, blank=True)
    reason = models.CharField(max_length=255, blank=True)
    sip_code = models.PositiveSmallIntegerField(null=True, blank=True)
    hangup_by = models.CharField(max_length=16, blank=True)
    carrier_id = models.PositiveIntegerField(null=True, blank=True)
    carrier_name = models.CharField(max_length=100, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    answered_at = models.DateTimeField(null=True, blank=True)
    ended_at = models.DateTimeField(null=True, blank=True)
    duration_s = models.FloatField(null=True, blank=True)
    # TwiML <Dial action>: {"url", "method"} requested when the transfer ends (telephony/calls/dial.py)
    dial_action = models.JSONField(null=True, blank=True)
    dial_action_at = models.DateTimeField(null=True, blank=True, help_text="when the action was requested")

    class Meta:
        ordering = ["created_at"]

    def __str__(self) -> str:
        return self.sid
