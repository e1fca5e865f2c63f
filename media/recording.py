"""Dual-channel recording of a bridged call, kept off the frame path's timing.

On the host's loop a recording only copies G.711 payloads into two byte buffers (callee, agent) at
their place on one timeline: the callee's by RTP timestamp from its first packet (placed by its arrival
since the answer), the agent's by the outgoing stream's own timestamps. Lost or late packets leave
silence, never a shift. At the end of the call ``write`` (run in a thread) decodes both to 16-bit PCM
and writes a stereo WAV (left: callee, right: agent) to the spool directory, ``{call}.wav.part``
renamed to ``{call}.wav`` when complete: the platform side moves finished files into storage.
"""
from __future__ import annotations

import os
import wave
from array import array

from media import codec

RATE = 8000
MAX_GAP_SAMPLES = 10 * RATE  # a timestamp jump beyond this is a new stream, not silence to fill


class CallRecording:
    __slots__ = ("call_id", "spool_dir", "silence", "callee", "agent", "started", "callee_base", "agent_base")

    def __init__(self, call_id: str, spool_dir: str, codec_name: str, started_mono: float):
        self.call_id = call_id
        self.spool_dir = spool_dir
        self.silence = codec.ALAW_SILENCE if codec_name == "pcma" else codec.ULAW_SILENCE
        self.callee = bytearray()
        self.agent = bytearray()
        self.started = started_mono
        self.callee_base: tuple[int, int] | None = None  # (first RTP timestamp, its position)
        self.agent_base: int | None = None  # the outgoing stream's timestamp at position 0

    def _put(self, buf: bytearray, pos: int, payload: bytes) -> None:
        end = len(buf)
        if pos == end:
            buf += payload
        elif pos > end:
            if pos - end > MAX_GAP_SAMPLES:
                pos = end
            else:
                buf.extend(bytes([self.silence]) * (pos - end))
            buf += payload
        elif pos >= 0:  # late or repeated: in its place
            buf[pos:pos + len(payload)] = payload

    def callee_frame(self, ts: int, payload: bytes, arrival_mono: float) -> None:
        if self.callee_base is None:
            self.callee_base = (ts, max(0, round((arrival_mono - self.started) * RATE)))
        first_ts, first_pos = self.callee_base
        delta = (ts - first_ts) & 0xFFFFFFFF
        if delta >= 0x80000000:
            delta -= 0x100000000
        self._put(self.callee, first_pos + delta, payload)

    def agent_frame(self, ts: int, payload: bytes) -> None:
        if self.agent_base is None:
            self.agent_base = ts
        self._put(self.agent, (ts - self.agent_base) & 0xFFFFFFFF, payload)

    @property
    def duration_s(self) -> float:
        return round(max(len(self.callee), len(self.agent)) / RATE, 3)

    @property
    def file_name(self) -> str:
        return f"{self.call_id}.wav"

    def write(self) -> str:
        """Write the WAV (any thread; the buffers are no longer written to). Returns its path."""
        n = max(len(self.callee), len(self.agent))
        to_lin16 = codec.alaw_to_lin16 if self.silence == codec.ALAW_SILENCE else codec.ulaw_to_lin16
        stereo = array("h", bytes(4 * n))
        for channel, buf in enumerate((self.callee, self.agent)):
            g711 = bytes(buf) + bytes([self.silence]) * (n - len(buf))
            stereo[channel::2] = array("h", to_lin16(g711))
        os.makedirs(self.spool_dir, exist_ok=True)
        path = os.path.join(self.spool_dir, self.file_name)
        with wave.open(path + ".part", "wb") as w:
            w.setnchannels(2)
            w.setsampwidth(2)
            w.setframerate(RATE)
            w.writeframes(stereo.tobytes())
        os.replace(path + ".part", path)
        return path
