"""Placing and hanging up single calls. Runs in the tenant's schema (the caller's)."""
from __future__ import annotations

import datetime as dt
import logging
import re
from dataclasses import dataclass, field

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from core.recent import MISSING, Recent
from core.redis_client import get_redis
from media import fallback
from telephony import routing
from telephony.gateway import client as gateway
from telephony.gateway.contract import CarrierLeg, OriginateCommand
from telephony.models import Carrier, Number
from telephony.validators import validate_e164

from . import amd, stream_access, voicemail_audio
from .models import Call, all_callback_events

log = logging.getLogger(__name__)


class CallRequestError(ValueError):
    """A call request that cannot be placed; `field` names the input at fault."""

    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field


@dataclass
class CallRequest:
    to: str
    from_: str
    sid: str = ""  # given when the call's SID had to be known before placing it (a signed TwiML fetch)
    stream_url: str = ""
    # The agent connects in (to the call's stream_connect_url) instead of us dialing stream_url.
    agent_connects: bool = False
    custom_parameters: dict = field(default_factory=dict)
    stream_encoding: str = "audio/x-mulaw"  # or "audio/x-l16" (16 kHz)
    # Spoken to the callee when the agent cannot be reached or drops, before hanging up.
    fallback_message: str = ""
    status_callback: str = ""
    status_callback_events: list[str] = field(default_factory=all_callback_events)
    status_callback_method: str = "POST"
    ring_timeout: int = 30
    max_duration: int = 3600
    # TwiML (Twilio's API): the program run at the answer (telephony.calls.twiml), or where to fetch
    # it then ({"url", "method", "fallback_url", "fallback_method"}: telephony.calls.twiml_runner).
    twiml: list[dict] | None = None
    twiml_url: dict | None = None
    campaign_id: int | None = None
    campaign_contact_id: int | None = None
    # Answering-machine detection: telephony.calls.amd.config(...), or None; the message left on a
    # machine when its on_machine is voicemail; where the asynchronous result goes.
    machine_detection: dict | None = None
    voicemail_message: str = ""
    voicemail_audio: str = ""  # telephony.calls.voicemail_audio storage name, played instead of the text
    amd_status_callback: str = ""
    # Keys pressed on the callee's phone once it answers (RFC 4733, bridged calls; 'w' a half-second pause).
    send_digits: str = ""
    record: bool = False  # a dual-channel WAV of the (bridged) call
    transfer_numbers: list[str] = field(default_factory=list)  # a transfer without a number goes to the first
    recording_status_callback: dict | None = None  # recording_callbacks.configured(...)
    recording_announcement: str = ""  # spoken to the callee (espeak-ng) before the recording starts


# Keys for the callee's phone (RFC 4733): 0-9 * # A-D, `w` a half-second pause; at most 32, as Twilio's SendDigits
DIGITS_REGEX = r"^[0-9*#A-Dw]{1,32}$"


def _bridged(request: CallRequest) -> bool:
    """The call's audio goes through a media host: a stream to an agent, or TwiML."""
    return bool(request.stream_url or request.agent_connects or request.twiml is not None or request.twiml_url)


def _check_machine_detection(request: CallRequest) -> None:
    if request.machine_detection is None:
        return
    if not _bridged(request):
        raise CallRequestError("machine_detection", "detection runs on bridged calls: give stream_url or agent_connects")
    if request.machine_detection.get("on_machine") == amd.VOICEMAIL and not (request.voicemail_message.strip()
                                                                             or request.voicemail_audio):
        raise CallRequestError("voicemail_message", "on_machine voicemail needs the voicemail message")


# Twilio's limit for a <Stream> <Parameter> (name and value together); the count is ours. Both keep the
# `start` message an agent receives small.
MAX_PARAMETER_CHARS = 500
MAX_PARAMETERS = 50


