"""Handing an answered call to a person (services write). Runs in the tenant's schema.

The gateway holding the call dials the person's leg itself and joins the two legs' audio in its media
host (telephony/gateway/transfers.py, media/bridge_legs.py). A number goes through the carriers with
the routing plan, failover order and caps of every call (CallPlacer.carrier_legs); a SIP URI is dialed
directly, its host checked by the outbound guard. The leg's events keep its Transfer record
(telephony.calls.recorder).
"""
from __future__ import annotations

import re
from dataclasses import dataclass

import redis
from django.conf import settings
from django.db import connection
from django.utils import timezone

from core import egress
from core.redis_client import get_redis
from telephony import routing
from telephony.gateway import client as gateway
from telephony.gateway.contract import CarrierLeg, OriginateCommand, TransferCommand
from telephony.models import Carrier
from telephony.validators import validate_e164

from .models import Call, Transfer
from .services import CallNotInProgress, CallPlacer, CallRequestError, _fallback_audio_key

SIP_URI = re.compile(r"^sips?:(?:[^@\s;]+@)?(?P<host>[A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\])(?::(?P<port>\d{1,5}))?(?:;[^\s]*)?$")


@dataclass
class TransferRequest:
    to: str = ""  # E.164 number or sip:/sips: URI; empty: the call's transfer_numbers, in turn
    mode: str = Transfer.Mode.COLD
    on_fail: str = Transfer.OnFail.AGENT
    failed_message: str = ""  # on_fail "message": spoken to the caller before the call ends
    timeout: int = 30  # seconds the person's phone rings
    whisper: str = ""  # spoken to the person when they answer, before they are connected (cold, warm)
    caller_id: str = ""  # one of the tenant's numbers; empty: the call's own number of the tenant
    dial_action: dict | None = None  # TwiML <Dial action>: {"url", "method"}, requested when it ends (dial.py)


def sip_uri_problem(value: str) -> str:
    """Why ``value`` is not a SIP URI the platform may dial ("" when it is)."""
    m = SIP_URI.match(value)
    if m is None:
        return "not a SIP URI (sip:user@host[:port])"
    try:
        egress.check(f"http://{m['host']}:{m['port'] or 5060}/", settings.OUTBOUND_ALLOW)
    except egress.EgressUnresolved:
        return ""  # a name that does not resolve fails the leg (pjsip resolves it)
    except egress.EgressRefused as exc:
        return str(exc)
    return ""


def transfer_target_problem(value: str) -> str:
    """Why ``value`` cannot be transferred to ("" when it can): an E.164 number or a SIP URI."""
    if value.startswith(("sip:", "sips:")):
        return sip_uri_problem(value)
    try:
        validate_e164(value)
    except ValueError as exc:
        return f"{exc} (or give a SIP URI)"
    return ""


