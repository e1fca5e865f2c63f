"""Gateway events become call records: every leg, the outcome, the timings; repeated or late events
change nothing; and each step reaches the tenant's status callback, signed."""
import hashlib
import hmac
import socket
import subprocess
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest
from django_tenants.utils import schema_context
from twilio.request_validator import RequestValidator

from core import keys
from core.redis_client import get_redis
from telephony.calls import event_stream, webhooks
from telephony.calls.models import Call, WebhookDelivery
from telephony.calls.recorder import record_event, record_events
from telephony.gateway import events as gw
from telephony.metrics import selectors as metrics
from telephony.metrics.prometheus import CallMetricsCollector
from telephony.models import Carrier
from tenants import auth_token
from tenants.models import Tenant

pytestmark = pytest.mark.django_db



def events_of_a_call_that_fails_over(sid, primary, backup):
    t = time.time()
    return [
        gw.make_event(sid, gw.INITIATED, ts=t, gateway_id="gw-1"),
        gw.make_event(sid, gw.LEG_STARTED, ts=t + 0.01, leg=0, carrier_id=str(primary.pk)),
        gw.make_event(sid, gw.LEG_FAILED, ts=t + 0.05, leg=0, carrier_id=str(primary.pk), sip_code=503,
                      reason="Service Unavailable", failover=True),
        gw.make_event(sid, gw.LEG_STARTED, ts=t + 0.06, leg=1, carrier_id=str(backup.pk)),
        gw.make_event(sid, gw.RINGING, ts=t + 0.3, leg=1, carrier_id=str(backup.pk), pdd_ms=240),
        gw.make_event(sid, gw.ANSWERED, ts=t + 2.0, leg=1, carrier_id=str(backup.pk), setup_ms=1940),
        gw.make_event(sid, gw.COMPLETED, ts=t + 12.0, leg=1, carrier_id=str(backup.pk), outcome="answered",
                      hangup_by="callee", duration=10.0, sip_code=200, reason="remote_hangup"),
    ]


def test_a_failed_over_answered_call_is_recorded_leg_by_leg(tenant_a):
    primary = Carrier.objects.create(name="Primary", host="127.0.0.1", priority=1)
    backup = Carrier.objects.create(name="Backup", host="127.0.0.1", priority=2)
    with schema_context("acme"):
        call = Call.objects.create(from_number="+14155550100", to_number="+14155550199")
    for event in events_of_a_call_that_fails_over(call.sid, primary, backup):
        record_event(event, "acme")

    with schema_context("acme"):
        call.refresh_from_db()
        assert (call.status, call.outcome, call.hangup_by) == ("completed", "answered", "callee")
        assert call.carrier_name == "Backup" and call.setup_ms == 1940 and call.post_dial_delay_ms == 240
        assert call.duration_s == 10.0 and call.ended_at is not None
        legs = list(call.legs.order_by("attempt"))
        assert [(leg.attempt, leg.carrier_name, leg.sip_code, leg.failed_over) for leg in legs] == [
            (1, "Primary", 503, True), (2, "Backup", 200, False)
        ]


def test_events_read_together_are_recorded_per_tenant_and_a_broken_one_waits_for_a_retry(tenant_a, tenant_b):
    with schema_context("acme"):
        acme_call = Call.objects.create(from_number="+14155550123", to_number="+14155550199")
    with schema_context("globex"):
        globex_call = Call.objects.create(from_number="+14155550124", to_number="+14155550198")
    broken = dict(gw.make_event(acme_call.sid, gw.RINGING, leg=0), ts="not a time")
    done = record_events([
        (gw.make_event(acme_call.sid, gw.INITIATED, gateway_id="gw-1"), "acme"),
        (gw.make_event(globex_call.sid, gw.INITIATED, gateway_id="gw-2"), "globex"),
        (broken, "acme"),
        (gw.make_event("CA" + "0" * 32, gw.INITIATED), "acme"),  # no such call: dropped, not retried
        (gw.make_event(acme_call.sid, gw.INITIATED), "no_such_tenant"),  # dropped too
    ])
    assert done == [True, True, False, True, True]
    with schema_context("acme"):
        assert Call.objects.get(pk=acme_call.pk).status == Call.Status.INITIATED
    with schema_context("globex"):
        assert Call.objects.get(pk=globex_call.pk).gateway_id == "gw-2"


