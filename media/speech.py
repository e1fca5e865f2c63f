"""End of caller speech, and the AI response time after it: how long the caller waits, from the end
of what they said to the agent's first audio back.

Runs on the media bridge's frame path, once per 20 ms G.711 frame, so it is kept O(1) and cheap
(~1 us a frame): the level of a frame is the mean magnitude of one sample in ``SAMPLE_STEP``, each
mapped by a 256-entry table (``bytes.translate``, in C) to ``min(255, |linear| >> 4)``; magnitudes
above ~-18 dBFS saturate, which only matters far above any threshold.

Voice activity (energy with hangover): a frame is voiced when its level is above
``max(min_level, noise_ratio * noise floor)``. The floor follows the line's quietest level: it falls
fast and rises slowly (time constant ~10 s), so pauses keep it low and a steady hiss louder than
``min_level`` is learned within a few seconds and then no longer counts as speech. Speech starts after ``onset_frames`` voiced frames in a row
(a click is not speech) and ends after ``hangover_frames`` unvoiced ones (pauses between words are
not an end); it ended at the arrival of its last voiced frame, not when the hangover ran out.

A turn's response is the first agent audio with a voiced frame that arrives after the end of the
caller's speech. Agent audio during the hangover counts too, if the caller stays silent (an agent
quick enough to answer before we are sure the caller finished); agent audio while the caller speaks
does not (overlap, echo). A turn the caller follows up before the agent answered has no response.
"""
from __future__ import annotations

import sys
from array import array

from media import codec

__all__ = ["SpeechDetector", "ResponseTimer", "frame_level", "voiced_l16"]

FRAME_BYTES = 160
SAMPLE_STEP = 4  # 40 of a frame's 160 samples
MIN_LEVEL = 12  # mean |linear| >> 4: 12 is ~200 of 32768, about -44 dBFS
NOISE_RATIO = 3
NOISE_FALL, NOISE_RISE = 0.1, 0.002  # per frame
ONSET_FRAMES = 3  # 60 ms
HANGOVER_FRAMES = 15  # 300 ms
MAX_TURNS = 1000  # responses kept per call (memory stays bounded on endless calls)


def _level_table(decoded: tuple[int, ...]) -> bytes:
    return bytes(min(255, abs(v) >> 4) for v in decoded)


LEVELS = {"pcmu": _level_table(codec.ULAW_DECODE), "pcma": _level_table(codec.ALAW_DECODE)}


def frame_level(frame: bytes, table: bytes = LEVELS["pcmu"]) -> float:
    """Mean level of a frame's sampled magnitudes (the unit of MIN_LEVEL)."""
    sampled = frame[::SAMPLE_STEP]
    return sum(sampled.translate(table)) / max(1, len(sampled))


class SpeechDetector:
    """Energy voice activity with hangover, one 20 ms frame at a time (see the module docstring)."""

    __slots__ = ("table", "min_sum", "noise_ratio", "onset", "hangover", "noise_sum", "run", "quiet",
                 "speaking", "last_voiced")

    def __init__(self, codec_name: str = "pcmu", min_level: float = MIN_LEVEL, noise_ratio: float = NOISE_RATIO,
                 onset_frames: int = ONSET_FRAMES, hangover_frames: int = HANGOVER_FRAMES):
        self.table = LEVELS[codec_name]
        samples = FRAME_BYTES // SAMPLE_STEP
        self.min_sum = min_level * samples  # thresholds on the sum of a frame's sampled levels
        self.noise_ratio = noise_ratio
        self.onset = onset_frames
        self.hangover = hangover_frames
        self.noise_sum = self.min_sum / noise_ratio  # the threshold starts at min_level
        self.run = 0  # voiced frames in a row
        self.quiet = 0  # unvoiced frames since the last voiced one, while speaking
        self.speaking = False
        self.last_voiced = 0.0  # arrival of the last voiced frame

    def set_codec(self, codec_name: str) -> None:
        self.table = LEVELS[codec_name]

    def push(self, frame: bytes, now: float) -> float | None:
        """One caller frame arrived at ``now``. Returns when the speech ended (its last voiced
        frame's arrival) on the frame that completes the hangover, else None."""
        level = sum(frame[:FRAME_BYTES:SAMPLE_STEP].translate(self.table))  # first 20 ms of longer packets
        noise = self.noise_sum
        self.noise_sum = noise + (level - noise) * (NOISE_FALL if level < noise else NOISE_RISE)
        noise *= self.noise_ratio
        if level > (noise if noise > self.min_sum else self.min_sum):
            self.run += 1
            if self.speaking or self.run >= self.onset:
                self.speaking = True
                self.quiet = 0
                self.last_voiced = now
            return None
        self.run = 0
        if self.speaking:
            self.quiet += 1
            if self.quiet >= self.hangover:
                self.speaking = False
                self.quiet = 0
                return self.last_voiced
        return None

    def voiced(self, audio: bytes) -> bool:
        """Whether any 20 ms frame of ``audio`` (in this detector's codec) is above the minimum level."""
        table, threshold = self.table, self.min_sum
        for i in range(0, len(audio) - FRAME_BYTES + 1, FRAME_BYTES):
            if sum(audio[i:i + FRAME_BYTES:SAMPLE_STEP].translate(table)) > threshold:
                return True
        return False


