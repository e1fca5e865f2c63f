"""Demo AI agent speaking the Twilio Media Streams protocol: an example for tenants, and a test peer.

Run it:  python -m demo.agent --port 8765   (then point a number's stream URL at
ws://HOST:8765/). It does what a real voice agent does on the wire, without any AI:

* a short conversation (``--turns N``, 2 by default from the command line): greets, listens until
  the caller stops speaking (or ``--listen`` seconds pass), answers, and after N answers says
  goodbye and hangs up by closing the WebSocket once the goodbye was played (marks "greeting",
  "answer-1"…, "goodbye"); the lines are spoken with espeak-ng when it is installed. A demo call
  lasts a few tens of seconds, so demo campaigns finish;
* with ``--turns 0`` (the default of ``start_server``, what protocol tests use): plays a short
  spoken prompt (``media`` frames), sends ``mark`` "prompt", and echoes the caller's audio back
  after ``--echo-delay`` seconds (``media``);
* on ``dtmf``: digits 0-9 and A-D play that key's DTMF tone and send ``mark`` "dtmf-<digit>";
  ``*`` sends ``clear`` (barge-in: the platform drops its queued audio and returns the pending
  marks); ``#`` hangs up by closing the WebSocket (the platform ends the call: agent_closed);
* logs every ``mark`` it gets back (the platform's playout reached that point);
* on ``stop``: closes.

Only the standard library and ``websockets`` are needed to write an agent like this; this file also
imports ``media.codec`` to synthesise tones and to serve the ``audio/x-l16`` 16 kHz option.
"""
from __future__ import annotations

import argparse
import asyncio
import base64
import json
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path

from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from media import codec
from media.speech import SpeechDetector

log = logging.getLogger("demo.agent")

PROMPT_PATH = Path(__file__).resolve().parents[1] / "media" / "assets" / "prompt_8k_mulaw.raw"
PROMPT_MARK = "prompt"
GREETING = "Hello, this is the demo agent of your voice platform. How can I help you today?"
ANSWERS = ("I see. Tell me a little more about that.", "Thank you, that is very helpful.")
GOODBYE = "Thanks for your time. Goodbye!"
DTMF_FREQS = {
    "1": (697, 1209), "2": (697, 1336), "3": (697, 1477), "A": (697, 1633),
    "4": (770, 1209), "5": (770, 1336), "6": (770, 1477), "B": (770, 1633),
    "7": (852, 1209), "8": (852, 1336), "9": (852, 1477), "C": (852, 1633),
    "*": (941, 1209), "0": (941, 1336), "#": (941, 1477), "D": (941, 1633),
}


def load_prompt() -> bytes:
    """The spoken prompt, 8 kHz mu-law (rendered once with espeak-ng + sox, see docs)."""
    try:
        return PROMPT_PATH.read_bytes()
    except OSError:  # asset missing: a short rising three-tone jingle instead
        return b"".join(tone_ulaw((f,), 0.2) for f in (523, 659, 784))


def tone_ulaw(freqs: tuple[float, ...], seconds: float, level: float = 0.25) -> bytes:
    """A tone (sum of sines) as 8 kHz mu-law."""
    n = int(8000 * seconds)
    amp = 32767 * level / len(freqs)
    samples = [int(amp * sum(math.sin(2 * math.pi * f * i / 8000) for f in freqs)) for i in range(n)]
    lin = b"".join(s.to_bytes(2, "little", signed=True) for s in samples)
    return codec.lin16_to_ulaw(lin)


def speak(text: str) -> bytes:
    """``text`` as 8 kHz mu-law, spoken by espeak-ng; without it, a rising three-tone jingle."""
    from media.fallback import FallbackError, render

    try:
        return render(text)
    except FallbackError:
        return b"".join(tone_ulaw((f,), 0.2) for f in (523, 659, 784))


@dataclass
class Lines:
    """What the agent says in a conversation, as 8 kHz mu-law."""

    greeting: bytes
    answers: tuple[bytes, ...]
    goodbye: bytes

    @classmethod
    def spoken(cls) -> Lines:
        return cls(speak(GREETING), tuple(speak(a) for a in ANSWERS), speak(GOODBYE))


