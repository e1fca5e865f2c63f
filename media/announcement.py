"""The recording announcement (consent): spoken to the callee once the call is answered, before the
recording and the agent stream start. Its audio (8 kHz mu-law, media.fallback renders it) reaches the
host in parts after the call's ``open``; the host sends it 20 ms per tick in the callee's codec."""
from __future__ import annotations

from media import codec

FRAME_BYTES = 160


class Announcement:
    __slots__ = ("audio", "pos")

    def __init__(self) -> None:
        self.audio = bytearray()
        self.pos = 0

    def add(self, part: bytes) -> None:
        self.audio += part

    def use_codec(self, codec_name: str) -> None:
        """The callee's codec, known once answered (the audio arrives as mu-law)."""
        if codec_name == "pcma":
            self.audio = bytearray(codec.ulaw_to_alaw(bytes(self.audio)))

    def next_frame(self, silence: bytes) -> bytes | None:
        """The next 20 ms (padded with silence), or None when it has all been played."""
        frame = bytes(self.audio[self.pos:self.pos + FRAME_BYTES])
        self.pos += FRAME_BYTES
        return frame + silence[len(frame):] if frame else None
