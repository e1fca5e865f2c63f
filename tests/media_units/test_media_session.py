"""StreamSession: message order and counters with a fake transport; then against the real demo agent
over a real WebSocket (started in-process on a free port)."""
import asyncio
import base64
import json
import socket
import threading

import pytest
from websockets.asyncio.server import serve

from demo.agent import PROMPT_MARK, load_prompt, start_server
from media import codec
from media.stream_session import (
    AGENT_CLOSED,
    CALL_ENDED,
    CONNECT_FAILED,
    CONNECT_TIMEOUT,
    PROTOCOL_ERROR,
    StreamSession,
    run_outbound,
)

ACC = "AC" + "1" * 32
CALL = "CA" + "2" * 32
GUARD = 60  # seconds: a hang guard only, never a timing assertion


def run(coro):
    async def guarded():
        async with asyncio.timeout(GUARD):
            return await coro
    return asyncio.run(guarded())


async def until(pred, step=0.005):
    while not pred():
        await asyncio.sleep(step)


def frames_of(n, seed=0):
    rnd = __import__("random").Random(seed)
    return [bytes(rnd.randrange(256) for _ in range(160)) for _ in range(n)]


class FakeTransport:
    def __init__(self):
        self.sent = []

    async def send(self, text):
        self.sent.append(json.loads(text))
        await asyncio.sleep(0)


# --- without network ---------------------------------------------------------------------------------

def test_connected_start_first_then_media_with_true_time_counters():
    async def main():
        s = StreamSession(ACC, CALL, custom_parameters={"from_number": "+1555"}, inbound_queue_frames=3)
        fr = frames_of(8)
        # 5 frames pushed before the transport is up: 3 queued, 2 dropped (media time still runs)
        results = [s.push_inbound(f) for f in fr[:5]]
        assert results == [True, True, True, False, False]
        t = FakeTransport()
        task = asyncio.create_task(s.run(t.send))
        await until(lambda: len(t.sent) == 5)
        s.push_inbound(fr[5])
        s.push_dtmf("7")
        s.push_inbound(fr[6])
        assert s.push_dtmf("x") is False
        s.stop()
        assert s.push_inbound(fr[7]) is False  # after stop: dropped
        assert await task == CALL_ENDED
        return s, t.sent, fr

    s, sent, fr = run(main())
    assert [m["event"] for m in sent] == ["connected", "start", "media", "media", "media",
                                          "media", "dtmf", "media", "stop"]
    assert "sequenceNumber" not in sent[0]
    assert [m["sequenceNumber"] for m in sent[1:]] == [str(i) for i in range(1, 9)]
    assert all(m["streamSid"] == s.stream_sid for m in sent[1:])
    assert sent[1]["start"]["customParameters"] == {"from_number": "+1555"}
    media = [m["media"] for m in sent if m["event"] == "media"]
    assert [m["chunk"] for m in media] == ["1", "2", "3", "4", "5"]
    # frames 4 and 5 were dropped: the timestamp jumps over them (true media time, 20 ms a frame)
    assert [m["timestamp"] for m in media] == ["20", "40", "60", "120", "140"]
    assert [base64.b64decode(m["payload"]) for m in media] == [fr[0], fr[1], fr[2], fr[5], fr[6]]
    assert sent[6]["dtmf"] == {"track": "inbound_track", "digit": "7"}
    assert sent[-1]["stop"] == {"accountSid": ACC, "callSid": CALL}
    assert s.stats.frames_dropped == 3 and s.stats.frames_sent == 5
    assert s.end_reason == CALL_ENDED


def test_stalled_agent_never_blocks_push_inbound():
    async def main():
        s = StreamSession(ACC, CALL, inbound_queue_frames=100)
        never = asyncio.Event()

        async def stalled_send(text):
            await never.wait()  # the agent's socket never drains

        task = asyncio.create_task(s.run(stalled_send))
        await asyncio.sleep(0)
        results = []
        frame = b"\xff" * 160

        def pusher():
            for _ in range(1000):
                results.append(s.push_inbound(frame))
            s.push_dtmf("1")  # control messages are not dropped
            s.stop()

        th = threading.Thread(target=pusher)
        th.start()
        await asyncio.to_thread(th.join)  # the thread finishes although nothing is ever sent
        assert results.count(True) == 100 and results.count(False) == 900
        assert s.stats.frames_dropped == 900 and s.stats.frames_pushed == 100
        assert s.stats.frames_sent == 0
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    run(main())


def test_pcma_caller_is_transcoded_both_ways():
    async def main():
        s = StreamSession(ACC, CALL, caller_codec="pcma")
        t = FakeTransport()
        task = asyncio.create_task(s.run(t.send))
        alaw = bytes(range(96, 256))
        s.push_inbound(alaw)
        await until(lambda: len(t.sent) == 3)
        payload = base64.b64decode(t.sent[2]["media"]["payload"])
        assert payload == codec.alaw_to_ulaw(alaw)
        ulaw = bytes(range(160))
        s.feed_text(json.dumps({"event": "media", "media": {"payload": base64.b64encode(ulaw).decode()}}))
        assert s.pull_outbound() == codec.ulaw_to_alaw(ulaw)
        assert s.pull_outbound() is None
        s.stop()
        assert await task == CALL_ENDED

    run(main())