@dataclass
class CallLog:
    """What one connection saw (kept for tests and for the console log)."""

    start: dict | None = None
    stream_sid: str | None = None
    events: list[str] = field(default_factory=list)
    marks_received: list[str] = field(default_factory=list)
    mark_arrived: dict[str, float] = field(default_factory=dict)  # loop time each mark came back
    dtmf_received: list[str] = field(default_factory=list)
    media_received: int = 0
    media_sent: int = 0
    stopped: bool = False
    closed: bool = False


class DemoAgent:
    def __init__(self, echo_delay: float = 0.4, prompt: bytes | None = None, chunk_bytes: int = 800,
                 turns: int = 0, listen_s: float = 6.0, lines: Lines | None = None) -> None:
        self.echo_delay = echo_delay
        self.prompt = load_prompt() if prompt is None else prompt
        self.chunk_bytes = chunk_bytes  # prompt is sent in 100 ms payloads: sizes need not be 20 ms
        self.turns = turns
        self.listen_s = listen_s
        self.lines = (lines or Lines.spoken()) if turns else None
        self.calls: list[CallLog] = []

    async def handler(self, ws: ServerConnection) -> None:
        call = CallLog()
        self.calls.append(call)
        echo_q: asyncio.Queue[tuple[float, str] | None] = asyncio.Queue()
        # One utterance at a time: the echo never interleaves with a prompt or a tone.
        speaking = asyncio.Lock()
        heard: asyncio.Queue[float] = asyncio.Queue()  # ends of the caller's speech (conversation)
        detector = SpeechDetector()
        if self.turns:
            echo_task = None  # started with the conversation, on `start`
        else:
            echo_task = asyncio.create_task(self._echo(ws, call, echo_q, speaking))
        l16 = False
        try:
            async for raw in ws:
                if not isinstance(raw, str):
                    continue
                msg = json.loads(raw)
                event = msg.get("event")
                call.events.append(event)
                if event == "start":
                    call.start = msg["start"]
                    call.stream_sid = msg["streamSid"]
                    l16 = msg["start"]["mediaFormat"]["encoding"] == "audio/x-l16"
                    log.info("call %s stream %s started", msg["start"].get("callSid"), call.stream_sid)
                    if self.turns:
                        echo_task = asyncio.create_task(self._converse(ws, call, heard, speaking, l16))
                        continue
                    async with speaking:
                        await self._play(ws, call, self.prompt, l16)
                        await self._send(ws, call, {"event": "mark", "mark": {"name": PROMPT_MARK}})
                elif event == "media":
                    call.media_received += 1
                    loop = asyncio.get_running_loop()
                    if not self.turns:
                        echo_q.put_nowait((loop.time() + self.echo_delay, msg["media"]["payload"]))
                    elif not l16 and (ended := detector.push(base64.b64decode(msg["media"]["payload"]),
                                                              loop.time())) is not None:
                        heard.put_nowait(ended)
                elif event == "mark":
                    name = msg["mark"]["name"]
                    call.marks_received.append(name)
                    call.mark_arrived[name] = asyncio.get_running_loop().time()
                    log.info("stream %s: playback reached mark %r", call.stream_sid, name)
                elif event == "dtmf":
                    digit = msg["dtmf"]["digit"]
                    call.dtmf_received.append(digit)
                    if digit == "*":
                        await self._send(ws, call, {"event": "clear"})
                    elif digit == "#":
                        log.info("stream %s: '#' pressed, hanging up", call.stream_sid)
                        await ws.close(1000, "agent hung up")
                        break
                    elif digit in DTMF_FREQS:
                        async with speaking:
                            await self._play(ws, call, tone_ulaw(DTMF_FREQS[digit], 0.3), l16)
                            await self._send(ws, call, {"event": "mark", "mark": {"name": f"dtmf-{digit}"}})
                elif event == "stop":
                    call.stopped = True
                    break
        except ConnectionClosed:
            pass
        finally:
            echo_q.put_nowait(None)
            if echo_task is not None:
                echo_task.cancel()
                await asyncio.gather(echo_task, return_exceptions=True)
            call.closed = True

    async def _converse(self, ws: ServerConnection, call: CallLog, heard: asyncio.Queue, speaking: asyncio.Lock,
                        l16: bool) -> None:
        """Greet, then `turns` times: listen until the caller stops speaking (a silent caller gets an
        answer after listen_s too) and answer; then say goodbye and hang up once it was heard."""
        lines = self.lines
        said = await self._say(ws, call, speaking, lines.greeting, "greeting", l16)
        for turn in range(self.turns):
            try:
                async with asyncio.timeout(self.listen_s):
                    while await heard.get() < said:  # speech that ended while we talked is no new turn
                        pass
            except TimeoutError:
                pass
            said = await self._say(ws, call, speaking, lines.answers[turn % len(lines.answers)],
                                   f"answer-{turn + 1}", l16)
        await self._say(ws, call, speaking, lines.goodbye, "goodbye", l16)
        log.info("stream %s: conversation over, hanging up", call.stream_sid)
        await ws.close(1000, "conversation over")

    async def _say(self, ws: ServerConnection, call: CallLog, speaking: asyncio.Lock, ulaw: bytes, mark: str,
                   l16: bool) -> float:
        """Play ``ulaw`` and wait until the platform's playout reached its mark (at most its length + 5 s);
        returns when that was."""
        async with speaking:
            await self._play(ws, call, ulaw, l16)
            await self._send(ws, call, {"event": "mark", "mark": {"name": mark}})
        loop = asyncio.get_running_loop()
        deadline = loop.time() + len(ulaw) / 8000 + 5
        while mark not in call.mark_arrived and loop.time() < deadline:
            await asyncio.sleep(0.02)
        return call.mark_arrived.get(mark, loop.time())

    async def _send(self, ws: ServerConnection, call: CallLog, msg: dict) -> None:
        msg = {"event": msg["event"], "streamSid": call.stream_sid, **msg}
        await ws.send(json.dumps(msg))

    async def _play(self, ws: ServerConnection, call: CallLog, ulaw: bytes, l16: bool) -> None:
        if l16:  # the platform asked for 16 kHz L16: convert (a real agent would synthesise at 16 kHz)
            audio = codec.Upsampler().process(codec.ulaw_to_lin16(ulaw))
            step = self.chunk_bytes * 4
        else:
            audio, step = ulaw, self.chunk_bytes
        for i in range(0, len(audio), step):
            payload = base64.b64encode(audio[i:i + step]).decode("ascii")
            await self._send(ws, call, {"event": "media", "media": {"payload": payload}})
            call.media_sent += 1

    async def _echo(self, ws: ServerConnection, call: CallLog, q: asyncio.Queue, speaking: asyncio.Lock) -> None:
        loop = asyncio.get_running_loop()
        while (item := await q.get()) is not None:
            due, payload = item
            if (wait := due - loop.time()) > 0:
                await asyncio.sleep(wait)
            async with speaking:
                await self._send(ws, call, {"event": "media", "media": {"payload": payload}})
            call.media_sent += 1


