"""Twilio's IncomingPhoneNumbers for the tenant's own numbers, so a Twilio app points a number's calls
at its voice URL the way it always has:

    GET  /2010-04-01/Accounts/{AccountSid}/IncomingPhoneNumbers.json          list (PhoneNumber filter)
    GET  /2010-04-01/Accounts/{AccountSid}/IncomingPhoneNumbers/{Sid}.json    fetch
    POST /2010-04-01/Accounts/{AccountSid}/IncomingPhoneNumbers/{Sid}.json    VoiceUrl, VoiceMethod,
                                                                              VoiceFallbackUrl, VoiceFallbackMethod

Buying and releasing numbers is the platform admin's (404/405 here). A number with a voice URL answers
its inbound calls with the TwiML fetched from it (telephony.calls.twiml_runner), in place of its fixed
stream URL.
"""
import hashlib

from django.db import connection, transaction
from django.http import Http404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema
from rest_framework.response import Response

from telephony import services as inventory
from telephony.models import Number

from . import outbound
from .twilio_api import TwilioInputError, TwilioView, method_param, text_param, twilio_error
from .twilio_schema import TWILIO_ERROR
from .twilio_values import API_VERSION, rfc2822

VOICE_PARAMS = {"VoiceUrl": "voice_url", "VoiceMethod": "voice_method", "VoiceFallbackUrl": "voice_fallback_url",
                "VoiceFallbackMethod": "voice_fallback_method"}


def number_sid(number: Number) -> str:
    return "PN" + hashlib.md5(number.e164.encode(), usedforsecurity=False).hexdigest()


def resource(number: Number, account_sid: str) -> dict:
    uri = f"/{API_VERSION}/Accounts/{account_sid}/IncomingPhoneNumbers/{number_sid(number)}.json"
    return {
        "sid": number_sid(number), "account_sid": account_sid, "api_version": API_VERSION,
        "phone_number": number.e164, "friendly_name": number.e164, "origin": "hosted", "status": "in-use",
        "voice_url": number.voice_url or None, "voice_method": number.voice_method,
        "voice_fallback_url": number.voice_fallback_url or None, "voice_fallback_method": number.voice_fallback_method,
        "voice_application_sid": None, "voice_caller_id_lookup": False, "voice_receive_mode": "voice",
        "status_callback": None, "status_callback_method": "POST", "trunk_sid": None,
        "capabilities": {"voice": True, "sms": False, "mms": False, "fax": False},
        "date_created": rfc2822(number.created_at), "date_updated": rfc2822(number.created_at),
        "uri": uri, "subresource_uris": {},
    }


def tenant_numbers():
    return Number.objects.filter(tenant__schema_name=connection.schema_name).order_by("e164")


class NumbersView(TwilioView):
    @extend_schema(operation_id="twilio_incoming_numbers_list", responses={200: dict})
    def get(self, request, account_sid):
        numbers = tenant_numbers()
        if wanted := request.query_params.get("PhoneNumber"):
            numbers = numbers.filter(e164=wanted)
        rows = [resource(number, account_sid) for number in numbers]
        uri = f"/{API_VERSION}/Accounts/{account_sid}/IncomingPhoneNumbers.json"
        return Response({"incoming_phone_numbers": rows, "page": 0, "page_size": max(len(rows), 50),
                         "start": 0, "end": max(len(rows) - 1, 0), "uri": uri, "first_page_uri": uri,
                         "next_page_uri": None, "previous_page_uri": None})


class NumberView(TwilioView):
    def get_number(self, sid: str) -> Number:
        number = next((number for number in tenant_numbers() if number_sid(number) == sid), None)
        if number is None:
            raise Http404
        return number

    @extend_schema(operation_id="twilio_incoming_numbers_fetch", responses={200: dict})
    def get(self, request, account_sid, number_sid):
        return Response(resource(self.get_number(number_sid), account_sid))

    @extend_schema(operation_id="twilio_incoming_numbers_update", request=OpenApiTypes.OBJECT,
                   responses={200: dict, 400: TWILIO_ERROR})
    def post(self, request, account_sid, number_sid):
        number, data = self.get_number(number_sid), request.data
        if unsupported := sorted(set(data) - set(VOICE_PARAMS)):
            return twilio_error("unsupported", f"not supported here: {', '.join(unsupported)} "
                                               "(see docs/twilio-compatibility.md)")
        try:
            for param, field in VOICE_PARAMS.items():
                if param not in data:
                    continue
                value = method_param(data, param) if param.endswith("Method") else text_param(data, param).strip()
                if not param.endswith("Method") and len(value) > 500:
                    raise TwilioInputError("url", f"{param} may hold at most 500 characters")
                if not param.endswith("Method") and (why := outbound.refusal(value, outbound.CALLBACK_SCHEMES)):
                    raise TwilioInputError("url", f"{param} refused: {why}")
                setattr(number, field, value)
        except TwilioInputError as error:
            return twilio_error(error.field, str(error))
        with transaction.atomic():
            number.save(update_fields=list(VOICE_PARAMS.values()))
            transaction.on_commit(inventory.publish_inventory)  # the gateways route by it at once
        return Response(resource(number, account_sid))
