"""Transfers, worker side: a call's second leg, dialed by the worker that holds the call.

The worker holding an answered bridged call gets a ``transfer`` command (client.transfer,
contract.TransferCommand). It places the person's leg itself, as an outbound call of its own
(``call_id`` = the transfer's sid, ``transfer_of`` = the call): the carrier legs, failover, caps and
events are every call's. Both legs are then on this worker, hence on one media host, where they are
joined (link op ``join``, media/bridge_legs.py) once the person answers. A transfer leg therefore
needs a free slot on the worker holding the call: with none, the transfer fails at once.

The leg's end and the call's end are tied: when either party of a joined transfer hangs up, the
other leg is hung up too. A leg that is not answered (busy, no answer, carrier failure) gives the call
back to its agent, plays a message then hangs up, or hangs up, as the command says (``on_fail``); with
a list of numbers (``next``) the next one is dialed first.

Blind (``mode`` "blind", carriers that accept it): a REFER to the carrier (``refer_to``); pjsua reports
the REFER's answer and the NOTIFYs that follow (``on_refer_status``). A final 2xx NOTIFY means the
carrier connected the person: the platform leaves the call (BYE, reason ``transferred``). A refused
REFER or a failed NOTIFY is a failed transfer, handled by ``on_fail`` as above.
"""
from __future__ import annotations

import logging

import pjsua2 as pj

from core import keys

from . import events as ev
from . import miniredis as redis
from .contract import TransferCommand

log = logging.getLogger("gateway")

ON_FAIL_AGENT, ON_FAIL_MESSAGE, ON_FAIL_HANGUP = "agent", "message", "hangup"
BLIND = "blind"


