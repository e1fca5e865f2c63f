"""Carrier health and the inventory the gateways read from Redis (allowed carrier addresses, routes
of inbound numbers). Called by admin pages, Celery beat and tests."""
from __future__ import annotations

import asyncio
import json
import logging
import socket

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from core import keys
from core.redis_client import get_redis
from telephony.gateway.contract import InboundRoute

from .models import Carrier, CarrierHealthEvent, Number
from .sip_options import HealthTracker, PingResult, ping

log = logging.getLogger(__name__)


def ping_carrier(carrier: Carrier, timeout: float | None = None) -> PingResult:
    return asyncio.run(ping(carrier.host, carrier.port, carrier.transport, timeout or settings.CARRIER_PING_TIMEOUT))


def record_health(carrier_id: int, result: PingResult) -> str | None:
    """Count one OPTIONS result; flips the carrier down after CARRIER_DOWN_AFTER failures in a row and
    up after CARRIER_UP_AFTER successes, recording each flip. Returns "down"/"up" on a flip."""
    with transaction.atomic():
        carrier = Carrier.objects.select_for_update().get(pk=carrier_id)
        tracker = HealthTracker(settings.CARRIER_DOWN_AFTER, settings.CARRIER_UP_AFTER, healthy=carrier.healthy)
        tracker.failures, tracker.successes = carrier.health_failures, carrier.health_successes
        flip = tracker.record(result.ok)
        carrier.healthy = tracker.healthy
        carrier.health_failures, carrier.health_successes = tracker.failures, tracker.successes
        carrier.health_checked_at = timezone.now()
        carrier.health_rtt_ms = result.rtt_ms
        carrier.save(update_fields=["healthy", "health_failures", "health_successes", "health_checked_at",
                                    "health_rtt_ms"])
        if flip:
            reason = f"OPTIONS answered {result.code}" if result.ok else f"OPTIONS failed: {result.error}"
            CarrierHealthEvent.objects.create(carrier=carrier, healthy=carrier.healthy, reason=reason)
            log.warning("carrier %s is %s (%s)", carrier.name, flip, reason)
    return flip


def check_carrier(carrier_id: int) -> str | None:
    carrier = Carrier.objects.get(pk=carrier_id)
    return record_health(carrier_id, ping_carrier(carrier))


def carrier_addresses() -> set[str]:
    """IP addresses inbound INVITEs may come from: every enabled carrier's host, resolved, and the
    SIP load balancers in front of the gateways (SIP_BALANCER_ADDRESSES)."""
    addresses = set(settings.SIP_BALANCER_ADDRESSES)
    for host in Carrier.objects.filter(enabled=True).values_list("host", flat=True).distinct():
        try:
            addresses.update(info[4][0] for info in socket.getaddrinfo(host, None))
        except socket.gaierror:
            log.warning("carrier host %s does not resolve; no inbound calls accepted from it", host)
    return addresses


def number_routes() -> dict[str, str]:
    routes = {}
    for number in Number.objects.filter(tenant__isnull=False).select_related("tenant"):
        route: InboundRoute = {
            "tenant": number.tenant.schema_name, "account_sid": number.tenant.account_sid,
            "stream_url": number.inbound_stream_url, "custom_parameters": number.inbound_parameters,
            "region": number.region,
        }
        if number.voice_url:  # the TwiML of the tenant's app answers (fetched when the call is answered)
            route["stream_url"] = ""
            route["twiml_url"] = {"url": number.voice_url, "method": number.voice_method,
                                  "fallback_url": number.voice_fallback_url,
                                  "fallback_method": number.voice_fallback_method}
        routes[number.e164] = json.dumps(route)
    return routes


def publish_inventory() -> None:
    """Replace the gateways' view of carriers and numbers in one atomic step each."""
    client = get_redis()
    addresses, routes = carrier_addresses(), number_routes()
    pipe = client.pipeline(transaction=True)
    pipe.delete(keys.CARRIER_ADDRESSES + ":new", keys.NUMBER_ROUTES + ":new")
    if addresses:
        pipe.sadd(keys.CARRIER_ADDRESSES + ":new", *addresses)
        pipe.rename(keys.CARRIER_ADDRESSES + ":new", keys.CARRIER_ADDRESSES)
    else:
        pipe.delete(keys.CARRIER_ADDRESSES)
    if routes:
        pipe.hset(keys.NUMBER_ROUTES + ":new", mapping=routes)
        pipe.rename(keys.NUMBER_ROUTES + ":new", keys.NUMBER_ROUTES)
    else:
        pipe.delete(keys.NUMBER_ROUTES)
    pipe.execute()
