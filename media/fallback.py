"""Fallback messages: what a caller hears when the tenant's agent cannot be reached or drops mid-call.

A campaign (or an API call) gives the message as text; it is spoken once with espeak-ng (Debian
package, no model download), turned into 8 kHz mu-law and kept in Redis under a key named by the
text's hash. Calls carry only that key; the gateway fetches the audio when it needs it.
"""
from __future__ import annotations

import hashlib
import shutil
import subprocess

from media import codec

KEY_PREFIX = "fallback:audio:"
MAX_SECONDS = 30
_stored: set[str] = set()  # keys this process already put in Redis


class FallbackError(RuntimeError):
    """The message could not be rendered (espeak-ng missing or failing)."""


def audio_key(text: str) -> str:
    return KEY_PREFIX + hashlib.sha256(text.strip().encode()).hexdigest()[:32]


def render(text: str, voice: str = "en-us") -> bytes:
    """``text`` spoken as 8 kHz mu-law (at most MAX_SECONDS)."""
    espeak = shutil.which("espeak-ng")
    if espeak is None:
        raise FallbackError("espeak-ng is not installed (apt-get install espeak-ng)")
    try:
        wav = subprocess.run([espeak, "-v", voice, "--stdout", text.strip()], capture_output=True, timeout=30,
                             check=True).stdout
    except (subprocess.SubprocessError, OSError) as exc:
        raise FallbackError(f"espeak-ng failed: {exc}") from None
    if len(wav) < 44 or wav[:4] != b"RIFF":
        raise FallbackError("espeak-ng did not produce WAV audio")
    rate = int.from_bytes(wav[24:28], "little")
    pcm = wav[44:]  # 16-bit mono; the header's sizes are bogus when espeak-ng writes to a pipe
    pcm = pcm[: len(pcm) - len(pcm) % 2][: rate * 2 * MAX_SECONDS]
    return codec.lin16_to_ulaw(codec.resample_lin16(pcm, rate, 8000))


def ensure_stored(redis, text: str) -> str:
    """The Redis key of ``text``'s audio, rendering and storing it the first time; "" for no text."""
    if not text.strip():
        return ""
    key = audio_key(text)
    if key not in _stored:
        if not redis.exists(key):
            redis.set(key, render(text))
        _stored.add(key)
    return key
