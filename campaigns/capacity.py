"""How many more calls a campaign can place now without meeting a cap: the concurrent-call caps of
the carriers its calls can use and of its tenant, as the gateways lease them in Redis
(telephony.gateway.call_limits), and the carriers' combined CPS.

A lease is taken by the gateway when a call's leg is admitted, so the campaign's own calls that are
in flight but hold no lease yet (queued for the pool, waiting for a carrier's CPS turn) will take one
soon: they count against the free slots too. Calls of other campaigns or the API that are not leased
yet cannot be seen from here; a call that meets a full cap all the same is refused by the gateway and
its contact dialed again (campaigns.services.campaign_calls_reconcile).
"""
from __future__ import annotations

from dataclasses import dataclass

from core import keys
from telephony.models import Carrier

from . import selectors
from .models import Campaign


@dataclass(frozen=True)
class CapRoom:
    calls: int | None  # more calls that fit under the caps now; None: no cap applies
    cps: float | None  # the usable carriers' combined CPS; None: one of them has no CPS cap


def _live_holders(redis, keys: list[str]) -> dict[str, set[str]]:
    """The calls holding a live lease on each key: two round trips to Redis whatever the number of
    keys (a lease is live until its score, in ms of Redis time, as telephony.leases keeps them)."""
    if not keys:
        return {}
    seconds, micros = redis.time()
    pipe = redis.pipeline(transaction=False)
    for key in keys:
        pipe.zrangebyscore(key, f"({seconds * 1000 + micros // 1000}", "+inf")
    return {key: {member.decode() if isinstance(member, bytes) else member for member in members}
            for key, members in zip(keys, pipe.execute(), strict=True)}


def cap_room(redis, campaign: Campaign, tenant, carriers: list[Carrier]) -> CapRoom:
    """Free slots under the caps `campaign`'s calls meet (carriers: selectors.campaign_carriers)."""
    caps = [[(keys.carrier_calls_key(c.pk), c.max_concurrent) for c in carriers],
            [(keys.tenant_calls_key(tenant.schema_name), tenant.max_concurrent_calls)]]
    caps = [group for group in caps if group and all(limit for _, limit in group)]  # a limit of 0 is no cap
    held = _live_holders(redis, [key for group in caps for key, _ in group])
    in_flight = set(selectors.calls_in_flight(campaign).values_list("sid", flat=True)) if caps else set()
    rooms = []
    for group in caps:
        free = sum(max(0, limit - len(held[key])) for key, limit in group)
        leased = set().union(*(held[key] for key, _ in group))
        rooms.append(free - len(in_flight - leased))
    capped_cps = carriers and all(c.max_cps for c in carriers)
    return CapRoom(calls=min(rooms) if rooms else None,
                   cps=float(sum(c.max_cps for c in carriers)) if capped_cps else None)
