"""Call events the gateway pool publishes (their Redis keys: core.keys).

One Redis stream, ``calls:events``; each entry has a single field ``event`` holding a flat JSON
document. Every call gets exactly one final event (``completed`` or ``failed``). See docs/gateway.md.

This module is imported by Django-side code too: keep it free of pjsua2, Django and anything heavy.
"""
from __future__ import annotations

import json
import time
from collections.abc import Iterable, Mapping
from typing import Any

from telephony import routing

EVENTS_MAXLEN = 100_000  # approximate trim (XADD MAXLEN ~) of the events stream (core.keys)
CALL_TTL = 86_400  # seconds a call's hash (core.keys.call_key) lives after its final event


def node_region(region: str | None) -> str:
    """A region as queue names use it: lower case; "" for none / "any" (routing's global regions)."""
    region = (region or "").strip().lower()
    return "" if region in routing.GLOBAL_REGIONS else region


def call_region(command: Mapping) -> str:
    """Where a call is placed: the region of its carrier legs. Routing never mixes a region's
    carriers with global ones in one plan, so the first leg decides; a plan of global carriers
    (no region) may be placed by a gateway in any region."""
    legs = command.get("legs") or [{}]
    return node_region(legs[0].get("region"))


# ---- event types, in the order a call goes through them -----------------------------------------
INITIATED = "initiated"
LEG_STARTED = "leg_started"
RINGING = "ringing"
ANSWERED = "answered"
LEG_FAILED = "leg_failed"
COMPLETED = "completed"  # final: the call was answered and has ended
FAILED = "failed"  # final: the call was never answered
STREAM_STARTED = "stream_started"  # media bridge: the agent's stream is up (`start` sent); ai_connect_ms
AMD = "amd"  # media bridge: answering-machine detection decided; answered_by, amd_ms, amd_evidence
# transfers (telephony/gateway/transfers.py), on the call: its transfer leg is dialed / joined / failed
TRANSFER_STARTED = "transfer_started"  # transfer_sid, to, mode
TRANSFERRED = "transferred"  # transfer_sid: the person answered and the two legs are joined
TRANSFER_FAILED = "transfer_failed"  # transfer_sid, outcome, reason, then (agent, message, hangup)
TWIML_REDIRECT = "twiml_redirect"  # media bridge: the call's TwiML reached <Redirect>; url, method
EVENT_TYPES = (INITIATED, LEG_STARTED, RINGING, ANSWERED, LEG_FAILED, COMPLETED, FAILED, STREAM_STARTED, AMD,
               TRANSFER_STARTED, TRANSFERRED, TRANSFER_FAILED, TWIML_REDIRECT)
FINAL_TYPES = (COMPLETED, FAILED)

# ---- outcomes (field "outcome" of final events) --------------------------------------------------
OUTCOME_ANSWERED = "answered"  # of every `completed` event
OUTCOME_BUSY = "busy"  # 486, 600
OUTCOME_NO_ANSWER = "no_answer"  # our ring timeout expired (CANCEL -> 487)
OUTCOME_DECLINED = "declined"  # 603
OUTCOME_NOT_FOUND = "not_found"  # 404, 484, 604
OUTCOME_UNAVAILABLE = "unavailable"  # 480
OUTCOME_REJECTED = "rejected"  # any other final code that is not a carrier failure
OUTCOME_CARRIER_ERROR = "carrier_error"  # every leg failed at carrier level (5xx, 408, timeout...)
OUTCOME_CANCELLED = "cancelled"  # hangup requested before answer
OUTCOME_GATEWAY_DIED = "gateway_died"  # the gateway process holding the call died
OUTCOME_SHUTDOWN = "gateway_shutdown"  # the gateway was stopped (SIGTERM) before answer
OUTCOME_INVALID = "invalid_command"  # the originate command could not be used

# ---- who hung up (field "hangup_by" of completed) ----------------------------------------------
BY_CALLER = "caller"
BY_CALLEE = "callee"
BY_PLATFORM = "platform"

