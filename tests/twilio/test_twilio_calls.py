"""Acme's Twilio code reads and drives its calls with Twilio's client unchanged: the Calls list with
Twilio's filters and paging (list() and stream() follow next_page_uri across pages), create, fetch and
update answered with Twilio's fields and values, the account resource, and Twilio's error bodies with
their codes.

Real parts: daphne serving the API, Twilio's client. Calls are only queued (no gateway runs here).
"""
import datetime as dt
import json

import pytest
from django.utils import timezone
from django_tenants.utils import schema_context
from twilio.base.exceptions import TwilioException, TwilioRestException

from telephony.calls.models import Call
from tests.twilio_support import ACME_NUMBER, CALLEE, STREAM_TWIML, acme_client, twilio_client

pytestmark = pytest.mark.usefixtures("committed")


def past_calls(count: int, **fields) -> list[str]:
    """Calls Acme made earlier (recorded as the gateways leave them), oldest first."""
    start = timezone.now() - dt.timedelta(days=3)
    sids = []
    with schema_context("acme"):
        for n in range(count):
            call = Call.objects.create(from_number=ACME_NUMBER, to_number=CALLEE, status="completed",
                                       outcome="answered", **fields)
            when = start + dt.timedelta(minutes=n)
            Call.objects.filter(pk=call.pk).update(created_at=when, started_at=when, answered_at=when,
                                                   ended_at=when + dt.timedelta(seconds=30), duration_s=30)
            sids.append(call.sid)
    return sids


def test_list_follows_pages_newest_first_and_stream_stops_at_its_limit(acme, web):
    sids = past_calls(7)
    client = acme_client(acme, web)

    listed = client.calls.list(page_size=3)  # three pages, fetched through next_page_uri
    assert [call.sid for call in listed] == sids[::-1]
    assert listed[0].status == "completed" and listed[0].direction == "outbound-api"
    assert listed[0].duration == "30" and listed[0].price is None

    assert len(list(client.calls.stream(page_size=2, limit=5))) == 5
    first = client.calls.page(page_size=3)
    assert len(list(first)) == 3 and first.next_page_url and "PageToken=PA" in first.next_page_url
    last = first.next_page().next_page()
    assert [call.sid for call in last] == [sids[0]] and last.next_page() is None


def test_list_filters_by_status_to_from_and_start_time(acme, web):
    old = past_calls(2)
    client = acme_client(acme, web)
    queued = client.calls.create(to="+14155550123", from_=ACME_NUMBER, twiml=STREAM_TWIML)

    assert [c.sid for c in client.calls.list(status="queued")] == [queued.sid]
    assert [c.sid for c in client.calls.list(to="+14155550123")] == [queued.sid]
    assert {c.sid for c in client.calls.list(from_=ACME_NUMBER, status="completed")} == set(old)
    three_days_ago = (timezone.now() - dt.timedelta(days=3)).date()
    assert {c.sid for c in client.calls.list(start_time=three_days_ago)} == set(old)
    assert {c.sid for c in client.calls.list(start_time_after=three_days_ago + dt.timedelta(days=1))} == set()
    assert {c.sid for c in client.calls.list(start_time_before=three_days_ago)} == set(old)


def test_create_fetch_and_update_answer_as_twilio_does(acme, web):
    client = acme_client(acme, web)
    call = client.calls.create(to=CALLEE, from_=ACME_NUMBER, twiml=STREAM_TWIML)
    assert call.status == "queued" and call.direction == "outbound-api" and call.api_version == "2010-04-01"
    assert call.start_time is None and call.answered_by is None and call.price is None
    assert isinstance(call.date_created, dt.datetime)  # the client parsed Twilio's RFC 2822 timestamp

    fetched = client.calls(call.sid).fetch()
    assert fetched.sid == call.sid and fetched.to == CALLEE and fetched._from == ACME_NUMBER

    assert client.calls(call.sid).update(status="completed").status == "completed"


