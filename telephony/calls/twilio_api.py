"""A Twilio-compatible subset for single calls, so code written for Twilio drives the platform with
only its base URL and credentials changed (HTTP basic: account SID and API key).

    POST /2010-04-01/Accounts/{AccountSid}/Calls.json            create (To, From, Twiml | Url, …)
    GET  /2010-04-01/Accounts/{AccountSid}/Calls/{CallSid}.json  fetch
    POST /2010-04-01/Accounts/{AccountSid}/Calls/{CallSid}.json  update: Status=completed|canceled hangs up;
                                                                  Twiml|Url runs it (<Dial>: a transfer)
    GET  /2010-04-01/Accounts/{AccountSid}/Calls.json            list: Twilio's filters and paging
    GET  /2010-04-01/Accounts/{AccountSid}.json                  the account

Every error is Twilio's body ({code, message, more_info, status}), so TwilioRestException carries the
code. docs/twilio-compatibility.md lists what is supported and how it differs.
"""
from collections.abc import Mapping

import redis
from django.db import connection
from django.http import Http404
from drf_spectacular.utils import extend_schema
from rest_framework import exceptions, status
from rest_framework.exceptions import ParseError
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.response import Response
from rest_framework.views import APIView

from core.api import JSONBodyParser

from . import amd, outbound, recording_callbacks, services, twilio_list, twiml, twiml_runner
from .models import CALLBACK_EVENTS, Call, new_call_sid
from .twilio_schema import (
    TWILIO_ERROR,
    TwilioCallCreateSerializer,
    TwilioCallSerializer,
    TwilioCallUpdateSerializer,
)
from .twilio_values import API_VERSION, direction, rfc2822

# Twilio error codes for the faults a client can make here.
ERROR_CODES = {"to": 21201, "from": 21212, "twiml": 12100, "url": 21205, "timeout": 21215,
               "statuscallback": 21609, "statuscallbackmethod": 21609, "statuscallbackevent": 21609,
               "timelimit": 21220, "recordingstatuscallback": 21609, "recordingstatuscallbackmethod": 21609,
               "recordingstatuscallbackevent": 21609}


# Twilio's codes for a <Dial> that cannot be placed: an invalid callerId; otherwise the number.
DIAL_ERROR_CODES = {"from": 13214, "caller_id": 13214}

# Twilio's codes for faults that are not about one parameter, by HTTP status.
STATUS_CODES = {400: 20001, 401: 20003, 403: 20003, 404: 20404, 405: 20004, 415: 20001, 429: 20429}


def error_body(code: int, message: str, http_status: int) -> dict:
    return {"code": code, "message": message, "more_info": f"https://www.twilio.com/docs/errors/{code}",
            "status": http_status}


def twilio_error(field: str, message: str, http_status: int = 400) -> Response:
    return Response(error_body(ERROR_CODES.get(field, 20001), message, http_status), status=http_status)


def call_resource(call: Call, account_sid: str, status: str | None = None) -> dict:
    uri = f"/{API_VERSION}/Accounts/{account_sid}/Calls/{call.sid}.json"
    return {
        "sid": call.sid, "account_sid": account_sid, "api_version": API_VERSION,
        "to": call.to_number, "to_formatted": call.to_number, "from": call.from_number,
        "from_formatted": call.from_number, "status": status or twilio_list.RESOURCE_STATUS.get(call.status, call.status),
        "direction": direction(call.direction),
        "date_created": rfc2822(call.created_at),
        "date_updated": rfc2822(max(t for t in (call.created_at, call.started_at, call.ringing_at, call.answered_at,
                                                call.ended_at) if t)),
        # Twilio's start_time is when the call was dialed (empty while queued), not when answered.
        "start_time": rfc2822(call.started_at), "end_time": rfc2822(call.ended_at),
        "duration": str(int(call.duration_s)) if call.duration_s is not None else None,
        "answered_by": call.answered_by or None, "price": None, "price_unit": "USD", "parent_call_sid": None,
        "caller_name": None, "forwarded_from": None, "group_sid": None, "queue_time": "0", "trunk_sid": None,
        "phone_number_sid": None, "uri": uri, "subresource_uris": {},
    }