def start_transfer(call: Call, request: TransferRequest) -> Transfer:
    """Dial the person for an answered bridged call and join them to it; also what TwiML's
    ``<Dial><Number>``/``<Sip>`` runs. Raises CallRequestError (naming the field) for a request that
    cannot be placed, CallNotInProgress when the call is over or no live gateway holds it. The gateway
    refuses a transfer of a call that is not answered, or already has one under way (the Transfer ends
    as failed, outcome refused)."""
    if not (call.stream_url or call.agent_connects):
        raise CallRequestError("to", "bridged calls are transferred (placed with stream_url or agent_connects)")
    targets = [request.to] if request.to else list(call.transfer_numbers or [])
    if not targets:
        raise CallRequestError("to", "give the number or SIP URI to transfer to (the call has no transfer numbers)")
    for to in targets:
        if why := transfer_target_problem(to):
            raise CallRequestError("to", f"{to}: {why}" if to != request.to else why)
    if request.on_fail == Transfer.OnFail.MESSAGE and not request.failed_message:
        raise CallRequestError("failed_message", "on_fail message needs the message")
    if call.is_final:
        raise CallNotInProgress("the call is over")
    if request.mode == Transfer.Mode.BLIND:
        return _start_blind(call, request, targets[0])
    # Whether it is answered is the gateway's to say (the record may not show the answer yet): a call
    # still ringing gets its transfer refused there (event transfer_failed, outcome refused).
    tenant_number = call.to_number if call.direction == "inbound" else call.from_number
    placer = CallPlacer(connection.tenant)
    number = placer.checked_caller_id(request.caller_id or tenant_number)
    routes = [[_sip_leg(to)] if to.startswith(("sip:", "sips:")) else placer.carrier_legs(to, number) for to in targets]
    if not any(routes):
        raise CallRequestError("to", "no carrier is available for this number")
    # one Transfer per number, tried in turn until one answers (those never dialed end with the call)
    transfers = [Transfer.objects.create(call=call, to=to, caller_id=number.e164, mode=request.mode,
                                         on_fail=request.on_fail, dial_action=request.dial_action) for to, legs in zip(targets, routes, strict=True) if legs]
    legs: list[OriginateCommand] = [{"call_id": transfer.sid, "tenant": connection.schema_name, "account_sid": connection.tenant.account_sid,
             "from": number.e164, "to": transfer.to, "legs": carrier_legs, "ring_timeout": request.timeout,
             "max_duration": call.max_duration, "tenant_max_concurrent": connection.tenant.max_concurrent_calls}
            for transfer, carrier_legs in zip(transfers, [r for r in routes if r], strict=True)]
    command: TransferCommand = {
        "call_id": call.sid, "transfer_sid": transfers[0].sid, "mode": request.mode, "on_fail": request.on_fail,
        "leg": legs[0], "next": legs[1:],
    }
    return _send(transfers[0], command, request)


def _start_blind(call: Call, request: TransferRequest, to: str) -> Transfer:
    """A REFER to the call's carrier, when it accepts them: a number goes as the carrier's own URI for it."""
    carrier = Carrier.objects.filter(pk=call.carrier_id).first() if call.carrier_id else None
    if carrier is None or not carrier.allows_refer:
        raise CallRequestError("mode", "the call's carrier does not accept REFER (blind): use cold or warm")
    if to.startswith(("sip:", "sips:")):
        refer_to = to
    else:
        route = carrier.as_route()
        refer_to = routing.sip_uri(routing.rewrite_number(to, route.strip_digits, route.add_prefix), route.host,
                                   route.port, route.transport)
    transfer = Transfer.objects.create(call=call, to=to, caller_id="", mode=Transfer.Mode.BLIND, on_fail=request.on_fail,
                                       carrier_id=carrier.pk, carrier_name=carrier.name)
    command: TransferCommand = {"call_id": call.sid, "transfer_sid": transfer.sid, "mode": Transfer.Mode.BLIND,
                                "on_fail": request.on_fail, "refer_to": refer_to}
    return _send(transfer, command, request)


def _send(transfer: Transfer, command: TransferCommand, request: TransferRequest) -> Transfer:
    """The command to the gateway holding the call."""
    if request.on_fail == Transfer.OnFail.MESSAGE:
        command["message_key"] = _fallback_audio_key(request.failed_message)
    if request.whisper and command["mode"] != Transfer.Mode.BLIND:
        command["whisper_key"] = _fallback_audio_key(request.whisper)
    try:
        where = gateway.transfer(get_redis(), command)
    except redis.RedisError:
        _refused(transfer, "the gateways could not be reached")
        raise
    if where in ("ended", "unheld", "orphan"):
        _refused(transfer, f"the call is {where}")
        raise CallNotInProgress("the call is over" if where != "unheld" else "the call is not with a gateway yet")
    return transfer


def _refused(transfer: Transfer, reason: str) -> None:
    """No leg was dialed: the record ends at once (never left queued)."""
    Transfer.objects.filter(pk=transfer.pk).update(status=Call.Status.FAILED, outcome="refused", reason=reason,
                                                   ended_at=timezone.now())


def _sip_leg(uri: str) -> CarrierLeg:
    return {"carrier_id": "", "uri": uri, "username": None, "password": None, "from_domain": None}