def test_a_burst_read_together_is_recorded_as_one_event_at_a_time_would_be(tenant_a, tenant_b):
    """A campaign's calls and an inbound call, their events read from the stream in one block (the
    recorder writes each tenant's in a few statements): every record, leg and callback as if the
    events had come one by one, each callback with the call as it was at its event."""
    primary = Carrier.objects.create(name="Primary", host="127.0.0.1", priority=1)
    backup = Carrier.objects.create(name="Backup", host="127.0.0.1", priority=2)
    with schema_context("acme"):
        failed_over, busy = (Call.objects.create(from_number="+14155550100", to_number=f"+1415555019{k}",
                                                 status_callback="http://127.0.0.1:9/status") for k in (1, 2))
    with schema_context("globex"):
        other = Call.objects.create(from_number="+14155550124", to_number="+14155550198")
    inbound = "CA" + "1" * 32
    t = time.time()
    burst = [(event, "acme") for event in events_of_a_call_that_fails_over(failed_over.sid, primary, backup)]
    burst[3:3] = [
        (gw.make_event(busy.sid, gw.INITIATED, ts=t, gateway_id="gw-1"), "acme"),
        (gw.make_event(other.sid, gw.INITIATED, ts=t, gateway_id="gw-2"), "globex"),
        (gw.make_event(busy.sid, gw.LEG_STARTED, ts=t + 0.01, leg=0, carrier_id=str(primary.pk)), "acme"),
        (gw.make_event(inbound, gw.INITIATED, ts=t, direction="inbound", **{"from": "+14155550177"},
                       to="+14155550100"), "acme"),
        (gw.make_event(busy.sid, gw.RINGING, ts=t + 0.3, leg=0, carrier_id=str(primary.pk), pdd_ms=290), "acme"),
    ]
    burst += [
        (gw.make_event(busy.sid, gw.FAILED, ts=t + 3, leg=0, outcome="busy", sip_code=486, reason="Busy Here"), "acme"),
        (gw.make_event(busy.sid, gw.RINGING, ts=t + 0.3, leg=0, pdd_ms=290), "acme"),  # read twice, late
        (gw.make_event(inbound, gw.ANSWERED, ts=t + 1, direction="inbound"), "acme"),
        (gw.make_event(inbound, gw.COMPLETED, ts=t + 4, direction="inbound", outcome="answered", duration=3.0),
         "acme"),
    ]
    assert record_events(burst) == [True] * len(burst)
    assert record_events(burst[:4]) == [True] * 4  # the block read again: nothing changes

    with schema_context("acme"):
        failed_over.refresh_from_db()
        assert (failed_over.status, failed_over.carrier_name, failed_over.duration_s) == ("completed", "Backup", 10.0)
        assert [(leg.attempt, leg.carrier_name, leg.sip_code, leg.failed_over, leg.ended_at is not None)
                for leg in failed_over.legs.order_by("attempt")] == [
            (1, "Primary", 503, True, True), (2, "Backup", 200, False, True)]
        busy.refresh_from_db()
        assert (busy.status, busy.outcome, busy.sip_code, busy.post_dial_delay_ms) == ("busy", "busy", 486, 290)
        assert busy.legs.get().ended_at is not None
        answered = Call.objects.get(sid=inbound)
        assert (answered.direction, answered.from_number, answered.status, answered.duration_s) == (
            "inbound", "+14155550177", "completed", 3.0)
        callbacks = {(d.call_id, d.event): d.payload["CallStatus"] for d in WebhookDelivery.objects.all()}
        assert callbacks == {
            (failed_over.pk, "initiated"): "initiated", (failed_over.pk, "ringing"): "ringing",
            (failed_over.pk, "answered"): "in-progress", (failed_over.pk, "completed"): "completed",
            (busy.pk, "initiated"): "initiated", (busy.pk, "ringing"): "ringing", (busy.pk, "completed"): "busy",
        }
    with schema_context("globex"):
        assert Call.objects.get(pk=other.pk).status == Call.Status.INITIATED


def test_events_replayed_or_late_never_move_a_call_backwards(tenant_a):
    with schema_context("acme"):
        call = Call.objects.create(from_number="+14155550100", to_number="+14155550199")
    busy = gw.make_event(call.sid, gw.FAILED, outcome="busy", sip_code=486, reason="Busy Here")
    record_event(busy, "acme")
    record_event(gw.make_event(call.sid, gw.RINGING, leg=0), "acme")  # late
    record_event(busy, "acme")  # read twice
    with schema_context("acme"):
        call.refresh_from_db()
        assert (call.status, call.outcome, call.sip_code) == ("busy", "busy", 486)


def test_an_answer_recorded_after_the_calls_end_still_gives_its_answer_time(tenant_a):
    with schema_context("acme"):
        call = Call.objects.create(from_number="+14155550100", to_number="+14155550199")
    t = time.time()
    record_event(gw.make_event(call.sid, gw.COMPLETED, ts=t + 5.0, outcome="answered", duration=4.0), "acme")
    record_event(gw.make_event(call.sid, gw.ANSWERED, ts=t + 1.0, leg=0, setup_ms=900), "acme")  # late
    with schema_context("acme"):
        call.refresh_from_db()
        assert (call.status, call.outcome, call.duration_s, call.setup_ms) == ("completed", "answered", 4.0, 900)
        assert call.answered_at.timestamp() == pytest.approx(t + 1.0, abs=0.001)


