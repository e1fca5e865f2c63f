"""A scripted phone conversation for the quality tests, with everything on the far side of the gateway:

* the caller's side, as a pcap SIPp plays (``caller_pcap``): a spoken sentence, line noise, then a key;
* an agent that answers like an AI agent would (``RespondingAgent``): it waits until the caller has been
  quiet for a moment, thinks, answers with a tone, and hangs up (closes its socket) on a key;
* the far end's RTCP (``RtcpResponder``): SIPp sends none, so this answers each of our sender reports
  with a receiver report, which gives the call a round-trip time.
"""
from __future__ import annotations

import asyncio
import base64
import json
import socket
import struct
import threading
import time
from pathlib import Path

from media import codec
from media.rtp import build_sr
from tests.speech_audio import quiet_frames, speech_frames, tone_frames

DTMF_PT = 101


def caller_pcap(path: Path, quiet_ms: int = 1500, digit: int | None = 1, pt: int = 0) -> Path:
    """What the caller says: a sentence, quiet_ms of line noise, then the key ``digit`` (RFC 4733).
    The key comes last so the audio's sequence numbers have no gap (no loss)."""
    packets = [(pt, frame) for frame in speech_frames() + quiet_frames(quiet_ms)]
    if digit is not None:  # 3 packets of the event, then 3 end packets (as phones send them)
        packets += [(DTMF_PT, struct.pack("!BBH", digit, 10, 160 * (i + 1))) for i in range(3)]
        packets += [(DTMF_PT, struct.pack("!BBH", digit, 0x80 | 10, 640))] * 3
    return write_rtp_pcap(path, packets)


def write_rtp_pcap(path: Path, packets: list[tuple[int, bytes]], ptime: float = 0.02) -> Path:
    """A pcap of RTP (Ethernet/IPv4/UDP) for SIPp's play_pcap_audio, one packet every ptime; an
    RFC 4733 event keeps the timestamp of its first packet."""
    out = [struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)]
    t0, ts, event_ts = 1_700_000_000.0, 0, None
    for k, (pt, payload) in enumerate(packets):
        if pt == DTMF_PT:
            event_ts = ts if event_ts is None else event_ts
            stamp, marker = event_ts, k == 0 or packets[k - 1][0] != DTMF_PT
        else:
            stamp, marker, event_ts = ts, k == 0, None
        rtp = struct.pack("!BBHII", 0x80, pt | (0x80 if marker else 0), (k + 1) & 0xFFFF, stamp & 0xFFFFFFFF,
                          0x12345678) + payload
        ts += 160
        udp = struct.pack("!HHHH", 6000, 6002, 8 + len(rtp), 0) + rtp
        ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), k & 0xFFFF, 0, 64, 17, 0,
                         bytes([127, 0, 0, 1]), bytes([127, 0, 0, 1])) + udp
        eth = b"\x00" * 12 + b"\x08\x00" + ip
        t = t0 + k * ptime
        out.append(struct.pack("<IIII", int(t), int(round((t % 1) * 1e6)) % 1000000, len(eth), len(eth)) + eth)
    path.write_bytes(b"".join(out))
    return path


def _quiet(frame: bytes) -> bool:
    """The agent's own ear: a frame is quiet when no sample reaches ~-30 dBFS."""
    pcm = codec.ulaw_to_lin16(frame)
    return max(abs(v) for v in struct.unpack(f"<{len(pcm) // 2}h", pcm)) < 1000


class RespondingAgent:
    """A Twilio Media Streams agent in a thread of the test process: after the caller spoke and then
    stayed quiet for ``quiet_ms``, it waits ``think_ms`` and answers with ``reply_ms`` of tone (then a
    mark); on a DTMF key it closes the socket, which hangs the call up."""

    def __init__(self, quiet_ms: int = 400, think_ms: int = 200, reply_ms: int = 400):
        from websockets.asyncio.server import serve

        self.quiet_frames, self.think_s = quiet_ms // 20, think_ms / 1000
        self.reply = b"".join(tone_frames(reply_ms))
        self.replies: dict[str, list[float]] = {}  # call sid -> when each answer was sent
        self.loop = asyncio.new_event_loop()
        ready = threading.Event()

        async def main():
            self.server = await serve(self.handler, "127.0.0.1", 0, compression=None)
            self.port = self.server.sockets[0].getsockname()[1]
            ready.set()
            await self.server.serve_forever()

        threading.Thread(target=lambda: self.loop.run_until_complete(main()), daemon=True).start()
        assert ready.wait(5)

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/agent"

    async def handler(self, ws):
        call_sid, heard_speech, quiet = None, False, 0
        async for raw in ws:
            msg = json.loads(raw)
            if msg["event"] == "start":
                call_sid = msg["start"]["callSid"]
                self.replies[call_sid] = []
            elif msg["event"] == "media":
                if not _quiet(base64.b64decode(msg["media"]["payload"])):
                    heard_speech, quiet = True, 0
                    continue
                quiet += 1
                if heard_speech and quiet == self.quiet_frames:
                    heard_speech = False
                    await asyncio.sleep(self.think_s)
                    self.replies[call_sid].append(time.monotonic())
                    await ws.send(json.dumps({"event": "media", "media": {"payload": base64.b64encode(self.reply).decode()}}))
                    await ws.send(json.dumps({"event": "mark", "mark": {"name": "answer"}}))
            elif msg["event"] == "dtmf":
                await ws.close()
                return

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.server.close)


class RtcpResponder:
    """The far end's RTCP on ``port``: answers each sender report with a receiver report about it
    (LSR = the report's NTP middle bits, DLSR = 0), as a phone would, so the gateway gets a round trip."""

    SSRC = 0x0BADCAFE

    def __init__(self, port: int):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", port))
        self.sock.settimeout(0.2)
        self.reports = 0
        self.running = True
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while self.running:
            try:
                data, addr = self.sock.recvfrom(2048)
            except OSError:
                continue
            if len(data) < 28 or data[1] != 200:
                continue
            sender, sec, frac = struct.unpack_from("!III", data, 4)
            lsr = ((sec & 0xFFFF) << 16) | (frac >> 16)
            self.sock.sendto(build_sr(self.SSRC, 0, 0, 0, (sender, 0, 0, 0, 8, lsr, 0)), addr)
            self.reports += 1

    def stop(self) -> None:
        self.running = False
        self.thread.join(1)
        self.sock.close()
