"""Twilio's Recordings resource over the platform's recordings (telephony.calls.recordings):

    GET    /2010-04-01/Accounts/{AccountSid}/Recordings.json                   list (CallSid, DateCreated…)
    GET    /2010-04-01/Accounts/{AccountSid}/Calls/{CallSid}/Recordings.json   a call's recordings
    GET    /2010-04-01/Accounts/{AccountSid}/Recordings/{RecordingSid}.json    fetch
    DELETE /2010-04-01/Accounts/{AccountSid}/Recordings/{RecordingSid}.json    delete (file and record)
    GET    /2010-04-01/Accounts/{AccountSid}/Recordings/{RecordingSid}[.wav]   the WAV (dual channel)

Paging is Twilio's Page / PageSize, with next_page_uri for its clients to follow.
"""
from urllib.parse import urlencode

from django.conf import settings
from django.http import FileResponse, Http404
from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.response import Response

from core.api import whole_number

from . import recordings
from .models import Recording
from .twilio_api import TwilioView, twilio_error
from .twilio_values import API_VERSION, rfc2822

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 1000
FILTER_PARAMS = ("CallSid", "DateCreated", "DateCreated<", "DateCreated>")
DATE_LOOKUPS = {"DateCreated": "date", "DateCreated<": "date__lte", "DateCreated>": "date__gte"}


def recording_uri(account_sid: str, sid: str) -> str:
    """The recording's resource without an extension: its WAV (Twilio's RecordingUrl is this URL)."""
    return f"/{API_VERSION}/Accounts/{account_sid}/Recordings/{sid}"


def recording_url(account_sid: str, sid: str) -> str:
    return settings.PUBLIC_BASE_URL.rstrip("/") + recording_uri(account_sid, sid)


def recording_resource(recording: Recording, account_sid: str) -> dict:
    call = recording.call
    return {
        "sid": recording.sid, "account_sid": account_sid, "api_version": API_VERSION, "call_sid": call.sid,
        "conference_sid": None, "date_created": rfc2822(recording.created_at),
        "date_updated": rfc2822(recording.created_at),
        "start_time": rfc2822(call.answered_at or recording.created_at),
        "duration": str(round(recording.duration_s)), "channels": recording.channels, "status": "completed",
        "source": "OutboundAPI", "track": "both", "error_code": None, "price": None, "price_unit": "USD",
        "encryption_details": None, "uri": recording_uri(account_sid, recording.sid) + ".json",
        "media_url": recording_url(account_sid, recording.sid), "subresource_uris": {},
    }


class ListError(ValueError):
    pass


def _filtered(params, call_sid: str | None):
    queryset = Recording.objects.select_related("call").order_by("-created_at", "-pk")
    if call_sid := call_sid or params.get("CallSid"):
        queryset = queryset.filter(call__sid=call_sid)
    for name, lookup in DATE_LOOKUPS.items():
        if value := params.get(name):
            day = value[:10]
            if len(day) != 10 or day[4] != "-" or day[7] != "-" or not day.replace("-", "").isdigit():
                raise ListError(f"{name} must be a date (YYYY-MM-DD), not {value!r}")
            queryset = queryset.filter(**{f"created_at__{lookup}": day})
    return queryset


def _number(params, name: str, default: int, high: int) -> int:
    raw = params.get(name)
    if raw in (None, ""):
        return default
    if (value := whole_number(raw, 0 if name == "Page" else 1, high)) is None:
        raise ListError(f"{name} must be a whole number up to {high}")
    return value


def list_response(path: str, params, account_sid: str, call_sid: str | None = None) -> dict:
    page_size = _number(params, "PageSize", DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)
    page = _number(params, "Page", 0, 10 ** 9)
    rows = list(_filtered(params, call_sid)[page * page_size:(page + 1) * page_size + 1])
    shown = rows[:page_size]
    filters = {name: params[name] for name in FILTER_PARAMS if params.get(name)}

    def uri(number: int) -> str:
        return f"{path}?{urlencode({**filters, 'PageSize': page_size, 'Page': number})}"

    start = page * page_size
    return {
        "recordings": [recording_resource(recording, account_sid) for recording in shown],
        "page": page, "page_size": page_size, "start": start, "end": start + max(len(shown) - 1, 0),
        "uri": uri(page), "first_page_uri": uri(0),
        "next_page_uri": uri(page + 1) if len(rows) > page_size else None,
        "previous_page_uri": uri(page - 1) if page else None,
    }


class RecordingsView(TwilioView):
    @extend_schema(operation_id="twilio_recordings_list", responses={200: dict})
    def get(self, request, account_sid, call_sid=None):
        try:
            return Response(list_response(request.path, request.query_params, account_sid, call_sid))
        except ListError as error:
            return twilio_error("list", str(error))


class CallRecordingsView(RecordingsView):
    """Calls/{CallSid}/Recordings.json: the same list, of one call."""

    @extend_schema(operation_id="twilio_call_recordings_list", responses={200: dict})
    def get(self, request, account_sid, call_sid=None):
        return super().get(request, account_sid, call_sid)


class RecordingView(TwilioView):
    def get_recording(self, recording_sid: str) -> Recording:
        recording = Recording.objects.select_related("call").filter(sid=recording_sid).first()
        if recording is None:
            raise Http404
        return recording

    @extend_schema(operation_id="twilio_recordings_fetch", responses={200: dict})
    def get(self, request, account_sid, recording_sid, extension="wav"):
        recording = self.get_recording(recording_sid)
        if extension == "json":
            return Response(recording_resource(recording, account_sid))
        if extension != "wav":  # Twilio also converts to mp3; only the WAV is kept here
            raise Http404
        return FileResponse(recording.file.open("rb"), content_type="audio/x-wav", filename=f"{recording.sid}.wav")

    @extend_schema(operation_id="twilio_recordings_delete", responses={204: None})
    def delete(self, request, account_sid, recording_sid, extension="wav"):
        recordings.delete_recording(self.get_recording(recording_sid))
        return Response(status=status.HTTP_204_NO_CONTENT)
