"""Carrier selection and failover policy: pure functions over plain dataclasses (no Django, no I/O).

The dialer builds `CarrierRoute`s from the carrier rows, calls `plan_route()` once per call and walks
the returned legs in order; after each failed leg it asks `should_fail_over()` whether the next leg is
worth trying, and records `outcome_for()` of the last final response.

Region rule (see `eligible_carriers`):
  * A carrier is usable when it is enabled and healthy.
  * A call with a region uses the usable carriers of exactly that region (case-insensitive).
    If there are none, it falls back to the usable *global* carriers: region empty, None or "any".
    Regional and global carriers are never mixed in one plan: a region that has its own trunks is
    served by them alone (typically for caller-ID / regulatory reasons), global trunks are only
    the safety net when the region has nothing usable.
  * A call without a region (None, "" or "any") may use every usable carrier.

Ordering: ascending priority (lower first); within one priority a weighted random order, so the
first leg goes to carrier i with probability weight_i / sum(weights) and the remaining legs follow
the same rule among the carriers left (Efraimidis-Spirakis sampling without replacement).
Carriers with weight 0 come after all carriers of positive weight of the same priority.
"""
from __future__ import annotations

import math
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

TRANSPORTS = ("udp", "tcp", "tls")
GLOBAL_REGIONS = ("", "any")
DEFAULT_MAX_ATTEMPTS = 3


@dataclass(frozen=True)
class CarrierRoute:
    """What routing needs to know about one carrier (SIP trunk).

    Number rewriting: the E.164 number's digits (without '+') lose their first `strip_digits`
    digits, then `add_prefix` is prepended. The default `add_prefix="+"` sends plain E.164
    ("+14155550123"); `add_prefix=""` sends "14155550123"; `strip_digits=1, add_prefix=""`
    sends the US national "4155550123"; `add_prefix="00"` sends "0014155550123".
    """

    id: str | int
    host: str
    port: int = 5060
    transport: str = "udp"
    priority: int = 100
    weight: int = 1
    region: str | None = None
    enabled: bool = True
    healthy: bool = True
    strip_digits: int = 0
    add_prefix: str = "+"
    from_domain: str = ""
    username: str = ""
    password: str = ""

    def __post_init__(self) -> None:
        if self.transport.lower() not in TRANSPORTS:
            raise ValueError(f"carrier {self.id}: transport {self.transport!r} is not one of {TRANSPORTS}")
        if self.weight < 0:
            raise ValueError(f"carrier {self.id}: weight must be >= 0, got {self.weight}")
        if self.strip_digits < 0:
            raise ValueError(f"carrier {self.id}: strip_digits must be >= 0, got {self.strip_digits}")

    @property
    def is_global(self) -> bool:
        return _is_global_region(self.region)

    @property
    def usable(self) -> bool:
        return self.enabled and self.healthy


@dataclass(frozen=True)
class RouteLeg:
    """One attempt of a call: which carrier, which number string it is sent, and the request URI."""

    attempt: int  # 1-based
    carrier: CarrierRoute
    dialed: str
    uri: str


def _is_global_region(region: str | None) -> bool:
    return region is None or region.strip().lower() in GLOBAL_REGIONS


def eligible_carriers(carriers: Iterable[CarrierRoute], region: str | None) -> list[CarrierRoute]:
    """Usable carriers for a call in `region` (rule in the module docstring); unordered."""
    usable = [c for c in carriers if c.usable]
    if _is_global_region(region):
        return usable
    wanted = region.strip().lower()
    regional = [c for c in usable if not c.is_global and c.region.strip().lower() == wanted]
    return regional or [c for c in usable if c.is_global]


def weighted_order(carriers: Sequence[CarrierRoute], rng: random.Random) -> list[CarrierRoute]:
    """Weighted random permutation: P(first = c) = c.weight / total weight, and so on recursively.

    Uses key = u ** (1 / weight) with u uniform in (0, 1], sorted descending (Efraimidis-Spirakis).
    """
    def key(c: CarrierRoute) -> tuple[int, float]:
        u = 1.0 - rng.random()  # (0, 1]
        if c.weight <= 0:
            return (0, u)
        return (1, math.log(u) / c.weight)  # log of u ** (1/w): same order, no underflow

    keyed = [(key(c), i, c) for i, c in enumerate(carriers)]
    keyed.sort(key=lambda t: (t[0], -t[1]), reverse=True)  # stable on input order for equal keys
    return [c for _, _, c in keyed]


def rewrite_number(number: str, strip_digits: int = 0, add_prefix: str = "+") -> str:
    """Apply a carrier's prefix rules to an E.164 number (see `CarrierRoute`)."""
    digits = number.strip()
    if digits.startswith("+"):
        digits = digits[1:]
    if not digits.isdigit():
        raise ValueError(f"number {number!r} is not in E.164 form (+ and digits only)")
    rest = digits[strip_digits:]
    if not rest:
        raise ValueError(f"stripping {strip_digits} digits from {number!r} leaves nothing to dial")
    return f"{add_prefix}{rest}"


