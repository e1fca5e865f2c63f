"""End of caller speech and AI response time (media/speech.py), on synthesized audio fed frame by
frame with the arrival times the media bridge would see (one frame every 20 ms)."""
import pytest

from media.speech import HANGOVER_FRAMES, ResponseTimer, SpeechDetector
from tests.speech_audio import quiet_frames, speech_frames, tone_frames

FRAME_S = 0.020


def feed(detector: SpeechDetector, frames, t0: float = 0.0) -> list[tuple[float, float]]:
    """(arrival of the frame that confirmed an end, the end reported) for every end of speech."""
    ends = []
    for k, frame in enumerate(frames):
        now = t0 + k * FRAME_S
        ended = detector.push(frame, now)
        if ended is not None:
            ends.append((now, ended))
    return ends


def last_spoken_frame(frames) -> int:
    """Index of the last frame of the sentence that still carries the word (well above the noise)."""
    from media.speech import frame_level

    return max(k for k, f in enumerate(frames) if frame_level(f) > 20)


def test_a_sentence_ends_once_at_its_last_word_not_at_the_pauses_between_words():
    sentence = speech_frames()
    ends = feed(SpeechDetector(), sentence + quiet_frames(1000))
    assert len(ends) == 1, ends  # the 140 ms pauses between words are not an end
    confirmed_at, ended_at = ends[0]
    spoken_until = last_spoken_frame(sentence) * FRAME_S
    assert ended_at == pytest.approx(spoken_until, abs=0.06)  # the last voiced frame, not the hangover's end
    assert confirmed_at - ended_at == pytest.approx(HANGOVER_FRAMES * FRAME_S)


def test_line_noise_and_a_click_are_not_speech():
    detector = SpeechDetector()
    click = tone_frames(20, dbfs=-6)  # one loud frame
    frames = quiet_frames(500, noise_dbfs=-50) + click + quiet_frames(500, noise_dbfs=-50, seed=3)
    assert feed(detector, frames) == [] and not detector.speaking


def test_a_steady_hiss_is_learned_and_speech_over_it_still_ends_once():
    detector = SpeechDetector()
    feed(detector, quiet_frames(6000, noise_dbfs=-42))  # louder than the fixed minimum on its own
    assert not detector.speaking
    ends = feed(detector, speech_frames(noise_dbfs=-42) + quiet_frames(1000, noise_dbfs=-42, seed=4), t0=10.0)
    assert len(ends) == 1


def test_a_law_callers_are_heard_the_same():
    sentence = speech_frames("pcma")
    ends = feed(SpeechDetector("pcma"), sentence + quiet_frames(1000, "pcma"))
    assert len(ends) == 1


def conversation(timer: ResponseTimer, script) -> float:
    """Play a script of ("caller", frames) / ("agent", audio, delay_s) steps; returns the clock."""
    now = 0.0
    for step in script:
        if step[0] == "caller":
            for frame in step[1]:
                timer.caller_frame(frame, now)
                now += FRAME_S
        else:
            _, audio, at = step
            timer.agent_audio(audio, at)
    return now


def test_the_response_time_runs_from_the_callers_last_word_to_the_agents_first_voiced_audio():
    timer = ResponseTimer()
    sentence = speech_frames()
    spoken_until = last_spoken_frame(sentence) * FRAME_S
    answered = False
    for k, frame in enumerate(sentence + quiet_frames(2000)):
        now = k * FRAME_S
        timer.caller_frame(frame, now)
        if k % 5 == 0:
            timer.agent_audio(b"\xff" * 800, now)  # the agent streams silence while it thinks: not an answer
        if not answered and now >= spoken_until + 0.7:
            timer.agent_audio(b"\xff" * 320 + b"".join(tone_frames(200)), now)  # leading silence in the payload
            answered = True
    summary = timer.summary()
    assert summary["ai_response_turns"] == 1
    assert summary["ai_response_ms"] == pytest.approx(700, abs=60)


def test_audio_from_the_agent_while_the_caller_talks_is_not_an_answer():
    timer = ResponseTimer()
    sentence = speech_frames()
    for k, frame in enumerate(sentence):
        timer.caller_frame(frame, k * FRAME_S)
        timer.agent_audio(tone_frames(20)[0], k * FRAME_S + 0.001)  # an echo of the caller, say
    assert timer.summary() == {"ai_response_turns": 0}


def test_an_agent_that_answers_within_the_hangover_is_timed_once_the_caller_is_done():
    timer = ResponseTimer()
    sentence = speech_frames()
    spoken_until = last_spoken_frame(sentence) * FRAME_S
    answered = False
    for k, frame in enumerate(sentence + quiet_frames(1000)):
        now = k * FRAME_S
        timer.caller_frame(frame, now)
        if not answered and now >= spoken_until + 0.1:
            timer.agent_audio(b"".join(tone_frames(100)), now)
            answered = True
            assert timer.summary()["ai_response_turns"] == 0  # not yet: the caller may go on
    assert timer.summary()["ai_response_turns"] == 1
    assert timer.summary()["ai_response_ms"] == pytest.approx(100, abs=60)


def test_a_caller_who_goes_on_before_any_answer_is_timed_from_their_second_turn():
    timer = ResponseTimer()
    first, second = speech_frames(seed=5), speech_frames(words_ms=(300, 300), seed=6)
    start_second = len(first) + 50  # 1 s of silence, unanswered
    for k, frame in enumerate(first + quiet_frames(1000) + second + quiet_frames(1000, seed=7)):
        timer.caller_frame(frame, k * FRAME_S)
    second_end = (start_second + last_spoken_frame(second)) * FRAME_S
    timer.agent_audio(b"".join(tone_frames(60)), second_end + 0.5)
    summary = timer.summary()
    assert summary["ai_response_turns"] == 1
    assert summary["ai_response_ms"] == pytest.approx(500, abs=60)


def test_several_turns_report_their_median():
    timer = ResponseTimer()
    now = 0.0
    for delay in (0.4, 0.9, 0.6):
        for frame in speech_frames() + quiet_frames(1200):
            timer.caller_frame(frame, now)
            now += FRAME_S
            if timer.turn_end is not None and now - timer.turn_end >= delay:
                timer.agent_audio(b"".join(tone_frames(40)), timer.turn_end + delay)
    summary = timer.summary()
    assert summary["ai_response_turns"] == 3
    assert summary["ai_response_ms"] == pytest.approx(600, abs=1)


def test_an_agent_on_16_khz_l16_is_heard_in_its_own_encoding():
    from array import array
    from math import pi, sin

    timer = ResponseTimer(agent_l16=True)
    sentence = speech_frames()
    for k, frame in enumerate(sentence + quiet_frames(1000)):
        timer.caller_frame(frame, k * FRAME_S)
    speech_end = last_spoken_frame(sentence) * FRAME_S
    silence = bytes(640 * 5)  # 100 ms of L16 zeros: not an answer (it would be loud read as mu-law)
    timer.agent_audio(silence, speech_end + 0.4)
    tone = array("h", (int(3000 * sin(2 * pi * 440 * i / 16000)) for i in range(3200))).tobytes()
    timer.agent_audio(tone, speech_end + 0.8)
    assert timer.summary() == {"ai_response_turns": 1, "ai_response_ms": pytest.approx(800, abs=60)}
