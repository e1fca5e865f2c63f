"""The demo agent holds a short conversation and then hangs up, so demo calls and campaigns end:
greeting, an answer each time the caller stops speaking, goodbye, and the socket closed once the
goodbye was played."""
import asyncio
import threading

from demo.agent import Lines, start_server, tone_ulaw
from media.stream_session import AGENT_CLOSED, StreamSession, run_outbound
from tests.media_units.test_media_session import ACC, CALL, run, until

SILENCE = b"\xff" * 160


def _speech(seconds: float) -> list[bytes]:
    audio = tone_ulaw((220, 440), seconds, level=0.4) + SILENCE * 25  # then quiet: the turn ends
    return [audio[i:i + 160] for i in range(0, len(audio), 160)]


def test_the_demo_agent_answers_each_turn_then_says_goodbye_and_hangs_up():
    async def main():
        line = tone_ulaw((660,), 0.2)
        # listen_s far beyond the test's guard: every answer here was triggered by the caller's speech
        server, agent = await start_server("127.0.0.1", 0, turns=2, listen_s=600,
                                           lines=Lines(line, (line, line), line))
        url = f"ws://127.0.0.1:{server.sockets[0].getsockname()[1]}/"
        session = StreamSession(ACC, CALL)
        task = asyncio.create_task(run_outbound(url, session, connect_timeout=10))
        stop_clock = threading.Event()

        def clock():  # the gateway's playout clock: plays the agent's audio, so its marks come back
            while not stop_clock.is_set():
                if session.pull_outbound() is None:
                    stop_clock.wait(0.005)

        player = threading.Thread(target=clock)
        player.start()
        try:
            await until(lambda: agent.calls and "greeting" in agent.calls[0].marks_received)
            call = agent.calls[0]
            for turn in (1, 2):  # the caller says something; the agent answers when they stop
                for frame in _speech(0.6):
                    session.push_inbound(frame)
                await until(lambda mark=f"answer-{turn}": mark in call.marks_received)
            assert await task == AGENT_CLOSED  # the agent hung up
            assert call.marks_received == ["greeting", "answer-1", "answer-2", "goodbye"]
            assert "1000" in session.end_detail
        finally:
            stop_clock.set()
            player.join()
            server.close()
            await server.wait_closed()

    run(main())
