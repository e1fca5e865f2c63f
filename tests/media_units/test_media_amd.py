"""Answering-machine detection over generated answers (bench/amd_corpus.py: espeak-ng voices over
line noise): each AnsweredBy value, the decision's evidence, and Twilio's parameters."""
import random

import pytest

from bench.amd_corpus import corpus, make_answer, tone
from media import amd, codec
from media.amd import AmdParams, MachineDetector

END = AmdParams(mode=amd.DETECT_MESSAGE_END)


def decide(frames, params=END, codec_name="pcmu"):
    detector = MachineDetector(params, codec_name)
    for frame in frames:
        decision = detector.push(frame)
        if decision is not None:
            assert detector.push(frame) is None  # one decision per call
            return decision
    return detector.finish()


def answer(kind, seed=5):
    return make_answer(kind, random.Random(seed))


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_a_person_saying_hello_then_waiting_is_human(seed):
    a = answer("human_short", seed)
    d = decide(a.frames)
    assert d.answered_by == amd.HUMAN, (a.meta, d)
    # a short greeting needs less silence than Twilio's 1,200 ms speech-end threshold
    assert d.evidence["greeting_ms"] <= 1280, d.evidence
    assert d.evidence["silence_after_ms"] == (380 if d.evidence["greeting_ms"] <= 600 else 720)
    assert abs(d.evidence["initial_silence_ms"] - a.meta["lead_ms"]) <= 100


def test_a_person_saying_a_longer_sentence_is_human():
    a = answer("human_long", 4)
    d = decide(a.frames)
    assert d.answered_by == amd.HUMAN, (a.meta, d)
    assert d.evidence["words"] >= 2


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_a_greeting_ending_in_a_beep_is_decided_right_after_the_beep(seed):
    a = answer("machine_beep", seed)
    d = decide(a.frames)
    assert d.answered_by == amd.MACHINE_END_BEEP, (a.meta, d)
    assert 0 <= d.ms - a.beep_end_ms <= 60  # the first frames after the tone
    (beep,) = d.evidence["tones"]
    assert abs(beep["hz"] - a.meta["beep_hz"]) <= 50


def test_a_greeting_ending_in_silence_is_machine_end_silence():
    a = answer("machine_silence", 2)
    d = decide(a.frames)
    assert d.answered_by == amd.MACHINE_END_SILENCE, (a.meta, d)
    assert d.ms >= a.greeting_end_ms + END.speech_end_threshold_ms - 100  # the voice fades out
    assert d.evidence["initial_silence_ms"] + END.speech_threshold_ms <= d.evidence["machine_ms"] < a.greeting_end_ms


def test_with_enable_a_machine_is_reported_as_soon_as_the_greeting_is_too_long():
    a = answer("machine_silence", 2)
    d = decide(a.frames, AmdParams(mode=amd.ENABLE))
    assert d.answered_by == amd.MACHINE_START
    assert d.ms < a.greeting_end_ms
    assert d.evidence["cause"] == "long greeting"


def test_a_greeting_that_outlasts_the_timeout_is_machine_end_other():
    a = answer("machine_silence", 2)  # a 12 s greeting
    d = decide(a.frames, AmdParams(mode=amd.DETECT_MESSAGE_END, timeout_s=5))
    assert d.answered_by == amd.MACHINE_END_OTHER and d.ms == 5000, d


def test_fax_calling_tone_is_fax():
    d = decide(answer("fax").frames)
    assert d.answered_by == amd.FAX
    assert d.evidence["tones"][0]["hz"] == pytest.approx(1100, abs=40)


def test_silence_is_unknown_after_the_silence_timeout():
    d = decide(answer("silence").frames, AmdParams(silence_timeout_ms=3000))
    assert d.answered_by == amd.UNKNOWN and d.ms == 3000


def test_a_law_callers_are_decided_the_same():
    a = answer("machine_beep", 1)
    alaw = [codec.ulaw_to_alaw(f) for f in a.frames]
    assert decide(alaw, codec_name="pcma").answered_by == amd.MACHINE_END_BEEP


def test_a_beep_alone_is_not_speech():
    frames = answer("silence").frames[:25]
    pcm = tone(1000.0, 600)
    mu = codec.lin16_to_ulaw(pcm)
    frames += [mu[i:i + 160] for i in range(0, len(mu) - 159, 160)] + answer("silence").frames
    d = decide(frames)
    assert d.answered_by == amd.UNKNOWN  # no greeting came before it, and it is no fax tone


def test_twilio_parameter_ranges_are_enforced():
    with pytest.raises(ValueError, match="MachineDetection"):
        AmdParams(mode="Sometimes")
    with pytest.raises(ValueError, match="speech_threshold_ms"):
        AmdParams(speech_threshold_ms=500)
    assert AmdParams.from_dict({"mode": "DetectMessageEnd", "timeout_s": None}).timeout_s == 30.0


def test_a_small_corpus_is_decided_right():
    answers = corpus(20, seed=7, extras=2)
    wrong = []
    for a in answers:
        d = decide(a.frames)
        want = {"human_short": amd.HUMAN, "human_long": amd.HUMAN, "machine_beep": amd.MACHINE_END_BEEP,
                "machine_silence": amd.MACHINE_END_SILENCE, "fax": amd.FAX, "silence": amd.UNKNOWN}[a.kind]
        if d.answered_by != want:
            wrong.append((a.name, a.meta, d))
    assert not wrong
