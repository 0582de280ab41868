"""stt.first_pass at the listener: Moonshine's text of an utterance goes out before Whisper
starts on it, then Whisper's, saying whether the words agreed (real models)."""

from __future__ import annotations

import asyncio
import dataclasses
import time

import pytest

from edge_assistant import models
from edge_assistant.audio.wav import WavSource
from edge_assistant.config import Config, SttConfig, WakeConfig
from edge_assistant.events import Event
from edge_assistant.hearing.listener import Listener
from edge_assistant.hearing.stt import Transcriber, WhisperTranscriber, same_words

QUESTION = "What is the capital of France?"


class ScriptedFirstPass(Transcriber):
    """A first-pass recognizer that hears `text` whatever was said: forces a difference."""

    engine = "scripted"
    decodes_at_end = True

    def __init__(self, text: str) -> None:
        super().__init__()
        self.text = text

    def _start(self) -> None:
        pass

    def _accept(self, frame: bytes) -> None:
        return None

    def _finish(self):
        return self.text, 1.0, ()


class WatchedWhisper(WhisperTranscriber):
    """Whisper, noting how many events had gone out when each final text was started."""

    def __init__(self, events: list[Event]) -> None:
        super().__init__(models.embedded_whisper_path(), threads=2)
        self.events = events
        self.started_after: list[int] = []

    def finish(self, draft=None):
        self.started_after.append(len(self.events))
        return super().finish(draft)


def first_pass_config(**stt) -> Config:
    # Without drafts at pauses the final text is always decoded at the end, after the fast one.
    options = {"n_threads": 2, "speculative": False, "first_pass": "moonshine", **stt}
    return dataclasses.replace(Config(), stt=SttConfig(**options), wake=WakeConfig(enabled=False))


def hear(listener: Listener, path, events: list[Event]) -> list[Event]:
    asyncio.run(listener.run(WavSource(path).frames(), events.append, max_turns=1))
    return events


def test_same_words_ignores_case_punctuation_and_how_numbers_are_written():
    assert same_words("Set a timer for ten minutes.", "set a timer, for ten minutes")
    assert same_words("What's the time?", "what's the time")
    # Moonshine's spellings against Whisper's, from the project's clips (bench stt).
    assert same_words("Set a timer for ten minutes.", "Set a timer for 10 minutes.")
    assert same_words("Set the thermostat to twenty-one degrees.", "Set the thermostat to 21 degrees.")
    assert same_words("Dim the living room lights to fifty per cent,", "Dim the living room lights to 50%.")
    assert same_words("Remind me to call my mother to-morrow morning.", "Remind me to call my mother tomorrow morning.")
    # Words that decide an action differ.
    assert not same_words("Set a time for ten minutes.", "Set a timer for ten minutes.")
    assert not same_words("Set the firmest debt to twenty-one degrees.", "Set the thermostat to 21 degrees.")
    assert not same_words("Set a timer for ten minutes.", "Set a timer for 11 minutes.")
    assert not same_words("Purn on the kitchen lights.", "Turn on the kitchen lights.")
    assert not same_words("", "turn on the light")


def test_moonshine_text_goes_out_before_whisper_starts(make_speech_wav):
    events: list[Event] = []
    whisper = WatchedWhisper(events)
    listener = Listener(first_pass_config(), transcriber=whisper)
    try:
        hear(listener, make_speech_wav(QUESTION, 0.5, 1.5), events)
    finally:
        listener.close()
    assert [e.type for e in events] == ["speech_start", "speech_end", "transcript", "transcript"]
    fast, final = events[2].data, events[3].data
    assert fast["pass"] == "fast" and fast["engine"] == "moonshine"
    assert final["pass"] == "final" and final["engine"] == "whisper"
    assert "capital" in fast["text"].lower() and "france" in final["text"].lower()
    # The fast text had been emitted (third event) when Whisper started on the utterance.
    assert whisper.started_after == [3]
    agreed = same_words(fast["text"], final["text"])
    assert final["first_pass"] == ("agreed" if agreed else "differs")
    assert listener.timing.first_pass_agreed is agreed
    assert events[2].turn_id == events[3].turn_id == events[0].turn_id


