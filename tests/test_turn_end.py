"""The end-of-turn model (Smart Turn v3) on real piper speech, its features, the words that
hold a turn open, and getting the model file (embedded default, `models pull`)."""

from __future__ import annotations

import functools
import os
import subprocess
import sys
import zipfile

import numpy as np
import pytest

from edge_assistant import models
from edge_assistant.audio import pcm
from edge_assistant.bench.clips import spoken_clip
from edge_assistant.config import Config
from edge_assistant.hearing.turn_end import (
    FRAMES, N_MELS, WINDOW_SAMPLES, TurnEndModel, _FILTERS, ends_mid_phrase, last_window, log_mel,
)
from tests.support.hub_server import start_hub

SAMPLE_RATE = pcm.SAMPLE_RATE


@functools.cache
def spoken(text: str, pause_after: str = "", pause_s: float = 0.0):
    """The embedded voice, without piper's randomness, in a quiet room (the bench's clips)."""
    config = Config()
    return spoken_clip(config, models.resolve_voice("", config.state_dir()), text,
                       pause_after=pause_after, pause_s=pause_s)


def until_pause(text: str, pause_after: str, silence_s: float = 0.2) -> np.ndarray:
    """The clip up to `silence_s` into the pause after `pause_after`: what the endpointer hears
    when it asks the model."""
    paused = spoken(text, pause_after, 1.0)
    whole = spoken(text)
    # The pause starts where the two clips stop being the same.
    differs = np.flatnonzero(paused.samples[: whole.samples.size] != whole.samples)
    return paused.samples[: differs[0] + int(silence_s * SAMPLE_RATE)]


def test_a_complete_question_is_complete(smart_turn):
    clip = spoken("What is the capital of France?")
    probability = smart_turn.probability(clip.samples[: clip.speech_end + int(0.2 * SAMPLE_RATE)])
    assert probability > 0.9
    assert 0.0 < smart_turn.last_latency_s < 5.0


def test_a_question_stopped_mid_sentence_is_incomplete(smart_turn):
    text = "What is the weather like in Paris today?"
    assert smart_turn.probability(until_pause(text, "What is the weather like in")) < 0.3


def test_only_the_last_eight_seconds_count(smart_turn):
    clip = spoken("What is the capital of France?")
    heard = clip.samples[: clip.speech_end + int(0.2 * SAMPLE_RATE)]
    noise = np.random.default_rng(1).normal(0, 3000, 20 * SAMPLE_RATE).astype(np.int16)
    recent = np.concatenate([noise[: 6 * SAMPLE_RATE], heard])  # over 8 s
    # Whatever came before the last 8 s does not change the verdict.
    assert smart_turn.probability(np.concatenate([noise[6 * SAMPLE_RATE :], recent])) == (
        smart_turn.probability(recent))


