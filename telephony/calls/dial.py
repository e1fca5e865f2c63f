"""TwiML's <Dial> on a live call (calls(sid).update): a cold bridged transfer (transfers.start_transfer)
to its <Number> or <Sip>, with its callerId and timeout. When the transfer ends (the person answered and
later hung up, or was busy, did not answer, failed), its `action` URL is requested as Twilio requests it
(DialCallStatus, DialCallSid, DialCallDuration, signed with the account's auth token) and, if the caller
is still on the line, the TwiML it returns runs (twiml_runner.run_dial_action). Without `action`, a
failed transfer gives the call back to its agent (on_fail agent), as the transfer API does.
"""
from __future__ import annotations

from . import transfers, twiml
from .models import Call, Transfer


def start(call: Call, dial: twiml.Dial) -> Transfer:
    """Raises CallRequestError (naming the field) or CallNotInProgress, as start_transfer."""
    return transfers.start_transfer(call, transfers.TransferRequest(
        to=dial.to, mode=Transfer.Mode.COLD, on_fail=Transfer.OnFail.AGENT, timeout=dial.timeout,
        caller_id=dial.caller_id, dial_action={"url": dial.action, "method": dial.method} if dial.action else None))


def action_params(transfer: Transfer) -> dict[str, str]:
    """Twilio's parameters of a <Dial action> request, beside the call's own."""
    status = Call.Status.COMPLETED if transfer.answered_at else transfer.status
    params = {"DialCallStatus": status, "DialCallSid": transfer.sid}
    if transfer.answered_at:
        params["DialCallDuration"] = str(int(transfer.duration_s or 0))
    return params
