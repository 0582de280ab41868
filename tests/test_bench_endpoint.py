"""The bench's `endpoint` section: its clips pause between words, and a run through the command
line compares the old endpointing with the new on them."""

import json

import numpy as np
import pytest

from edge_assistant import models
from edge_assistant.audio import pcm
from edge_assistant.bench.clips import spoken_clip
from edge_assistant.bench.endpoint import PAUSED_QUESTIONS
from edge_assistant.config import Config, SttConfig
from edge_assistant.hearing.stt import create_transcriber
from tests.test_bench import check_figures, check_targets, run_bench, write_config


def test_each_pause_falls_after_the_words_it_follows():
    config = Config()
    voice = models.resolve_voice("", config.state_dir())
    whisper = create_transcriber(SttConfig(engine="whisper", n_threads=2))
    try:
        for text, before_pause in PAUSED_QUESTIONS:
            whole = spoken_clip(config, voice, text)
            paused = spoken_clip(config, voice, text, pause_after=before_pause, pause_s=0.7)
            # The pause starts where the two clips part.
            start = int(np.flatnonzero(paused.samples[: whole.samples.size] != whole.samples)[0])
            pause = paused.samples[start : start + int(0.7 * pcm.SAMPLE_RATE)]
            assert np.abs(pause.astype(np.int32)).max() < 500  # only room noise
            assert paused.speech_end - whole.speech_end == int(0.7 * pcm.SAMPLE_RATE)
            heard = whisper.transcribe(paused.samples[:start]).text
            words = [word.strip(".,?!-") for word in heard.lower().split()]
            assert words[-1] == before_pause.split()[-1].lower(), (before_pause, heard)
    finally:
        whisper.close()


@pytest.mark.slow
def test_endpoint_section_compares_silence_with_smart_turn(tmp_path, scripted_gguf):
    out = tmp_path / "bench.json"
    done = run_bench(write_config(tmp_path, scripted_gguf), "--quick", "--only", "endpoint",
                     "--json", str(out))
    assert done.returncode == 0, done.stderr
    values = json.loads(out.read_text())
    # Two questions, each plain and with a pause of 0.4 s and of 0.7 s.
    assert values["endpoint.questions"] == 6 and values["endpoint.paused_questions"] == 4
    assert values["endpoint.pauses_s"] == "0.4, 0.7"
    for way in ("silence", "smart_turn"):
        assert values[f"endpoint.{way}.false_cutoffs"] in (0.0, 0.25, 0.5, 0.75, 1.0)
    # Silence alone waits out vad.silence_s (0.8 s) and never cuts a 0.7 s pause.
    assert values["endpoint.silence.false_cutoffs"] == 0.0
    assert 0.8 <= values["endpoint.silence.delay_s"] < 10
    assert values["endpoint.extra_false_cutoffs"] == values["endpoint.smart_turn.false_cutoffs"]
    # The model alone takes most mid-sentence pauses of this voice for the end; the words of
    # the pause hold them, so fewer are cut than it would have cut.
    assert values["endpoint.smart_turn.model_alone_cutoffs"] >= 0.5
    assert values["endpoint.smart_turn.false_cutoffs"] < values["endpoint.smart_turn.model_alone_cutoffs"]
    # The new way has its transcript sooner: Whisper started on it at the pause.
    assert values["endpoint.smart_turn.speculative"] > 0.5
    assert 0 < values["endpoint.smart_turn.transcript_s"] < values["endpoint.silence.transcript_s"]
    assert values["endpoint.transcript_sooner_s"] > 0
    assert "no vosk model" in values["endpoint.vosk.skipped"]
    # The default engine ends the turns of `smart_turn`; the other one gets a way of its own.
    assert values["endpoint.engine"] == "whisper"
    assert values["endpoint.moonshine.false_cutoffs"] in (0.0, 0.25, 0.5, 0.75, 1.0)
    assert 0 < values["endpoint.moonshine.transcript_s"] < 10
    check_figures(values, {"endpoint.smart_turn.delay_s": (0, 10)})
    check_targets(values)
    assert "endpoint.smart_turn.false_cutoffs" in done.stdout