def custom_parameters_problem(parameters) -> str:
    """Why these custom parameters are refused, or ""."""
    if not isinstance(parameters, dict):
        return "must be an object of names and values"
    if len(parameters) > MAX_PARAMETERS:
        return f"at most {MAX_PARAMETERS} parameters"
    for name, value in parameters.items():
        if not isinstance(value, str | int | float | bool):
            return f"{str(name)[:40]!r}: a parameter's value must be text or a number"
        if len(str(name)) + len(str(value)) > MAX_PARAMETER_CHARS:
            return f"{str(name)[:40]!r}: a parameter's name and value may hold {MAX_PARAMETER_CHARS} characters together"
    return ""


def _checked_number(value: str, name: str) -> str:
    try:
        return validate_e164(value)
    except ValueError as exc:
        raise CallRequestError(name, str(exc)) from None


# What every placer of this process may reuse for PLACEMENT_CACHE_S: each API create makes a placer,
# and reading the caller ID and the carriers cost two of its four queries.
_recent_numbers = Recent(settings.PLACEMENT_CACHE_S)
_recent_carriers = Recent(settings.PLACEMENT_CACHE_S)


def forget_recent_placement_data() -> None:
    """Read the numbers and carriers again at the next call (tests: each starts from its own)."""
    _recent_numbers.forget_all()
    _recent_carriers.forget_all()


