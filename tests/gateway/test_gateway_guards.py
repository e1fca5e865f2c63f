"""The gateway's own guards. It applies the outbound guard where it opens an agent's socket: a stream
URL that points inside (here 127.0.0.1, which this gateway's OUTBOUND_ALLOW does not cover) is never
connected to; the call ends at once as agent_connect_failed, the log says which rule refused it. And a
call it cannot bridge ends at once as media_error instead of staying up silent."""
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


def test_a_call_no_media_host_can_take_ends_at_once_with_a_reason(r, new_gateway, sipp):
    """A start message too large for the media link (the API caps custom parameters; this command
    comes straight to the gateway): the call is not left answered and silent for its max duration."""
    new_gateway("oversized-gw")
    uas = sipp("uas_media.xml", ["-m", "1"], subst={"PLAY": "", "CODEC": "PCMU", "CODEC_PT": 0})
    call_id = client.originate(r, {
        "from": "+15550001111", "to": "+15550002222", "ring_timeout": 10, "max_duration": 3600,
        "tenant": "acme", "account_sid": "AC" + "1" * 32, "legs": [leg(uas.uri_host, "c1")],
        "stream_url": "ws://127.0.0.1:1/agent", "custom_parameters": {"notes": "x" * 300_000}})
    evs = wait_final(r, call_id, timeout=20)
    assert evs[-1]["type"] == ev.COMPLETED and evs[-1]["reason"] == ev.REASON_MEDIA_ERROR, dumps(evs)
    assert evs[-1]["duration"] < 3
    assert uas.wait(10) == 0
