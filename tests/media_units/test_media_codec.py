"""Codec round trips, compared on decoded samples."""
import math
import warnings
from array import array

import pytest

from media import codec

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    try:
        import audioop
    except ImportError:  # Python >= 3.13
        audioop = None

ALL = bytes(range(256))


def samples(b: bytes) -> list[int]:
    return array("h", b).tolist()


def to_bytes(xs) -> bytes:
    return array("h", [int(x) for x in xs]).tobytes()


def sine(freq, rate, n, amp=12000.0, phase=0.0):
    return [amp * math.sin(2 * math.pi * freq * i / rate + phase) for i in range(n)]


def snr_db(ref, got):
    sig = sum(r * r for r in ref)
    noise = sum((r - g) ** 2 for r, g in zip(ref, got, strict=True)) or 1e-9
    return 10 * math.log10(sig / noise)


def test_known_g711_values():
    u = samples(codec.ulaw_to_lin16(bytes([0x00, 0x80, 0xFF, 0x7F, 0xF0])))
    assert u == [-32124, 32124, 0, 0, 120]
    a = samples(codec.alaw_to_lin16(bytes([0xD5, 0x55, 0xAA, 0x2A])))
    assert a == [8, -8, 32256, -32256]


def test_ulaw_alaw_decode_monotonic_and_symmetric():
    u = samples(codec.ulaw_to_lin16(ALL))
    a = samples(codec.alaw_to_lin16(ALL))
    for i in range(128):
        assert u[i] == -u[i | 0x80]  # mu-law: sign bit is 0x80 (inverted)
        assert a[i] == -a[i | 0x80]
    assert len(set(u)) == 255  # +0 and -0 coincide
    assert len(set(a)) == 256


@pytest.mark.skipif(audioop is None, reason="audioop not available")
def test_tables_match_audioop_exhaustively():
    assert codec.ulaw_to_lin16(ALL) == audioop.ulaw2lin(ALL, 2)
    assert codec.alaw_to_lin16(ALL) == audioop.alaw2lin(ALL, 2)
    lin = array("h", range(-32768, 32768)).tobytes()
    assert codec.lin16_to_ulaw(lin) == audioop.lin2ulaw(lin, 2)
    assert codec.lin16_to_alaw(lin) == audioop.lin2alaw(lin, 2)


def test_g711_code_round_trips():
    # code -> linear -> code is the identity (mu-law "-0" 0x7F becomes "+0" 0xFF)
    back = codec.lin16_to_ulaw(codec.ulaw_to_lin16(ALL))
    assert back == ALL.replace(b"\x7f", b"\xff")
    assert codec.lin16_to_alaw(codec.alaw_to_lin16(ALL)) == ALL


def test_ulaw_alaw_translation_preserves_samples():
    ref = samples(codec.ulaw_to_lin16(ALL))
    via_a = samples(codec.alaw_to_lin16(codec.ulaw_to_alaw(ALL)))
    for r, g in zip(ref, via_a, strict=True):
        # a-law's step is at most 1/16 of the magnitude (+ the small-signal step)
        assert abs(r - g) <= abs(r) / 16 + 16, (r, g)
    # translating back gives samples at least as close as one a-law step
    back = samples(codec.ulaw_to_lin16(codec.alaw_to_ulaw(codec.ulaw_to_alaw(ALL))))
    for r, g in zip(ref, back, strict=True):
        assert abs(r - g) <= abs(r) / 16 + 16
    # equals decode-then-encode
    assert codec.ulaw_to_alaw(ALL) == codec.lin16_to_alaw(codec.ulaw_to_lin16(ALL))
    assert codec.alaw_to_ulaw(ALL) == codec.lin16_to_ulaw(codec.alaw_to_lin16(ALL))


@pytest.mark.parametrize("encode,decode", [
    (codec.lin16_to_ulaw, codec.ulaw_to_lin16),
    (codec.lin16_to_alaw, codec.alaw_to_lin16),
])
def test_linear_round_trip_quality(encode, decode):
    ref = [round(x) for x in sine(1000, 8000, 8000, amp=16000)]
    frames = [to_bytes(ref[i:i + 160]) for i in range(0, len(ref), 160)]
    coded = [encode(f) for f in frames]
    assert all(len(c) == 160 for c in coded)
    got = samples(b"".join(decode(c) for c in coded))
    assert snr_db(ref, got) > 33  # G.711 gives ~38 dB on a loud sine