class CallPlacer:
    """Places calls for one tenant, a batch at a time (the campaign dialer) or one (place_call).

    Caller-ID numbers and the usable carriers are read once per placer (the dialer makes one per
    dialing slice, a few seconds, so carrier health and number changes are seen at the next one), and
    trusted by every placer of the process for PLACEMENT_CACHE_S (an API create is one placer each);
    each batch is one transaction whatever its size, and its commands go to the gateway pool when
    it commits. A request that cannot be placed gets its CallRequestError instead of a Call, and the
    rest of the batch is placed all the same. With no usable carrier a call is still recorded, as
    failed with reason no_carrier_available.
    """

    def __init__(self, tenant):
        self.tenant = tenant
        self._numbers: dict[str, Number | None] = {}
        self._caller_ids: dict[str, Number] = {}  # as the requests give them: a campaign has a few for all its calls
        self._carriers: dict | None = None

    def _caller_id(self, e164: str) -> Number:
        if e164 not in self._numbers:
            number = _recent_numbers.recall((self.tenant.pk, e164))
            if number is MISSING:
                number = Number.objects.filter(e164=e164, tenant=self.tenant).first()
                if number is not None:  # a number just added is usable at once
                    _recent_numbers.remember((self.tenant.pk, e164), number)
            self._numbers[e164] = number
        if self._numbers[e164] is None:
            raise CallRequestError("from", f"{e164} is not one of this tenant's numbers")
        return self._numbers[e164]

    def _legs(self, to: str, region: str | None) -> list[CarrierLeg]:
        if self._carriers is None:
            self._carriers = _recent_carriers.recall("usable")
        if self._carriers is MISSING:
            rows = {carrier.pk: carrier for carrier in Carrier.objects.filter(enabled=True, healthy=True)}
            self._carriers = {pk: (carrier, carrier.as_route()) for pk, carrier in rows.items()}
            _recent_carriers.remember("usable", self._carriers)
        return [
            {"carrier_id": str(leg.carrier.id), "uri": leg.uri, "username": leg.carrier.username or None,
             "password": leg.carrier.password or None, "from_domain": leg.carrier.from_domain or None,
             "region": leg.carrier.region or "", "max_concurrent": self._carriers[leg.carrier.id][0].max_concurrent,
             "max_cps": self._carriers[leg.carrier.id][0].max_cps}
            for leg in routing.plan_route([route for _, route in self._carriers.values()], region, to)
        ]

    def checked_caller_id(self, from_: str) -> Number:
        """``from_`` as one of the tenant's numbers (CallRequestError naming "from" otherwise)."""
        if from_ not in self._caller_ids:
            self._caller_ids[from_] = self._caller_id(_checked_number(from_, "from"))
        return self._caller_ids[from_]

    def carrier_legs(self, to: str, caller_id: Number) -> list[CarrierLeg]:
        """The carrier legs (routing plan, failover order, caps) of a call to ``to`` from ``caller_id``:
        what every call and transfer is placed with."""
        return self._legs(_checked_number(to, "to"), caller_id.region or None)

    def place(self, requests: list[CallRequest]) -> list[Call | CallRequestError]:
        results: list[Call | CallRequestError] = []
        commands = []
        for request in requests:
            try:
                if request.agent_connects and request.stream_url:
                    raise CallRequestError("agent_connects",
                                           "give stream_url (we connect to the agent) or agent_connects, not both")
                if why := custom_parameters_problem(request.custom_parameters):
                    raise CallRequestError("custom_parameters", why)
                to = _checked_number(request.to, "to")
                from_number = self.checked_caller_id(request.from_)
                _check_machine_detection(request)
                if request.record and not _bridged(request):
                    raise CallRequestError("record", "bridged calls are recorded: give stream_url or agent_connects")
                if request.recording_announcement.strip() and not request.record:
                    raise CallRequestError("recording_announcement", "only recorded calls (record) announce it")
                if request.send_digits and not re.fullmatch(DIGITS_REGEX, request.send_digits):
                    raise CallRequestError("send_digits", "keys are 0-9 * # A-D and w (a half-second pause), at most 32")
                if request.send_digits and not _bridged(request):
                    raise CallRequestError("send_digits", "digits are sent on bridged calls: give stream_url or agent_connects")
            except CallRequestError as error:
                results.append(error)
                continue
            legs = self._legs(to, from_number.region or None)
            call = Call(
                **({"sid": request.sid} if request.sid else {}), from_number=from_number.e164, to_number=to, stream_url=request.stream_url,
                agent_connects=request.agent_connects, custom_parameters=request.custom_parameters,
                status_callback=request.status_callback, status_callback_events=request.status_callback_events,
                status_callback_method=request.status_callback_method, ring_timeout=request.ring_timeout,
                max_duration=request.max_duration, campaign_id=request.campaign_id,
                campaign_contact_id=request.campaign_contact_id, machine_detection=request.machine_detection,
                amd_status_callback=request.amd_status_callback, record=request.record, twiml_url=request.twiml_url,
                transfer_numbers=request.transfer_numbers,
                recording_status_callback=request.recording_status_callback,
            )
            if legs:
                commands.append(self._command(call, request, legs))
            else:
                call.status, call.outcome, call.reason = Call.Status.FAILED, "carrier_error", "no_carrier_available"
            results.append(call)
        calls = [call for call in results if isinstance(call, Call)]
        if calls:
            # no savepoint in the dialer's transaction: a failed insert fails its whole batch anyway
            with transaction.atomic(savepoint=False):
                Call.objects.bulk_create(calls)
                transaction.on_commit(lambda: _originate_all(commands))
        return results

    def _command(self, call: Call, request: CallRequest, legs: list[CarrierLeg]) -> OriginateCommand:
        """The gateway pool's originate command for ``call`` (telephony/gateway/contract.py)."""
        command: OriginateCommand = {
            "call_id": call.sid, "tenant": connection.schema_name, "from": call.from_number, "to": call.to_number,
            "ring_timeout": request.ring_timeout, "max_duration": request.max_duration, "legs": legs,
            "stream_url": request.stream_url, "custom_parameters": request.custom_parameters,
            "account_sid": self.tenant.account_sid, "tenant_max_concurrent": self.tenant.max_concurrent_calls,
        }
        if request.campaign_id is None:  # a campaign's dialer paces itself to the caps; an API call waits for room
            command["wait_at_caps"] = settings.CALL_QUEUE_TIMEOUT_S
        if request.twiml is not None:
            command["twiml"] = request.twiml
        if request.twiml_url:
            command["twiml_at_answer"] = True
        if request.send_digits:
            command["send_digits"] = request.send_digits
        if request.record:
            command["record"] = True
            if request.recording_announcement.strip():
                command["recording_announcement_key"] = _fallback_audio_key(request.recording_announcement)
        if request.stream_encoding != "audio/x-mulaw":
            command["stream_encoding"] = request.stream_encoding
        if request.fallback_message and (request.stream_url or request.agent_connects):
            command["fallback_audio_key"] = _fallback_audio_key(request.fallback_message)
        if request.machine_detection is not None:
            command["machine_detection"] = dict(request.machine_detection)
            if request.machine_detection.get("on_machine") == amd.VOICEMAIL:
                # no audio (espeak-ng failing): machines are hung up on instead (media/amd_call.py)
                command["machine_detection"]["voicemail_key"] = (
                    voicemail_audio.audio_key(get_redis(), request.voicemail_audio) if request.voicemail_audio
                    else _fallback_audio_key(request.voicemail_message))
        if request.agent_connects:
            # The gateway streams to our relay, which pairs it with the agent when the agent connects in.
            command["stream_url"] = stream_access.relay_url(connection.schema_name, call.sid)
            command["stream_via_relay"] = True
            command["stream_connect_timeout"] = settings.AGENT_STREAM_CONNECT_TIMEOUT_S
        return command