def test_features_are_whisper_log_mel_of_the_last_window():
    # A 1 kHz tone in the last second: zero padding before it, the tone's band loudest.
    tone = (0.5 * np.sin(2 * np.pi * 1000 * np.arange(SAMPLE_RATE) / SAMPLE_RATE)).astype(np.float32)
    window = last_window((tone * 32767).astype(np.int16))
    assert window.shape == (WINDOW_SAMPLES,) and not window[: 7 * SAMPLE_RATE].any()
    assert np.abs(window[-SAMPLE_RATE:] - tone).max() < 1e-4
    features = log_mel(window)
    assert features.shape == (N_MELS, FRAMES) and features.dtype == np.float32
    # Floored 8 (in log10) below the peak, scaled by 1/4: values span at most 2.
    assert features.max() - features.min() <= 2.0 + 1e-6
    hertz = np.linspace(0, SAMPLE_RATE // 2, _FILTERS.shape[1])
    band_of_1khz = int(np.argmax(_FILTERS[:, np.argmin(np.abs(hertz - 1000))]))
    assert int(np.argmax(features[:, -50:].mean(axis=1))) == band_of_1khz
    assert features[:, :650].max() == pytest.approx(features.min())  # the padding is silent


@pytest.mark.parametrize("text, unfinished", [
    ("What is the capital of", True),
    ("Set a timer for...", True),
    ("Turn on the", True),
    ("Remind me to buy milk and", True),
    ("Call my,", True),
    ("Um", True),
    ("What is the capital of France?", False),
    ("Turn the lights on.", False),
    ("What time is it", False),
    ("", False),
])
def test_words_a_request_does_not_end_on(text, unfinished):
    assert ends_mid_phrase(text) is unfinished


def test_missing_embedded_model_says_how_to_get_it(monkeypatch, tmp_path):
    monkeypatch.setattr(models.embedded, "SHARE_DIR", tmp_path)
    with pytest.raises(models.ModelError) as error:
        models.resolve_turn_end("", tmp_path)
    message = str(error.value)
    assert message.startswith("vad.smart_turn_model:")
    assert "scripts/setup.sh" in message and "models pull smart-turn-v3" in message
    assert "vad.smart_turn = false" in message
    with pytest.raises(models.ModelError, match="is not pulled yet"):
        models.resolve_turn_end("smart-turn-v3", tmp_path)
    with pytest.raises(models.ModelError, match="is a llm model, not a turn model"):
        models.resolve_turn_end("qwen2.5-0.5b-instruct-q4", tmp_path)


def test_setup_takes_the_model_out_of_the_pipecat_wheel(tmp_path):
    member = "pipecat/audio/turn/smart_turn/data/" + models.SMART_TURN_FILE
    wheel = tmp_path / "pipecat_ai-1.14.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as zipped:
        zipped.writestr("pipecat/__init__.py", "")
        zipped.writestr(member, models.embedded_turn_end_path().read_bytes())
    share = tmp_path / "share"
    installed = models.install_turn_end_from_wheel(wheel, share)
    assert installed == share / models.SMART_TURN_FILE and [p.name for p in share.iterdir()] == [installed.name]
    assert models.sha256_of(installed) == models.SMART_TURN_SHA256

    tampered = tmp_path / "tampered.whl"
    with zipfile.ZipFile(tampered, "w") as zipped:
        zipped.writestr(member, b"not a model")
    with pytest.raises(models.ModelError, match="failed its checksum"):
        models.install_turn_end_from_wheel(tampered, tmp_path / "other")
    assert not (tmp_path / "other" / models.SMART_TURN_FILE).exists()
    with pytest.raises(models.ModelError, match="no pipecat/audio/turn"):
        models.install_turn_end_from_wheel(share / models.SMART_TURN_FILE, tmp_path / "other")


def test_pull_from_the_hub_installs_a_model_that_answers(tmp_path):
    entry = models.REGISTRY["smart-turn-v3"]
    content = models.embedded_turn_end_path().read_bytes()
    hub, server = start_hub()
    try:
        hub.add(entry.repo_id, entry.main_file, content)
        env = {**os.environ, "HF_ENDPOINT": hub.endpoint, "HF_HOME": str(tmp_path / "hf-home"),
               "HF_HUB_DISABLE_TELEMETRY": "1", "HF_HUB_DISABLE_XET": "1",
               "EDGE_ASSISTANT_SERVICE_STATE_DIR": str(tmp_path)}
        env.pop("HF_HUB_OFFLINE", None)
        result = subprocess.run(
            [sys.executable, "-m", "edge_assistant.cli", "models", "pull", "--quiet", "smart-turn-v3"],
            capture_output=True, text=True, env=env, timeout=120)
    finally:
        server.shutdown()
    assert result.returncode == 0, result.stderr
    pulled = models.resolve_turn_end("smart-turn-v3", tmp_path)
    assert pulled == tmp_path / "models" / "smart-turn-v3" / models.SMART_TURN_FILE
    assert any(f"/resolve/{entry.revision}/" in path for _, path, _ in hub.requests)
    pulled_model = TurnEndModel(pulled)
    try:
        clip = spoken("What is the capital of France?")
        assert pulled_model.probability(clip.samples[: clip.speech_end + 3200]) > 0.9
    finally:
        pulled_model.close()
