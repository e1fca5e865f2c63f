"""The gateway's own guards. It applies the outbound guard where it opens an agent's socket: a stream
URL that points inside (here 127.0.0.1, which this gateway's OUTBOUND_ALLOW does not cover) is never
connected to; the call ends at once as agent_connect_failed, the log says which rule refused it. (A call
it cannot bridge at all ends at once as bridge_failed: tests/gateway/test_far_end.py.)"""
from __future__ import annotations

import socket

from telephony.gateway import client
from telephony.gateway import events as ev
from tests.gateway import gwhelpers
from tests.gateway.gwhelpers import dumps, leg, wait_final


def test_a_stream_url_the_gateway_may_not_reach_is_never_connected(r, new_gateway, sipp, monkeypatch):
    monkeypatch.setitem(gwhelpers.ENV, "OUTBOUND_ALLOW", "127.0.0.1:1")  # only port 1 on this machine
    gateway = new_gateway("guarded-gw")
    internal = socket.socket()  # the internal service the stream URL points at: counts connections
    internal.bind(("127.0.0.1", 0))
    internal.listen(5)
    internal.settimeout(0.5)
    try:
        uas = sipp("uas_media.xml", ["-m", "1"], subst={"PLAY": "", "CODEC": "PCMU", "CODEC_PT": 0})
        call_id = client.originate(r, {
            "from": "+15550001111", "to": "+15550002222", "ring_timeout": 10, "max_duration": 60,
            "tenant": "acme", "account_sid": "AC" + "1" * 32, "legs": [leg(uas.uri_host, "c1")],
            "stream_url": f"ws://127.0.0.1:{internal.getsockname()[1]}/agent"})
        evs = wait_final(r, call_id)
        assert evs[-1]["type"] == ev.COMPLETED and evs[-1]["reason"] == ev.REASON_AGENT_CONNECT_FAILED, dumps(evs)
        assert uas.wait(10) == 0
        try:
            internal.accept()
            connected = True
        except TimeoutError:
            connected = False
        assert not connected
    finally:
        internal.close()
    gateway.stop()
    assert "stream_url refused: 127.0.0.1 is a loopback address" in gateway.log_path.read_text()

