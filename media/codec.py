"""G.711 (PCMU / PCMA) and L16 helpers for the media bridge, stdlib only.

Everything here works on whole frames (one 20 ms frame is 160 bytes of mu-law or a-law at 8 kHz,
320 bytes of L16 at 8 kHz, 640 bytes of L16 at 16 kHz) and costs a few microseconds per frame:
the byte-to-byte and byte-to-sample conversions are table look-ups done in C by
``bytes.translate``, slice assignment and ``map``; no per-sample Python loop except in resampling.

Linear samples ("L16") are 16-bit signed, **little-endian** (the byte order of numpy, of every TTS
engine's raw output and of pipecat's serializers), whatever the host byte order.

The G.711 tables follow the reference algorithm (Sun's g711.c, the same as CPython's ``audioop``):
the tests check all 256 decoded values and all 65536 encoded values against ``audioop``.
``audioop`` itself is not used at run time (deprecated, gone in Python 3.13).

Resampling 8 kHz <-> 16 kHz (the ``audio/x-l16`` 16 kHz option) uses the classic 7-tap half-band
filter h = [-1, 0, 9, 16, 9, 0, -1] / 16 (cubic interpolation between 8 kHz samples when
upsampling; same kernel / 32 as the anti-alias low-pass before keeping every other sample when
downsampling). Quality, by design "telephone-good", not hi-fi:

* passband: -0.5 dB at 2 kHz, -1.4 dB at 2.6 kHz, -3.5 dB at 3.4 kHz (a slightly dull top of the
  telephone band; the caller's audio is band-limited to 3.4 kHz by the network anyway);
* stop band (images when upsampling, aliases when downsampling): -6 dB at 4 kHz, -13 dB at 5 kHz,
  -25 dB at 6 kHz, -47 dB at 7 kHz;
* the converters keep a few samples of history so consecutive frames join without clicks; the
  constant delay is 2 input samples up (0.25 ms) and 2 input samples down (0.125 ms).

Use one ``Upsampler`` / ``Downsampler`` per direction per call (they hold state), from one thread.
"""
from __future__ import annotations

import sys
from array import array

__all__ = [
    "FRAME_MS",
    "FRAME_SAMPLES_8K",
    "ULAW_SILENCE",
    "ALAW_SILENCE",
    "ulaw_to_alaw",
    "alaw_to_ulaw",
    "ulaw_to_lin16",
    "alaw_to_lin16",
    "lin16_to_ulaw",
    "lin16_to_alaw",
    "Upsampler",
    "Downsampler",
    "upsample_8k_to_16k",
    "downsample_16k_to_8k",
]

FRAME_MS = 20
FRAME_SAMPLES_8K = 160
ULAW_SILENCE = 0xFF  # mu-law code of 0 ("+0"); 0x7F is "-0"
ALAW_SILENCE = 0xD5  # a-law code of the smallest positive value (+8); a-law has no exact 0

_LITTLE = sys.byteorder == "little"


# --- reference G.711 algorithm, used only to build the tables at import time ----------------------

def _ulaw_decode(code: int) -> int:
    u = ~code & 0xFF
    t = ((u & 0x0F) << 3) + 0x84
    t <<= (u & 0x70) >> 4
    return (0x84 - t) if (u & 0x80) else (t - 0x84)


def _alaw_decode(code: int) -> int:
    a = code ^ 0x55
    t = (a & 0x0F) << 4
    seg = (a & 0x70) >> 4
    if seg == 0:
        t += 8
    elif seg == 1:
        t += 0x108
    else:
        t = (t + 0x108) << (seg - 1)
    return t if (a & 0x80) else -t


_SEG_END = (0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF)


def _ulaw_encode14(pcm14: int) -> int:
    """Encode a 14-bit sample (the 16-bit sample >> 2), as g711.c's linear2ulaw."""
    if pcm14 < 0:
        pcm14 = -pcm14
        mask = 0x7F
    else:
        mask = 0xFF
    pcm14 = min(pcm14, 8159) + 33  # clip, add bias (0x84 >> 2)
    seg = 8
    for i, end in enumerate(_SEG_END):
        if pcm14 <= end:
            seg = i
            break
    if seg >= 8:
        return 0x7F ^ mask
    return ((seg << 4) | ((pcm14 >> (seg + 1)) & 0x0F)) ^ mask


