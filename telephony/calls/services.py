"""Placing and hanging up single calls. Runs in the tenant's schema (the caller's)."""
from __future__ import annotations

from dataclasses import dataclass, field

from django.conf import settings
from django.db import connection, transaction
from voiceplatform.redis_client import get_redis

from telephony import routing
from telephony.gateway import client as gateway
from telephony.models import Carrier, Number
from telephony.validators import validate_e164

from . import stream_access
from .models import Call


class CallRequestError(ValueError):
    """A call request that cannot be placed; `field` names the input at fault."""

    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field


@dataclass
class CallRequest:
    to: str
    from_: str
    stream_url: str = ""
    # The agent connects in (to the call's stream_connect_url) instead of us dialing stream_url.
    agent_connects: bool = False
    custom_parameters: dict = field(default_factory=dict)
    status_callback: str = ""
    ring_timeout: int = 30
    max_duration: int = 3600
    # From TwiML: seconds of silence after answer before streaming, or hang up at once.
    pause_seconds: int = 0
    hangup_on_answer: bool = False
    campaign_id: int | None = None
    campaign_contact_id: int | None = None


def _checked_number(value: str, name: str) -> str:
    try:
        return validate_e164(value)
    except ValueError as exc:
        raise CallRequestError(name, str(exc)) from None


def caller_id_number(tenant, e164: str) -> Number:
    number = Number.objects.filter(e164=e164, tenant=tenant).first()
    if number is None:
        raise CallRequestError("from", f"{e164} is not one of this tenant's numbers")
    return number


def plan_legs(to: str, region: str | None) -> list[dict]:
    carriers = {carrier.pk: carrier for carrier in Carrier.objects.filter(enabled=True, healthy=True)}
    return [
        {"carrier_id": str(leg.carrier.id), "uri": leg.uri, "username": leg.carrier.username or None,
         "password": leg.carrier.password or None, "from_domain": leg.carrier.from_domain or None,
         "max_concurrent": carriers[leg.carrier.id].max_concurrent, "max_cps": carriers[leg.carrier.id].max_cps}
        for leg in routing.plan_route([carrier.as_route() for carrier in carriers.values()], region, to)
    ]


def place_call(tenant, request: CallRequest) -> Call:
    """Record the call and hand it to the gateway pool once the record is committed.

    With no usable carrier the call is still recorded, as failed with reason no_carrier_available.
    """
    if request.agent_connects and request.stream_url:
        raise CallRequestError("agent_connects", "give stream_url (we connect to the agent) or agent_connects, not both")
    to = _checked_number(request.to, "to")
    from_number = caller_id_number(tenant, _checked_number(request.from_, "from"))
    legs = plan_legs(to, from_number.region or None)
    call = Call.objects.create(
        from_number=from_number.e164, to_number=to, stream_url=request.stream_url,
        agent_connects=request.agent_connects,
        custom_parameters=request.custom_parameters, status_callback=request.status_callback,
        ring_timeout=request.ring_timeout, max_duration=request.max_duration, campaign_id=request.campaign_id,
        campaign_contact_id=request.campaign_contact_id,
    )
    if not legs:
        Call.objects.filter(pk=call.pk).update(
            status=Call.Status.FAILED, outcome="carrier_error", reason="no_carrier_available"
        )
        call.refresh_from_db()
        return call
    command = {
        "call_id": call.sid, "tenant": connection.schema_name, "from": from_number.e164, "to": to,
        "ring_timeout": request.ring_timeout, "max_duration": request.max_duration, "legs": legs,
        "stream_url": request.stream_url, "custom_parameters": request.custom_parameters,
        "pause_seconds": request.pause_seconds, "hangup_on_answer": request.hangup_on_answer,
        "account_sid": tenant.account_sid, "tenant_max_concurrent": tenant.max_concurrent_calls,
    }
    if request.agent_connects:
        # The gateway streams to our relay, which pairs it with the agent when the agent connects in.
        command.update(stream_url=stream_access.relay_url(connection.schema_name, call.sid), stream_via_relay=True,
                       stream_connect_timeout=settings.AGENT_STREAM_CONNECT_TIMEOUT_S)
    transaction.on_commit(lambda: gateway.originate(get_redis(), command))
    return call


def hang_up(call: Call) -> str:
    return gateway.hangup(get_redis(), call.sid)
