"""Voice activity detection and endpointing on synthesized speech, with the real VAD models."""

from __future__ import annotations

import dataclasses
import functools
import tracemalloc

import numpy as np
import pytest

from edge_assistant import models
from edge_assistant.audio import pcm
from edge_assistant.config import Config, ConfigError, VadConfig
from edge_assistant.bench.clips import Clip, spoken_clip
from edge_assistant.hearing.vad import Endpointer, EndpointEvent, VoiceActivityDetector

SAMPLE_RATE = pcm.SAMPLE_RATE
BYTES_PER_SECOND = SAMPLE_RATE * 2
ENGINES = ("micro", "silero")


def voiced_span(clip: np.ndarray) -> tuple[float, float]:
    """First and last audible sample, in seconds: where the synthesized speech really is."""
    loud = np.nonzero(np.abs(clip.astype(np.int32)) > 300)[0]
    return loud[0] / SAMPLE_RATE, loud[-1] / SAMPLE_RATE


def silence(seconds: float) -> np.ndarray:
    return np.zeros(int(seconds * SAMPLE_RATE), np.int16)


def endpoint(endpointer: Endpointer, clip: np.ndarray, frame_ms: int = 10) -> list[EndpointEvent]:
    data = clip.tobytes()
    frame_bytes = pcm.frame_bytes(frame_ms)
    events = []
    for start in range(0, len(data), frame_bytes):
        events += endpointer.process(data[start : start + frame_bytes])
        if endpointer.done:
            break
    return events


def endpointer(**changes) -> Endpointer:
    return Endpointer(dataclasses.replace(VadConfig(), **changes))


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("frame_ms", [10, 30])
def test_one_utterance_ends_on_silence(engine, frame_ms, speech):
    clip = speech("What is the weather like today?", lead_s=1.0, tail_s=1.5)
    voiced_start, voiced_end = voiced_span(clip)
    events = endpoint(endpointer(engine=engine), clip, frame_ms)
    assert [e.type for e in events] == ["speech_start", "pause", "speech_end"]
    start, pause, end = events
    assert end.reason == "silence"
    # Detectors react late (pymicro-vad by about a quarter second) and hang on a little.
    assert voiced_start - 0.1 <= start.time_s <= voiced_start + 0.4
    assert voiced_end - voiced_start - 0.3 <= end.duration_s <= voiced_end - voiced_start + 0.5
    # A pause after pause_s (0.2 s); with no end-of-turn model it ended once silence_s (0.8 s)
    # of silence followed the last speech.
    assert pause.duration_s == end.duration_s and pause.probability is None is end.probability
    assert pause.time_s == pytest.approx(start.time_s + end.duration_s + 0.2, abs=frame_ms / 1000)
    assert end.time_s == pytest.approx(start.time_s + end.duration_s + 0.8, abs=frame_ms / 1000)


def test_silence_only_times_out():
    events = endpoint(endpointer(no_speech_timeout_s=2.0), silence(5.0))
    assert events == [EndpointEvent("speech_end", time_s=2.0, reason="timeout", duration_s=0.0)]


def test_white_noise_is_not_speech():
    noise = np.random.default_rng(3).normal(0, 2000, SAMPLE_RATE * 3).astype(np.int16)
    events = endpoint(endpointer(no_speech_timeout_s=2.5), noise)
    assert [(e.type, e.reason) for e in events] == [("speech_end", "timeout")]


@pytest.mark.parametrize("engine", ENGINES)
def test_continuous_speech_is_cut_at_max_length(engine, speech):
    clip = speech(
        "The quick brown fox jumps over the lazy dog and keeps running through the field. "
        "Then it stops near the river bank and drinks some water.",
        lead_s=0.0, tail_s=0.0, gap_s=0.0,
    )
    ep = endpointer(engine=engine, max_utterance_s=3.0, pre_roll_s=0.3)
    events = endpoint(ep, clip)
    assert [e.type for e in events] == ["speech_start", "speech_end"]
    assert events[1].reason == "max_length"
    assert events[1].duration_s == pytest.approx(3.0)
    assert len(ep.utterance()) / BYTES_PER_SECOND <= 3.0 + 0.3 + 0.01


def test_blip_shorter_than_min_speech_is_ignored(speech):
    syllable = speech("What is the weather like today?", 0.0, 0.0)[8000:8000 + 1920]  # 120 ms
    clip = np.concatenate([silence(1.0), syllable, silence(2.0)])
    ignored = endpoint(endpointer(engine="silero", min_speech_s=0.25, no_speech_timeout_s=2.5), clip)
    assert [(e.type, e.reason) for e in ignored] == [("speech_end", "timeout")]
    noticed = endpoint(endpointer(engine="silero", min_speech_s=0.05, no_speech_timeout_s=2.5), clip)
    assert [e.type for e in noticed] == ["speech_start", "pause", "speech_end"]