class TwilioView(APIView):
    parser_classes = [FormParser, MultiPartParser, JSONBodyParser]

    def initial(self, request, *args, **kwargs):
        super().initial(request, *args, **kwargs)
        # Another tenant's account is "not found", exactly like another tenant's call.
        if kwargs.get("account_sid") != connection.tenant.account_sid:
            raise Http404
        if request.method == "POST" and not isinstance(request.data, Mapping):
            raise ParseError("the body must hold named parameters (a form, or a JSON object)")

    def handle_exception(self, exc):
        """DRF's faults (401, 404, 405, 429, parse errors) in Twilio's error body."""
        response = super().handle_exception(exc)
        if isinstance(exc, Http404):
            message = "The requested resource was not found"
        elif isinstance(exc, exceptions.APIException):
            message = str(exc.detail) if not isinstance(exc.detail, dict | list) else str(exc.get_full_details())
            if isinstance(exc, exceptions.NotAuthenticated | exceptions.AuthenticationFailed):
                message = f"Authenticate: {message}"
        else:
            return response
        code = STATUS_CODES.get(response.status_code, 20001)
        response.data = error_body(code, message, response.status_code)
        return response


class AccountView(TwilioView):
    @extend_schema(operation_id="twilio_accounts_fetch", responses={200: dict})
    def get(self, request, account_sid):
        tenant = connection.tenant
        return Response({
            "sid": tenant.account_sid, "owner_account_sid": tenant.account_sid, "friendly_name": tenant.name,
            "status": "suspended" if tenant.is_suspended else "active", "type": "Full",
            # Never shown through the API: an API key's holder must not read the account's token.
            "auth_token": None,
            "date_created": rfc2822(tenant.created_at), "date_updated": rfc2822(tenant.created_at),
            "uri": f"/{API_VERSION}/Accounts/{tenant.account_sid}.json",
            "subresource_uris": {"calls": f"/{API_VERSION}/Accounts/{tenant.account_sid}/Calls.json"},
        })


class TwilioInputError(ValueError):
    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field


def text_param(data, name: str, default: str = "") -> str:
    value = data.get(name, default)
    if not isinstance(value, str):
        raise TwilioInputError(name.lower(), f"{name} must be a string")
    return value


# Twilio create parameters this platform does not do: given (with a value that asks for something), the
# request is a 400 naming them rather than a call that silently lacks what was asked for.
UNSUPPORTED_CREATE_PARAMS = (
    "ApplicationSid", "RecordingChannels", "RecordingTrack",
    "Trim", "SipAuthUsername", "SipAuthPassword", "AsyncAmdStatusCallbackMethod", "Byoc", "CallReason",
    "CallToken", "CallerId",
)
# Values that ask for nothing (Twilio's defaults), accepted for the parameters above.
NEUTRAL_VALUES = {"", "false", "False", "do-not-trim", "mono", "dual", "both", "Disable"}


def unsupported_params(data) -> list[str]:
    return [name for name in UNSUPPORTED_CREATE_PARAMS
            if name in data and (not isinstance(data.get(name), str) or data.get(name) not in NEUTRAL_VALUES)]


def callback_events(data) -> list[str]:
    """StatusCallbackEvent: repeated (as Twilio's clients send it) or space-separated; only
    `completed` when not given, as Twilio."""
    values = data.getlist("StatusCallbackEvent") if hasattr(data, "getlist") else data.get("StatusCallbackEvent")
    values = [values] if isinstance(values, str) else values or []
    if not all(isinstance(value, str) for value in values):
        raise TwilioInputError("statuscallbackevent", "StatusCallbackEvent must be text")
    events = {event for value in values for event in value.replace(",", " ").split()}
    if unknown := events - set(CALLBACK_EVENTS):
        raise TwilioInputError("statuscallbackevent", f"StatusCallbackEvent may hold {', '.join(CALLBACK_EVENTS)}, "
                                                      f"not {', '.join(sorted(unknown))}")
    return [event for event in CALLBACK_EVENTS if event in events] or ["completed"]


def method_param(data, name: str) -> str:
    method = text_param(data, name, "POST").upper() or "POST"
    if method not in ("GET", "POST"):
        raise TwilioInputError(name.lower(), f"{name} must be GET or POST")
    return method


