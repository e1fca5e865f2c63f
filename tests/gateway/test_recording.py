"""A recorded bridged call: SIPp answers (SIP) and this test is the callee's phone line (RTP). The callee
says something (one second of a 400 Hz tone), then the agent answers (one second of 1000 Hz). At the end
of the call the media host has written a stereo WAV to the gateway's spool directory: the callee on
the left, the agent on the right, each tone on its own channel only, one second long, and the agent's
tone after the callee's by the time that passed between them on the line."""
from __future__ import annotations

import array
import math
import re
import time
import wave

from media import codec
from telephony.gateway import client
from telephony.gateway import events as ev
from tests.gateway.gwhelpers import dumps, leg, wait_event, wait_final, wait_for
from tests.gateway.test_amd import PhoneLine, answered_by_sipp
from tests.gateway.test_media_bridge import originate

SILENCE = b"\xff" * 160
BLOCK = 160  # 20 ms at 8 kHz


def tone_frames(hz: float, seconds: float) -> list[bytes]:
    n = int(seconds * 8000)
    pcm = array.array("h", (int(8000 * math.sin(2 * math.pi * hz * i / 8000)) for i in range(n)))
    ulaw = codec.lin16_to_ulaw(pcm.tobytes())
    return [ulaw[i:i + BLOCK] for i in range(0, n, BLOCK)]


def power(samples, hz: float) -> float:
    """Goertzel: the power of one frequency in a block of samples."""
    k = 2 * math.cos(2 * math.pi * hz / 8000)
    s1 = s2 = 0.0
    for x in samples:
        s1, s2 = x + k * s1 - s2, s1
    return s1 * s1 + s2 * s2 - k * s1 * s2


def tone_blocks(channel, hz: float) -> list[int]:
    """The 20 ms blocks of a channel where ``hz`` carries most of the block's energy."""
    out = []
    for b in range(len(channel) // BLOCK):
        block = channel[b * BLOCK:(b + 1) * BLOCK]
        energy = sum(x * x for x in block) * BLOCK / 2
        if energy and power(block, hz) > 0.5 * energy:
            out.append(b)
    return out


def read_wav(path) -> tuple[array.array, array.array]:
    with wave.open(str(path)) as w:
        assert (w.getnchannels(), w.getsampwidth(), w.getframerate()) == (2, 2, 8000)
        frames = array.array("h", w.readframes(w.getnframes()))
    return frames[0::2], frames[1::2]


def test_a_recorded_call_has_the_callee_left_and_the_agent_right_in_time(r, new_gateway, sipp, agents, tmp_path):
    spool = tmp_path / "spool"
    new_gateway("test-gw-rec", ["--recordings-dir", str(spool)])
    callee_says = tone_frames(400, 1.0)
    line = PhoneLine([SILENCE] * 25 + callee_says + [SILENCE] * 200)
    uas = answered_by_sipp(sipp, line)
    try:
        call_id = originate(r, [leg(uas.uri_host, "c1")], stream_url=agents.url("/record"), record=True)
        wait_event(r, call_id, ev.ANSWERED)
        invite = wait_for(lambda: re.search(r"m=audio (\d+)", uas.messages()), 5, what="the INVITE's SDP")
        conn = agents.conn_for(call_id)
        line.play(int(invite.group(1)))
        wait_for(lambda: len(line.sent_at) > 25 + len(callee_says) + 10, 10, what="the callee's tone")
        agent_says_at = time.monotonic()
        agents.send_audio(conn, b"".join(tone_frames(1000, 1.0)))
        time.sleep(1.5)
        client.hangup(r, call_id)
        final = wait_final(r, call_id)[-1]
        assert final["recording_file"] == f"{call_id}.wav", dumps(final)
        path = wait_for(lambda: (spool / f"{call_id}.wav").exists() and spool / f"{call_id}.wav", 5,
                        what="the recording")
        assert not list(spool.glob("*.part"))
        left, right = read_wav(path)
        assert abs(len(left) / 8000 - final["recording_duration_s"]) < 0.05

        callee_tone, agent_tone = tone_blocks(left, 400), tone_blocks(right, 1000)
        assert not tone_blocks(left, 1000) and not tone_blocks(right, 400)  # one voice per channel
        assert 48 <= len(callee_tone) <= 50 and callee_tone[-1] - callee_tone[0] == len(callee_tone) - 1
        assert 48 <= len(agent_tone) <= 50 and agent_tone[-1] - agent_tone[0] == len(agent_tone) - 1
        # the gap between the two voices is the one on the line (within 100 ms)
        gap_on_line = agent_says_at - line.sent_at[25 + len(callee_says) - 1]
        gap_in_file = (agent_tone[0] - callee_tone[-1]) * 0.02
        assert abs(gap_in_file - gap_on_line) < 0.1, (gap_in_file, gap_on_line)
    finally:
        line.stop()
