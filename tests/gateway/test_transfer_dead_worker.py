"""A gateway worker killed with a transferred call on it: the supervisor closes out the call and its
transfer leg alike, the leg's final event still naming its call (so its Transfer record ends too).
A module of its own: its own Redis, where no other gateway takes the call."""
from __future__ import annotations

import os
import signal

from core import keys
from telephony.gateway import client
from telephony.gateway import events as ev
from tests.gateway.gwhelpers import SupervisorProc, dumps, leg, wait_event, wait_final, wait_for
from tests.gateway.test_media_bridge import originate
from tests.gateway.test_transfer import PERSON


def test_a_killed_worker_closes_out_the_call_and_its_transfer_leg(r, redis_server, tmp_path, sipp, agents):
    pool = SupervisorProc(redis_server.url, tmp_path / "supervisor.log",
                          ["--processes", "1", "--node", "xfer", "--media-hosts", "1",
                           "--base-rtp-port", "26000", "--rtp-ports-per-worker", "100"])
    try:
        wait_for(lambda: r.exists(keys.gw_alive_key("xfer-0")), 20, what="pool heartbeat")
        callee_sipp = sipp("uas_media.xml", ["-m", "1"], subst={"PLAY": "", "CODEC": "PCMU", "CODEC_PT": 0})
        person_sipp = sipp("uas_media.xml", ["-m", "1"], subst={"PLAY": "", "CODEC": "PCMU", "CODEC_PT": 0})
        call_id = originate(r, [leg(callee_sipp.uri_host, "c1")], stream_url=agents.url("/record"))
        agents.conn_for(call_id)
        leg_id = f"{call_id}-t1"
        assert client.transfer(r, {
            "call_id": call_id, "transfer_sid": leg_id, "mode": "cold", "on_fail": "agent",
            "leg": {"call_id": leg_id, "from": "+15550001111", "to": PERSON, "ring_timeout": 10, "max_duration": 60,
                    "tenant": "acme", "legs": [leg(person_sipp.uri_host, "c1", number=PERSON)]}}) == "xfer-0"
        wait_event(r, call_id, ev.TRANSFERRED)
        os.kill(int(r.hget(keys.gw_key("xfer-0"), "pid")), signal.SIGKILL)
        call_final, leg_final = wait_final(r, call_id)[-1], wait_final(r, leg_id)[-1]
        assert (call_final["type"], call_final["reason"]) == (ev.COMPLETED, ev.REASON_GATEWAY_DIED), dumps(call_final)
        assert (leg_final["type"], leg_final["reason"], leg_final["transfer_of"]) == (
            ev.COMPLETED, ev.REASON_GATEWAY_DIED, call_id), dumps(leg_final)
    finally:
        pool.stop()
