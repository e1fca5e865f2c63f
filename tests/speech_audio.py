"""Synthesized caller audio for the speech tests: speech-like words and a quiet, noisy line.

A "word" is a voiced sound (a 140 Hz fundamental and its harmonics, falling off like a vowel) under a
raised-cosine envelope, about -12 dBFS at its peak (-28 dBFS RMS over a sentence); words are separated by short pauses, as in a
sentence. Silence is not digital zero but line noise (white noise at -60 dBFS by default).
Everything is 8 kHz G.711 in 20 ms (160-byte) frames.
"""
from __future__ import annotations

import math
import random
from array import array

from media import codec

RATE = 8000
FRAME = 160


def _encode(samples: list[float], law: str) -> list[bytes]:
    pcm = array("h", (max(-32768, min(32767, int(round(s)))) for s in samples))
    raw = pcm.tobytes()  # little-endian on the machines we test on (asserted in codec tests)
    encoded = codec.lin16_to_ulaw(raw) if law == "pcmu" else codec.lin16_to_alaw(raw)
    return [encoded[i:i + FRAME] for i in range(0, len(encoded) - FRAME + 1, FRAME)]


def _noise(n: int, dbfs: float, rng: random.Random) -> list[float]:
    amp = 32768 * 10 ** (dbfs / 20) * math.sqrt(3)  # uniform noise with that RMS
    return [rng.uniform(-amp, amp) for _ in range(n)]


def word(ms: int, peak_dbfs: float = -12.0, f0: float = 140.0) -> list[float]:
    n = RATE * ms // 1000
    peak = 32768 * 10 ** (peak_dbfs / 20)
    harmonics = [(k, 1.0 / k) for k in range(1, 12) if k * f0 < 3400]
    norm = sum(a for _, a in harmonics)
    out = []
    for i in range(n):
        t = i / RATE
        env = 0.5 - 0.5 * math.cos(2 * math.pi * i / n)
        out.append(peak * env * sum(a * math.sin(2 * math.pi * k * f0 * t) for k, a in harmonics) / norm)
    return out


def sentence(words_ms=(320, 260, 400, 300), pause_ms: int = 140, noise_dbfs: float = -60.0,
             seed: int = 1) -> list[float]:
    """Words separated by pauses shorter than the detector's hangover, over line noise."""
    rng = random.Random(seed)
    out: list[float] = []
    for i, ms in enumerate(words_ms):
        if i:
            out += _noise(RATE * pause_ms // 1000, noise_dbfs, rng)
        w = word(ms, f0=130 + 15 * i)
        out += [s + n for s, n in zip(w, _noise(len(w), noise_dbfs, rng), strict=True)]
    return out


def speech_frames(law: str = "pcmu", **kw) -> list[bytes]:
    return _encode(sentence(**kw), law)


def quiet_frames(ms: int, law: str = "pcmu", noise_dbfs: float = -60.0, seed: int = 2) -> list[bytes]:
    return _encode(_noise(RATE * ms // 1000, noise_dbfs, random.Random(seed)), law)


def tone_frames(ms: int, dbfs: float = -20.0, hz: float = 440.0) -> list[bytes]:
    """An agent's "voice": a plain tone, mu-law."""
    amp = 32768 * 10 ** (dbfs / 20)
    return _encode([amp * math.sin(2 * math.pi * hz * i / RATE) for i in range(RATE * ms // 1000)], "pcmu")