def test_a_restarted_recorder_records_at_once_the_events_its_dead_predecessor_had_read(tenant_a):
    with schema_context("acme"):
        call = Call.objects.create(from_number="+14155550100", to_number="+14155550199")
    r = get_redis()
    event_stream.ensure_group(r)
    dead = subprocess.Popen(["true"])  # a recorder process that is gone
    dead.wait()
    predecessor = f"{socket.gethostname()}-{dead.pid}"
    event_stream.mark_alive(r, predecessor)  # it was alive a moment ago
    t = time.time()
    r.xadd(keys.EVENTS_STREAM, gw.encode(gw.make_event(call.sid, gw.ANSWERED, ts=t, leg=0, tenant="acme")))
    r.xreadgroup(event_stream.GROUP, predecessor, {keys.EVENTS_STREAM: ">"}, count=10_000)  # read, then killed
    r.xadd(keys.EVENTS_STREAM, gw.encode(gw.make_event(call.sid, gw.COMPLETED, ts=t + 3.0, outcome="answered",
                                                    duration=3.0, tenant="acme")))

    event_stream.read_once(r, "successor", block_ms=10)

    with schema_context("acme"):
        call.refresh_from_db()
        assert call.status == "completed" and call.answered_at.timestamp() == pytest.approx(t, abs=0.001)
    consumers = {c["name"].decode(): c["pending"] for c in r.xinfo_consumers(keys.EVENTS_STREAM, event_stream.GROUP)}
    assert predecessor not in consumers


class Receiver(BaseHTTPRequestHandler):
    """A tenant's webhook endpoint; answers with the status the test sets."""

    status = 200
    received: list

    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.received.append((dict(self.headers), body))
        self.send_response(self.status)
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def receiver():
    Receiver.received, Receiver.status = [], 200
    server = HTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}/status", Receiver
    server.shutdown()


def test_status_callbacks_are_signed_and_verifiable_with_twilios_scheme(tenant_a, receiver):
    url, endpoint = receiver
    with schema_context("acme"):
        call = Call.objects.create(from_number="+14155550100", to_number="+14155550199", status_callback=url,
                                   status="completed", outcome="answered", duration_s=3.2)
        webhooks.enqueue(call, gw.COMPLETED)
        webhooks.enqueue(call, gw.COMPLETED)  # the same event again: one delivery
        delivery = WebhookDelivery.objects.get(call=call)
        assert webhooks.deliver(delivery.pk) is None
        delivery.refresh_from_db()
        assert delivery.delivered_at and delivery.status_code == 200 and delivery.attempts == 1

    [(headers, body)] = endpoint.received
    params = dict(urllib.parse.parse_qsl(body.decode()))
    assert params["CallSid"] == call.sid and params["CallStatus"] == "completed"
    secret = auth_token.current(Tenant.objects.get(schema_name="acme"))
    expected = hmac.new(secret.encode(), headers["X-Signature-Timestamp"].encode() + b"." + body,
                        hashlib.sha256).hexdigest()
    assert headers["X-Signature"] == expected
    # Twilio's own validator, given the account auth token, accepts it.
    assert RequestValidator(secret).validate(url, params, headers["X-Twilio-Signature"])


def test_a_call_without_its_own_callback_reports_to_the_tenants_url(tenant_a, receiver):
    url, endpoint = receiver
    acme = Tenant.objects.get(schema_name="acme")
    Tenant.objects.filter(pk=acme.pk).update(status_callback=url)
    try:
        with schema_context("acme"):
            own = Call.objects.create(from_number="+14155550100", to_number="+14155550199",
                                      status_callback=url + "?own=1", status="completed", outcome="answered")
            plain = Call.objects.create(from_number="+14155550100", to_number="+14155550198",
                                        status="completed", outcome="answered")
            webhooks.enqueue(own, gw.COMPLETED)
            webhooks.enqueue(plain, gw.COMPLETED)
            assert WebhookDelivery.objects.get(call=own).url == url + "?own=1"
            delivery = WebhookDelivery.objects.get(call=plain)
            assert delivery.url == url and webhooks.deliver(delivery.pk) is None
    finally:
        Tenant.objects.filter(pk=acme.pk).update(status_callback="")
    [(_, body)] = endpoint.received
    assert dict(urllib.parse.parse_qsl(body.decode()))["CallSid"] == plain.sid