def test_odd_length_l16_rejected():
    with pytest.raises(ValueError):
        codec.lin16_to_ulaw(b"\x00\x01\x02")


def _resample_frames(cls, data: bytes, frame_bytes: int) -> bytes:
    r = cls()
    return b"".join(r.process(data[i:i + frame_bytes]) for i in range(0, len(data), frame_bytes))


def test_upsample_matches_ideal_sine():
    n = 8000
    x = to_bytes(sine(1000, 8000, n))
    y = samples(_resample_frames(codec.Upsampler, x, 320))  # 20 ms frames of 8 kHz L16
    assert len(y) == 2 * n
    delay = 4  # 2 input samples at 8 kHz = 4 samples at 16 kHz
    ideal = sine(1000, 16000, 2 * n + delay)
    assert snr_db(ideal[200:2 * n - delay], y[200 + delay:]) > 30
    # frame-by-frame processing is seamless: same as one shot
    assert _resample_frames(codec.Upsampler, x, 320) == codec.upsample_8k_to_16k(x)


def test_downsample_matches_ideal_sine_and_rejects_aliases():
    n = 16000
    x = to_bytes(sine(1000, 16000, n))
    y = samples(_resample_frames(codec.Downsampler, x, 640))  # 20 ms frames of 16 kHz L16
    assert len(y) == n // 2
    ideal = sine(1000, 8000, n // 2)
    delay = 1  # 2 input samples at 16 kHz = 1 sample at 8 kHz
    assert snr_db(ideal[100:n // 2 - delay], y[100 + delay:]) > 30
    assert _resample_frames(codec.Downsampler, x, 640) == codec.downsample_16k_to_8k(x)
    # a 6 kHz tone (would alias to 2 kHz) comes out at least 20 dB down
    hi = to_bytes(sine(6000, 16000, n))
    out = samples(codec.downsample_16k_to_8k(hi))[100:]
    rms_in = math.sqrt(sum(v * v for v in sine(6000, 16000, n)) / n)
    rms_out = math.sqrt(sum(v * v for v in out) / len(out))
    assert 20 * math.log10(rms_out / rms_in) < -20


def test_up_then_down_round_trip():
    n = 8000
    ref = sine(440, 8000, n, amp=10000)
    x = to_bytes(ref)
    back = samples(_resample_frames(codec.Downsampler, _resample_frames(codec.Upsampler, x, 320), 640))
    assert len(back) == n
    # total delay: 4 samples at 16 kHz (up) + 2 at 16 kHz (down) = 3 samples at 8 kHz
    assert snr_db(ref[100:n - 3], back[103:]) > 30


def test_silence_constants():
    assert samples(codec.ulaw_to_lin16(bytes([codec.ULAW_SILENCE]))) == [0]
    assert abs(samples(codec.alaw_to_lin16(bytes([codec.ALAW_SILENCE])))[0]) <= 8


def test_resamplers_clip_instead_of_wrapping():
    # a full-scale square wave makes both filters overshoot int16 (unclipped, array('h') would raise)
    square = to_bytes([32767 if (i // 4) % 2 else -32768 for i in range(640)])
    up = samples(codec.upsample_8k_to_16k(square))
    down = samples(codec.downsample_16k_to_8k(square))
    assert min(up) == -32768 and max(up) == 32767
    assert max(down) == 32767
    assert up.count(32767) > 2 * 640 // 4  # plateaus stay at full scale (overshoot clipped, not wrapped)


def test_a_spoken_clip_at_22050_hz_resamples_to_8_khz():
    # espeak-ng speaks at 22050 Hz; fallback messages are stored as 8 kHz mu-law
    x = to_bytes(sine(440, 22050, 22050))
    y = samples(codec.resample_lin16(x, 22050, 8000))
    assert len(y) == 8000
    assert snr_db(sine(440, 8000, 8000), y) > 30
    assert codec.resample_lin16(x, 8000, 8000) == x
