"""A worker's own lifecycle: clean SIGTERM with calls up, heartbeat keys."""
from __future__ import annotations

import socket

from core import keys
from telephony.gateway import client
from telephony.gateway import events as ev
from tests.gateway.gwhelpers import dumps, leg, types, wait_event, wait_final


def test_heartbeat(r, new_gateway):
    gw = new_gateway("life-hb")
    h = {k.decode(): v.decode() for k, v in r.hgetall(keys.gw_key(gw.gateway_id)).items()}
    assert int(h["pid"]) == gw.proc.pid and h["node"] == socket.gethostname()
    assert int(h["capacity"]) == 4 and int(h["active"]) == 0 and int(h["sip_port"]) == gw.sip_port
    assert float(h["updated_at"]) >= float(h["started_at"])
    assert 0 < r.ttl(keys.gw_alive_key(gw.gateway_id)) <= 3
    assert gw.stop() == 0
    assert not r.exists(keys.gw_alive_key(gw.gateway_id))
    assert r.hget(keys.gw_key(gw.gateway_id), "state") == b"stopped"


def test_sigterm_hangs_up_calls_and_exits_0(r, new_gateway, sipp):
    gw = new_gateway("life-term")
    answering = sipp("uas_answer.xml", ["-m", "1"])
    ringing = sipp("uas_ring_noanswer.xml", ["-m", "1"])
    up = client.originate(r, {"to": "+15550002222", "legs": [leg(answering.uri_host, "c1")]})
    ring = client.originate(r, {"to": "+15550002222", "legs": [leg(ringing.uri_host, "c1")], "ring_timeout": 60})
    wait_event(r, up, ev.ANSWERED)
    wait_event(r, ring, ev.RINGING)
    assert gw.stop() == 0
    up_evs, ring_evs = wait_final(r, up, timeout=1), wait_final(r, ring, timeout=1)
    assert types(up_evs)[-1] == "completed", dumps(up_evs)
    assert up_evs[-1]["reason"] == ev.REASON_SHUTDOWN and up_evs[-1]["hangup_by"] == ev.BY_PLATFORM
    assert types(ring_evs)[-2:] == ["leg_failed", "failed"], dumps(ring_evs)
    assert ring_evs[-1]["outcome"] == ev.OUTCOME_SHUTDOWN
    assert answering.wait(10) == 0 and ringing.wait(10) == 0  # BYE and CANCEL reached the carriers
    assert r.scard(keys.gw_calls_key(gw.gateway_id)) == 0
