"""Twilio's RecordingStatusCallback: when a recorded call's WAV is stored (``completed``), or when a
recorded call ends with none (``absent``), a request to the call's recording status callback with
Twilio's parameters (RecordingSid, RecordingUrl, RecordingStatus, RecordingDuration, …). Delivered,
signed, retried and logged as every status callback (telephony.calls.webhooks), at most once per call
and event."""
from __future__ import annotations

from django.utils import timezone

from . import webhooks
from .models import Call, Recording
from .twilio_values import API_VERSION, rfc2822

EVENTS = ("completed", "absent")  # Twilio's in-progress is not sent: the recording has no sid before it is stored
# The callback's event on its WebhookDelivery row (one per call and event, beside the call's own).
DELIVERY_EVENTS = {event: webhooks.RECORDING_EVENT_PREFIX + event for event in EVENTS}


class RecordingCallbackError(ValueError):
    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field


def configured(url: str, method: str = "POST", events: list[str] | None = None) -> dict | None:
    """The call's recording_status_callback from Twilio's three parameters (None without a URL);
    raises RecordingCallbackError naming the parameter at fault."""
    if not url:
        return None
    method = (method or "POST").upper()
    if method not in ("GET", "POST"):
        raise RecordingCallbackError("recordingstatuscallbackmethod", "RecordingStatusCallbackMethod must be GET or POST")
    asked = {event for value in events or [] for event in value.replace(",", " ").split()} or {"completed"}
    if unknown := asked - set(EVENTS) - {"in-progress"}:
        raise RecordingCallbackError("recordingstatuscallbackevent", f"RecordingStatusCallbackEvent may hold "
                                     f"{', '.join(EVENTS)}, not {', '.join(sorted(unknown))}")
    if asked == {"in-progress"}:
        raise RecordingCallbackError("recordingstatuscallbackevent",
                                     "RecordingStatusCallbackEvent in-progress is not sent here; ask for completed")
    return {"url": url, "method": method, "events": [event for event in EVENTS if event in asked]}


def payload_for(call: Call, event: str, account_sid: str, recording: Recording | None) -> dict[str, str]:
    from .twilio_recordings import recording_url

    fields = {"AccountSid": account_sid, "CallSid": call.sid, "RecordingStatus": event, "RecordingSource": "OutboundAPI",
              "RecordingTrack": "both", "ApiVersion": API_VERSION, "Timestamp": rfc2822(timezone.now()),
              "ErrorCode": 0 if recording else None}
    if recording is not None:
        fields.update(RecordingSid=recording.sid, RecordingUrl=recording_url(account_sid, recording.sid),
                      RecordingDuration=round(recording.duration_s), RecordingChannels=recording.channels,
                      RecordingStartTime=rfc2822(call.answered_at or recording.created_at))
    return {key: str(value) for key, value in fields.items() if value not in (None, "")}


def callback_for(call: Call, event: str, account_sid: str,
                 recording: Recording | None = None) -> tuple[str, str, dict] | None:
    """(delivery event, url, payload) if the call asked for this recording event."""
    wanted = call.recording_status_callback
    if not wanted or event not in wanted["events"]:
        return None
    return DELIVERY_EVENTS[event], wanted["url"], payload_for(call, event, account_sid, recording)


def enqueue(call: Call, event: str, account_sid: str, recording: Recording | None = None) -> None:
    if callback := callback_for(call, event, account_sid, recording):
        webhooks.enqueue_all([(call.pk, callback)])
