"""Answering-machine detection: who answered an outbound call, from its first audio, with Twilio's
``AnsweredBy`` values and parameters (``MachineDetection``, ``MachineDetectionTimeout``, …).

Fed the caller's 20 ms G.711 frames (mu-law or a-law, 160 bytes) in order; time is media time (frames
× 20 ms), so a decision is the same however the frames are delivered. Pure and cheap (~5 us a frame in
plain Python, no numpy): per frame one level (``bytes.translate`` on every other sample, as in
media/speech.py) and one zero-crossing count (the G.711 sign bit, counted with ``bytes.count``); a tone
candidate is confirmed with a Goertzel filter on that frame only.

Cadence (energy voice activity against a learned noise floor; a word is voiced frames, a pause is
unvoiced frames shorter than the speech-end threshold):

* no speech within ``silence_timeout_ms`` → ``unknown``;
* speech (pauses included) longer than ``speech_threshold_ms`` → a machine (a greeting);
* speech followed by ``speech_end_threshold_ms`` of silence, shorter than that → ``human``
  ("Hello?", then waiting for an answer); a short greeting needs less silence (``SHORT_GREETINGS``:
  with Twilio's defaults 400 ms after up to 600 ms of speech, 720 ms after up to 1,300 ms);
* a steady pure tone (a tone's zero crossings are regular and its energy sits in one frequency):
  1100 Hz (fax CNG) or 2100 Hz (fax CED) before any speech → ``fax``; any tone after speech → a
  voicemail beep.

``MachineDetection=Enable`` reports a machine as ``machine_start`` as soon as it is known.
``DetectMessageEnd`` waits for the end of the greeting: the end of a beep (``machine_end_beep``,
reported on the first frame after the tone, so a message can start right after it), or
``speech_end_threshold_ms`` of silence (``machine_end_silence``); ``timeout_ms`` →
``machine_end_other``. Without any decision by ``timeout_ms``: ``unknown``.
"""
from __future__ import annotations

import math
from array import array
from dataclasses import dataclass, field

from media import codec
from media.speech import LEVELS

__all__ = ["AmdParams", "Decision", "MachineDetector", "HUMAN", "MACHINE_START", "MACHINE_END_BEEP",
           "MACHINE_END_SILENCE", "MACHINE_END_OTHER", "FAX", "UNKNOWN", "MACHINE_VALUES", "ANSWERED_BY_VALUES"]

HUMAN = "human"
MACHINE_START = "machine_start"
MACHINE_END_BEEP = "machine_end_beep"
MACHINE_END_SILENCE = "machine_end_silence"
MACHINE_END_OTHER = "machine_end_other"
FAX = "fax"
UNKNOWN = "unknown"
MACHINE_VALUES = (MACHINE_START, MACHINE_END_BEEP, MACHINE_END_SILENCE, MACHINE_END_OTHER)
ANSWERED_BY_VALUES = (HUMAN, *MACHINE_VALUES, FAX, UNKNOWN)

ENABLE = "Enable"
DETECT_MESSAGE_END = "DetectMessageEnd"
MODES = (ENABLE, DETECT_MESSAGE_END)

FRAME_BYTES = 160
FRAME_MS = 20
RATE = 8000

