"""GET /metrics for Prometheus, on the public host.

A custom collector reads the Redis totals at scrape time, so the counts of every web, worker and
recorder process are in one scrape (no per-process registries, no multiprocess directory). With
settings.METRICS_TOKEN set, the scraper must send `Authorization: Bearer <token>`.
"""
from __future__ import annotations

import hmac
from collections import defaultdict

from django.conf import settings
from django.http import Http404, HttpResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET
from django_tenants.utils import get_public_schema_name
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily

from . import histograms as H
from . import selectors

# histogram -> (metric name, help, factor from the stored unit to the exposed one)
EXPOSED_HISTOGRAMS = {
    H.SETUP: ("voice_call_setup_seconds", "INVITE sent to 200 OK of answered calls.", 0.001),
    H.PDD: ("voice_call_post_dial_delay_seconds", "INVITE sent to the first 18x response.", 0.001),
    H.JITTER: ("voice_call_jitter_seconds", "RFC 3550 interarrival jitter of a call's received audio.", 0.001),
    H.LOSS: ("voice_call_packet_loss_percent", "Lost / expected RTP packets of a call, in percent.", 1),
    H.MOS: ("voice_call_mos", "Estimated MOS of a call (simplified E-model).", 1),
    H.AI_RESPONSE: ("voice_ai_response_seconds", "End of caller speech to first agent audio.", 0.001),
    H.AMD: ("voice_amd_decision_seconds", "Answer to the answering-machine detection decision.", 0.001),
}


def _carrier(value: str) -> str:
    return value or "none"


class CallMetricsCollector:
    def collect(self):
        totals = selectors.totals()
        yield from self._calls(totals)
        yield from self._histograms(totals)
        yield from self._carriers()
        yield from self._gateways()

    def _calls(self, totals):
        attempted = CounterMetricFamily("voice_calls_attempted", "Calls placed or received.", labels=["tenant"])
        legs = CounterMetricFamily("voice_carrier_attempts", "Call legs tried on a carrier.",
                                   labels=["tenant", "carrier"])
        answered = CounterMetricFamily("voice_calls_answered", "Calls answered.", labels=["tenant", "carrier"])
        ended = CounterMetricFamily("voice_calls_ended", "Calls ended, by outcome.",
                                    labels=["tenant", "carrier", "outcome"])
        failed = CounterMetricFamily("voice_calls_failed", "Calls never answered, by outcome.",
                                     labels=["tenant", "carrier", "outcome"])
        failovers = CounterMetricFamily("voice_call_failovers", "Legs failed over to the next carrier.",
                                        labels=["tenant", "carrier"])
        abandoned = CounterMetricFamily("voice_calls_abandoned", "Answered calls abandoned.", labels=["tenant"])
        tenants = set()
        for key, value in sorted(totals.items()):
            tenant, metric, *labels = key
            tenants.add(tenant)
            if metric == "attempted":
                attempted.add_metric([tenant], value)
            elif metric == "abandoned":
                abandoned.add_metric([tenant], value)
            elif metric in ("legs", "answered", "failovers") and len(labels) == 1:
                family = {"legs": legs, "answered": answered, "failovers": failovers}[metric]
                family.add_metric([tenant, _carrier(labels[0])], value)
            elif metric == "ended" and len(labels) == 2:
                ended.add_metric([tenant, _carrier(labels[0]), labels[1]], value)
                if labels[1] != "answered":
                    failed.add_metric([tenant, _carrier(labels[0]), labels[1]], value)
        active = GaugeMetricFamily("voice_calls_active", "Calls in flight (dialing, ringing or talking).",
                                   labels=["tenant"])
        for tenant, count in sorted(selectors.active_by_tenant(sorted(tenants)).items()):
            active.add_metric([tenant], count)
        yield from (attempted, legs, answered, ended, failed, failovers, abandoned, active)

    def _histograms(self, totals):
        by_tenant: dict[str, dict[str, float]] = defaultdict(dict)
        for (tenant, metric, *_), value in totals.items():
            if metric.startswith("h."):
                by_tenant[tenant][metric] = value
        for hist, (name, doc, factor) in EXPOSED_HISTOGRAMS.items():
            family = HistogramMetricFamily(name, doc, labels=["tenant"])
            for tenant, fields in sorted(by_tenant.items()):
                n = fields.get(f"h.{hist.name}.n", 0)
                if not n:
                    continue
                cumulative, buckets = 0, []
                for i, bound in enumerate(hist.bounds):
                    cumulative += fields.get(f"h.{hist.name}.{i}", 0)
                    buckets.append((_le(bound * factor), cumulative))
                buckets.append(("+Inf", n))
                family.add_metric([tenant], buckets, sum_value=fields.get(f"h.{hist.name}.sum", 0) * factor)
            yield family

    def _carriers(self):
        up = GaugeMetricFamily("voice_carrier_up", "1 if the carrier is enabled and healthy (SIP OPTIONS).",
                               labels=["carrier", "name", "region"])
        for c in selectors.carriers(max_age=0):
            up.add_metric([str(c["id"]), c["name"], c["region"] or ""], 1 if c["enabled"] and c["healthy"] else 0)
        yield up

    def _gateways(self):
        labels = ["gateway", "node"]
        capacity = GaugeMetricFamily("voice_gateway_capacity", "Concurrent calls a gateway takes.", labels=labels)
        active = GaugeMetricFamily("voice_gateway_active_calls", "Calls a gateway holds.", labels=labels)
        alive = GaugeMetricFamily("voice_gateway_up", "1 while the gateway's heartbeat is fresh.", labels=labels)
        restarts = CounterMetricFamily("voice_gateway_restarts", "Restarts by the supervisor.", labels=labels)
        for g in selectors.gateway_pool():
            values = [g["gateway_id"], g["node"] or ""]
            capacity.add_metric(values, g["capacity"])
            active.add_metric(values, g["active"])
            alive.add_metric(values, 1 if g["alive"] else 0)
            restarts.add_metric(values, g["restarts"])
        yield from (capacity, active, alive, restarts)
        queued = GaugeMetricFamily("voice_calls_queued", "Calls waiting for a gateway or a cap.", labels=["tenant"])
        waited = GaugeMetricFamily("voice_calls_queued_oldest_seconds",
                                   "How long the oldest waiting call has waited.", labels=["tenant"])
        for tenant, (count, oldest) in sorted(selectors.originate_queue().items()):
            queued.add_metric([tenant], count)
            waited.add_metric([tenant], round(oldest, 3))
        yield from (queued, waited)


def _le(value: float) -> str:
    return repr(round(value, 6))


REGISTRY = CollectorRegistry(auto_describe=False)
REGISTRY.register(CallMetricsCollector())


def _authorized(request) -> bool:
    token = settings.METRICS_TOKEN
    if not token:
        return not settings.PRODUCTION  # in production /metrics is served only with its token
    sent = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
    return hmac.compare_digest(sent.encode(), token.encode())


@never_cache
@require_GET
def metrics_view(request):
    tenant = getattr(request, "tenant", None)
    if tenant is not None and tenant.schema_name != get_public_schema_name():
        raise Http404("metrics are served on the platform's host")  # never on a tenant's host
    if not _authorized(request):
        return HttpResponse("bearer token required\n", status=401, content_type="text/plain")
    return HttpResponse(generate_latest(REGISTRY), content_type=CONTENT_TYPE_LATEST)
