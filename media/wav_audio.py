"""An uploaded audio file (a voicemail message) as the 8 kHz mu-law the media host plays: a PCM WAV
at any rate, mono or stereo, 8 or 16 bits (what any recorder or editor exports), converted with
media/codec.py. Anything else is refused with a message saying what is accepted."""
from __future__ import annotations

import io
import sys
import wave
from array import array

from media import codec

MAX_BYTES = 10 * 1024 * 1024
MAX_SECONDS = 60
ACCEPTED = f"a PCM WAV file (8 or 16-bit, mono or stereo, any rate), up to {MAX_SECONDS} s and {MAX_BYTES // 2**20} MB"


class AudioFileError(ValueError):
    """Not an audio file this converts: the message says why and what is accepted."""


def to_ulaw(data: bytes) -> bytes:
    """``data`` (a WAV file's bytes) as 8 kHz mu-law; raises AudioFileError."""
    if len(data) > MAX_BYTES:
        raise AudioFileError(f"the file is too big: send {ACCEPTED}")
    try:
        with wave.open(io.BytesIO(data)) as wav:
            channels, width, rate = wav.getnchannels(), wav.getsampwidth(), wav.getframerate()
            pcm = wav.readframes(wav.getnframes())
    except (wave.Error, EOFError) as error:
        raise AudioFileError(f"not a PCM WAV file ({error}): send {ACCEPTED}") from None
    if channels not in (1, 2) or width not in (1, 2) or not 4000 <= rate <= 192000:
        raise AudioFileError(f"{channels} channel(s) of {8 * width}-bit samples at {rate} Hz: send {ACCEPTED}")
    if len(pcm) // (channels * width) > rate * MAX_SECONDS:
        raise AudioFileError(f"the message is longer than {MAX_SECONDS} s: send {ACCEPTED}")
    samples = array("h")
    if width == 1:  # unsigned 8-bit
        samples.extend((b - 128) << 8 for b in pcm)
    else:
        samples.frombytes(pcm[: len(pcm) - len(pcm) % 2])
        if sys.byteorder == "big":
            samples.byteswap()
    if channels == 2:
        samples = array("h", ((a + b) >> 1 for a, b in zip(samples[::2], samples[1::2], strict=False)))
    if not samples:
        raise AudioFileError(f"the file holds no audio: send {ACCEPTED}")
    mono = samples.tobytes() if sys.byteorder == "little" else _little(samples)
    return codec.lin16_to_ulaw(codec.resample_lin16(mono, rate, 8000))


def _little(samples: array) -> bytes:
    swapped = array("h", samples)
    swapped.byteswap()
    return swapped.tobytes()