def test_l16_option_converts_frames():
    async def main():
        s = StreamSession(ACC, CALL, encoding="audio/x-l16")
        t = FakeTransport()
        task = asyncio.create_task(s.run(t.send))
        s.push_inbound(b"\xff" * 160)
        await until(lambda: len(t.sent) == 3)
        assert t.sent[1]["start"]["mediaFormat"] == {"encoding": "audio/x-l16", "sampleRate": 16000, "channels": 1}
        assert base64.b64decode(t.sent[2]["media"]["payload"]) == b"\x00" * 640
        assert t.sent[2]["media"]["timestamp"] == "20"
        s.feed_text(json.dumps({"event": "media", "media": {"payload": base64.b64encode(b"\x00" * 1280).decode()}}))
        assert s.pull_outbound() == b"\xff" * 160
        assert s.pull_outbound() == b"\xff" * 160
        assert s.pull_outbound() is None
        s.stop()
        await task

    run(main())


def test_malformed_agent_messages_are_counted_then_protocol_error():
    async def main():
        s = StreamSession(ACC, CALL, max_bad_messages=5)
        t = FakeTransport()
        task = asyncio.create_task(s.run(t.send))
        for _ in range(4):
            s.feed_text("{nope")
        s.feed_text('{"event":"someday"}')  # unknown: ignored, not an error
        assert not s.ended
        s.feed_text("[]")
        assert await task == PROTOCOL_ERROR
        assert s.stats.agent_errors == 5 and s.stats.agent_unknown == 1

    run(main())


# --- against the real demo agent over a real WebSocket ------------------------------------------------

async def _agent(**kw):
    server, agent = await start_server("127.0.0.1", 0, echo_delay=0, **kw)
    return server, agent, f"ws://127.0.0.1:{server.sockets[0].getsockname()[1]}/"


