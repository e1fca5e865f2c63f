"""A labelled corpus of answered outbound calls for answering-machine detection (bench/amd.py, the
tests): what the far end sends after the 200 OK, as 8 kHz mu-law 20 ms frames, with what answered.

Speech is espeak-ng (several voices, speeds and pitches) over line noise of several levels:

* ``human_short``: "Hello?" (or similar) after a short pause, then silence: the person waits;
* ``human_long``: a longer sentence ("Hi, this is Mark, who's calling?"), then silence;
* ``machine_beep``: a voicemail greeting (short, medium or long), a pause, a beep, then silence;
* ``machine_silence``: a greeting, then silence (no beep);
* ``fax``: CNG, 1100 Hz for 0.5 s every 3.5 s;
* ``silence``: line noise only.

Deterministic: the same ``seed`` gives the same corpus; different seeds draw different voices, texts
and levels (the bench tunes on one seed and reports a held-out one).
"""
from __future__ import annotations

import functools
import math
import random
import shutil
import subprocess
import warnings
from array import array
from dataclasses import dataclass, field

from media import codec

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)  # audioop: deprecated in 3.11, present until 3.13
    import audioop

RATE = 8000
FRAME = 160

VOICES = ("en-us", "en-gb", "en-us+f3", "en-gb-scotland", "en+m3", "en-us+f4", "en-gb-x-rp", "en+f2")
SPEEDS = (140, 160, 175, 190, 210)
PITCHES = (30, 45, 55, 70)
NOISE_DBFS = (None, -60.0, -50.0, -42.0)  # None: a clean digital line
BEEP_HZ = (440.0, 600.0, 850.0, 1000.0, 1400.0, 1800.0)

HUMAN_SHORT = ("Hello?", "Hello.", "Hi.", "Yes?", "Yeah, hello?", "Hello, who's this?", "Speaking.", "Hi there.")
HUMAN_LONG = ("Hi, this is Mark, who's calling?", "Hello, Jennifer speaking.", "Yes, hello, this is Dave.",
              "Good morning, Sarah here.", "Hello? Who is this please?", "Hi, yes, this is Tom.")
GREETINGS = {
    "short": ("Please leave a message.", "Leave a message after the tone.", "I'm not here, leave a message."),
    "medium": ("Hi, you've reached Mark. I can't take your call right now, please leave a message.",
               "The person you are calling is not available. Please leave a message after the tone.",
               "Hello, this is Jennifer. Sorry I missed you, leave your name and number."),
    "long": ("Hi, you have reached the office of Doctor Sarah Miller. We are closed right now. Our hours are "
             "nine to five, Monday through Friday. Please leave your name, number and a short message.",
             "Thank you for calling Acme Plumbing. All of our technicians are busy helping other customers. "
             "Leave a message with your address and we will call you back as soon as we can.",
             "Hey, it's Dave. I'm probably out on the boat or somewhere without a signal. Leave me a message "
             "and I'll get back to you when I can. Thanks, bye."),
}


@dataclass
class Answer:
    name: str
    kind: str  # human_short, human_long, machine_beep, machine_silence, fax, silence
    frames: list[bytes]
    meta: dict = field(default_factory=dict)
    beep_end_ms: int | None = None  # machine_beep: end of the beep, from the first frame
    greeting_end_ms: int | None = None  # machines: end of the greeting's speech

    @property
    def human(self) -> bool:
        return self.kind.startswith("human")

    @property
    def machine(self) -> bool:
        return self.kind.startswith("machine")

    def mulaw(self) -> bytes:
        return b"".join(self.frames)


@functools.lru_cache(maxsize=512)
def speak(text: str, voice: str = "en-us", speed: int = 175, pitch: int = 50) -> bytes:
    """``text`` spoken by espeak-ng as 8 kHz 16-bit PCM, leading and trailing silence trimmed."""
    espeak = shutil.which("espeak-ng")
    if espeak is None:
        raise RuntimeError("espeak-ng is not installed (apt-get install espeak-ng)")
    wav = subprocess.run([espeak, "-v", voice, "-s", str(speed), "-p", str(pitch), "--stdout", text],
                         capture_output=True, timeout=30, check=True).stdout
    rate = int.from_bytes(wav[24:28], "little")
    pcm = wav[44:]
    pcm = pcm[: len(pcm) - len(pcm) % 2]
    pcm, _ = audioop.ratecv(pcm, 2, 1, rate, RATE, None)
    samples = array("h", pcm)
    loud = [i for i, v in enumerate(samples) if abs(v) > 300]
    return samples[loud[0]:loud[-1] + 1].tobytes() if loud else b""


def _at_level(pcm: bytes, rms_dbfs: float) -> bytes:
    rms = audioop.rms(pcm, 2) or 1
    return audioop.mul(pcm, 2, min(8.0, 32768 * 10 ** (rms_dbfs / 20) / rms))