def document_urls(data) -> dict[str, str]:
    """Url, Method, FallbackUrl, FallbackMethod of a TwiML document, checked by the outbound guard."""
    urls = {"url": text_param(data, "Url"), "method": method_param(data, "Method"),
            "fallback_url": text_param(data, "FallbackUrl"), "fallback_method": method_param(data, "FallbackMethod")}
    for key, name in (("url", "Url"), ("fallback_url", "FallbackUrl")):
        if len(urls[key]) > twiml.MAX_URL_CHARS:
            raise TwilioInputError("url", f"{name} may hold at most {twiml.MAX_URL_CHARS} characters")
        if why := outbound.refusal(urls[key], outbound.CALLBACK_SCHEMES):
            raise TwilioInputError("url", f"{name} refused: {why}")
    return urls


def seconds_param(data, name: str, default: int, low: int, high: int) -> int:
    value = text_param(data, name, str(default)) if not isinstance(data.get(name), int) else str(data[name])
    try:
        seconds = int(value)
    except ValueError:
        raise TwilioInputError(name.lower(), f"{name} must be a whole number of seconds") from None
    if not low <= seconds <= high:
        raise TwilioInputError(name.lower(), f"{name} must be from {low} to {high} seconds")
    return seconds


def twilio_recording_callback(data) -> dict | None:
    """RecordingStatusCallback, its Method and its Event (repeated or space-separated), as Twilio's."""
    url = data.get("RecordingStatusCallback", "")
    events = data.getlist("RecordingStatusCallbackEvent") if hasattr(data, "getlist") else \
        data.get("RecordingStatusCallbackEvent")
    events = [events] if isinstance(events, str) else events or []
    method = data.get("RecordingStatusCallbackMethod", "POST")
    if not all(isinstance(value, str) for value in (url, method, *events)):
        raise recording_callbacks.RecordingCallbackError("recordingstatuscallback", "RecordingStatusCallback* must be text")
    if why := outbound.refusal(url, outbound.CALLBACK_SCHEMES):
        raise recording_callbacks.RecordingCallbackError("recordingstatuscallback", f"RecordingStatusCallback refused: {why}")
    if len(url) > 500:
        raise recording_callbacks.RecordingCallbackError("recordingstatuscallback",
                                                         "RecordingStatusCallback may hold at most 500 characters")
    if url and str(data.get("Record", "")).lower() != "true":
        raise recording_callbacks.RecordingCallbackError("recordingstatuscallback",
                                                         "RecordingStatusCallback needs Record=true")
    return recording_callbacks.configured(url, method, events)


class CallsView(TwilioView):
    @extend_schema(operation_id="twilio_calls_list", responses={200: dict, 400: TWILIO_ERROR})
    def get(self, request, account_sid):
        try:
            page = twilio_list.page_of(request.query_params)
        except twilio_list.ListError as error:
            return twilio_error("list", str(error))
        return Response({
            "calls": [call_resource(call, account_sid) for call in page.calls],
            **twilio_list.page_uris(request.path, request.query_params, page),
        })

    @extend_schema(operation_id="twilio_calls_create", request=TwilioCallCreateSerializer,
                   responses={201: TwilioCallSerializer, 400: TWILIO_ERROR})
    def post(self, request, account_sid):
        data = request.data
        if unsupported := unsupported_params(data):
            return twilio_error("unsupported", f"not supported here: {', '.join(unsupported)} "
                                               "(see docs/twilio-compatibility.md)")
        sid = new_call_sid()
        try:
            to, from_ = text_param(data, "To"), text_param(data, "From")
            status_callback = text_param(data, "StatusCallback")
            events, callback_method = callback_events(data), method_param(data, "StatusCallbackMethod")
            send_digits = text_param(data, "SendDigits")  # pressed once answered (RFC 4733)
            # Twilio clamps Timeout into its range; TimeLimit out of range is an error.
            timeout = max(5, min(seconds_param(data, "Timeout", 60, 0, 10 ** 6), 600))
            time_limit = seconds_param(data, "TimeLimit", 14400, 1, 14400)
            instructions, twiml_url = twiml.CallInstructions(), None
            if data.get("Twiml"):
                instructions = twiml_runner.given(data["Twiml"])
            elif data.get("Url"):
                twiml_url = document_urls(data)  # fetched when the call is answered (twiml_runner)
            else:
                return twilio_error("url", "Url or Twiml is required")
        except TwilioInputError as error:
            return twilio_error(error.field, str(error))
        except twiml.TwimlError as error:
            return twilio_error("twiml", str(error))
        if why := outbound.refusal(status_callback, outbound.CALLBACK_SCHEMES):
            return twilio_error("statuscallback", f"StatusCallback refused: {why}")
        if len(status_callback) > 500:
            return twilio_error("statuscallback", "StatusCallback may hold at most 500 characters")
        try:
            recording_callback = twilio_recording_callback(data)
        except recording_callbacks.RecordingCallbackError as error:
            return twilio_error(error.field, str(error))
        try:
            machine_detection = amd.from_twilio(data)
        except amd.AmdSettingsError as error:
            return twilio_error(error.field, str(error))
        try:
            call = services.place_call(
                connection.tenant,
                services.CallRequest(
                    sid=sid, to=to, from_=from_, stream_url=instructions.stream_url,
                    custom_parameters=instructions.parameters, status_callback=status_callback,
                    status_callback_events=events, status_callback_method=callback_method,
                    ring_timeout=timeout, max_duration=time_limit,
                    twiml=instructions.steps if twiml_url is None else None, twiml_url=twiml_url,
                    machine_detection=machine_detection,
                    amd_status_callback=data.get("AsyncAmdStatusCallback", ""),
                    send_digits=send_digits, record=str(data.get("Record", "")).lower() == "true",
                    recording_status_callback=recording_callback,
                ),
            )
        except services.CallRequestError as error:
            return twilio_error(error.field, str(error))
        except redis.RedisError:  # the record ends as not_placed (services.give_up_unplaced_calls)
            return twilio_error("gateways", "the call could not be handed to the gateways; try again shortly",
                                status.HTTP_503_SERVICE_UNAVAILABLE)
        return Response(call_resource(call, account_sid), status=status.HTTP_201_CREATED)