def test_pre_roll_keeps_the_first_syllable(speech):
    clip = speech("What is the weather like today?", lead_s=1.0, tail_s=1.5)
    voiced_start, _ = voiced_span(clip)
    # pymicro-vad reacts late, so without pre-roll the utterance starts after the speech does.
    for pre_roll_s in (0.0, 0.5):
        ep = endpointer(engine="micro", pre_roll_s=pre_roll_s)
        start, _pause, end = endpoint(ep, clip)
        first = int(round((start.time_s - pre_roll_s) * SAMPLE_RATE))
        last = int(round(end.time_s * SAMPLE_RATE))
        assert np.array_equal(ep.utterance_array(), clip[first:last])
        assert (first / SAMPLE_RATE <= voiced_start) == (pre_roll_s > 0)


def test_reset_finds_the_next_utterance(speech):
    clip = speech("What is the weather like today?", lead_s=0.5, tail_s=1.5)
    ep = endpointer()
    first = endpoint(ep, clip)
    assert ep.done and ep.process(clip[:160].tobytes()) == []
    ep.reset()
    second = endpoint(ep, clip)
    assert [e.type for e in second] == ["speech_start", "pause", "speech_end"]
    assert second[-1].duration_s == pytest.approx(first[-1].duration_s, abs=0.1)


def test_flush_ends_an_utterance_cut_off_by_the_end_of_input(speech):
    clip = speech("What is the weather like today?", lead_s=0.5, tail_s=0.0)
    ep = endpointer()
    assert [e.type for e in endpoint(ep, clip)] == ["speech_start"]
    (end,) = ep.flush()
    assert end.reason == "silence" and end.duration_s > 1.0
    assert endpointer().flush()[0].reason == "timeout"


@pytest.mark.parametrize("engine", ENGINES)
def test_detector_takes_any_frame_length(engine, speech):
    clip = speech("What is the weather like today?", lead_s=0.5, tail_s=0.5).tobytes()
    by_frame = VoiceActivityDetector(engine)
    probabilities = [by_frame.process(clip[i : i + 222]) for i in range(0, len(clip), 222)]
    known = [p for p in probabilities if p is not None]
    assert max(known) > 0.9 and min(known) < 0.1
    assert 0.0 <= min(known)


def test_unknown_engine_names_the_key():
    with pytest.raises(ConfigError, match="vad.engine"):
        VoiceActivityDetector("webrtc")


# --- the end-of-turn model at pauses ----------------------------------------------------------


@functools.cache
def room_clip(text: str, pause_after: str = "", pause_s: float = 0.0) -> Clip:
    """The embedded voice without piper's randomness, in a quiet room, 1.5 s of it after."""
    config = Config()
    return spoken_clip(config, models.resolve_voice("", config.state_dir()), text, tail_s=1.5,
                       pause_after=pause_after, pause_s=pause_s)


def spoken_s(clip: Clip) -> float:
    return (clip.speech_end - clip.speech_start) / SAMPLE_RATE


def kinds(events: list[EndpointEvent]) -> list[str]:
    return [e.type for e in events]


def test_a_complete_turn_ends_at_the_first_pause(smart_turn):
    clip = room_clip("What is the capital of France?")
    events = endpoint(Endpointer(VadConfig(), turn_end=smart_turn), clip.samples)
    assert kinds(events) == ["speech_start", "pause", "speech_end"]
    start, pause, end = events
    assert end.reason == "end_of_turn" and end.probability == pause.probability > 0.9
    # In the frame that made the pause: pause_s (0.2 s) after the last speech, not silence_s.
    assert end.time_s == pause.time_s
    assert end.time_s == pytest.approx(start.time_s + end.duration_s + 0.2, abs=0.011)
    assert end.duration_s > spoken_s(clip) - 0.1


def test_an_incomplete_turn_waits_through_the_pause(smart_turn):
    text, before_pause = "What is the weather like in Paris today?", "What is the weather like in"
    clip = room_clip(text, before_pause, 0.6)
    events = endpoint(Endpointer(VadConfig(), turn_end=smart_turn), clip.samples)
    assert kinds(events) == ["speech_start", "pause", "pause", "speech_end"]
    first_pause, end = events[1], events[-1]
    assert first_pause.probability < 0.5
    assert end.reason == "end_of_turn" and end.duration_s > spoken_s(clip) - 0.1