def _silence(ms: float) -> bytes:
    return bytes(2 * int(RATE * ms / 1000))


def tone(hz: float, ms: float, dbfs: float = -16.0) -> bytes:
    """A sine with 5 ms ramps (a voicemail beep, a fax tone)."""
    n, amp, ramp = int(RATE * ms / 1000), 32768 * 10 ** (dbfs / 20), 40
    return array("h", (int(amp * min(1.0, i / ramp, (n - i) / ramp) * math.sin(2 * math.pi * hz * i / RATE))
                       for i in range(n))).tobytes()


@functools.lru_cache(maxsize=8)
def _noise_bed(seed: int, seconds: int = 30) -> bytes:
    rng = random.Random(seed)
    return array("h", (max(-32768, min(32767, int(rng.gauss(0, 3000)))) for _ in range(RATE * seconds))).tobytes()


def _with_noise(pcm: bytes, dbfs: float | None, rng: random.Random) -> bytes:
    if dbfs is None:
        return pcm
    bed = _noise_bed(rng.randrange(4))
    start = 2 * rng.randrange((len(bed) - len(pcm)) // 2) if len(bed) > len(pcm) else 0
    noise = (bed * (1 + len(pcm) // len(bed)))[start:start + len(pcm)]
    return audioop.add(pcm, _at_level(noise, dbfs), 2)


def _frames(pcm: bytes) -> list[bytes]:
    mu = codec.lin16_to_ulaw(pcm)
    return [mu[i:i + FRAME] for i in range(0, len(mu) - FRAME + 1, FRAME)]


def _ms(pcm: bytes) -> int:
    return len(pcm) * 1000 // (2 * RATE)


def make_answer(kind: str, rng: random.Random, index: int = 0) -> Answer:
    voice, speed, pitch = rng.choice(VOICES), rng.choice(SPEEDS), rng.choice(PITCHES)
    noise = rng.choice(NOISE_DBFS)
    level = rng.uniform(-26.0, -16.0)  # speech RMS, dBFS
    meta = {"voice": voice, "speed": speed, "pitch": pitch, "noise_dbfs": noise, "speech_dbfs": round(level, 1)}
    beep_end = greeting_end = None
    if kind in ("human_short", "human_long"):
        text = rng.choice(HUMAN_SHORT if kind == "human_short" else HUMAN_LONG)
        lead = rng.uniform(200, 1200)
        pcm = _silence(lead) + _at_level(speak(text, voice, speed, pitch), level) + _silence(6000)
        meta.update(text=text, lead_ms=round(lead))
    elif kind in ("machine_beep", "machine_silence"):
        length = rng.choice(tuple(GREETINGS)) if kind == "machine_beep" else rng.choice(("medium", "long"))
        text = rng.choice(GREETINGS[length])
        lead = rng.uniform(300, 1500)
        pcm = _silence(lead) + _at_level(speak(text, voice, speed, pitch), level)
        greeting_end = _ms(pcm)
        meta.update(text=text, greeting=length, lead_ms=round(lead))
        if kind == "machine_beep":
            hz, beep_ms = rng.choice(BEEP_HZ), rng.uniform(250, 1000)
            pcm += _silence(rng.uniform(300, 1000)) + tone(hz, beep_ms, rng.uniform(-20.0, -10.0))
            beep_end = _ms(pcm)
            meta.update(beep_hz=hz, beep_ms=round(beep_ms))
            pcm += _silence(4000)
        else:
            pcm += _silence(8000)
    elif kind == "fax":
        lead = rng.uniform(200, 1000)
        pcm = _silence(lead)
        for _ in range(3):
            pcm += tone(1100.0, 500, rng.uniform(-20.0, -10.0)) + _silence(3000)
        meta.update(lead_ms=round(lead))
    elif kind == "silence":
        pcm = _silence(8000)
    else:
        raise ValueError(kind)
    pcm = _with_noise(pcm, noise, rng)
    return Answer(f"{kind}-{index:03d}", kind, _frames(pcm), meta, beep_end, greeting_end)


def corpus(n: int = 200, seed: int = 1, extras: int = 10) -> list[Answer]:
    """``n`` answers, half humans (short and long in turn), half machines (beep and silence in turn),
    plus ``extras`` fax and ``extras`` silent answers."""
    rng = random.Random(seed)
    kinds = [("human_short", "human_long")[i % 2] for i in range(n // 2)]
    kinds += [("machine_beep", "machine_silence")[i % 2] for i in range(n - n // 2)]
    kinds += ["fax"] * extras + ["silence"] * extras
    return [make_answer(kind, rng, i) for i, kind in enumerate(kinds)]
