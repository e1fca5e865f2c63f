"""A campaign's fallback message: the agent cannot be reached, so the callee hears the message, then
the call ends with the agent's failure as its reason. The callee's RTP lands on a socket of this
test (SIPp does the SIP), so we check what was actually played, frame by frame, and that it came
as one RTP stream."""
from media import fallback
from telephony.gateway import events as ev
from tests.gateway.gwhelpers import dumps, free_udp_port, leg, wait_final
from tests.gateway.test_media_bridge import find_run, originate, pattern_frames


def test_an_unreachable_agent_gets_the_fallback_message_played_then_the_call_ends(r, gateway, callee):
    message = pattern_frames(50, seed=7)  # one second of recognisable audio
    r.set("fallback:audio:test-message", b"".join(message))

    call_id = originate(r, [leg(callee.uri_host, "c1")], stream_url=f"ws://127.0.0.1:{free_udp_port()}/nobody",
                        fallback_audio_key="fallback:audio:test-message")
    packets = callee.hear(15)
    heard, sources = [packet[12:] for packet in packets], {packet[8:12] for packet in packets}

    evs = wait_final(r, call_id)
    assert evs[-1]["reason"] == ev.REASON_AGENT_CONNECT_FAILED, dumps(evs)
    assert evs[-1]["hangup_by"] == ev.BY_PLATFORM and evs[-1]["duration"] >= 1.0
    find_run(b"".join(heard), message)  # the whole message, in order, unaltered
    assert len(sources) == 1  # one RTP stream: pjsua's own stream of the call stays silent
    assert callee.wait(10) == 0


def test_fallback_text_is_spoken_once_and_kept_under_its_hash(r):
    key = fallback.ensure_stored(r, "Sorry, our assistant is unavailable. We will call you back.")
    audio = r.get(key)
    assert key == fallback.audio_key("Sorry, our assistant is unavailable. We will call you back.")
    assert 2 * 8000 < len(audio) < 10 * 8000  # a few seconds of 8 kHz mu-law
    assert len(set(audio)) > 50  # speech, not silence
    assert fallback.ensure_stored(r, "   ") == ""