def test_the_words_hold_an_end_the_model_wants(smart_turn):
    clip = room_clip("What is the capital of France?", "What is the capital of", 0.6)
    # With this voice the model alone takes the pause after "of" for the end: a cut-off.
    alone = endpoint(Endpointer(VadConfig(), turn_end=smart_turn), clip.samples)
    assert alone[-1].reason == "end_of_turn" and alone[-1].duration_s < spoken_s(clip) - 1.0

    asked = []

    def words_allow_end():
        asked.append("words")
        return False  # as for a transcript ending on "of"

    held = Endpointer(VadConfig(), turn_end=smart_turn, on_pause=lambda: asked.append("pause"),
                      words_allow_end=words_allow_end)
    events = endpoint(held, clip.samples)
    assert kinds(events) == ["speech_start", "pause", "pause", "speech_end"]
    # Held at both pauses, so silence_s ended the turn, after all of it.
    assert events[-1].reason == "silence" and events[-1].duration_s > spoken_s(clip) - 0.1
    assert asked == ["pause", "words", "pause", "words"]


def test_an_end_waiting_for_the_words_is_cancelled_by_speech(smart_turn):
    clip = room_clip("What is the capital of France?", "What is the capital of", 0.6)
    answers = iter([None] * 1000)  # never known: the end stays pending until speech or silence_s
    events = endpoint(Endpointer(VadConfig(), turn_end=smart_turn,
                                 words_allow_end=lambda: next(answers)), clip.samples)
    assert kinds(events) == ["speech_start", "pause", "pause", "speech_end"]
    assert events[-1].reason == "silence" and events[-1].duration_s > spoken_s(clip) - 0.1

    known_later = iter([None, None, True])
    start, pause, end = endpoint(Endpointer(VadConfig(), turn_end=smart_turn,
                                            words_allow_end=lambda: next(known_later)),
                                 room_clip("What is the capital of France?").samples)
    assert end.reason == "end_of_turn"
    assert end.time_s == pytest.approx(pause.time_s + 0.02)  # two frames later


@pytest.mark.slow
def test_ten_minutes_of_noise_and_babble_keep_memory_bounded(speech):
    minutes = 10
    total = minutes * 60 * SAMPLE_RATE
    line = speech("The quick brown fox jumps over the lazy dog and keeps running through the field.", 0, 0)
    start, end = voiced_span(line)
    babble = np.resize(line[int(start * SAMPLE_RATE) : int(end * SAMPLE_RATE)], total)
    # Alternate 40 s of endless talking with 40 s of plain noise: both the pre-speech window
    # and the utterance buffer get their chance to grow.
    talking = (np.arange(total) // (40 * SAMPLE_RATE)) % 2
    noise = np.random.default_rng(5).normal(0, 1500, total)
    stream = np.clip(noise + babble * talking, -32768, 32767).astype(np.int16).tobytes()
    del babble, talking, noise

    config = VadConfig(engine="micro")
    ep = Endpointer(config)
    reasons: dict[str, int] = {}
    most_buffered = 0
    frame_bytes = 960  # 30 ms
    tracemalloc.start()
    try:
        for offset in range(0, len(stream), frame_bytes):
            ep.process(stream[offset : offset + frame_bytes])
            most_buffered = max(most_buffered, ep.buffered_bytes)
            if ep.done:
                reasons[ep.ended.reason] = reasons.get(ep.ended.reason, 0) + 1
                ep.reset()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert reasons.get("max_length", 0) >= 10 and reasons.get("timeout", 0) >= 10
    bound = (config.max_utterance_s + config.pre_roll_s) * BYTES_PER_SECOND + frame_bytes
    assert most_buffered <= bound
    # Ten minutes of audio is 19 MB; what was held at once stays near one utterance.
    assert peak < 3 * bound


def test_the_tail_of_the_word_before_is_not_pre_roll():
    from tests.support.speech_fixtures import voice_speech

    # Listening starts a little before the wake word ends (its end is only known roughly):
    # "-rvis", a pause, then the request. The pre-roll must not reach back into "-rvis".
    tail = voice_speech("piper", "Hey Jarvis", 0.0, 0.0)[-int(0.35 * SAMPLE_RATE):]
    clip = np.concatenate([tail, silence(0.3), voice_speech("piper", "Set a timer.", 0.0, 1.5)])
    starts = {}
    for after_word_s in (0.0, 0.16):  # 0.35 s of the word: speech to the VAD
        ep = endpointer(engine="silero", pre_roll_s=0.6)
        ep.reset(after_word_s=after_word_s)
        events = endpoint(ep, clip)
        assert [e.type for e in events][0] == "speech_start" and events[-1].type == "speech_end"
        starts[after_word_s] = int(round(events[-1].time_s * SAMPLE_RATE)) - ep.utterance_array().size
    # Without after_word_s the pre-roll takes it all in; with it, the utterance starts where
    # the detector stopped hearing the tail as speech (its last, faint sound is let be).
    assert starts[0.0] < tail.size // 2 and starts[0.16] >= tail.size * 3 // 4
