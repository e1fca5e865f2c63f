"""Acme's campaigns dialed for real through the gateway pool, with SIPp as the carriers, to see what
happens to contacts whose calls do not simply get answered:

- a busy line and a phone nobody picks up are called again per the campaign's retry policy, after
  its delays, until their attempts run out;
- contacts whose local time is outside the calling window wait while the others are called, and are
  called once their window opens;
- a status-callback receiver that is slow and failing does not slow the campaign: it keeps its pace,
  and every callback is logged and delivered on a later attempt.

One platform (gateway pool, recorder, dialer worker, webhooks worker, beat) serves the module.
"""
import datetime as dt
import threading
import time
import urllib.parse
import zoneinfo
from collections import Counter, defaultdict
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.utils import timezone
from django_tenants.utils import schema_context

from campaigns.models import Campaign
from telephony.calls import webhooks
from telephony.calls.models import WebhookDelivery
from tenants import auth_token
from tenants.models import Tenant
from tests.campaign_support import (
    ALL_DAY,
    calls_of,
    campaign_state,
    contacts_of,
    new_campaign,
    platform_logs,
    running_platform,
    wait_completed,
)
from tests.support import wait_until

pytestmark = pytest.mark.usefixtures("committed")


@pytest.fixture(scope="module")
def platform(tmp_path_factory, django_db_setup):
    yield from running_platform(tmp_path_factory.mktemp("platform"), webhooks=True)


# --- retries ----------------------------------------------------------------------------------------------


def test_busy_and_unanswered_contacts_are_called_again_per_the_retry_policy(platform, trunks, campaigns_made):
    """Acme's San Francisco numbers go out on its West trunk, where both callees are on the phone
    (486 Busy Here); its New York number goes out on the East trunk, where the phone rings and
    nobody answers. Busy lines get 3 attempts 2 s apart, the unanswered phone 2 attempts 3 s apart;
    then they are given up as failed, and the campaign completes."""
    trunks.carrier("West trunk", "uas_reject.xml", region="us-west", CODE=486, PHRASE="Busy Here")
    trunks.carrier("East trunk", "uas_ring_noanswer.xml", region="us-east")
    west = trunks.number("+14155550123", region="us-west")
    east = trunks.number("+12125550123", region="us-east")
    campaign = new_campaign(campaigns_made, "Renewals", [
        ("+14155552001", "Busy Bea", "UTC"), ("+14155552002", "Busy Bob", "UTC"),
        ("+12125553001", "Ringing Rita", "UTC"),
    ], caller_ids=[west, east], cps=5, max_concurrent=5, ring_timeout=15,
        retry_busy_max_attempts=3, retry_busy_delay_s=2, retry_no_answer_max_attempts=2,
        retry_no_answer_delay_s=3, **ALL_DAY)

    wait_completed(campaign, platform, 55)

    calls = defaultdict(list)
    for call in calls_of(campaign):
        calls[call.to_number].append(call)
    contacts = contacts_of(campaign)
    story = {phone: [(c.outcome, c.reason, c.created_at.time(), c.ended_at and c.ended_at.time()) for c in made]
             for phone, made in calls.items()}
    for phone, name in (("+14155552001", "Busy Bea"), ("+14155552002", "Busy Bob")):
        assert [(c.outcome, c.sip_code, c.from_number) for c in calls[phone]] == [("busy", 486, west)] * 3, story
        assert (contacts[name].state, contacts[name].attempts, contacts[name].last_outcome) == ("failed", 3, "busy")
        for before, after in zip(calls[phone], calls[phone][1:], strict=False):
            waited = (after.created_at - before.ended_at).total_seconds()
            assert 2 <= waited < 6, f"{name} called again {waited:.1f} s after a busy signal (policy: 2 s)"
    rita = calls["+12125553001"]
    assert [(c.outcome, c.reason, c.from_number) for c in rita] == [("no_answer", "ring_timeout", east)] * 2
    for call in rita:  # rang for the campaign's ring timeout, then we gave up (CANCEL)
        assert 14.5 <= (call.ended_at - call.started_at).total_seconds() < 18
    waited = (rita[1].created_at - rita[0].ended_at).total_seconds()
    assert 3 <= waited < 7, f"Rita called again {waited:.1f} s after no answer (policy: 3 s)"
    assert (contacts["Ringing Rita"].state, contacts["Ringing Rita"].attempts) == ("failed", 2)
    assert contacts["Ringing Rita"].last_outcome == "no_answer"


# --- calling window ---------------------------------------------------------------------------------------

ZONES = ["Pacific/Honolulu", "America/Los_Angeles", "America/New_York", "America/Sao_Paulo", "Europe/London",
         "Europe/Berlin", "Asia/Dubai", "Asia/Kolkata", "Asia/Shanghai", "Asia/Tokyo", "Australia/Sydney",
         "Pacific/Auckland", "Pacific/Kiritimati"]


def zone_where(now: dt.datetime, hours: range) -> str:
    return next(zone for zone in ZONES if now.astimezone(zoneinfo.ZoneInfo(zone)).hour in hours)