def place_call(tenant, request: CallRequest) -> Call:
    """Record one call and hand it to the gateway pool once the record is committed; raises
    CallRequestError (naming the field) for a request that cannot be placed."""
    (result,) = CallPlacer(tenant).place([request])
    if isinstance(result, CallRequestError):
        raise result
    return result


def give_up_unplaced_calls() -> int:
    """Calls still queued after CALL_UNPLACED_GRACE_S that Redis never heard of (it was down when
    their records committed) end as failed with reason not_placed (their final event), so a campaign
    dials their contacts again; a late originate of one is never dialed. Idempotent."""
    cutoff = timezone.now() - dt.timedelta(seconds=settings.CALL_UNPLACED_GRACE_S)
    redis = get_redis()
    sids = Call.objects.filter(status=Call.Status.QUEUED, created_at__lt=cutoff).values_list("sid", flat=True)
    return sum(gateway.give_up_unplaced(redis, sid, connection.schema_name) for sid in sids)


def _originate_all(commands: list[OriginateCommand]) -> None:
    gateway.originate_many(get_redis(), commands)


def _fallback_audio_key(text: str) -> str:
    try:
        return fallback.ensure_stored(get_redis(), text)
    except fallback.FallbackError as error:
        log.warning("fallback message not available, calls go without it: %s", error)
        return ""


class CallNotInProgress(Exception):
    """The call cannot take a mid-call request now (not yet with a gateway, or over)."""


def send_digits(call: Call, digits: str) -> str:
    """Press keys on the callee's phone (an agent navigating an IVR): the gateway holding the call
    sends them as RFC 4733 events after any still being sent. Returns that gateway's id; raises
    CallRequestError for a call that is not bridged, CallNotInProgress for one no live gateway holds."""
    if not (call.stream_url or call.agent_connects or call.twiml_url):
        raise CallRequestError("digits", "digits are sent on bridged calls (placed with stream_url or agent_connects)")
    where = gateway.send_digits(get_redis(), call.sid, digits)
    if where == "unheld":
        raise CallNotInProgress("the call is not with a gateway yet: try again once it rings, or give send_digits when placing it")
    if where in ("ended", "orphan"):
        raise CallNotInProgress("the call is over")
    return where


def hang_up(call: Call) -> str:
    """End a call: through the live gateway holding it, or at once (its final event published now)
    when no live gateway holds it. The record's gateway and answer time stand in for a Redis that
    lost the call."""
    answered_at = call.answered_at.timestamp() if call.answered_at else None
    return gateway.hangup(get_redis(), call.sid, call.gateway_id or "", answered_at)
