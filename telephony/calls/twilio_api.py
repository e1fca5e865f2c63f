"""A Twilio-compatible subset for single calls, so code written for Twilio drives the platform with
only its base URL and credentials changed (HTTP basic: account SID and API key).

    POST /2010-04-01/Accounts/{AccountSid}/Calls.json            create (To, From, Twiml | Url, …)
    GET  /2010-04-01/Accounts/{AccountSid}/Calls/{CallSid}.json  fetch
    POST /2010-04-01/Accounts/{AccountSid}/Calls/{CallSid}.json  update: Status=completed|canceled hangs up
"""
from collections.abc import Mapping

import redis
from django.conf import settings
from django.db import connection
from django.http import Http404
from django.utils.http import http_date
from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.exceptions import ParseError
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.response import Response
from rest_framework.views import APIView

from core.api import JSONBodyParser

from . import amd, outbound, services, twiml
from .models import Call
from .twilio_schema import (
    TWILIO_ERROR,
    TwilioCallCreateSerializer,
    TwilioCallSerializer,
    TwilioCallUpdateSerializer,
)

API_VERSION = "2010-04-01"
# Twilio error codes for the faults a client can make here.
ERROR_CODES = {"to": 21201, "from": 21212, "twiml": 12100, "url": 21205, "timeout": 21215,
               "statuscallback": 21609, "timelimit": 21220}


def rfc2822(value):
    return http_date(value.timestamp()).replace("GMT", "+0000") if value else None


def twilio_error(field: str, message: str, http_status: int = 400) -> Response:
    code = ERROR_CODES.get(field, 20001)
    return Response({"code": code, "message": message, "more_info": f"field {field}", "status": http_status},
                    status=http_status)


def call_resource(call: Call, account_sid: str) -> dict:
    uri = f"/{API_VERSION}/Accounts/{account_sid}/Calls/{call.sid}.json"
    return {
        "sid": call.sid, "account_sid": account_sid, "api_version": API_VERSION,
        "to": call.to_number, "to_formatted": call.to_number, "from": call.from_number,
        "from_formatted": call.from_number, "status": call.status,
        "direction": "outbound-api" if call.direction == "outbound" else call.direction,
        "date_created": rfc2822(call.created_at), "date_updated": rfc2822(call.ended_at or call.created_at),
        "start_time": rfc2822(call.answered_at or call.started_at), "end_time": rfc2822(call.ended_at),
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


class TwilioInputError(ValueError):
    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field


def text_param(data, name: str, default: str = "") -> str:
    value = data.get(name, default)
    if not isinstance(value, str):
        raise TwilioInputError(name.lower(), f"{name} must be a string")
    return value


def seconds_param(data, name: str, default: int, low: int, high: int) -> int:
    value = text_param(data, name, str(default)) if not isinstance(data.get(name), int) else str(data[name])
    try:
        seconds = int(value)
    except ValueError:
        raise TwilioInputError(name.lower(), f"{name} must be a whole number of seconds") from None
    if not low <= seconds <= high:
        raise TwilioInputError(name.lower(), f"{name} must be from {low} to {high} seconds")
    return seconds


class CallsView(TwilioView):
    @extend_schema(operation_id="twilio_calls_create", request=TwilioCallCreateSerializer,
                   responses={201: TwilioCallSerializer, 400: TWILIO_ERROR})
    def post(self, request, account_sid):
        data = request.data
        try:
            to, from_ = text_param(data, "To"), text_param(data, "From")
            status_callback = text_param(data, "StatusCallback")
            send_digits = text_param(data, "SendDigits")  # pressed once answered (RFC 4733)
            # Twilio clamps Timeout into its range; TimeLimit out of range is an error.
            timeout = max(5, min(seconds_param(data, "Timeout", 60, 0, 10 ** 6), 600))
            time_limit = seconds_param(data, "TimeLimit", 14400, 1, 14400)
            if data.get("Twiml"):
                instructions = twiml.parse(data["Twiml"])
            elif data.get("Url"):
                instructions = twiml.fetch(text_param(data, "Url"), {"AccountSid": account_sid, "To": to, "From": from_},
                                           settings.OUTBOUND_ALLOW, text_param(data, "Method", "POST"))
            else:
                return twilio_error("url", "Url or Twiml is required")
        except TwilioInputError as error:
            return twilio_error(error.field, str(error))
        except twiml.TwimlError as error:
            return twilio_error("twiml", str(error))
        if why := outbound.refusal(instructions.stream_url, outbound.STREAM_SCHEMES):
            return twilio_error("twiml", f"<Stream url> refused: {why}")
        if why := outbound.refusal(status_callback, outbound.CALLBACK_SCHEMES):
            return twilio_error("statuscallback", f"StatusCallback refused: {why}")
        if len(status_callback) > 500:
            return twilio_error("statuscallback", "StatusCallback may hold at most 500 characters")
        try:
            machine_detection = amd.from_twilio(data)
        except amd.AmdSettingsError as error:
            return twilio_error(error.field, str(error))
        try:
            call = services.place_call(
                connection.tenant,
                services.CallRequest(
                    to=to, from_=from_, stream_url=instructions.stream_url,
                    custom_parameters=instructions.parameters, status_callback=status_callback,
                    ring_timeout=timeout, max_duration=time_limit,
                    pause_seconds=instructions.pause_seconds, hangup_on_answer=instructions.hangup,
                    machine_detection=machine_detection,
                    amd_status_callback=data.get("AsyncAmdStatusCallback", ""),
                    send_digits=send_digits, record=str(data.get("Record", "")).lower() == "true",
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
        if wanted in ("completed", "canceled"):
            services.hang_up(call)
        elif wanted:
            return twilio_error("status", f"Status may be completed or canceled, not {wanted!r}")
        else:
            return twilio_error("twiml", "only Status updates are supported (Twiml/Url updates are not)")
        call.refresh_from_db()
        return Response(call_resource(call, account_sid))