def voiced_l16(audio: bytes, min_level: float = MIN_LEVEL) -> bool:
    """Whether any 20 ms frame of 16 kHz L16 (little-endian) audio is above the minimum level."""
    samples = array("h", audio[:len(audio) & ~1])
    if sys.byteorder == "big":
        samples.byteswap()
    per_frame, step = 320, SAMPLE_STEP * 2  # 40 samples of each 20 ms, as for G.711
    threshold = min_level * 16 * (per_frame // step)
    for i in range(0, len(samples) - per_frame + 1, per_frame):
        if sum(map(abs, samples[i:i + per_frame:step])) > threshold:
            return True
    return False


class ResponseTimer:
    """AI response times of one call: feed it the caller's frames and the agent's audio (mu-law, or
    16 kHz L16 with ``agent_l16``), both from the same thread, with their arrival times
    (time.monotonic())."""

    __slots__ = ("caller", "agent_voiced", "turn_end", "early_reply", "responses_ms")

    def __init__(self, caller_codec: str = "pcmu", agent_l16: bool = False):
        self.caller = SpeechDetector(caller_codec)
        self.agent_voiced = voiced_l16 if agent_l16 else SpeechDetector("pcmu").voiced
        self.turn_end: float | None = None  # end of the caller's speech, awaiting the agent's answer
        self.early_reply: float | None = None  # agent audio that came during the hangover
        self.responses_ms: list[float] = []

    def caller_frame(self, frame: bytes, now: float) -> None:
        caller = self.caller
        was_speaking = caller.speaking
        ended = caller.push(frame, now)
        if ended is not None:
            if self.early_reply is not None:
                self._answered(self.early_reply, ended)
            else:
                self.turn_end = ended
        elif caller.speaking and caller.quiet == 0:
            self.early_reply = None  # the caller goes on: what the agent said was an overlap
            if not was_speaking:
                self.turn_end = None  # the caller spoke again before any answer

    def agent_audio(self, audio: bytes, now: float) -> None:
        caller = self.caller
        if self.turn_end is None and not (caller.speaking and caller.quiet and self.early_reply is None):
            return  # nothing awaits an answer: O(1), the common case
        if not self.agent_voiced(audio):
            return
        if self.turn_end is not None:
            self._answered(now, self.turn_end)
        else:
            self.early_reply = now

    def _answered(self, reply: float, speech_end: float) -> None:
        self.turn_end = self.early_reply = None
        if len(self.responses_ms) < MAX_TURNS:
            self.responses_ms.append(round((reply - speech_end) * 1000.0, 1))

    def set_caller_codec(self, codec_name: str) -> None:
        self.caller.set_codec(codec_name)

    def summary(self) -> dict:
        """ai_response_ms (median over the answered turns, when any) and ai_response_turns."""
        out: dict = {"ai_response_turns": len(self.responses_ms)}
        if self.responses_ms:
            ordered = sorted(self.responses_ms)
            mid = len(ordered) // 2
            out["ai_response_ms"] = ordered[mid] if len(ordered) % 2 else round((ordered[mid - 1] + ordered[mid]) / 2, 1)
        return out
