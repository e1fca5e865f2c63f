"""Carrier and tenant caps, enforced where calls are placed: in the gateway, for every leg.

A leg takes a concurrency slot on its carrier (and its tenant) before the INVITE and gives it back
when the leg or the call ends; the gateway renews its slots every second. The slot keys of a call
are kept in ``call:{id}`` (field ``slots``): when a worker dies, the supervisor holds them until it
has ended the call at the carrier (dialog.py), so a carrier's cap holds across crashes; a slot
whose holder nobody renews runs out by itself within LEASE_S. While Redis is unreachable, releases
wait in memory and go out when it is back (``flush``), and the slots of the calls still up are
put back (``reassert``: a restarted Redis has lost them). A carrier's CPS is paced cluster-wide; a
leg that is early waits for its turn instead of failing. Keys and scripts: telephony.leases.
"""
from __future__ import annotations

from core import keys
from telephony.gateway.contract import CarrierLeg, OriginateCommand
from telephony.leases import (
    ConcurrencyLimiter,
    RateLimiter,
    acquire_all,
    reassert_keys,
    release_keys,
    renew_all,
)

LEASE_S = 5.0


class CallLimits:
    OK, WAIT, FULL = "ok", "wait", "full"

    def __init__(self, client, errors: tuple[type[Exception], ...] = (Exception,), online=lambda: True):
        self.client = client
        self.errors = errors  # the client's connection errors: a release then waits for Redis
        self.online = online  # False while the caller knows Redis is unreachable: releases wait at once
        self.unreleased: list[tuple[str, list[str]]] = []  # (call id, slot keys) not released yet

    def _slots(self, cmd: OriginateCommand, leg: CarrierLeg) -> list[ConcurrencyLimiter]:
        slots = []
        if leg.get("max_concurrent"):
            slots.append(ConcurrencyLimiter(self.client, keys.carrier_calls_key(leg["carrier_id"]), int(leg["max_concurrent"])))
        if cmd.get("tenant") and cmd.get("tenant_max_concurrent"):
            slots.append(ConcurrencyLimiter(self.client, keys.tenant_calls_key(cmd["tenant"]),
                                            int(cmd["tenant_max_concurrent"])))
        return slots

    def admit(self, call_id: str, cmd: OriginateCommand, leg: CarrierLeg, held: list) -> tuple[str, float]:
        """(OK, 0) with the leg's slots in `held`; (WAIT, seconds) for the CPS turn, the slots kept in
        `held` meanwhile (the call is being placed: no later call takes them; asked again, the same
        holder keeps them); (FULL, 0). Raises the client's error when Redis cannot be reached (the
        caller waits and tries again)."""
        slots = self._slots(cmd, leg)
        if slots and not acquire_all(slots, call_id, LEASE_S):
            return self.FULL, 0.0
        held[:] = slots
        if leg.get("max_cps"):
            wait = RateLimiter(self.client, keys.carrier_cps_key(leg["carrier_id"]), float(leg["max_cps"])).try_acquire()
            if wait > 0:
                return self.WAIT, wait
        return self.OK, 0.0

    def release(self, call_id: str, held: list) -> None:
        """Give the slots back now, or as soon as Redis is reachable again; never raises."""
        if not held:
            return
        keys = [lim.key for lim in held]
        held.clear()
        if self.unreleased or not self.online():
            self.unreleased.append((call_id, keys))
            return
        try:
            release_keys(self.client, keys, call_id)
        except self.errors:
            self.unreleased.append((call_id, keys))

    def flush(self) -> None:
        """Releases that waited for Redis (raises while it is still unreachable)."""
        while self.unreleased:
            call_id, keys = self.unreleased[0]
            release_keys(self.client, keys, call_id)
            self.unreleased.pop(0)

    def renew(self, calls) -> None:
        for call_id, held in calls:
            if held:
                renew_all(held, [call_id], LEASE_S)

    def reassert(self, calls) -> None:
        """The slots of the calls still up, back in Redis whatever the caps say (after an outage)."""
        for call_id, held in calls:
            reassert_keys(self.client, [lim.key for lim in held], call_id, LEASE_S)