def test_a_different_final_text_says_so(make_speech_wav):
    events: list[Event] = []
    listener = Listener(first_pass_config(), first_pass=ScriptedFirstPass("Set a timer for ten minutes."))
    try:
        hear(listener, make_speech_wav(QUESTION, 0.5, 1.5), events)
    finally:
        listener.close()
    fast, final = [e.data for e in events if e.type == "transcript"]
    assert fast["text"] == "Set a timer for ten minutes." and fast["pass"] == "fast"
    assert "capital" in final["text"].lower() and final["first_pass"] == "differs"
    assert listener.timing.first_pass_agreed is False


def test_off_by_default_one_transcript_without_pass(make_speech_wav):
    events: list[Event] = []
    config = first_pass_config(first_pass="")
    listener = Listener(config)
    try:
        assert listener.first_pass is None
        hear(listener, make_speech_wav(QUESTION, 0.5, 1.5), events)
    finally:
        listener.close()
    (transcript,) = [e for e in events if e.type == "transcript"]
    assert "pass" not in transcript.data and "first_pass" not in transcript.data


def test_a_failing_final_recognizer_is_an_error_after_the_fast_text(make_speech_wav):
    class Failing(Transcriber):
        engine = "failing"
        decodes_at_end = True

        def _start(self):
            pass

        def _accept(self, frame):
            return None

        def _finish(self):
            raise RuntimeError("decoder exploded")

    events: list[Event] = []
    listener = Listener(first_pass_config(), transcriber=Failing(), first_pass=ScriptedFirstPass("hello there"))
    hear(listener, make_speech_wav(QUESTION, 0.5, 1.5), events)
    assert [e.type for e in events] == ["speech_start", "speech_end", "transcript", "error"]
    assert events[-1].data["code"] == "stt_failed"


def test_restart_rate_counts_the_utterances_whose_words_differ():
    from edge_assistant.bench.speech import restart_rate

    fast = ["Set a time for ten minutes.", "What is the capital of France", "turned on the kitchen light"]
    final = ["Set a timer for 10 minutes.", "What is the capital of France?", "Turn on the kitchen light."]
    assert restart_rate(fast, final) == pytest.approx(2 / 3)
    assert restart_rate(final, final) == 0.0
    with pytest.raises(ValueError):
        restart_rate(fast[:2], final)


def test_the_fast_words_of_a_complete_pause_end_the_turn_without_waiting_for_whisper(make_speech_wav):
    """With a first pass, Moonshine's words of a pause the end-of-turn model judges complete say
    whether the turn ends there (0.07 s), not Whisper's draft (0.4 to 0.6 s here, slower on a
    Pi): the answer starts that much sooner. Here Whisper's draft takes seconds, so without them
    the turn would end only after vad.silence_s."""

    class SlowDrafts(WhisperTranscriber):
        def __init__(self) -> None:
            super().__init__(models.embedded_whisper_path(), threads=2)

        def _draft(self):
            decode = super()._draft()

            def slowly():
                time.sleep(3.0)
                return decode()

            return slowly

    def heard(config: Config) -> list[Event]:
        events: list[Event] = []
        listener = Listener(config, transcriber=SlowDrafts())
        try:
            return hear(listener, make_speech_wav(QUESTION, 0.5, 1.5), events)
        finally:
            listener.close()

    events = heard(first_pass_config(speculative=True))
    (ended,) = [e for e in events if e.type == "speech_end"]
    assert ended.data["reason"] == "end_of_turn", ended.data
    fast, final = [e.data for e in events if e.type == "transcript"]
    assert fast["pass"] == "fast" and "capital" in fast["text"].lower()
    assert final["speculative"] is True  # Whisper's text is its draft of that pause, awaited
    # Whisper's own draft alone waits for vad.silence_s.
    (ended,) = [e for e in heard(first_pass_config(speculative=True, first_pass="")) if e.type == "speech_end"]
    assert ended.data["reason"] == "silence", ended.data