async def start_server(host: str = "127.0.0.1", port: int = 0, **agent_kwargs):
    """Start a demo agent server; returns (server, agent). ``port=0`` picks a free port:
    ``server.sockets[0].getsockname()[1]``. Close with ``server.close(); await server.wait_closed()``."""
    agent = DemoAgent(**agent_kwargs)
    server = await serve(agent.handler, host, port, compression=None, max_size=2 ** 21)
    return server, agent


async def _main(host: str, port: int, echo_delay: float, turns: int, listen_s: float) -> None:
    server, _agent = await start_server(host, port, echo_delay=echo_delay, turns=turns, listen_s=listen_s)
    log.info("demo agent listening on ws://%s:%d/", host, server.sockets[0].getsockname()[1])
    await server.serve_forever()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--echo-delay", type=float, default=0.4, help="seconds before echoing audio (--turns 0)")
    parser.add_argument("--turns", type=int, default=2, help="answers before goodbye; 0: echo forever")
    parser.add_argument("--listen", type=float, default=6.0, help="seconds an answer waits for the caller")
    args = parser.parse_args(argv)
    from core.logs import configure  # the platform's key=value lines

    configure("INFO")
    try:
        asyncio.run(_main(args.host, args.port, args.echo_delay, args.turns, args.listen))
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
