"""Redis dies under a supervised pool with answered calls and comes back empty on the same address
(or hangs, and resumes):
the calls keep going, those that end during the outage are recorded when Redis is back with their
true durations, those still up are known to Redis again (and keep their carrier slots), and no
worker is killed for it."""
from __future__ import annotations

import signal
import time
import uuid

import pytest

from core import keys
from telephony.gateway import client
from telephony.gateway import events as ev
from tests.gateway.gwhelpers import SupervisorProc, dumps, leg, wait_event, wait_final, wait_for

POOL = ["outage-0", "outage-1"]


@pytest.mark.parametrize("outage", ["killed and restarted empty", "frozen (SIGSTOP) then resumed"])
def test_calls_ride_out_a_redis_outage(outage, redis_server, r, tmp_path, sipp):
    sup = SupervisorProc(redis_server.url, tmp_path / "supervisor.log",
                         ["--processes", "2", "--node", "outage", "--media-hosts", "0",
                          "--base-rtp-port", "24000", "--rtp-ports-per-worker", "100"])
    try:
        wait_for(lambda: all(r.exists(keys.gw_alive_key(g)) for g in POOL), 20, what="pool heartbeats")
        pids = {g: int(r.hget(keys.gw_key(g), "pid")) for g in POOL}
        carrier = f"outage-{uuid.uuid4().hex[:6]}"
        short_uas = sipp("uas_answer_bye.xml", ["-m", "3", "-d", "4000"])  # hangs up 4 s after the answer
        long_uas = sipp("uas_answer.xml", ["-m", "1"])  # waits for our BYE
        short = [client.originate(r, {"to": "+15550002222", "tenant": "acme",
                                      "legs": [leg(short_uas.uri_host, carrier, max_concurrent=10)]})
                 for _ in range(3)]
        long = client.originate(r, {"to": "+15550002222", "tenant": "acme",
                                    "legs": [leg(long_uas.uri_host, carrier, max_concurrent=10)]})
        answered = {c: wait_event(r, c, ev.ANSWERED)["ts"] for c in [*short, long]}
        holder = {c: client.call_state(r, c)["gateway"] for c in [*short, long]}

        down_at = time.time()
        if outage.startswith("killed"):
            redis_server.process.kill()  # no save: it comes back empty
            redis_server.process.wait()
            time.sleep(6)  # the short calls end meanwhile, at the carrier's BYE
            redis_server.start()
        else:  # connections hang instead of being refused
            redis_server.process.send_signal(signal.SIGSTOP)
            time.sleep(6)
            redis_server.process.send_signal(signal.SIGCONT)

        for call_id in short:
            final = wait_final(r, call_id, timeout=15)[-1]
            assert final["type"] == ev.COMPLETED and final["reason"] == ev.REASON_REMOTE_HANGUP, dumps(final)
            assert final["duration"] == pytest.approx(4.0, abs=0.7)  # the carrier's 4 s, not the outage's
            assert final["ts"] == pytest.approx(answered[call_id] + final["duration"], abs=0.05)
            assert final["ts"] < down_at + 6
        assert short_uas.wait(10) == 0

        # the long call is up: its gateway has told the new Redis about it again
        def known_again():
            state = client.call_state(r, long)
            return (state.get("state") == "answered" and state.get("gateway") == holder[long]
                    and r.sismember(keys.gw_calls_key(holder[long]), long)
                    and r.zscore(keys.carrier_calls_key(carrier), long) is not None)
        wait_for(known_again, 5, what="the long call re-asserted")
        assert client.hangup(r, long) == holder[long]
        final = wait_final(r, long, timeout=10)[-1]
        assert final["reason"] == ev.REASON_HANGUP_REQUESTED, dumps(final)
        assert long_uas.wait(10) == 0

        assert r.zcard(keys.carrier_calls_key(carrier)) == 0  # every slot given back, the buffered ones too
        assert {g: int(r.hget(keys.gw_key(g), "pid")) for g in POOL} == pids  # no worker killed
        assert "heartbeat stale" not in sup.text()

        # and the pool takes new calls
        again = sipp("uas_answer_bye.xml", ["-m", "2", "-d", "200"])
        calls = [client.originate(r, {"to": "+15550002222", "legs": [leg(again.uri_host, carrier)]}) for _ in range(2)]
        assert all(wait_final(r, c)[-1]["type"] == ev.COMPLETED for c in calls)
    finally:
        sup.stop()
