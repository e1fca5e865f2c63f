"""The worker's outbox: what waits for Redis goes out in order, in one round trip up to a script."""
from __future__ import annotations

import argparse

from core import keys
from telephony.gateway import events as ev
from telephony.gateway.worker import Session, Worker


def test_outbox_in_order_in_one_round_trip_and_scripts_redis_lost(redis_server, r):
    worker = Worker(argparse.Namespace(gateway_id="gw-outbox", redis_url=redis_server.url, capacity=4,
                                       tsx_timeout=8.0))
    trips = []
    roundtrip = worker.r._roundtrip
    worker.r._roundtrip = lambda commands: trips.append(len(commands)) or roundtrip(commands)
    r.delete(keys.EVENTS_STREAM)
    s = Session(call_id="c-outbox", direction=ev.DIRECTION_OUTBOUND)
    worker.emit(s, ev.INITIATED, state={"state": "initiated"})
    worker.save_state(s, dialog={"call_id": "x"})
    worker.emit(s, ev.ANSWERED, state={"state": "answered"})
    worker.emit(s, ev.COMPLETED, outcome=ev.OUTCOME_ANSWERED)
    r.script_flush()  # as a Redis restarted empty: the final event's script must be loaded again
    worker.flush_outbox()
    assert worker.redis_ok and not worker.outbox
    assert trips[0] == 6  # 2 events and their fields, the dialog, the final event's script
    types = [ev.decode(fields)["type"] for _, fields in r.xrange(keys.EVENTS_STREAM)]
    assert types == [ev.INITIATED, ev.ANSWERED, ev.COMPLETED]
    call = r.hgetall(keys.call_key("c-outbox"))
    assert call[b"final"] == b"completed" and call[b"state"] == b"ended" and call[b"dialog"] == b'{"call_id": "x"}'
