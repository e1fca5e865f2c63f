"""The contract between the Django side and the gateway pool, as types: the originate command (built
by telephony.calls.services.CallPlacer, queued by client.originate, read by the worker, the caps in
call_limits and the media side in media_bridge.stream_config), its carrier legs, the inbound number
route (telephony.services.number_routes) and the call events (events.make_event). They travel as JSON,
so they are TypedDicts: plain dicts at run time, checked by mypy. Stdlib only (the gateway loads it).
"""
from __future__ import annotations

from typing import Any, NotRequired, TypedDict


class CarrierLeg(TypedDict):
    """One carrier to try, in order (telephony.routing.plan_route)."""

    carrier_id: str
    uri: str  # sip:+1555…@carrier-host:port;transport=…
    username: str | None
    password: str | None
    from_domain: str | None
    max_concurrent: NotRequired[int]  # the carrier's concurrent-call cap (0: none)
    max_cps: NotRequired[float]  # the carrier's calls-per-second cap (0: none)
    region: NotRequired[str | None]  # the carrier's region: a gateway of that region places the call


# An outbound call for the pool (list gw:originate); the first gateway with a free slot takes it.
# The functional form, because one key is the keyword "from".
OriginateCommand = TypedDict("OriginateCommand", {
    "call_id": str,
    "tenant": str,  # the tenant's schema name
    "account_sid": str,  # the tenant's account SID (the agent's ``start`` message carries it)
    "from": str,
    "to": str,
    "legs": list[CarrierLeg],
    "ring_timeout": NotRequired[float],
    "max_duration": NotRequired[float],
    "tenant_max_concurrent": NotRequired[int],  # the tenant's concurrent-call cap (0: none)
    # an API call: while every leg (or the tenant) is at its cap it waits in its queue instead of
    # failing, up to this many seconds after queued_at (CALL_QUEUE_TIMEOUT_S); campaign calls have none
    "wait_at_caps": NotRequired[float],
    # the agent stream (media bridge): where, with which parameters and encoding
    "stream_url": NotRequired[str],
    "custom_parameters": NotRequired[dict[str, str]],
    "stream_encoding": NotRequired[str],  # "audio/x-mulaw" (default) or "audio/x-l16"
    "stream_via_relay": NotRequired[bool],  # stream_url is the platform's relay: the agent connects in
    "stream_connect_timeout": NotRequired[float],
    "fallback_audio_key": NotRequired[str],  # Redis key of the message spoken when the agent fails
    "machine_detection": NotRequired[dict[str, Any]],  # telephony.calls.amd.config(), + voicemail_key
    "headers": NotRequired[dict[str, str]],  # extra SIP headers of the INVITE
    "record": NotRequired[bool],  # dual-channel WAV of a bridged call (media/recording.py)
    "recording_announcement_key": NotRequired[str],  # Redis key of the consent message played before it
    "send_digits": NotRequired[str],  # RFC 4733 digits to the callee once answered (bridged calls; 'w': 0.5 s)
    "twiml": NotRequired[list[dict[str, Any]]],  # TwiML program run at the answer (media/twiml_player.py)
    "twiml_at_answer": NotRequired[bool],  # bridged, waiting for the program the platform sends (its Url)
    "provisional_timeout": NotRequired[float],
    "transfer_of": NotRequired[str],  # a transfer leg: the call whose audio it joins (TransferCommand)
    "type": NotRequired[str],  # "originate", set by client.originate
    "queued_at": NotRequired[float],  # set by client.originate
})


class TransferCommand(TypedDict):
    """A transfer of an answered bridged call (client.transfer), for the gateway holding it: it dials
    ``leg`` itself (routing, failover and caps as any call) and joins the two legs in its media host."""

    call_id: str
    transfer_sid: str  # the Transfer record's sid (a bridged transfer: its leg's call_id too)
    mode: str  # "cold" (the agent's stream ends), "warm" (the agent stays until it closes its socket), "blind"
    leg: NotRequired[OriginateCommand]  # cold, warm: the person's leg, dialed by the gateway
    next: NotRequired[list[OriginateCommand]]  # the legs tried in turn should it not be answered
    refer_to: NotRequired[str]  # blind: the SIP URI of a REFER to the carrier, which connects the person
    on_fail: str  # the leg was not answered: "agent" (the call goes on with it), "message" or "hangup"
    message_key: NotRequired[str]  # on_fail "message": Redis key of the audio (media.fallback)
    whisper_key: NotRequired[str]  # Redis key of a message the person hears before the legs are joined


class InboundRoute(TypedDict):
    """A tenant's number, as the gateways see it (hash numbers:routes, E.164 -> JSON)."""

    tenant: str
    account_sid: str
    stream_url: str
    custom_parameters: dict[str, str]
    region: str | None
    max_duration: NotRequired[float]
    twiml_url: NotRequired[dict[str, str]]  # the voice URL (Twilio's): the call rings until the platform sends its TwiML


class CallEvent(TypedDict, total=False):
    """One entry of the calls:events stream (events.make_event; the fields are in docs/gateway.md)."""

    call_id: str
    type: str  # events.EVENT_TYPES
    ts: float
    tenant: str
    direction: str
    gateway: str
    outcome: str  # final events
    reason: str
    sip_code: int
    hangup_by: str
    duration: float
    legs_tried: int
    carrier_id: str