def format_host(host: str) -> str:
    """Host part for a SIP URI: IPv6 literals go in brackets."""
    if ":" in host and not host.startswith("["):
        return f"[{host}]"
    return host


def sip_uri(user: str, host: str, port: int, transport: str) -> str:
    """Request URI for a leg, e.g. 'sip:+14155550123@sip.example.net:5060;transport=udp'.

    TLS uses 'sip:...;transport=tls' rather than 'sips:' because that is what pjsip and most
    trunks expect for hop-by-hop TLS to a carrier.
    """
    return f"sip:{user}@{format_host(host)}:{int(port)};transport={transport.lower()}"


_RNG = random.Random()


def plan_route(
    carriers: Iterable[CarrierRoute],
    region: str | None,
    number: str,
    rng: random.Random | None = None,
    max_attempts: int = DEFAULT_MAX_ATTEMPTS,
) -> list[RouteLeg]:
    """Ordered legs to try for one call; empty when no carrier is usable.

    Pass a seeded `random.Random` for reproducible plans (tests); the default is the module's own
    (a fresh one per call seeded itself from the OS: ~2% of the dialer's CPU at 150 CPS).
    """
    if max_attempts < 1:
        raise ValueError(f"max_attempts must be >= 1, got {max_attempts}")
    rng = rng or _RNG
    by_priority: dict[int, list[CarrierRoute]] = {}
    for carrier in eligible_carriers(carriers, region):
        by_priority.setdefault(carrier.priority, []).append(carrier)
    ordered: list[CarrierRoute] = []
    for priority in sorted(by_priority):
        ordered.extend(weighted_order(by_priority[priority], rng))
    legs = []
    for attempt, carrier in enumerate(ordered[:max_attempts], start=1):
        dialed = rewrite_number(number, carrier.strip_digits, carrier.add_prefix)
        legs.append(RouteLeg(attempt, carrier, dialed, sip_uri(dialed, carrier.host, carrier.port, carrier.transport)))
    return legs


# --- failover policy and outcomes ------------------------------------------------------------------

class Outcome:
    """Call outcomes as stored on call records (plain strings)."""

    ANSWERED = "answered"
    BUSY = "busy"
    NO_ANSWER = "no_answer"
    DECLINED = "declined"
    NOT_FOUND = "not_found"
    UNAVAILABLE = "unavailable"
    CARRIER_ERROR = "carrier_error"
    FAILED = "failed"

    ALL = (ANSWERED, BUSY, NO_ANSWER, DECLINED, NOT_FOUND, UNAVAILABLE, CARRIER_ERROR, FAILED)


# 4xx answers that say "this carrier will not take the call from us" rather than anything about the
# callee: another trunk may well accept it (auth/account problems, codec or extension mismatch).
CARRIER_REFUSALS = frozenset({401, 402, 403, 407, 408, 416, 420, 421, 488})

_OUTCOMES = {
    486: Outcome.BUSY,
    600: Outcome.BUSY,
    487: Outcome.NO_ANSWER,  # we cancelled the INVITE (ring timeout) or the caller side gave up
    603: Outcome.DECLINED,
    607: Outcome.DECLINED,  # unwanted call
    404: Outcome.NOT_FOUND,
    410: Outcome.NOT_FOUND,
    484: Outcome.NOT_FOUND,
    604: Outcome.NOT_FOUND,
    480: Outcome.UNAVAILABLE,
}


def should_fail_over(sip_code: int | None, timed_out: bool = False, transport_error: bool = False) -> bool:
    """Whether the next carrier should be tried after this leg ended without an answer.

    Yes for technical failures of the carrier path: transport errors, timeouts, no final response,
    408, every 5xx and the carrier refusals in CARRIER_REFUSALS. No for answers that describe the
    callee (busy, not found, unavailable, declined, cancelled/no answer) or a success: another carrier
    would reach the same phone with the same result.
    """
    if timed_out or transport_error or sip_code is None:
        return True
    if 500 <= sip_code <= 599:
        return True
    return sip_code in CARRIER_REFUSALS


def outcome_for(sip_code: int | None, timed_out: bool = False, transport_error: bool = False) -> str:
    """Map the final SIP response of a call (its last leg) to an `Outcome` string.

    408 counts as carrier_error: it is the carrier's own transaction timing out (we fail over on it);
    a callee that does not pick up shows as 487 after our ring timeout CANCELs the INVITE.
    """
    if timed_out or transport_error:
        return Outcome.CARRIER_ERROR
    if sip_code is None:
        return Outcome.FAILED
    if 200 <= sip_code <= 299:
        return Outcome.ANSWERED
    if sip_code in _OUTCOMES:
        return _OUTCOMES[sip_code]
    if 500 <= sip_code <= 599 or sip_code in CARRIER_REFUSALS:
        return Outcome.CARRIER_ERROR
    return Outcome.FAILED