def test_contacts_outside_their_calling_window_wait_while_the_others_are_called(platform, trunks, campaigns_made):
    """Acme calls 09:00-17:00 in each contact's own time zone. Right now it is working hours for
    three of its contacts and the middle of the night for three others: the first three are called
    and answered, the night owls are not called at all and keep the campaign open; when their
    window opens (here: the campaign's hours are widened) they are called too."""
    trunks.carrier("Trunk", "uas_answer_bye.xml", "-d", "200")
    caller = trunks.number("+14155550123")
    now = timezone.now()
    day, night = zone_where(now, range(10, 16)), zone_where(now, range(0, 6))
    campaign = new_campaign(campaigns_made, "Daytime only", [
        ("+14155554001", "Day 1", day), ("+14155554002", "Day 2", day), ("+14155554003", "Day 3", day),
        ("+14155555001", "Night 1", night), ("+14155555002", "Night 2", night), ("+14155555003", "Night 3", night),
    ], caller_ids=[caller], cps=5, max_concurrent=5, window_start=dt.time(9), window_end=dt.time(17),
        weekdays=list(range(7)))

    def day_contacts_done():
        return all(cc.state == "done" for name, cc in contacts_of(campaign).items() if name.startswith("Day"))

    try:
        wait_until(day_contacts_done, 30, 0.25, what="the daytime contacts to be called")
    except AssertionError:
        raise AssertionError(platform_logs(platform)) from None
    time.sleep(3)  # several dialing rounds later, the night owls are still waiting
    assert sorted(call.to_number for call in calls_of(campaign)) == [
        "+14155554001", "+14155554002", "+14155554003"]
    night_owls = [cc for name, cc in contacts_of(campaign).items() if name.startswith("Night")]
    assert [(cc.state, cc.attempts) for cc in night_owls] == [("pending", 0)] * 3
    assert campaign_state(campaign) == Campaign.State.RUNNING

    with schema_context("acme"):
        Campaign.objects.filter(pk=campaign.pk).update(window_start=dt.time(0), window_end=dt.time(23, 59, 59))
    wait_completed(campaign, platform, 30)
    assert Counter(call.outcome for call in calls_of(campaign)) == {"answered": 6}
    assert {cc.state for cc in contacts_of(campaign).values()} == {"done"}


# --- status callbacks -------------------------------------------------------------------------------------


class SlowFailingReceiver(ThreadingHTTPServer):
    """Takes SLOW_S to answer anything, and answers 500 the first time it sees a callback."""

    SLOW_S = 2.0
    daemon_threads = True

    def __init__(self):
        super().__init__(("127.0.0.1", 0), _ReceiverHandler)
        self.seen: Counter = Counter()
        self.requests: list[tuple[dict, dict]] = []
        self.lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/acme/status"


class _ReceiverHandler(BaseHTTPRequestHandler):
    def do_POST(self):  # noqa: N802 (http.server's name)
        body = self.rfile.read(int(self.headers["Content-Length"]))
        form = {key: values[0] for key, values in urllib.parse.parse_qs(body.decode()).items()}
        time.sleep(self.server.SLOW_S)
        with self.server.lock:
            key = (form.get("CallSid"), form.get("CallbackEvent"))
            self.server.seen[key] += 1
            first = self.server.seen[key] == 1
            self.server.requests.append((form, {**dict(self.headers), "body": body}))
        self.send_response(500 if first else 204)
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def receiver():
    server = SlowFailingReceiver()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def test_a_slow_failing_callback_receiver_does_not_slow_the_campaign(platform, trunks, campaigns_made, receiver):
    """Acme's status-callback endpoint is having a bad day: it takes 2 s to answer and refuses every
    callback once (500). The campaign still dials its 30 contacts at its 10 calls per second; every
    callback of every call (initiated, ringing, answered, completed) is in the delivery log, failed
    once with the 500, then delivered on the retry, signed with Acme's webhook secret."""
    trunks.carrier("Trunk", "uas_answer_bye.xml", "-d", "200")
    caller = trunks.number("+14155550123")
    people = [(f"+1415556{1000 + i:04d}", f"Customer {i}", "UTC") for i in range(30)]
    campaign = new_campaign(campaigns_made, "Status callbacks", people, caller_ids=[caller], cps=10,
                            max_concurrent=30, status_callback=receiver.url, **ALL_DAY)

    wait_completed(campaign, platform, 30)
    calls = calls_of(campaign)
    assert len(calls) == 30 and {call.outcome for call in calls} == {"answered"}
    starts = sorted(call.started_at for call in calls)
    achieved = (len(starts) - 1) / (starts[-1] - starts[0]).total_seconds()
    assert 9.0 <= achieved <= 11.0, f"dialed at {achieved:.2f} calls per second (campaign: 10)"

    def all_delivered():
        with schema_context("acme"):
            deliveries = WebhookDelivery.objects.filter(call__campaign_id=campaign.pk)
            return deliveries.count() == 4 * 30 and not deliveries.filter(delivered_at__isnull=True).exists()

    try:
        wait_until(all_delivered, 45, 0.5, what="every status callback to be delivered")
    except AssertionError:
        raise AssertionError(platform_logs(platform)) from None
    with schema_context("acme"):
        deliveries = list(WebhookDelivery.objects.filter(call__campaign_id=campaign.pk))
    assert Counter(d.event for d in deliveries) == {"initiated": 30, "ringing": 30, "answered": 30, "completed": 30}
    assert {(d.attempts, d.status_code, d.url) for d in deliveries} == {(2, 204, receiver.url)}
    assert set(receiver.seen.values()) == {2}  # each refused once, then accepted
    secret = auth_token.current(Tenant.objects.get(schema_name="acme"))
    for _form, headers in receiver.requests:
        assert headers["X-Signature"] == webhooks.body_signature(secret, headers["X-Signature-Timestamp"],
                                                                 headers["body"])