class Transfers:
    """The worker's transfers under way (main thread only)."""

    def __init__(self, worker):
        self.worker = worker
        self.commands: dict[str, TransferCommand] = {}  # transfer leg id -> its command
        self.leg_of: dict[str, str] = {}  # call id -> its transfer leg id
        self.joined: set[str] = set()  # transfer leg ids whose audio is joined to their call's
        self.refers: dict[str, TransferCommand] = {}  # call id -> its blind transfer waiting for the outcome

    def start(self, cmd: TransferCommand) -> None:
        w = self.worker
        call_id = cmd["call_id"]
        leg: dict = dict(cmd["leg"]) if isinstance(cmd.get("leg"), dict) else {}
        leg_id = str(cmd.get("transfer_sid") or "")
        blind = cmd.get("mode") == BLIND
        s = w.sessions.get(call_id)
        problem = None
        if not leg_id or not (cmd.get("refer_to") if blind else leg.get("legs")):
            problem = "no transfer sid, leg or REFER target in the command"
        elif s is None or s.state != "answered" or s.hangup_reason or s.pjcall is None:
            problem = "the call is not in progress"
        elif call_id in self.leg_of or call_id in self.refers:
            problem = "a transfer of this call is under way"
        elif blind:
            problem = self._refer(s, cmd)
            if not problem:
                return
        elif call_id not in w.bridge.calls:
            problem = "the call is not bridged"
        elif w.stopping or w.free_slots() <= 0:
            problem = "the gateway holding the call has no free slot"
        if problem:
            log.warning("transfer of %s refused: %s", call_id, problem)
            if s is not None:
                w.emit(s, ev.TRANSFER_FAILED, transfer_sid=leg_id, outcome="refused", reason=problem,
                       then=ON_FAIL_AGENT)
                self._tell_agent(call_id, {"transferSid": leg_id, "status": "failed", "outcome": "refused",
                                           "then": ON_FAIL_AGENT})
            return
        leg["call_id"] = leg_id
        leg["transfer_of"] = call_id
        leg.setdefault("tenant", s.tenant or "")
        try:  # as the pop script does for a popped originate: a dead worker's legs are closed out too
            p = w.r.pipeline(transaction=True)
            p.sadd(keys.gw_calls_key(w.gateway_id), leg_id)
            p.hset(keys.call_key(leg_id), mapping={"gateway": w.gateway_id, "state": "accepted",
                                                 "tenant": leg["tenant"], "transfer_of": call_id})
            p.execute()
        except redis.RedisError as exc:
            w.redis_failed(exc)
        self.commands[leg_id] = cmd
        self.leg_of[call_id] = leg_id
        w.emit(s, ev.TRANSFER_STARTED, transfer_sid=leg_id, to=leg.get("to"), mode=cmd.get("mode"))
        w.handle_originate(leg, "ok")

    def _refer(self, s, cmd: TransferCommand) -> str:
        """Send the REFER of a blind transfer; "" or why it could not be sent."""
        try:
            s.pjcall.xfer(cmd["refer_to"], pj.CallOpParam(True))
        except pj.Error as exc:
            return f"REFER not sent: {exc.reason}"
        self.refers[s.call_id] = cmd
        self.worker.emit(s, ev.TRANSFER_STARTED, transfer_sid=cmd["transfer_sid"], to=cmd["refer_to"], mode=BLIND)
        return ""

    def on_refer_status(self, s, code: int, reason: str, final: bool) -> None:
        """The REFER's answer (202, or a refusal) and the carrier's NOTIFYs (100 Trying ... 200 OK)."""
        if s is None or not final or s.call_id not in self.refers:
            return
        cmd = self.refers.pop(s.call_id)
        w = self.worker
        if 200 <= code < 300:
            w.emit(s, ev.TRANSFERRED, transfer_sid=cmd["transfer_sid"], notify_code=code)
            if s.hangup_reason is None:
                w.end_session(s, ev.REASON_TRANSFERRED)
            return
        if s.hangup_reason is None:
            self._failed(s, cmd, {"outcome": ev.outcome_for_code(code) if code else "refused",
                                  "reason": f"{code} {reason}".strip(), "sip_code": code})

    def on_answered(self, s) -> None:
        """A session was answered: a transfer leg is joined to its call's audio."""
        cmd = self.commands.get(s.call_id)
        if cmd is None:
            return
        w = self.worker
        call = w.sessions.get(cmd["call_id"])
        here, there = w.bridge.calls.get(cmd["call_id"]), w.bridge.calls.get(s.call_id)
        if call is None or here is None or there is None or here[1] is not there[1]:
            log.error("transfer %s: cannot join the legs (the call or a media path is gone)", s.call_id)
            if s.hangup_reason is None:
                s.hangup_reason = ev.REASON_MEDIA_ERROR  # the worker sends the BYE after this hook
            return
        if cmd.get("whisper_key"):  # heard by the person before the legs are joined
            try:
                whisper = w.r.get(cmd["whisper_key"]) or b""
            except redis.RedisError as exc:
                log.warning("transfer %s: no whisper (%s)", s.call_id, exc)
                whisper = b""
            w.bridge.send_audio(s.call_id, whisper)
        here[1].send({"op": "join", "call": cmd["call_id"], "leg": s.call_id, "mode": cmd.get("mode") or "cold"})
        self.joined.add(s.call_id)
        w.emit(call, ev.TRANSFERRED, transfer_sid=s.call_id)
        if cmd.get("mode") == "warm":  # the agent stays: it learns the person is on the line
            self._tell_agent(cmd["call_id"], {"transferSid": s.call_id, "status": "joined"})

    def on_final(self, s, event: dict) -> None:
        """A session's final event: the other leg of its transfer follows it."""
        w = self.worker
        cmd = self.commands.pop(s.call_id, None)
        if cmd is not None:  # a transfer leg ended
            call_id = cmd["call_id"]
            self.leg_of.pop(call_id, None)
            call = w.sessions.get(call_id)
            was_joined = s.call_id in self.joined
            self.joined.discard(s.call_id)
            if call is None or call.hangup_reason:
                return
            if was_joined:
                w.end_session(call, ev.REASON_TRANSFER_LEG_ENDED)
                return
            if cmd.get("next"):  # the next number of the list
                w.emit(call, ev.TRANSFER_FAILED, transfer_sid=cmd["transfer_sid"], outcome=event.get("outcome"),
                       reason=event.get("reason"), then="next", sip_code=event.get("sip_code"))
                following, *rest = cmd["next"]
                self.start({**cmd, "transfer_sid": following["call_id"], "leg": following, "next": rest})
                return
            self._failed(call, cmd, event)
            return
        self.refers.pop(s.call_id, None)
        leg_id = self.leg_of.pop(s.call_id, None)
        if leg_id is not None:  # a call with a transfer under way ended: its leg too
            leg = w.sessions.get(leg_id)
            if leg is not None and leg.hangup_reason is None:
                w.end_session(leg, ev.REASON_TRANSFER_LEG_ENDED)

    def _tell_agent(self, call_id: str, status: dict) -> None:
        """A ``transfer`` message to the call's agent, if it is still streaming (media/protocol.py)."""
        entry = self.worker.bridge.calls.get(call_id)
        if entry is not None:
            entry[1].send({"op": "transfer", "call": call_id, "transfer": status})

    def _failed(self, call, cmd: TransferCommand, event: dict) -> None:
        """The person's leg was not answered: the call goes back to its agent, hears the message
        then hangs up, or hangs up."""
        w = self.worker
        then = cmd.get("on_fail") or ON_FAIL_AGENT
        if then == ON_FAIL_MESSAGE and not cmd.get("message_key"):
            then = ON_FAIL_HANGUP
        outcome, reason = event.get("outcome"), event.get("reason")
        w.emit(call, ev.TRANSFER_FAILED, transfer_sid=cmd["transfer_sid"], outcome=outcome, reason=reason,
               then=then, sip_code=event.get("sip_code"))
        self._tell_agent(call.call_id, {"transferSid": cmd["transfer_sid"], "status": "failed", "outcome": outcome,
                                        "then": then})
        detail = f"transfer {outcome or 'failed'}"
        if then == ON_FAIL_MESSAGE:
            w.bridge.main_q.append((w.bridge.main_play_fallback,
                                    (call.call_id, ev.REASON_TRANSFER_FAILED, detail, cmd["message_key"],
                                     "transfer message")))
        elif then == ON_FAIL_HANGUP:
            w.end_session(call, ev.REASON_TRANSFER_FAILED)