def test_a_failing_receiver_is_retried_with_backoff_then_given_up(tenant_a, receiver):
    url, endpoint = receiver
    endpoint.status = 500
    with schema_context("acme"):
        call = Call.objects.create(from_number="+14155550100", to_number="+14155550199", status_callback=url)
        webhooks.enqueue(call, gw.INITIATED)
        delivery = WebhookDelivery.objects.get(call=call)
        delays = [webhooks.deliver(delivery.pk) for _ in range(webhooks.MAX_ATTEMPTS)]
        delivery.refresh_from_db()
    assert delays == [2, 4, 8, 16, 32, None]
    assert delivery.attempts == webhooks.MAX_ATTEMPTS and delivery.gave_up_at and delivery.status_code == 500
    assert len(endpoint.received) == webhooks.MAX_ATTEMPTS


@pytest.mark.parametrize("ai_connect_ms, abandoned", [(None, True), (2500, True), (400, False)])
def test_an_answered_call_whose_agent_was_not_streaming_within_2_s_is_abandoned(tenant_a, ai_connect_ms, abandoned):
    with schema_context("acme"):
        call = Call.objects.create(from_number="+14155550100", to_number="+14155550199",
                                   stream_url="wss://agent.acme.example/stream")
    record_event(gw.make_event(call.sid, gw.ANSWERED, leg=0, setup_ms=900), "acme")
    if ai_connect_ms is not None:
        record_event(gw.make_event(call.sid, gw.STREAM_STARTED, leg=0, ai_connect_ms=ai_connect_ms), "acme")
    record_event(gw.make_event(call.sid, gw.COMPLETED, leg=0, outcome="answered", duration=4.0), "acme")
    with schema_context("acme"):
        call.refresh_from_db()
        assert call.abandoned is abandoned and call.ai_connect_ms == ai_connect_ms


def test_quality_from_the_final_event_is_kept_with_the_record(tenant_a):
    with schema_context("acme"):
        call = Call.objects.create(from_number="+14155550100", to_number="+14155550199",
                                   stream_url="wss://agent.acme.example/stream")
    record_event(gw.make_event(call.sid, gw.ANSWERED, leg=0, setup_ms=800), "acme")
    record_event(gw.make_event(call.sid, gw.STREAM_STARTED, leg=0, ai_connect_ms=35), "acme")
    record_event(gw.make_event(call.sid, gw.COMPLETED, leg=0, outcome="answered", duration=30.0, jitter_ms=2.4,
                               loss_percent=0.5, mos=4.31, bridge_in_p50_ms=0.4, bridge_in_p99_ms=1.9,
                               bridge_out_p50_ms=9.8, bridge_out_p99_ms=19.5, frames_to_agent=1500,
                               frames_dropped=0), "acme")
    with schema_context("acme"):
        call.refresh_from_db()
        assert (call.jitter_ms, call.loss_percent, call.mos) == (2.4, 0.5, 4.31)
        assert (call.bridge_in_p99_ms, call.bridge_out_p99_ms, call.frames_to_agent) == (1.9, 19.5, 1500)
        assert call.rtt_ms is None and call.ai_connect_ms == 35 and not call.abandoned


def abandoned_so_far() -> tuple[int, float]:
    """Acme's abandoned calls on the dashboard (last hour) and in Prometheus' voice_calls_abandoned."""
    family = next(f for f in CallMetricsCollector().collect() if f.name == "voice_calls_abandoned")
    exported = sum(s.value for s in family.samples if s.labels == {"tenant": "acme"})
    return metrics.tenant_series("acme", "1h")["totals"]["abandoned"], exported


def test_an_abandoned_call_moves_the_dashboard_and_prometheus_once(tenant_a):
    dashboard, exported = abandoned_so_far()
    with schema_context("acme"):
        call = Call.objects.create(from_number="+14155550100", to_number="+14155550199",
                                   stream_url="wss://agent.acme.example/stream")
    record_event(gw.make_event(call.sid, gw.ANSWERED, leg=0, setup_ms=900), "acme")
    completed = gw.make_event(call.sid, gw.COMPLETED, leg=0, outcome="answered", duration=4.0)
    record_event(completed, "acme")  # no agent audio at all: the callee heard silence
    record_event(completed, "acme")  # the stream read again after a crash
    assert abandoned_so_far() == (dashboard + 1, exported + 1)

    with schema_context("acme"):  # an agent that streamed at once: not abandoned, nothing moves
        served = Call.objects.create(from_number="+14155550100", to_number="+14155550199",
                                     stream_url="wss://agent.acme.example/stream")
    record_event(gw.make_event(served.sid, gw.ANSWERED, leg=0, setup_ms=900), "acme")
    record_event(gw.make_event(served.sid, gw.STREAM_STARTED, leg=0, ai_connect_ms=300), "acme")
    record_event(gw.make_event(served.sid, gw.COMPLETED, leg=0, outcome="answered", duration=9.0), "acme")
    assert abandoned_so_far() == (dashboard + 1, exported + 1)
