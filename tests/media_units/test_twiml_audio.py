"""The audio a tenant's <Play> URL serves becomes what the callee hears: 8 kHz mu-law."""
import math
import struct

import pytest

from media import codec
from media.twiml_player import AudioError, mulaw_of


def wav(kind: int, channels: int, rate: int, bits: int, data: bytes) -> bytes:
    block = channels * bits // 8
    fmt = struct.pack("<HHIIHH", kind, channels, rate, rate * block, block, bits)
    return (b"RIFF" + struct.pack("<I", 20 + len(fmt) + len(data)) + b"WAVE" + b"LIST" + struct.pack("<I", 4)
            + b"INFO" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", len(data)) + data)


def tone(rate: int, seconds: float) -> bytes:
    return b"".join(struct.pack("<h", int(8000 * math.sin(2 * math.pi * 440 * i / rate)))
                    for i in range(int(rate * seconds)))


def test_mulaw_wav_and_audio_basic_pass_unchanged():
    audio = bytes(range(20, 220)) * 8
    assert mulaw_of(wav(7, 1, 8000, 8, audio)) == audio
    assert mulaw_of(audio, "audio/basic") == audio


def test_pcm_at_any_rate_and_stereo_become_8k_mulaw():
    assert mulaw_of(wav(1, 1, 8000, 16, tone(8000, 1))) == codec.lin16_to_ulaw(tone(8000, 1))
    assert len(mulaw_of(wav(1, 1, 16000, 16, tone(16000, 1)))) == 8000
    left = tone(8000, 0.5)
    stereo = b"".join(left[i:i + 2] + b"\x00\x00" for i in range(0, len(left), 2))
    assert mulaw_of(wav(1, 2, 8000, 16, stereo)) == codec.lin16_to_ulaw(left)
    assert mulaw_of(wav(6, 1, 8000, 8, codec.ulaw_to_alaw(b"\x10" * 160))) == codec.alaw_to_ulaw(
        codec.ulaw_to_alaw(b"\x10" * 160))


@pytest.mark.parametrize("body, message", [
    (b"<html>not audio</html>", "not a WAV"),
    (wav(1, 1, 8000, 8, b"\x80" * 160), "8-bit samples"),
    (b"RIFF\x10\x00\x00\x00WAVEjunk", "without fmt or data"),
])
def test_what_is_not_audio_we_play_is_refused(body, message):
    with pytest.raises(AudioError, match=message):
        mulaw_of(body, "text/html")