# ---- reasons (field "reason"): why the platform ended something ----------------------------------
REASON_HANGUP_REQUESTED = "hangup_requested"
REASON_MAX_DURATION = "max_duration"
REASON_RING_TIMEOUT = "ring_timeout"
REASON_NO_PROVISIONAL = "no_provisional_response"
REASON_TRANSPORT_ERROR = "transport_error"
REASON_GATEWAY_DIED = "gateway_died"
REASON_NODE_DIED = "node_died"  # its whole node went (supervisor too): another node's supervisor closed it out
REASON_SHUTDOWN = "gateway_shutdown"
REASON_REMOTE_HANGUP = "remote_hangup"
# media bridge: the agent stream ended the call
REASON_AGENT_CONNECT_FAILED = "agent_connect_failed"  # refused, DNS, TLS, HTTP status other than 101
REASON_AGENT_CONNECT_TIMEOUT = "agent_connect_timeout"  # no WebSocket within the connect timeout
REASON_AGENT_CLOSED = "agent_closed"  # the agent closed the socket or the connection was lost
REASON_AGENT_PROTOCOL_ERROR = "agent_protocol_error"  # binary frames / too many malformed messages
REASON_MEDIA_ERROR = "media_error"  # a bug or resource problem in the media bridge
REASON_TWIML_HANGUP = "twiml_hangup"  # the call's TwiML program reached <Hangup/> or its end
REASON_TWIML_MISSING = "twiml_missing"  # the call waited for TwiML from the platform (its Url) in vain
REASON_TWIML_REJECT = "twiml_reject"  # an inbound call's TwiML began with <Reject>: refused unanswered
TWIML_WAIT_S = 20.0  # a call waiting for the TwiML of its Url (fetch, fallback fetch) ends after this
REASON_MACHINE_DETECTED = "machine_detected"  # answering-machine detection: a machine, and the call hangs up
REASON_VOICEMAIL_LEFT = "voicemail_left"  # answering-machine detection: the voicemail message was played
REASON_CARRIER_AT_CAPACITY = "carrier_at_capacity"  # the carrier's (or tenant's) concurrent-call cap
REASON_BRIDGE_FAILED = "bridge_failed"  # the call wanted a stream and could not be bridged
REASON_RTP_TIMEOUT = "rtp_timeout"  # no RTP from the answered far end for the worker's --rtp-timeout
REASON_SESSION_TIMER = "session_timer_expired"  # RFC 4028: the session was not refreshed in time
REASON_NO_LIVE_GATEWAY = "no_live_gateway"  # hangup of a call no live gateway holds: finalised at once
REASON_NOT_PLACED = "not_placed"  # its originate never reached Redis (down when the call was placed)
REASON_TRANSFER_FAILED = "transfer_failed"  # the transfer leg was not answered and the call hangs up
REASON_TRANSFER_LEG_ENDED = "transfer_leg_ended"  # the other leg of a transferred call hung up
REASON_TRANSFERRED = "transferred"  # blind transfer: the carrier connected the person (NOTIFY 2xx), we leave

DIRECTION_OUTBOUND = "outbound"
DIRECTION_INBOUND = "inbound"

def is_failover_code(code: int) -> bool:
    """Whether the next carrier is tried after a leg ended with this final code (0: no response or
    transport failure). The policy lives in telephony.routing, shared with the routing side."""
    return routing.should_fail_over(code or None)


def outcome_for_code(code: int) -> str:
    """Outcome of a call whose last leg ended with this final SIP code."""
    outcome = routing.outcome_for(code or None)
    return OUTCOME_REJECTED if outcome == routing.Outcome.FAILED else outcome


def make_event(call_id: str, type: str, **fields: Any) -> dict:
    """A flat event document; None values are left out; ts defaults to now (unix seconds)."""
    if type not in EVENT_TYPES:
        raise ValueError(f"unknown event type {type!r}")
    ev = {"call_id": call_id, "type": type, "ts": fields.pop("ts", None) or time.time()}
    ev.update({k: v for k, v in fields.items() if v is not None})
    return ev


def encode(event: dict) -> dict:
    """Stream entry fields for XADD."""
    return {"event": json.dumps(event, separators=(",", ":"))}


def decode(fields: dict) -> dict:
    """Event from a stream entry's fields (bytes or str keys/values)."""
    raw = fields.get("event", fields.get(b"event"))
    if raw is None:
        raise ValueError("stream entry has no 'event' field")
    if isinstance(raw, bytes):
        raw = raw.decode()
    return json.loads(raw)


def decode_entries(entries: Iterable) -> list[tuple[str, dict]]:
    """[(entry_id, event)] from an XRANGE / one stream of an XREAD reply."""
    out = []
    for entry_id, fields in entries:
        if isinstance(entry_id, bytes):
            entry_id = entry_id.decode()
        out.append((entry_id, decode(fields)))
    return out


def is_final(event: dict) -> bool:
    return event.get("type") in FINAL_TYPES
