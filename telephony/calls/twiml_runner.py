"""TwiML as Twilio runs it, on the platform's side: the call's `Url` fetched when it is answered (an
inbound call's voice URL while it rings; its `FallbackUrl` when that fails), a `<Redirect>` fetched
when the call reaches it, a live update's `Twiml` / `Url`, a <Dial>'s `action` when its transfer ended.
Each request carries Twilio's parameters and `X-Twilio-Signature` (the account's auth
token); the program of the document goes to the media host holding the call (media/twiml_player.py),
which runs it in place of what the call was doing; a <Dial> (live calls only) becomes a transfer
(telephony/calls/dial.py).
"""
from __future__ import annotations

import logging

from django.conf import settings
from django.db import connection
from django.utils import timezone

from core.redis_client import get_redis
from telephony.gateway import client as gateway
from tenants import auth_token

from . import dial, outbound, services, twiml
from .models import Call, Transfer
from .twilio_list import RESOURCE_STATUS
from .twilio_values import API_VERSION, direction

log = logging.getLogger(__name__)

# Twilio's code for a TwiML document that could not be fetched (given to the FallbackUrl as ErrorCode).
DOCUMENT_FAULT = "11200"


def request_params(call: Call) -> dict[str, str]:
    """Twilio's parameters of a request about ``call`` (TwiML fetches). An inbound call rings until
    its number's document says how to take it (answered, or refused by <Reject>)."""
    status = RESOURCE_STATUS.get(call.status, call.status)
    if call.direction == "inbound" and call.answered_at is None and not call.is_final:
        status = "ringing"
    return {"AccountSid": connection.tenant.account_sid, "CallSid": call.sid, "From": call.from_number,
            "To": call.to_number, "CallStatus": status,
            "Direction": direction(call.direction), "ApiVersion": API_VERSION}


def fetch(call: Call, url: str, method: str = "POST", fallback_url: str = "", fallback_method: str = "POST",
          extra_params: dict[str, str] | None = None, live: bool = False) -> twiml.CallInstructions:
    """The program of the document at ``url`` (or, when that fails, at ``fallback_url``, told why as
    Twilio tells it: ErrorCode, ErrorUrl). ``live``: for a call in progress (a <Dial> may be run).
    Raises TwimlError."""
    token = auth_token.current(connection.tenant)
    params = {**request_params(call), **(extra_params or {})}
    try:
        return checked(twiml.fetch(url, params, settings.OUTBOUND_ALLOW, method, token), live)
    except twiml.TwimlError as error:
        if not fallback_url:
            raise
        log.warning("TwiML Url failed (%s): trying the FallbackUrl", error, extra={"call_sid": call.sid})
        params = {**params, "ErrorCode": DOCUMENT_FAULT, "ErrorUrl": url}
        return checked(twiml.fetch(fallback_url, params, settings.OUTBOUND_ALLOW, fallback_method, token), live)


def checked(instructions: twiml.CallInstructions, live: bool = False) -> twiml.CallInstructions:
    """The program, if the outbound guard lets its streams through (raises TwimlError naming the rule).
    A <Dial> is a transfer of a call in progress (``live``): at create, at answer or after <Redirect>
    the media host would have to run it, which it does not."""
    if instructions.dial is not None and not live:
        raise twiml.TwimlError("<Dial> is supported in a live call update (calls(sid).update) and in a <Dial "
                               "action> document only (see docs/twilio-compatibility.md)")
    if instructions.dial is not None and (why := outbound.refusal(instructions.dial.action, outbound.CALLBACK_SCHEMES)):
        raise twiml.TwimlError(f"<Dial action> refused: {why}")
    for step in instructions.steps:
        if step["verb"] in ("connect", "fork") and (why := outbound.refusal(step["url"], outbound.STREAM_SCHEMES)):
            raise twiml.TwimlError(f"<Stream url> refused: {why}")
    return instructions


def given(document: str, live: bool = False) -> twiml.CallInstructions:
    """The program of an API request's `Twiml` (a call placed, or updated: ``live``): <Reject> only
    refuses an inbound call's ring, so here it is an error. Raises TwimlError."""
    instructions = checked(twiml.parse(document), live)
    if instructions.steps and instructions.steps[0]["verb"] == "reject":
        raise twiml.TwimlError("<Reject> only refuses an inbound call: the first verb of its number's voice URL")
    return instructions


def run(call: Call, instructions: twiml.CallInstructions) -> str:
    """Run a program on the live call from now on (a stream it has gets `stop`), or its <Dial> (the
    agent's stream ends when the person answers). Returns the gateway holding it, or the transfer's sid;
    raises services.CallNotInProgress when no live gateway holds the call, CallRequestError for a
    <Dial> that cannot be placed."""
    if instructions.dial is not None:
        return dial.start(call, instructions.dial).sid
    if instructions.stream_url:  # the record says which agent the call went to
        Call.objects.filter(pk=call.pk).update(stream_url=instructions.stream_url,
                                               custom_parameters=instructions.parameters)
    where = gateway.run_twiml(get_redis(), call.sid, instructions.steps)
    if where in ("ended", "orphan"):
        raise services.CallNotInProgress("the call is over")
    if where == "unheld":
        raise services.CallNotInProgress("the call is not with a gateway yet")
    return where


def run_url(call_sid: str, url: str = "", method: str = "") -> None:
    """The call was answered or rings inbound (its own Url) or reached <Redirect> (``url``,
    ``method``): fetch the document and run it. A document that cannot be had ends the call, as with
    Twilio."""
    call = Call.objects.filter(sid=call_sid).first()
    if call is None or call.is_final:
        return
    source = call.twiml_url or {}
    try:
        if url:
            instructions = fetch(call, url, method or "POST")
        else:
            instructions = fetch(call, source["url"], source.get("method", "POST"), source.get("fallback_url", ""),
                                 source.get("fallback_method", "POST"))
        run(call, instructions)
    except twiml.TwimlError as error:
        log.warning("TwiML of the call not run (%s): hanging up", error, extra={"call_sid": call.sid})
        services.hang_up(call)
    except services.CallNotInProgress as error:
        log.info("TwiML not run: %s", error, extra={"call_sid": call.sid})


def run_dial_action(transfer_sid: str) -> None:
    """The ended transfer's <Dial action>, requested once (claimed by an atomic update); when the
    caller is still on the line, the TwiML it returns runs, and TwiML that cannot be had ends the call,
    as Twilio's. A caller who is gone (or an answered transfer, whose end ends the call) runs nothing."""
    claimed = Transfer.objects.filter(sid=transfer_sid, dial_action__isnull=False, ended_at__isnull=False,
                                      dial_action_at__isnull=True).update(dial_action_at=timezone.now())
    if not claimed:
        return
    transfer = Transfer.objects.select_related("call").get(sid=transfer_sid)
    call, action = transfer.call, transfer.dial_action
    try:
        instructions = fetch(call, action["url"], action["method"], extra_params=dial.action_params(transfer),
                             live=True)
        call.refresh_from_db()
        if not call.is_final:
            run(call, instructions)
    except twiml.TwimlError as error:
        call.refresh_from_db()
        if not call.is_final:
            log.warning("<Dial action> TwiML not run (%s): hanging up", error, extra={"call_sid": call.sid})
            services.hang_up(call)
    except (services.CallNotInProgress, services.CallRequestError) as error:
        log.info("<Dial action> TwiML not run: %s", error, extra={"call_sid": call.sid})