class CallView(TwilioView):
    def get_call(self, call_sid) -> Call:
        call = Call.objects.filter(sid=call_sid).first()
        if call is None:
            raise Http404
        return call

    @extend_schema(operation_id="twilio_calls_fetch", responses={200: TwilioCallSerializer})
    def get(self, request, account_sid, call_sid):
        return Response(call_resource(self.get_call(call_sid), account_sid))

    @extend_schema(operation_id="twilio_calls_update", request=TwilioCallUpdateSerializer,
                   responses={200: TwilioCallSerializer, 400: TWILIO_ERROR})
    def post(self, request, account_sid, call_sid):
        call = self.get_call(call_sid)
        wanted = request.data.get("Status")
        if not isinstance(wanted, str | None):
            return twilio_error("status", "Status must be a string")
        if not wanted and (request.data.get("Twiml") or request.data.get("Url")):
            return self.redirect(call, account_sid, request.data)
        if wanted not in ("completed", "canceled"):
            if wanted:
                return twilio_error("status", f"Status may be completed or canceled, not {wanted!r}")
            return twilio_error("twiml", "give Status, Twiml or Url")
        if call.is_final:
            return Response(call_resource(call, account_sid))
        answered = call.status == Call.Status.IN_PROGRESS
        if wanted == "canceled" and answered:
            # As Twilio: canceling applies to calls not yet answered; an answered call goes on.
            return Response(call_resource(call, account_sid))
        services.hang_up(call)
        call.refresh_from_db()
        # The gateway ends the call a moment later; the answer says the status asked for, as Twilio's does.
        return Response(call_resource(call, account_sid, status=call.status if call.is_final else wanted))

    def redirect(self, call: Call, account_sid: str, data) -> Response:
        """A live update: the call runs the new TwiML from now on (its stream, if any, gets `stop`); one
        still ringing runs it when answered."""
        if call.is_final:
            return Response(error_body(21220, "Call is not in-progress. Cannot redirect.", 400), status=400)
        try:
            if data.get("Twiml"):
                instructions = twiml_runner.given(data["Twiml"], live=True)
            else:
                urls = document_urls(data)
                instructions = twiml_runner.fetch(call, urls["url"], urls["method"], urls["fallback_url"],
                                                  urls["fallback_method"], live=True)
            twiml_runner.run(call, instructions)
        except TwilioInputError as error:
            return twilio_error(error.field, str(error))
        except twiml.TwimlError as error:
            return twilio_error("twiml", str(error))
        except services.CallRequestError as error:  # a <Dial> that cannot be placed
            return Response(error_body(DIAL_ERROR_CODES.get(error.field, 13224), f"<Dial>: {error}", 400), status=400)
        except services.CallNotInProgress as error:
            return Response(error_body(21220, f"Call is not in-progress: {error}", 400), status=400)
        call.refresh_from_db()
        return Response(call_resource(call, account_sid))
