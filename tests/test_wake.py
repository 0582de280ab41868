"""Wake word detection on synthesized speech, with both engines and the real shipped models."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from edge_assistant.audio import pcm
from edge_assistant.audio.own_sound import AssistantSound
from edge_assistant.config import ConfigError, WakeConfig
from edge_assistant.hearing.wake import Detection, OwnVoiceDetector, WakeDetector, stricter_cutoff
from tests.support.own_sound import cancelling

SAMPLE_RATE = pcm.SAMPLE_RATE
ENGINES = ("micro", "openwakeword")


def detections(detector: WakeDetector, samples: np.ndarray, frame_ms: int = 10) -> list[Detection]:
    data = samples.tobytes()
    frame_bytes = pcm.frame_bytes(frame_ms)
    found = []
    for start in range(0, len(data), frame_bytes):
        detection = detector.process(data[start : start + frame_bytes])
        if detection is not None:
            found.append(detection)
    return found


def detector(engine: str = "micro", **changes) -> WakeDetector:
    speaking_tail_s = changes.pop("speaking_tail_s", 0.5)
    config = dataclasses.replace(WakeConfig(engine=engine), **changes)
    return WakeDetector(config, speaking_tail_s=speaking_tail_s)


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("frame_ms", [10, 30])
def test_detects_hey_jarvis_in_a_question(engine, frame_ms, speech):
    clip = speech("Hey Jarvis, what time is it?")
    wake = detector(engine)
    found = detections(wake, clip, frame_ms)
    assert len(found) == 1
    assert found[0].model == "hey_jarvis"
    assert found[0].score >= wake.cutoff
    # Triggered after the phrase began (1 s of lead silence) and before the clip ended.
    assert 1.0 < found[0].time_s < len(clip) / SAMPLE_RATE
    assert not found[0].barge_in


@pytest.mark.parametrize("engine", ENGINES)
def test_ignores_other_speech(engine, speech):
    assert detections(detector(engine), speech("What is the weather like today?")) == []


@pytest.mark.parametrize("engine", ENGINES)
def test_ignores_white_noise(engine):
    noise = np.random.default_rng(7).normal(0, 3000, SAMPLE_RATE * 5).astype(np.int16)
    assert detections(detector(engine), noise) == []


def test_model_cutoff_used_unless_threshold_set():
    assert detector("micro").cutoff == pytest.approx(0.97)
    assert detector("openwakeword").cutoff == pytest.approx(0.5)
    assert detector("micro", threshold=0.8).cutoff == pytest.approx(0.8)


def test_threshold_above_every_score_never_detects(speech):
    assert detections(detector(threshold=1.0), speech("Hey Jarvis, what time is it?")) == []


def test_refractory_period_swallows_a_repeat(speech):
    twice = np.concatenate([speech("Hey Jarvis.", 1.0, 1.0), speech("Hey Jarvis.", 0.5, 1.0)])
    short = detections(detector(refractory_s=0.5), twice)
    assert len(short) == 2
    assert short[1].time_s - short[0].time_s > 1.0
    assert len(detections(detector(refractory_s=10.0), twice)) == 1


def test_detects_again_after_reset(speech):
    clip = speech("Hey Jarvis.")
    wake = detector(refractory_s=60.0)
    assert len(detections(wake, clip)) == 1
    assert detections(wake, clip) == []  # still inside the refractory period
    wake.reset()
    assert len(detections(wake, clip)) == 1


def test_own_voice_is_ignored_while_speaking_without_barge_in(speech):
    wake = detector(barge_in=False)
    wake.set_speaking(True)
    assert wake.speaking
    assert detections(wake, speech("Hey Jarvis, what time is it?")) == []


def test_barge_in_lets_a_confident_detection_through_while_speaking(speech):
    wake = detector(barge_in=True, barge_in_threshold=0.0)
    wake.set_speaking(True)
    found = detections(wake, speech("Hey Jarvis, what time is it?"))
    assert len(found) == 1
    assert found[0].barge_in


def test_openwakeword_rests_in_a_quiet_room_and_hears_the_wake_word_that_ends_it(speech):
    wake = detector("openwakeword")
    quiet_room = np.random.default_rng(3).normal(0, 30, SAMPLE_RATE * 10).astype(np.int16)
    assert detections(wake, quiet_room) == []
    assert wake._engine._resting  # the model is not run on silence
    # The clip starts with a second of digital silence: the model wakes on the speech, fed the
    # audio before it, and hears the wake word whole.
    found = detections(wake, speech("Hey Jarvis, what time is it?"))
    assert len(found) == 1 and found[0].score >= wake.cutoff


def test_barge_in_is_stricter_unless_the_assistants_voice_is_cancelled():
    wake = detector("micro")
    assert wake.cutoff == 0.97
    # Without echo cancellation (no own sound known: none): halfway to certainty.
    assert wake.barge_in_cutoff == pytest.approx(0.985) == stricter_cutoff(0.97)
    cancelled = WakeDetector(WakeConfig(engine="micro"), own_sound=cancelling())
    assert cancelled.barge_in_cutoff == cancelled.cutoff
    assert WakeDetector(WakeConfig(engine="micro"), own_sound=AssistantSound(hears_speaker=True)
                        ).barge_in_cutoff == pytest.approx(0.985)
    assert detector("openwakeword").barge_in_cutoff == pytest.approx(0.75)
    # A threshold set in the config wins either way.
    explicit = WakeDetector(WakeConfig(engine="micro", barge_in_threshold=0.9), own_sound=cancelling())
    assert explicit.barge_in_cutoff == 0.9


def test_barge_in_threshold_applies_only_while_speaking(speech):
    clip = speech("Hey Jarvis, what time is it?")
    # The quantized microWakeWord output tops out below 1.0, so this threshold is never met.
    wake = detector(barge_in=True, barge_in_threshold=1.0, speaking_tail_s=0.0)
    wake.set_speaking(True)
    assert detections(wake, clip) == []
    wake.set_speaking(False)
    assert len(detections(wake, clip)) == 1


def test_a_barge_in_that_waited_for_the_canceller_is_not_lost_while_the_word_still_scores():
    class Confident:  # the model, certain at every 80 ms step
        name, cutoff, step_s = "test", 0.5, 0.08

        def scores(self, frame):
            return [0.99]

        def reset(self):
            pass

    # It heard the assistant say nothing.
    wake = WakeDetector(WakeConfig(), own_sound=cancelling(OwnVoiceDetector(WakeConfig())))
    wake._engine = Confident()
    wake.set_speaking(True)
    frame = bytes(pcm.frame_bytes(10))
    found = [(index, d) for index in range(100) if (d := wake.process(frame)) is not None]
    # One detection, OWN_VOICE_WAIT_S after the first frame that scored.
    assert [index for index, _ in found] == [25] and found[0][1].barge_in


def test_speaking_tail_suppresses_right_after_speech_ends(speech):
    clip = speech("Hey Jarvis, what time is it?", lead_s=0.2)
    with_tail = detector(barge_in=False, speaking_tail_s=3.0)
    with_tail.set_speaking(True)
    with_tail.set_speaking(False)
    assert not with_tail.speaking
    assert detections(with_tail, clip) == []

    no_tail = detector(barge_in=False, speaking_tail_s=0.0)
    no_tail.set_speaking(True)
    no_tail.set_speaking(False)
    assert len(detections(no_tail, clip)) == 1


def test_a_reply_end_still_queued_counts_as_speaking(speech):
    """The reply ended while `behind_s` of audio captured before was still to be processed: that
    audio holds the reply too, and the tail is counted from its end."""
    clip = speech("Hey Jarvis, what time is it?", lead_s=1.5)
    behind = detector(barge_in=False, speaking_tail_s=0.3)
    behind.set_speaking(True)
    behind.set_speaking(False, behind_s=3.0)
    assert detections(behind, clip) == []

    caught_up = detector(barge_in=False, speaking_tail_s=0.3)
    caught_up.set_speaking(True)
    caught_up.set_speaking(False)
    assert len(detections(caught_up, clip)) == 1


def test_custom_micro_model_from_its_json_config(speech):
    import pymicro_wakeword

    config_file = Path(pymicro_wakeword.__file__).parent / "models" / "okay_nabu.json"
    wake = detector("micro", model=str(config_file))
    assert wake.model_name == "okay_nabu"
    # It hears its own phrase and only that: a model that never fires would fail here.
    found = detections(wake, speech("Okay Nabu, what time is it?"))
    assert [detection.model for detection in found] == ["okay_nabu"]
    assert detections(wake, speech("Hey Jarvis, what time is it?")) == []


@pytest.mark.parametrize("engine", ENGINES)
def test_unknown_model_names_the_key(engine, tmp_path):
    with pytest.raises(ConfigError, match="wake.model"):
        detector(engine, model=str(tmp_path / "missing.tflite"))


def test_a_detection_says_where_the_wake_phrase_ended():
    class Rising:  # a score every 80 ms: nothing, then rising from 1.20 s, over the cutoff at 1.36 s
        name, cutoff, step_s = "test", 0.5, 0.08

        def __init__(self):
            self.frames = 0

        def scores(self, frame):
            self.frames += 1
            if self.frames % 8:
                return []
            at = self.frames / 100
            return [0.0 if at < 1.195 else 0.3 if at < 1.355 else 0.9]

        def reset(self):
            self.frames = 0

    wake = WakeDetector(WakeConfig())
    wake._engine = Rising()
    frame = bytes(pcm.frame_bytes(10))
    found = [d for _ in range(200) if (d := wake.process(frame)) is not None]
    assert len(found) == 1 and found[0].time_s == pytest.approx(1.36)
    # Two steps before the score rose: the wake word's last sound is no loss, the request's first is.
    assert found[0].phrase_end_s == pytest.approx(1.20 - 2 * 0.08)
