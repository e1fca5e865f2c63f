"""A call whose record committed while Redis was down never reached the gateway pool: after a grace
it ends as failed with reason not_placed (so its campaign contact is dialed again), exactly once, and
an originate of it arriving late is never dialed. A call the pool has queued is left alone."""
import datetime as dt
import json

import pytest
from django.utils import timezone
from django_tenants.utils import schema_context

from core import keys
from core.redis_client import get_redis
from telephony.calls import services
from telephony.calls.models import Call
from telephony.calls.recorder import record_event
from telephony.gateway import client
from telephony.gateway import events as gw
from telephony.gateway.store import Store

pytestmark = pytest.mark.django_db


def a_call_placed(minutes_ago: float) -> Call:
    with schema_context("acme"):
        call = Call.objects.create(from_number="+14155550100", to_number="+14155550199")
        Call.objects.filter(pk=call.pk).update(created_at=timezone.now() - dt.timedelta(minutes=minutes_ago))
    return call


def final_event_of(sid: str) -> dict:
    entries = get_redis().xrevrange(keys.EVENTS_STREAM, count=50)
    return next(e for _, e in gw.decode_entries(entries) if e["call_id"] == sid and gw.is_final(e))


def test_a_call_that_never_reached_the_gateways_ends_as_not_placed_once_and_is_never_dialed(tenant_a):
    lost = a_call_placed(minutes_ago=2)  # Redis was down when it committed: no originate
    queued = a_call_placed(minutes_ago=2)  # in the pool's queue, waiting for a free slot
    just_placed = a_call_placed(minutes_ago=0)  # its originate may still be on its way
    r = get_redis()
    client.originate(r, {"call_id": queued.sid, "tenant": "acme", "legs": [{"uri": "sip:x@127.0.0.1:9"}]})

    with schema_context("acme"):
        assert services.give_up_unplaced_calls() == 1
        assert services.give_up_unplaced_calls() == 0  # the beat runs again: nothing twice

    event = final_event_of(lost.sid)
    assert (event["type"], event["reason"], event["tenant"]) == (gw.FAILED, "not_placed", "acme")
    record_event(event, "acme")
    with schema_context("acme"):
        lost.refresh_from_db()
        assert (lost.status, lost.reason) == ("failed", "not_placed") and lost.ended_at is not None
        assert Call.objects.get(pk=queued.pk).status == Call.Status.QUEUED
        assert Call.objects.get(pk=just_placed.pk).status == Call.Status.QUEUED

    # the originate arrives after all (a slow client): the pool does not dial it, but does the queued one
    client.originate(r, {"call_id": lost.sid, "tenant": "acme", "legs": [{"uri": "sip:x@127.0.0.1:9"}]})
    popped = {json.loads(raw)["call_id"]: flag for raw, flag, _ in Store(r).pop_originates("gw-test", 100)}
    assert popped[lost.sid] == "done" and popped[queued.sid] == "ok"
    r.delete(keys.gw_calls_key("gw-test"))
