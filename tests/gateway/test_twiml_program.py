"""TwiML run by the media host: the callee answers and hears what the program says, verb after verb.

SIPp does the SIP of the callee; its RTP lands on a socket of this test, so we check what was really
played: a `<Play>` file served by the tenant's web server (mu-law WAV) arrives intact, `<Say>` is
speech, `<Pause>` is silence, and the call ends at `<Hangup/>`. A call placed for a `Url` waits, bridged,
for the program the platform sends once it fetched the document, and a `<Redirect>` comes back as an
event naming the next document.
"""
import http.server
import struct
import threading

import pytest

from telephony.gateway import client
from telephony.gateway import events as ev
from tests.gateway.gwhelpers import dumps, leg, types, wait_event, wait_final
from tests.gateway.test_media_bridge import (
    AgentServer,
    find_run,
    media_uas,
    originate,
    pattern_frames,
    play_action,
    write_rtp_pcap,
)

SILENCE = 0xFF


def mulaw_wav(audio: bytes) -> bytes:
    fmt = struct.pack("<HHIIHH", 7, 1, 8000, 8000, 1, 8)
    return (b"RIFF" + struct.pack("<I", 4 + 8 + len(fmt) + 8 + len(audio)) + b"WAVE"
            + b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", len(audio)) + audio)


@pytest.fixture
def tenant_site():
    """The tenant's web server, serving one WAV file at /greeting.wav."""
    files = {}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            body = files.get(self.path)
            self.send_response(200 if body else 404)
            self.send_header("Content-Type", "audio/wav")
            self.send_header("Content-Length", str(len(body or b"")))
            self.end_headers()
            self.wfile.write(body or b"")

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield files, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def frames(audio: bytes) -> list[bytes]:
    return [audio[i:i + 160] for i in range(0, len(audio) - 159, 160)]


def is_silence(frame: bytes) -> bool:
    return frame.count(SILENCE) == len(frame)


def test_the_callee_hears_play_then_pause_then_say_and_the_call_ends_at_hangup(r, gateway, callee, tenant_site):
    files, site = tenant_site
    greeting = pattern_frames(50, seed=3)  # one second the callee must hear intact
    files["/greeting.wav"] = mulaw_wav(b"".join(greeting))
    program = [{"verb": "play", "url": f"{site}/greeting.wav", "loop": 2},
               {"verb": "pause", "seconds": 1},
               {"verb": "say", "text": "Your appointment is confirmed.", "voice": "en-us"},
               {"verb": "hangup"}]
    call_id = originate(r, [leg(callee.uri_host, "c1")], twiml=program)

    heard = b"".join(packet[12:] for packet in callee.hear())
    evs = wait_final(r, call_id)
    assert evs[-1]["type"] == ev.COMPLETED and evs[-1]["reason"] == ev.REASON_TWIML_HANGUP, dumps(evs)
    assert evs[-1]["hangup_by"] == ev.BY_PLATFORM
    start = find_run(heard, greeting + greeting)  # played twice (loop="2"), back to back
    after = frames(heard[start + 2 * len(b"".join(greeting)):])
    assert all(is_silence(f) for f in after[:45])  # <Pause length="1">
    spoken = [f for f in after[50:] if not is_silence(f)]
    assert len(spoken) > 50  # over a second of speech, then the call ended
    assert evs[-1]["duration"] >= 3.5
    assert callee.wait(10) == 0


def test_a_call_waits_for_its_url_twiml_and_a_redirect_asks_for_the_next_document(r, gateway, callee, tenant_site):
    files, site = tenant_site
    greeting = pattern_frames(25, seed=9)
    files["/greeting.wav"] = mulaw_wav(b"".join(greeting))
    call_id = originate(r, [leg(callee.uri_host, "c1")], twiml_at_answer=True)
    wait_event(r, call_id, ev.ANSWERED)

    # what the platform does once it fetched the call's Url
    assert client.run_twiml(r, call_id, [{"verb": "play", "url": f"{site}/greeting.wav"},
                                         {"verb": "redirect", "url": f"{site}/next", "method": "GET"}]) == "test-gw-1"
    redirect = wait_event(r, call_id, ev.TWIML_REDIRECT)
    assert (redirect["url"], redirect["method"]) == (f"{site}/next", "GET")
    client.run_twiml(r, call_id, [{"verb": "hangup"}])  # the next document

    heard = b"".join(packet[12:] for packet in callee.hear())
    evs = wait_final(r, call_id)
    assert evs[-1]["reason"] == ev.REASON_TWIML_HANGUP, dumps(evs)
    find_run(heard, greeting)
    assert callee.wait(10) == 0


def test_a_pause_before_connect_delays_the_stream_and_a_lone_hangup_ends_the_call_at_once(r, gateway, sipp):
    agents = AgentServer()
    try:
        uas = media_uas(sipp, echo=True)
        call_id = originate(r, [leg(uas.uri_host, "c1")], twiml=[
            {"verb": "pause", "seconds": 1}, {"verb": "connect", "url": agents.url("/record"), "params": {"lead": "7"}}])
        started = wait_event(r, call_id, ev.STREAM_STARTED)
        assert started["ai_connect_ms"] >= 1000
        conn = agents.conn_for(call_id)
        assert conn.msgs[1]["start"]["customParameters"]["lead"] == "7"
        client.hangup(r, call_id)
        wait_final(r, call_id)
        assert uas.wait(10) == 0

        uas = media_uas(sipp)
        call_id = originate(r, [leg(uas.uri_host, "c1")], twiml=[{"verb": "hangup"}])
        evs = wait_final(r, call_id)
        assert evs[-1]["reason"] == ev.REASON_TWIML_HANGUP and ev.STREAM_STARTED not in types(evs), dumps(evs)
        assert evs[-1]["duration"] < 1
        assert uas.wait(10) == 0
    finally:
        agents.stop()


def test_a_listen_only_fork_hears_the_callee_while_the_program_goes_on(r, gateway, sipp, agents, tmp_path):
    said = pattern_frames(100, seed=5)  # what the callee says for two seconds from the answer
    uas = media_uas(sipp, play_action(write_rtp_pcap(tmp_path / "callee.pcap", said)))
    call_id = originate(r, [leg(uas.uri_host, "c1")], twiml=[
        {"verb": "fork", "url": agents.url("/record"), "params": {"purpose": "notes"}},
        {"verb": "pause", "seconds": 2}, {"verb": "unfork"}, {"verb": "pause", "seconds": 1}, {"verb": "hangup"}])
    listener = agents.conn_for(call_id)
    assert listener.msgs[1]["start"]["customParameters"]["purpose"] == "notes"
    assert listener.closed.wait(10) and listener.msgs[-1]["event"] == "stop"  # <Stop><Stream>
    evs = wait_final(r, call_id)
    assert evs[-1]["reason"] == ev.REASON_TWIML_HANGUP and evs[-1]["duration"] >= 2.9, dumps(evs)
    assert ev.STREAM_STARTED not in types(evs)  # a fork is not the call's agent stream
    find_run(listener.payload(), said[25:75])  # a second of it, intact (the fork starts at the first tick)
    assert uas.wait(10) == 0
