"""Far ends that stop being there, and calls that cannot be bridged, end at once with their own
reason instead of staying answered until their max duration."""
from __future__ import annotations

from telephony.gateway import client
from telephony.gateway import events as ev
from tests.gateway.gwhelpers import dumps, leg, wait_event, wait_final
from tests.gateway.test_media_bridge import (
    media_uas,
    pattern_frames,
    play_action,
    write_rtp_pcap,
)


def originate(r, legs, **kw):
    return client.originate(r, {"from": "+15550001111", "to": "+15550002222", "tenant": "acme",
                                "legs": legs, **kw})


def test_a_far_end_that_sends_no_rtp_is_hung_up_after_the_rtp_timeout(r, new_gateway, sipp):
    new_gateway("rtp-gw", ["--rtp-timeout", "2"])
    silent = sipp("uas_answer.xml", ["-m", "1"])  # answers and never sends RTP
    talking = sipp("uas_answer.xml", ["-m", "1", "-rtp_echo"])  # sends back the RTP pjsua sends it
    dead_call = originate(r, [leg(silent.uri_host, "c1")], max_duration=8)
    live_call = originate(r, [leg(talking.uri_host, "c1")], max_duration=8)

    evs = wait_final(r, dead_call, timeout=15)
    answered, dead = next(e for e in evs if e["type"] == ev.ANSWERED), evs[-1]
    assert dead["type"] == ev.COMPLETED and dead["reason"] == ev.REASON_RTP_TIMEOUT, dumps(dead)
    # never heard after its answer: it ended then (pjsua's count is read once a second), not 2 s later
    assert dead["hangup_by"] == ev.BY_PLATFORM and dead["duration"] < 1.0, dumps(dead)
    assert abs(dead["ts"] - answered["ts"] - dead["duration"]) < 0.1, dumps(dead)
    assert silent.wait(10) == 0 and "BYE sip:" in silent.messages()  # ended at the carrier too

    live = wait_final(r, live_call, timeout=15)[-1]
    assert live["reason"] == ev.REASON_MAX_DURATION, dumps(live)
    assert talking.wait(10) == 0


def test_a_call_whose_stream_cannot_be_set_up_ends_when_answered(r, new_gateway, sipp):
    new_gateway("bridge-gw")
    uas = sipp("uas_answer.xml", ["-m", "1"])
    # parameters far too big for the media host link: the call cannot be bridged
    call_id = originate(r, [leg(uas.uri_host, "c1")], stream_url="ws://127.0.0.1:9/agent",
                        custom_parameters={"blob": "x" * 300_000}, max_duration=3600)
    answered = wait_event(r, call_id, ev.ANSWERED)
    final = wait_final(r, call_id, timeout=10)[-1]
    assert final["type"] == ev.COMPLETED and final["reason"] == ev.REASON_BRIDGE_FAILED, dumps(final)
    assert final["ts"] - answered["ts"] < 1.0
    assert uas.wait(10) == 0 and "BYE sip:" in uas.messages()

    # the worker's other calls still bridge: the link to its media host survived
    uas2 = sipp("uas_answer.xml", ["-m", "1"])
    call2 = originate(r, [leg(uas2.uri_host, "c1")], stream_url="ws://127.0.0.1:9/agent")
    final2 = wait_final(r, call2, timeout=15)[-1]
    assert final2["reason"] == ev.REASON_AGENT_CONNECT_FAILED, dumps(final2)


def test_a_bridged_far_end_that_stops_sending_rtp_is_hung_up(r, new_gateway, sipp, agents, tmp_path):
    new_gateway("rtp-bridge-gw", ["--rtp-timeout", "2"])
    pcap = write_rtp_pcap(tmp_path / "one-second.pcap", pattern_frames(50))  # 1 s of audio, then nothing
    uas = media_uas(sipp, play_action(pcap))
    call_id = originate(r, [leg(uas.uri_host, "c1")], stream_url=agents.url("/record"), max_duration=30)
    evs = wait_final(r, call_id, timeout=15)
    done = evs[-1]
    answered = next(e for e in evs if e["type"] == ev.ANSWERED)
    assert done["type"] == ev.COMPLETED and done["reason"] == ev.REASON_RTP_TIMEOUT, dumps(evs)
    # it ended with its 1 s of audio, when the far end was last heard (not when the 2 s timeout fired)
    assert done["hangup_by"] == ev.BY_PLATFORM and 0.9 <= done["duration"] < 1.5, dumps(done)
    assert abs(done["ts"] - answered["ts"] - done["duration"]) < 0.1, dumps(done)
    assert done["rtp_packets_in"] == 50
    assert uas.wait(10) == 0 and "BYE sip:" in uas.messages()
    assert agents.conn_for(call_id).closed.wait(5)  # the agent got its `stop`