_ASEG_END = (0x1F, 0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF)


def _alaw_encode13(pcm13: int) -> int:
    """Encode a 13-bit sample (the 16-bit sample >> 3), as g711.c's linear2alaw."""
    if pcm13 >= 0:
        mask = 0xD5
    else:
        mask = 0x55
        pcm13 = -pcm13 - 1
    seg = 8
    for i, end in enumerate(_ASEG_END):
        if pcm13 <= end:
            seg = i
            break
    if seg >= 8:
        return 0x7F ^ mask
    aval = seg << 4
    aval |= (pcm13 >> 1) & 0x0F if seg < 2 else (pcm13 >> seg) & 0x0F
    return aval ^ mask


# --- tables ------------------------------------------------------------------------------------------

ULAW_DECODE: tuple[int, ...] = tuple(_ulaw_decode(c) for c in range(256))
ALAW_DECODE: tuple[int, ...] = tuple(_alaw_decode(c) for c in range(256))

# 16-bit little-endian sample bytes of each code, split in low and high byte for bytes.translate.
_ULAW_LO = bytes(v & 0xFF for v in ULAW_DECODE)
_ULAW_HI = bytes((v >> 8) & 0xFF for v in ULAW_DECODE)
_ALAW_LO = bytes(v & 0xFF for v in ALAW_DECODE)
_ALAW_HI = bytes((v >> 8) & 0xFF for v in ALAW_DECODE)


def _expand(table_small: bytes, shift: int) -> bytes:
    """Table indexed by the unsigned 16-bit sample: T[u] = small[u >> shift]."""
    rep = 1 << shift
    return b"".join(bytes((b,)) * rep for b in table_small)


def _signed(n: int, bits: int) -> int:
    return n - (1 << bits) if n >= 1 << (bits - 1) else n


# Encoders indexed by the *unsigned* 16-bit value of the sample (two's complement).
_ULAW_ENC = _expand(bytes(_ulaw_encode14(_signed(i, 14)) for i in range(1 << 14)), 2)
_ALAW_ENC = _expand(bytes(_alaw_encode13(_signed(i, 13)) for i in range(1 << 13)), 3)

# Direct mu-law <-> a-law, through the linear value (the same result as decoding then encoding).
ULAW_TO_ALAW = bytes(_ALAW_ENC[v & 0xFFFF] for v in ULAW_DECODE)
ALAW_TO_ULAW = bytes(_ULAW_ENC[v & 0xFFFF] for v in ALAW_DECODE)


# --- conversions on whole frames --------------------------------------------------------------------

def ulaw_to_alaw(data: bytes) -> bytes:
    return data.translate(ULAW_TO_ALAW)


def alaw_to_ulaw(data: bytes) -> bytes:
    return data.translate(ALAW_TO_ULAW)


def _g711_to_lin16(data: bytes, lo: bytes, hi: bytes) -> bytes:
    out = bytearray(2 * len(data))
    out[0::2] = data.translate(lo)
    out[1::2] = data.translate(hi)
    return bytes(out)


def ulaw_to_lin16(data: bytes) -> bytes:
    """mu-law bytes -> 16-bit signed little-endian samples (twice as many bytes)."""
    return _g711_to_lin16(data, _ULAW_LO, _ULAW_HI)


def alaw_to_lin16(data: bytes) -> bytes:
    """a-law bytes -> 16-bit signed little-endian samples (twice as many bytes)."""
    return _g711_to_lin16(data, _ALAW_LO, _ALAW_HI)


def _u16(data: bytes) -> memoryview | array:
    if len(data) & 1:
        raise ValueError("L16 data must have an even number of bytes")
    if _LITTLE:
        return memoryview(data).cast("H")
    a = array("H", data)
    a.byteswap()
    return a


def lin16_to_ulaw(data: bytes) -> bytes:
    """16-bit signed little-endian samples -> mu-law bytes (half as many bytes)."""
    return bytes(map(_ULAW_ENC.__getitem__, _u16(data)))


def lin16_to_alaw(data: bytes) -> bytes:
    """16-bit signed little-endian samples -> a-law bytes (half as many bytes)."""
    return bytes(map(_ALAW_ENC.__getitem__, _u16(data)))


