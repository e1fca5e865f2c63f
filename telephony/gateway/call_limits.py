"""Carrier and tenant caps, enforced where calls are placed: in the gateway, for every leg.

A leg takes a concurrency slot on its carrier (and its tenant) before the INVITE and gives it back
when the leg or the call ends; the gateway renews its slots every second, so the slots of a worker
that dies run out by themselves within LEASE_S. A carrier's CPS is paced cluster-wide; a leg that is
early waits for its turn instead of failing. Keys and scripts: telephony.limits.
"""
from __future__ import annotations

from telephony.limits import ConcurrencyLimiter, RateLimiter, acquire_all, release_all, renew_all

LEASE_S = 5.0


def carrier_calls_key(carrier_id) -> str:
    return f"lim:carrier:{carrier_id}:calls"


def carrier_cps_key(carrier_id) -> str:
    return f"lim:carrier:{carrier_id}:cps"


def tenant_calls_key(tenant: str) -> str:
    return f"lim:tenant:{tenant}:calls"


class CallLimits:
    OK, WAIT, FULL = "ok", "wait", "full"

    def __init__(self, client):
        self.client = client

    def _slots(self, cmd: dict, leg: dict) -> list[ConcurrencyLimiter]:
        slots = []
        if leg.get("max_concurrent"):
            slots.append(ConcurrencyLimiter(self.client, carrier_calls_key(leg["carrier_id"]), int(leg["max_concurrent"])))
        if cmd.get("tenant") and cmd.get("tenant_max_concurrent"):
            slots.append(ConcurrencyLimiter(self.client, tenant_calls_key(cmd["tenant"]),
                                            int(cmd["tenant_max_concurrent"])))
        return slots

    def admit(self, call_id: str, cmd: dict, leg: dict, held: list) -> tuple[str, float]:
        """(OK, 0) with the slots appended to `held`; (WAIT, seconds) for the CPS turn; (FULL, 0)."""
        slots = self._slots(cmd, leg)
        if slots and not acquire_all(slots, call_id, LEASE_S):
            return self.FULL, 0.0
        if leg.get("max_cps"):
            wait = RateLimiter(self.client, carrier_cps_key(leg["carrier_id"]), float(leg["max_cps"])).try_acquire()
            if wait > 0:
                if slots:
                    release_all(slots, call_id)
                return self.WAIT, wait
        held.extend(slots)
        return self.OK, 0.0

    def release(self, call_id: str, held: list) -> None:
        if held:
            release_all(held, call_id)
            held.clear()

    def renew(self, calls) -> None:
        for call_id, held in calls:
            if held:
                renew_all(held, [call_id], LEASE_S)