def test_the_account_is_fetched_by_its_sid(acme, web):
    account = acme_client(acme, web).api.accounts(acme.account_sid).fetch()
    assert account.sid == acme.account_sid and account.status == "active" and account.friendly_name == "Acme"


@pytest.mark.parametrize("request_, status, code", [
    (lambda client, acme: client.calls.create(to="12", from_=ACME_NUMBER, twiml=STREAM_TWIML), 400, 21201),
    (lambda client, acme: client.calls.create(to=CALLEE, from_=ACME_NUMBER, twiml="<Response><Dial>+14155550177</Dial></Response>"),
     400, 12100),
    (lambda client, acme: client.calls("CA" + "0" * 32).fetch(), 404, 20404),
    (lambda client, acme: client.api.accounts("AC" + "0" * 32).fetch(), 404, 20404),
    (lambda client, acme: client.calls("CA" + "0" * 32).delete(), 405, 20004),
])
def test_faults_are_twilios_errors_with_their_codes(acme, web, request_, status, code):
    with pytest.raises(TwilioRestException) as fault:
        request_(acme_client(acme, web), acme)
    assert fault.value.status == status and fault.value.code == code, fault.value.msg


@pytest.mark.parametrize("fields, named", [
    ({"caller_id": "+14155550100"}, "CallerId"),
    ({"trim": "trim-silence"}, "Trim"),
    ({"application_sid": "AP" + "0" * 32}, "ApplicationSid"),
])
def test_what_the_platform_does_not_do_is_a_400_naming_it_not_silently_ignored(acme, web, fields, named):
    with pytest.raises(TwilioRestException) as fault:
        acme_client(acme, web).calls.create(to=CALLEE, from_=ACME_NUMBER, twiml=STREAM_TWIML, **fields)
    assert fault.value.status == 400 and fault.value.code == 20001 and named in fault.value.msg
    with schema_context("acme"):
        assert not Call.objects.filter(from_number=ACME_NUMBER).exists()


def list_fault(request) -> tuple[int, dict]:
    """Twilio's client reports a list page it could not fetch as TwilioException with the response."""
    with pytest.raises(TwilioException) as fault:
        request()
    response = fault.value.args[1]
    return response.status_code, json.loads(response.text)


def test_list_faults_are_twilios_errors_too(acme, web):
    status, body = list_fault(lambda: twilio_client(acme.account_sid, "f" * 32, None, web).calls.list())
    assert status == 401 and body["code"] == 20003 and body["status"] == 401

    status, body = list_fault(lambda: acme_client(acme, web).calls.list(status="sleeping"))
    assert status == 400 and body["code"] == 20001 and "sleeping" in body["message"]
    status, body = list_fault(lambda: acme_client(acme, web).calls.list(page_size=5000))
    assert status == 400 and "PageSize" in body["message"]


def test_an_address_locked_out_for_failed_logins_gets_429_with_code_20429(acme, web, settings):
    from core import keys
    from core.redis_client import get_redis

    # This address has failed to log in as often as allowed (as test_security_api proves it counts).
    get_redis().set(keys.api_key_failures("127.0.0.1"), settings.API_KEY_FAILURE_LIMIT, ex=60)
    try:
        with pytest.raises(TwilioRestException) as fault:
            acme_client(acme, web).calls.create(to=CALLEE, from_=ACME_NUMBER, twiml=STREAM_TWIML)
        assert fault.value.status == 429 and fault.value.code == 20429
    finally:
        get_redis().delete(keys.api_key_failures("127.0.0.1"))


def test_an_unknown_twilio_path_is_a_twilio_404(acme, web):
    import urllib.error
    import urllib.request

    with pytest.raises(urllib.error.HTTPError) as fault:
        urllib.request.urlopen(f"http://127.0.0.1:{web}/2010-04-01/Accounts/{acme.account_sid}/Queues.json", timeout=10)
    body = json.loads(fault.value.read())
    assert fault.value.code == 404 and body["code"] == 20404 and body["status"] == 404
