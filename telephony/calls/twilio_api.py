"""A Twilio-compatible subset for single calls, so code written for Twilio drives the platform with
only its base URL and credentials changed (HTTP basic: account SID and API key).

    POST /2010-04-01/Accounts/{AccountSid}/Calls.json            create (To, From, Twiml | Url, …)
    GET  /2010-04-01/Accounts/{AccountSid}/Calls/{CallSid}.json  fetch
    POST /2010-04-01/Accounts/{AccountSid}/Calls/{CallSid}.json  update: Status=completed|canceled hangs up
"""
import redis
from django.db import connection
from django.http import Http404
from django.utils.http import http_date
from rest_framework import status
from rest_framework.parsers import FormParser, JSONParser, MultiPartParser
from rest_framework.response import Response
from rest_framework.views import APIView

from . import amd, services, twiml
from .models import Call

API_VERSION = "2010-04-01"
# Twilio error codes for the faults a client can make here.
ERROR_CODES = {"to": 21201, "from": 21212, "twiml": 12100, "url": 21205, "timeout": 21215}


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
    parser_classes = [FormParser, MultiPartParser, JSONParser]

    def initial(self, request, *args, **kwargs):
        super().initial(request, *args, **kwargs)
        # Another tenant's account is "not found", exactly like another tenant's call.
        if kwargs.get("account_sid") != connection.tenant.account_sid:
            raise Http404


class CallsView(TwilioView):
    def post(self, request, account_sid):
        data = request.data
        try:
            if data.get("Twiml"):
                instructions = twiml.parse(data["Twiml"])
            elif data.get("Url"):
                instructions = twiml.fetch(data["Url"], {"AccountSid": account_sid, "To": data.get("To", ""),
                                                         "From": data.get("From", "")}, data.get("Method", "POST"))
            else:
                return twilio_error("url", "Url or Twiml is required")
        except twiml.TwimlError as error:
            return twilio_error("twiml", str(error))
        try:
            timeout = int(data.get("Timeout", 60))
        except ValueError:
            return twilio_error("timeout", "Timeout must be a whole number of seconds")
        try:
            machine_detection = amd.from_twilio(data)
        except amd.AmdSettingsError as error:
            return twilio_error(error.field, str(error))
        try:
            call = services.place_call(
                connection.tenant,
                services.CallRequest(
                    to=data.get("To", ""), from_=data.get("From", ""), stream_url=instructions.stream_url,
                    custom_parameters=instructions.parameters, status_callback=data.get("StatusCallback", ""),
                    ring_timeout=max(5, min(timeout, 600)), max_duration=int(data.get("TimeLimit", 14400)),
                    pause_seconds=instructions.pause_seconds, hangup_on_answer=instructions.hangup,
                    machine_detection=machine_detection,
                    amd_status_callback=data.get("AsyncAmdStatusCallback", ""),
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

    def get(self, request, account_sid, call_sid):
        return Response(call_resource(self.get_call(call_sid), account_sid))

    def post(self, request, account_sid, call_sid):
        call = self.get_call(call_sid)
        wanted = request.data.get("Status")
        if wanted in ("completed", "canceled"):
            services.hang_up(call)
        elif wanted:
            return twilio_error("status", f"Status may be completed or canceled, not {wanted!r}")
        else:
            return twilio_error("twiml", "only Status updates are supported (Twiml/Url updates are not)")
        call.refresh_from_db()
        return Response(call_resource(call, account_sid))