# voice activity: level = sum over every other sample of min(255, |x| >> 4) (80 samples a frame)
LEVEL_STEP = 2
MIN_LEVEL_SUM = 10 * (FRAME_BYTES // LEVEL_STEP)  # mean |x| ~160 of 32768, about -46 dBFS
NOISE_RATIO = 4.0  # voiced: above this many times the noise floor
NOISE_FALL, NOISE_RISE = 0.2, 0.004  # per frame: the floor falls fast, rises slowly
ONSET_FRAMES = 2  # voiced frames in a row that start speech (a click is not speech)

# tones: zero crossings per frame, steady over a run of frames, energy in one frequency
TONE_MIN_HZ, TONE_MAX_HZ = 300.0, 2300.0
TONE_ZC_SPREAD = 2  # max - min zero crossings of a frame over the run
TONE_FRAMES = 6  # 120 ms of steady tone make a tone
TONE_PURITY = 0.6  # share of the frame's energy in the Goertzel bin (plus neighbours)
FAX_TONES_HZ = (1100.0, 2100.0)
FAX_TOLERANCE_HZ = 60.0

BARELY_OVER = 1.25  # of the speech threshold (DetectMessageEnd only)
# A short greeting ends sooner than the speech-end threshold says: a person's "Hello?" is followed by a
# wait, a voicemail greeting's pauses come after more speech (bench/amd.py measures the trade-off).
# (share of the speech threshold spoken, share of the speech-end threshold of silence that ends it)
SHORT_GREETINGS = ((0.25, 0.33), (0.54, 0.6))

_SIGN = {name: bytes(1 if v >= 0 else 0 for v in table)
         for name, table in (("pcmu", codec.ULAW_DECODE), ("pcma", codec.ALAW_DECODE))}


@dataclass(frozen=True)
class AmdParams:
    """Twilio's parameters (milliseconds except ``timeout_s``), with Twilio's defaults and ranges."""

    mode: str = ENABLE
    timeout_s: float = 30.0  # MachineDetectionTimeout, 3..59
    speech_threshold_ms: int = 2400  # MachineDetectionSpeechThreshold, 1000..6000
    speech_end_threshold_ms: int = 1200  # MachineDetectionSpeechEndThreshold, 500..5000
    silence_timeout_ms: int = 5000  # MachineDetectionSilenceTimeout, 2000..10000

    RANGES = {"timeout_s": (3, 59), "speech_threshold_ms": (1000, 6000),
              "speech_end_threshold_ms": (500, 5000), "silence_timeout_ms": (2000, 10000)}

    def __post_init__(self):
        if self.mode not in MODES:
            raise ValueError(f"MachineDetection must be one of {', '.join(MODES)}")
        for name, (lo, hi) in self.RANGES.items():
            value = getattr(self, name)
            if not lo <= value <= hi:
                raise ValueError(f"{name} must be between {lo} and {hi}")

    @classmethod
    def from_dict(cls, d: dict) -> AmdParams:
        return cls(**{k: d[k] for k in ("mode", "timeout_s", "speech_threshold_ms", "speech_end_threshold_ms",
                                        "silence_timeout_ms") if d.get(k) is not None})

    def as_dict(self) -> dict:
        return {"mode": self.mode, "timeout_s": self.timeout_s, "speech_threshold_ms": self.speech_threshold_ms,
                "speech_end_threshold_ms": self.speech_end_threshold_ms, "silence_timeout_ms": self.silence_timeout_ms}


@dataclass
class Decision:
    answered_by: str
    ms: int  # media time of the decision, from the first frame
    evidence: dict = field(default_factory=dict)

    @property
    def machine(self) -> bool:
        return self.answered_by in MACHINE_VALUES


def goertzel_share(samples, hz: float) -> float:
    """Share of the samples' energy at ``hz`` (1.0 for a pure tone at that frequency)."""
    n = len(samples)
    k = 2.0 * math.cos(2.0 * math.pi * hz / RATE)
    s1 = s2 = 0.0
    energy = 0.0
    for x in samples:
        s1, s2 = x + k * s1 - s2, s1
        energy += x * x
    power = s1 * s1 + s2 * s2 - k * s1 * s2
    return 0.0 if energy <= 0 else min(1.0, 2.0 * power / (n * energy))


class MachineDetector:
    """One call's detection: ``push`` each caller frame; it returns the Decision once (then None).
    With DetectMessageEnd it may return a first machine decision's end later: ``push`` keeps
    returning None after the final decision."""

    def __init__(self, params: AmdParams | None = None, codec_name: str = "pcmu"):
        self.p = params or AmdParams()
        self.set_codec(codec_name)
        self.frames = 0
        self.noise_sum = -1.0  # learned from the first frame
        self.run = 0  # voiced frames in a row
        self.speech_start = -1  # frame index of the first voiced frame of the greeting
        self.last_voiced = -1
        self.words = 0
        self.in_word = False
        self.longest_pause = 0
        self.machine_at = -1  # frame of the machine decision (DetectMessageEnd waits on)
        self.tone_zc: list[int] = []  # zero crossings of the current steady run
        self.tone_frame = b""
        self.tone: dict | None = None  # a confirmed tone in progress: hz, start frame
        self.tones: list[dict] = []
        self.decision: Decision | None = None
        self._ends = self.p.speech_end_threshold_ms // FRAME_MS
        self._greeting = self.p.speech_threshold_ms // FRAME_MS
        self._silence = self.p.silence_timeout_ms // FRAME_MS
        # DetectMessageEnd: speech this little over the threshold that ends in silence without a
        # beep is a person's long sentence
        self._barely = int(self._greeting * BARELY_OVER)
        self._short_ends = [(int(self._greeting * spoken), int(self._ends * silence))
                            for spoken, silence in SHORT_GREETINGS]
        self._timeout = int(self.p.timeout_s * 1000) // FRAME_MS

    def set_codec(self, codec_name: str) -> None:
        self.codec = codec_name
        self.levels = LEVELS[codec_name]
        self.signs = _SIGN[codec_name]

    @property
    def done(self) -> bool:
        return self.decision is not None

    # ---- per frame ---------------------------------------------------------------------------------
    def push(self, frame: bytes) -> Decision | None:
        if self.decision is not None:
            return None
        frame = frame[:FRAME_BYTES]
        i = self.frames
        self.frames = i + 1
        level = sum(frame[::LEVEL_STEP].translate(self.levels))
        noise = self.noise_sum
        if noise < 0:
            noise = level
        self.noise_sum = noise + (level - noise) * (NOISE_FALL if level < noise else NOISE_RISE)
        threshold = noise * NOISE_RATIO
        voiced = level > (threshold if threshold > MIN_LEVEL_SUM else MIN_LEVEL_SUM)

        if voiced:
            tone = self._tone(frame, i)
            if tone is not None:
                return tone
            if self.tone is not None:  # a tone is not speech
                return self._cadence(i)
            self.run += 1
            if self.run >= ONSET_FRAMES or self.speech_start >= 0:
                if self.speech_start < 0:
                    self.speech_start = i - self.run + 1
                elif not self.in_word:
                    self.longest_pause = max(self.longest_pause, i - self.last_voiced - 1)
                if not self.in_word:
                    self.words += 1
                    self.in_word = True
                self.last_voiced = i
        else:
            self.run = 0
            self.in_word = False
            if self.tone is not None or self.tone_zc:
                ended = self._tone_ended(i)
                if ended is not None:
                    return ended
        return self._cadence(i)

    def _cadence(self, i: int) -> Decision | None:
        if self.machine_at >= 0:  # DetectMessageEnd: waiting for the end of the greeting
            if self.last_voiced >= 0 and i - self.last_voiced >= self._ends and self.tone is None:
                if self.last_voiced - self.speech_start + 1 < self._barely:
                    self.machine_at = -1  # a person's long sentence, not a greeting: machines beep
                    return self._decide(HUMAN, i, "speech just over the threshold, then silence, no beep")
                return self._decide(MACHINE_END_SILENCE, i, "silence after the greeting")
            if i + 1 >= self._timeout:
                return self._decide(MACHINE_END_OTHER, i, "timeout waiting for the end of the greeting")
            return None
        if self.tone is not None and i + 1 < self._timeout:
            return None  # a beep or a fax tone in progress: decide when it ends
        if self.speech_start < 0:
            if i + 1 >= self._silence:
                return self._decide(UNKNOWN, i, "no speech")
            return None
        if self.last_voiced - self.speech_start + 1 >= self._greeting:
            return self._machine(i, "long greeting")
        silence = i - self.last_voiced
        if silence >= self._ends:
            return self._decide(HUMAN, i, "greeting then silence")
        spoken = self.last_voiced - self.speech_start + 1
        for most_spoken, ends in self._short_ends:
            if spoken <= most_spoken:
                if silence >= ends:
                    return self._decide(HUMAN, i, "short greeting then silence")
                break
        if i + 1 >= self._timeout:
            return self._decide(UNKNOWN, i, "timeout")
        return None

    def _machine(self, i: int, cause: str) -> Decision | None:
        if self.p.mode == ENABLE:
            return self._decide(MACHINE_START, i, cause)
        self.machine_at = i
        self.cause = cause
        return None

    # ---- tones --------------------------------------------------------------------------------------
    def _tone(self, frame: bytes, i: int) -> Decision | None:
        s = frame.translate(self.signs)
        zc = s.count(b"\x00\x01") + s.count(b"\x01\x00")
        hz = zc * RATE / (2 * FRAME_BYTES)
        run = self.tone_zc
        if not TONE_MIN_HZ <= hz <= TONE_MAX_HZ or (run and max(max(run), zc) - min(min(run), zc) > TONE_ZC_SPREAD):
            if self.tone is not None:
                return self._tone_ended(i)
            run.clear()
            if TONE_MIN_HZ <= hz <= TONE_MAX_HZ:
                run.append(zc)
            return None
        run.append(zc)
        if self.tone is None and len(run) >= TONE_FRAMES:
            mean_hz = sum(run) / len(run) * RATE / (2 * FRAME_BYTES)
            share = self._purity(frame, mean_hz)
            if share >= TONE_PURITY:
                self.tone = {"hz": round(mean_hz), "start_ms": (i - len(run) + 1) * FRAME_MS,
                             "purity": round(share, 2)}
                # the tone frames (and its onset) were counted as speech: take them back
                if self.speech_start >= i - len(run) + 1 - ONSET_FRAMES:
                    self.speech_start = -1
                    self.words = 0
                elif self.last_voiced >= i - len(run) + 1:
                    self.last_voiced = i - len(run)
                if self._is_fax(mean_hz) and self.speech_start < 0:
                    return self._decide(FAX, i, "fax tone")
            else:
                run.pop(0)
        return None

    def _tone_ended(self, i: int) -> Decision | None:
        tone, self.tone = self.tone, None
        self.tone_zc.clear()
        if tone is None:
            return None
        tone["ms"] = i * FRAME_MS - tone["start_ms"]
        self.tones.append(tone)
        self.run = 0
        self.in_word = False
        if self.speech_start >= 0 or self.machine_at >= 0:  # a beep after a greeting
            return self._decide(MACHINE_END_BEEP if self.p.mode == DETECT_MESSAGE_END else MACHINE_START, i,
                                "beep after the greeting")
        return None

    def _is_fax(self, hz: float) -> bool:
        return any(abs(hz - f) <= FAX_TOLERANCE_HZ for f in FAX_TONES_HZ)

    def _purity(self, frame: bytes, hz: float) -> float:
        samples = array("h", codec.ulaw_to_lin16(frame) if self.codec == "pcmu" else codec.alaw_to_lin16(frame))
        return max(goertzel_share(samples, hz + d) for d in (-20.0, 0.0, 20.0))

    # ---- the decision -------------------------------------------------------------------------------
    def _decide(self, answered_by: str, i: int, cause: str) -> Decision:
        if self.tone is not None and answered_by != FAX:
            self.tones.append(dict(self.tone, ms=i * FRAME_MS - self.tone["start_ms"]))
        evidence: dict = {"cause": cause}
        if self.speech_start >= 0:
            evidence.update(initial_silence_ms=self.speech_start * FRAME_MS,
                            greeting_ms=(self.last_voiced - self.speech_start + 1) * FRAME_MS,
                            words=self.words, longest_pause_ms=self.longest_pause * FRAME_MS,
                            silence_after_ms=(i - self.last_voiced) * FRAME_MS)
        if self.machine_at >= 0:
            evidence["machine_ms"] = (self.machine_at + 1) * FRAME_MS
            evidence["machine_cause"] = self.cause
        if self.tones or self.tone:
            evidence["tones"] = self.tones[-3:] or [self.tone]
        self.decision = Decision(answered_by, (i + 1) * FRAME_MS, evidence)
        return self.decision

    def finish(self) -> Decision:
        """The audio ended (the far end hung up, or the detector's budget ran out) before a decision."""
        if self.decision is None:
            if self.machine_at >= 0:
                self._decide(MACHINE_END_OTHER, self.frames, "audio ended during the greeting")
            else:
                self._decide(UNKNOWN, self.frames, "audio ended")
        return self.decision