def _samples(data: bytes) -> list[int]:
    if len(data) & 1:
        raise ValueError("L16 data must have an even number of bytes")
    a = array("h", data)
    if not _LITTLE:
        a.byteswap()
    return a.tolist()


def _to_bytes(samples: list[int]) -> bytes:
    a = array("h", samples)
    if not _LITTLE:
        a.byteswap()
    return a.tobytes()


def _clip(v: int) -> int:
    return 32767 if v > 32767 else (-32768 if v < -32768 else v)


def _clipped(xs: list[int]) -> list[int]:
    """Clip to int16 only when needed (the filters overshoot by at most 12.5%, rarely)."""
    if xs and (max(xs) > 32767 or min(xs) < -32768):
        return [_clip(v) for v in xs]
    return xs


class Upsampler:
    """8 kHz -> 16 kHz L16, stateful across frames (see the module docstring for quality)."""

    __slots__ = ("_hist",)

    def __init__(self) -> None:
        self._hist = [0, 0, 0]

    def reset(self) -> None:
        self._hist = [0, 0, 0]

    def process(self, data: bytes) -> bytes:
        """``n`` samples at 8 kHz (2n bytes) -> ``2n`` samples at 16 kHz (4n bytes)."""
        x = _samples(data)
        if not x:
            return b""
        s = self._hist + x
        self._hist = s[-3:]
        n = len(x)
        out = [0] * (2 * n)
        out[0::2] = s[1:n + 1]
        # value half-way between s[j] and s[j+1], j = 1..n
        out[1::2] = _clipped([
            (9 * (b + c) - a - d + 8) >> 4
            for a, b, c, d in zip(s[0:n], s[1:n + 1], s[2:n + 2], s[3:n + 3], strict=True)
        ])
        return _to_bytes(out)


class Downsampler:
    """16 kHz -> 8 kHz L16, stateful across frames (see the module docstring for quality)."""

    __slots__ = ("_hist", "_odd")

    def __init__(self) -> None:
        self._hist = [0] * 5
        self._odd: list[int] = []  # a leftover sample when a frame had an odd sample count

    def reset(self) -> None:
        self._hist = [0] * 5
        self._odd = []

    def process(self, data: bytes) -> bytes:
        """``2n`` samples at 16 kHz (4n bytes) -> ``n`` samples at 8 kHz (2n bytes)."""
        x = self._odd + _samples(data)
        if len(x) & 1:
            self._odd = [x.pop()]
        else:
            self._odd = []
        if not x:
            return b""
        s = self._hist + x
        self._hist = s[-5:]
        m = len(x) // 2
        # y[k] = (16 s[c] + 9 (s[c-1] + s[c+1]) - (s[c-3] + s[c+3])) / 32, centred on c = 2k + 3:
        # with 5 samples of history every tap exists, and frame after frame the centres stay 2 apart.
        out = _clipped([
            (16 * c + 9 * (b + d) - a - e + 16) >> 5
            for a, b, c, d, e in zip(
                s[0:2 * m:2], s[2:2 * m + 2:2], s[3:2 * m + 3:2], s[4:2 * m + 4:2], s[6:2 * m + 6:2],
                strict=True,
            )
        ])
        return _to_bytes(out)


def resample_lin16(data: bytes, rate_in: int, rate_out: int) -> bytes:
    """A whole clip from ``rate_in`` to ``rate_out`` by linear interpolation (what audioop.ratecv
    did): for prerecorded audio such as spoken fallback messages, not for the 20 ms frame path."""
    x = _samples(data)
    if rate_in == rate_out or not x:
        return _to_bytes(x)
    last = len(x) - 1
    out = []
    for k in range(len(x) * rate_out // rate_in):
        i, frac = divmod(k * rate_in, rate_out)
        a = x[i]
        out.append(a if i >= last else a + (x[i + 1] - a) * frac // rate_out)
    return _to_bytes(out)


def upsample_8k_to_16k(data: bytes) -> bytes:
    """Stateless one-shot upsampling (fresh history): for tests and whole clips."""
    return Upsampler().process(data)


def downsample_16k_to_8k(data: bytes) -> bytes:
    """Stateless one-shot downsampling (fresh history): for tests and whole clips."""
    return Downsampler().process(data)
