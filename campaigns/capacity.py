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

from telephony.calls.models import Call
from telephony.gateway.call_limits import carrier_calls_key, tenant_calls_key
from telephony.limits import ConcurrencyLimiter
from telephony.models import Carrier

from .models import Campaign


@dataclass(frozen=True)
class CapRoom:
    calls: int | None  # more calls that fit under the caps now; None: no cap applies
    cps: float | None  # the usable carriers' combined CPS; None: one of them has no CPS cap


def _leases(redis, caps: list[tuple[str, int]]) -> tuple[int, set[str]]:
    """Free slots summed over the caps (key, limit), and the calls holding a slot on any of them."""
    free, holders = 0, set()
    for key, limit in caps:
        held = set(ConcurrencyLimiter(redis, key, limit).holders())
        free += max(0, limit - len(held))
        holders |= held
    return free, holders


def cap_room(redis, campaign: Campaign, tenant, carriers: list[Carrier]) -> CapRoom:
    """Free slots under the caps `campaign`'s calls meet (carriers: selectors.campaign_carriers)."""
    in_flight = set(Call.objects.filter(campaign_id=campaign.pk).exclude(status__in=Call.FINAL_STATUSES)
                    .values_list("sid", flat=True))
    carrier_caps = [(carrier_calls_key(c.pk), c.max_concurrent) for c in carriers]
    tenant_caps = [(tenant_calls_key(tenant.schema_name), tenant.max_concurrent_calls)]
    rooms = []
    for caps in (carrier_caps, tenant_caps):
        if caps and all(limit for _, limit in caps):  # a limit of 0 is no cap
            free, holders = _leases(redis, caps)
            rooms.append(free - len(in_flight - holders))
    capped_cps = carriers and all(c.max_cps for c in carriers)
    return CapRoom(calls=min(rooms) if rooms else None,
                   cps=float(sum(c.max_cps for c in carriers)) if capped_cps else None)
