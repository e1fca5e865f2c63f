"""The supervised pool: crash recovery (calls closed out, worker restarted) and pull-model capacity."""
from __future__ import annotations

import os
import signal
import time

import pytest

from core import keys
from telephony.gateway import client
from telephony.gateway import events as ev
from tests.gateway.gwhelpers import SupervisorProc, dumps, leg, types, wait_event, wait_final, wait_for


@pytest.fixture
def pool(redis_server, tmp_path, r):
    sup = SupervisorProc(redis_server.url, tmp_path / "supervisor.log",
                         ["--processes", "2", "--node", "sup", "--base-rtp-port", "26000",
                          "--rtp-ports-per-worker", "100"])
    ids = ["sup-0", "sup-1"]
    wait_for(lambda: all(r.exists(keys.gw_alive_key(g)) for g in ids), 20, what="pool heartbeats")
    yield ids
    text = sup.stop()
    assert "sup-0 | " in text and "sup-1 | " in text  # worker lines carry their gateway id
    assert not any(r.exists(keys.gw_alive_key(g)) for g in ids)


def test_killed_worker_calls_closed_out_and_worker_restarted(r, pool, sipp):
    uas = sipp("uas_answer.xml")
    call_id = client.originate(r, {"from": "+15550001111", "to": "+15550002222", "legs": [leg(uas.uri_host, "c1")],
                                   "tenant": "acme"})
    wait_event(r, call_id, ev.ANSWERED)
    gid = client.call_state(r, call_id)["gateway"]
    old_pid = int(r.hget(keys.gw_key(gid), "pid"))
    os.kill(old_pid, signal.SIGKILL)
    killed_at = time.time()
    evs = wait_final(r, call_id, timeout=10)
    final = evs[-1]
    assert types(evs) == ["initiated", "leg_started", "ringing", "answered", "completed"], dumps(evs)
    assert final["reason"] == ev.REASON_GATEWAY_DIED and final["hangup_by"] == ev.BY_PLATFORM
    assert final["gateway_id"] == gid and final["tenant"] == "acme"
    assert final["ts"] - killed_at < 10
    assert r.scard(keys.gw_calls_key(gid)) == 0
    assert client.call_state(r, call_id)["final"] == ev.COMPLETED

    def restarted():
        pid = r.hget(keys.gw_key(gid), "pid")
        return r.exists(keys.gw_alive_key(gid)) and pid and int(pid) != old_pid
    wait_for(restarted, 20, what="worker restart")
    status = {g["gateway_id"]: g for g in client.pool_status(r)}
    assert status[gid]["restarts"] == 1
    assert client.pool_capacity(r)[0] == 8

    # the restarted worker takes calls again
    uas2 = sipp("uas_answer_bye.xml", ["-d", "100"])
    ids = [client.originate(r, {"to": "+15550002222", "legs": [leg(uas2.uri_host, "c1")]}) for _ in range(6)]
    finals = [wait_final(r, c)[-1] for c in ids]
    assert all(f["type"] == "completed" for f in finals), dumps(finals)


def test_pull_model_honours_capacity(r, pool, sipp):
    uas = sipp("uas_answer_bye.xml", ["-d", "1000"])
    ids = [client.originate(r, {"to": "+15550002222", "legs": [leg(uas.uri_host, "c1")]}) for _ in range(12)]
    per_call = {c: wait_final(r, c, timeout=40) for c in ids}
    assert all(evs[-1]["type"] == "completed" for evs in per_call.values()), dumps(per_call)
    # concurrency over time, from each call's leg_started .. final event
    edges = []
    for evs in per_call.values():
        edges.append((next(e["ts"] for e in evs if e["type"] == "leg_started"), 1))
        edges.append((evs[-1]["ts"], -1))
    level = peak = 0
    for _, d in sorted(edges, key=lambda x: (x[0], x[1])):
        level += d
        peak = max(peak, level)
    assert peak <= 8, peak
    gateways = {evs[-1]["gateway_id"] for evs in per_call.values()}
    assert gateways == set(pool)


def test_stuck_worker_is_killed_and_restarted(r, pool, sipp):
    gid = pool[0]
    old_pid = int(r.hget(keys.gw_key(gid), "pid"))
    before = {g["gateway_id"]: g for g in client.pool_status(r)}[gid]["restarts"]
    os.kill(old_pid, signal.SIGSTOP)  # alive but its loop is frozen: the heartbeat lapses
    try:
        def restarted():
            pid = r.hget(keys.gw_key(gid), "pid")
            return r.exists(keys.gw_alive_key(gid)) and pid and int(pid) != old_pid
        wait_for(restarted, 20, what="stuck worker replaced")
    finally:
        try:
            os.kill(old_pid, signal.SIGCONT)
        except ProcessLookupError:
            pass
    assert {g["gateway_id"]: g for g in client.pool_status(r)}[gid]["restarts"] == before + 1
    with pytest.raises(ProcessLookupError):
        os.kill(old_pid, 0)
