"""Closing out the calls of a gateway worker that died: ended at the carrier first, then recorded.

For each call the dead worker held (``gw:{id}:calls``): its carrier and tenant slots are held
(taken again if their lease ran out: the call is still up at the carrier), a BYE goes to the
carrier for an answered call and a CANCEL for a ringing one (dialog.py, from the dialog the worker
kept in ``call:{id}``), then the call gets its final event, with the time the BYE went out as its
end (or the moment the worker was last known alive, for a call with nothing to send), and only then
are its slots given back. A carrier that answers neither BYE nor CANCEL within ``bye_timeout``
(the SIP transaction timeout) is taken as gone: the slots are released then.
"""
from __future__ import annotations

import logging
import threading

from telephony.leases import reassert_keys, release_keys

from . import dialog
from . import events as ev
from .call_limits import LEASE_S
from .store import Store, close_out_call, gateway_calls

log = logging.getLogger("gateway.supervisor")


def _ending(info: dict) -> dict | None:
    if info.get("state") == "answered" and info.get("dialog"):
        return {"dialog": info["dialog"]}
    if info.get("state") in ("dialing", "ringing") and info.get("early"):
        return {"early": info["early"]}
    return None


def close_out_gateway(store: Store, gateway_id: str, died_at: float, bind: tuple[str, int],
                      via_host: str | None = None, reason: str = ev.REASON_GATEWAY_DIED,
                      bye_timeout: float = 8.0) -> list[str]:
    """End and record every call ``gateway_id`` held; returns the call ids closed out. Raises
    redis errors (the caller tries again: nothing is lost, finalizing is idempotent)."""
    r = store.r
    calls = gateway_calls(store, gateway_id)
    for call_id, info in calls.items():
        reassert_keys(r, info["slots"], call_id, LEASE_S)
    to_end = {call_id: e for call_id, info in calls.items() if (e := _ending(info)) is not None}
    results: dict[str, tuple[str, float | None]] = {}
    if to_end:
        def send():
            results.update(dialog.end_calls(to_end, bind, reason, timeout=bye_timeout, via_host=via_host))
        sender = threading.Thread(target=send, name=f"bye-{gateway_id}", daemon=True)
        sender.start()
        while sender.is_alive():  # the slots stay ours while the carrier has the calls
            sender.join(1.0)
            for call_id in to_end:
                reassert_keys(r, calls[call_id]["slots"], call_id, LEASE_S)
        for call_id, (how, _at) in results.items():
            log.warning("[%s] call %s ended at the carrier: %s", gateway_id, call_id, how,
                        extra={"call_sid": call_id})
    closed = []
    for call_id, info in calls.items():
        ended_at = results.get(call_id, (None, None))[1] or died_at
        if close_out_call(store, gateway_id, call_id, info, reason, ended_at):
            closed.append(call_id)
        release_keys(r, info["slots"], call_id)
    return closed