def test_echo_is_identical_after_decoding_and_prompt_mark_comes_back():
    async def main():
        server, agent, url = await _agent()
        s = StreamSession(ACC, CALL, custom_parameters={"to_number": "+1666"})
        task = asyncio.create_task(run_outbound(url, s, connect_timeout=10))
        await until(lambda: agent.calls and agent.calls[0].start is not None)
        call = agent.calls[0]
        assert call.events[:2] == ["connected", "start"]
        assert call.start["callSid"] == CALL and call.start["customParameters"] == {"to_number": "+1666"}
        pushed = frames_of(50, seed=1)
        th = threading.Thread(target=lambda: [s.push_inbound(f) for f in pushed])  # the gateway's thread
        th.start()
        await asyncio.to_thread(th.join)
        prompt = load_prompt()
        n_prompt = -(-len(prompt) // 160)
        got = []
        while len(got) < n_prompt + len(pushed):
            f = s.pull_outbound()  # the caller's clock, run as fast as the audio arrives
            if f is None:
                await asyncio.sleep(0.002)
            else:
                got.append(f)
        await until(lambda: call.marks_received == [PROMPT_MARK])
        assert b"".join(got[:n_prompt]) == prompt + b"\xff" * (n_prompt * 160 - len(prompt))
        echoed = got[n_prompt:]
        assert [codec.ulaw_to_lin16(f) for f in echoed] == [codec.ulaw_to_lin16(f) for f in pushed]
        assert call.media_received == 50
        s.stop()
        assert await task == CALL_ENDED
        await until(lambda: call.closed)
        assert call.stopped and call.events[-1] == "stop"
        assert s.stats.frames_dropped == 0 and s.stats.marks_sent == 1
        server.close()
        await server.wait_closed()

    run(main())


def test_marks_in_order_then_clear_returns_pending_marks():
    async def main():
        server, agent, url = await _agent()
        s = StreamSession(ACC, CALL)
        task = asyncio.create_task(run_outbound(url, s, connect_timeout=10))
        await until(lambda: agent.calls and agent.calls[0].start is not None)
        call = agent.calls[0]
        # nobody pulls yet: prompt, tone 1 and tone 2 stay queued with their marks
        s.push_dtmf("1")
        s.push_dtmf("2")
        await until(lambda: s.playout.pending_marks == [PROMPT_MARK, "dtmf-1", "dtmf-2"])
        assert call.dtmf_received == ["1", "2"]
        f = s.pull_outbound()
        assert f is not None and len(f) == 160
        s.push_dtmf("*")  # the demo agent answers with `clear` (barge-in)
        await until(lambda: len(call.marks_received) == 3)
        assert call.marks_received == [PROMPT_MARK, "dtmf-1", "dtmf-2"]
        assert s.playout.queued_bytes == 0 and s.playout.pending_marks == []
        assert s.pull_outbound() is None
        assert s.stats.agent_clears == 1
        # after a clear, marks are reported as playback reaches them
        s.push_dtmf("3")
        await until(lambda: s.playout.pending_marks == ["dtmf-3"])
        def clock():  # the gateway's media clock runs in its own thread
            n = 0
            while s.pull_outbound() is not None:
                n += 1
            return n

        n = await asyncio.to_thread(clock)
        assert n == 15  # 0.3 s tone = 2400 bytes = 15 frames, mark right after the last one
        await until(lambda: len(call.marks_received) == 4)
        assert call.marks_received[-1] == "dtmf-3"
        s.stop()
        assert await task == CALL_ENDED
        server.close()
        await server.wait_closed()

    run(main())


def test_agent_closing_the_socket_gives_agent_closed():
    async def main():
        server, agent, url = await _agent()
        s = StreamSession(ACC, CALL)
        task = asyncio.create_task(run_outbound(url, s, connect_timeout=10))
        await until(lambda: agent.calls and agent.calls[0].start is not None)
        s.push_dtmf("#")  # the demo agent hangs up by closing the WebSocket
        assert await task == AGENT_CLOSED
        assert "1000" in s.end_detail
        assert s.push_inbound(b"\xff" * 160) is False
        server.close()
        await server.wait_closed()

    run(main())


def _tcp_wmem_max() -> int:
    try:
        with open("/proc/sys/net/ipv4/tcp_wmem") as f:
            return int(f.read().split()[2])
    except (OSError, ValueError, IndexError):
        return 16 * 2**20


def test_stalled_agent_over_websocket_does_not_block_and_stop_still_ends():
    async def main():
        async def stalled(ws):
            # never reads, with a tiny receive buffer: whatever we send piles up on our side
            ws.transport.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            await ws.wait_closed()

        server = await serve(stalled, "127.0.0.1", 0, max_queue=1, max_size=None, close_timeout=0.2)
        url = f"ws://127.0.0.1:{server.sockets[0].getsockname()[1]}/"
        s = StreamSession(ACC, CALL, inbound_queue_frames=20)
        task = asyncio.create_task(run_outbound(url, s, connect_timeout=10, stop_grace=0.2))
        await until(lambda: s.stats.frames_pushed == 0 and s._loop is not None)
        # One oversized "frame" larger than every socket buffer: its send() can never complete.
        assert s.push_inbound(b"\x00" * (_tcp_wmem_max() + 4 * 2**20))
        # written to the socket at once, which now holds back; the next frame is queued, and the
        # sender takes it and waits in send()
        assert s.push_inbound(b"\xff" * 160)
        await until(lambda: s._out_media == 0)
        results = []
        th = threading.Thread(target=lambda: results.extend(s.push_inbound(b"\xff" * 160) for _ in range(1000)))
        th.start()
        await asyncio.to_thread(th.join)  # returns although nothing more can be sent
        assert results.count(True) == 20 and results.count(False) == 980
        # the 20 queued behind it stay queued: the sender waits for the socket to drain
        assert s.stats.frames_dropped == 980 and s.stats.frames_sent == 1
        s.stop()
        assert await task == CALL_ENDED
        assert "not delivered" in s.end_detail
        server.close()
        await server.wait_closed()

    run(main())


def test_connect_refused_gives_connect_failed():
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()  # nothing listens there now

    async def main():
        s = StreamSession(ACC, CALL)
        assert await run_outbound(f"ws://127.0.0.1:{port}/", s, connect_timeout=10) == CONNECT_FAILED
        assert s.end_reason == CONNECT_FAILED and s.end_detail
        s2 = StreamSession(ACC, CALL)
        assert await run_outbound("http://127.0.0.1:1/", s2, connect_timeout=10) == CONNECT_FAILED

    run(main())


def test_no_handshake_gives_connect_timeout():
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(5)  # accepts TCP (kernel backlog) but never answers the HTTP upgrade
    port = listener.getsockname()[1]
    try:
        async def main():
            s = StreamSession(ACC, CALL)
            return await run_outbound(f"ws://127.0.0.1:{port}/", s, connect_timeout=0.3)
        assert run(main()) == CONNECT_TIMEOUT
    finally:
        listener.close()


def test_binary_frame_from_agent_is_protocol_error():
    async def main():
        async def rude(ws):
            await ws.recv()
            await ws.send(b"\x00\x01")
            await ws.wait_closed()

        server = await serve(rude, "127.0.0.1", 0)
        url = f"ws://127.0.0.1:{server.sockets[0].getsockname()[1]}/"
        s = StreamSession(ACC, CALL)
        assert await run_outbound(url, s, connect_timeout=10) == PROTOCOL_ERROR
        server.close()
        await server.wait_closed()

    run(main())
