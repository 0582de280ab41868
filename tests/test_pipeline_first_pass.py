"""stt.first_pass in the assistant (real Whisper, llama.cpp, piper and timers): the LLM starts
on the fast text, but nothing is said, done or published before Whisper's text, and the turn
starts over on Whisper's text where the words differ."""

from __future__ import annotations

import asyncio
import dataclasses

import pytest

from edge_assistant import models
from edge_assistant.assembly import build_responder
from edge_assistant.audio.wav import WavSink, read_wav
from edge_assistant.thinking.chat import ChatSession
from edge_assistant.config import Config, LlmConfig, PromptConfig, ServiceConfig, SttConfig, WakeConfig
from edge_assistant.hearing.listener import Listener
from edge_assistant.thinking.llama_engine import LlamaEngine
from edge_assistant.core import Assistant
from edge_assistant.thinking.prompt import PromptBuilder
from edge_assistant.hearing.stt import WhisperTranscriber, same_words
from edge_assistant.timers import TimerScheduler, TimerStore
from edge_assistant.tts import Synthesizer
from tests.test_pipeline import QueueSource
from tests.test_stt_first_pass import ScriptedFirstPass

pytestmark = pytest.mark.slow

QUESTION = "What is the capital of France?"
TIMER = "Set a timer for ten minutes."
LLM_REPLY = "It is sunny."  # the scripted model's first sentence, whatever it is asked


class ShoutingWhisper(WhisperTranscriber):
    """A first pass that hears what Whisper hears, in capitals with an "!": the same words."""

    engine = "shouting"

    def __init__(self) -> None:
        super().__init__(models.embedded_whisper_path(), threads=2)

    def _decode(self, utterance: bytes):
        text, confidence, words = super()._decode(utterance)
        return text.upper() + "!", confidence, words


class PromptedSession(ChatSession):
    """The real session, noting each text the LLM was started on."""

    def __init__(self, *args) -> None:
        super().__init__(*args)
        self.prompted: list[str] = []

    def prepare(self, user_text: str, context: str = ""):
        self.prompted.append(user_text)
        return super().prepare(user_text, context)


@pytest.fixture(scope="module")
def synthesizer():
    from edge_assistant.config import TtsConfig

    return Synthesizer(TtsConfig(noise_scale=0.0, noise_w_scale=0.0))


@pytest.fixture(scope="module")
def engine(scripted_gguf):
    return LlamaEngine(LlmConfig(n_ctx=1024, max_tokens=8, temperature=0.0, seed=1), scripted_gguf)


def converse(tmp_path, engine, synthesizer, first_pass, said_wav):
    """Say `said_wav` to an assistant whose first pass is `first_pass`; its events, prompts and
    the timers left set."""
    config = dataclasses.replace(
        Config(), llm=engine.config, prompt=PromptConfig(template="chatml"),
        service=ServiceConfig(earcons=False), wake=WakeConfig(enabled=False),
        # No drafts at pauses: the final text is always decoded after the fast one.
        stt=SttConfig(n_threads=2, speculative=False, first_pass="moonshine"))
    builder = PromptBuilder(config.prompt, engine.tokenizer, engine.config.n_ctx, engine.config.max_tokens)
    session = PromptedSession(engine, builder)
    listener = Listener(config, first_pass=first_pass)
    source = QueueSource()
    events = []

    async def scenario():
        scheduler = TimerScheduler(TimerStore(tmp_path / "timers.json"))
        await scheduler.start()
        assistant = Assistant(config, session=session, synthesizer=synthesizer,
                              sink=WavSink(tmp_path / "speaker.wav"), listener=listener, source=source,
                              responder=build_responder(config, session, scheduler=scheduler),
                              timers=scheduler)
        assistant.subscribers.append(events.append)
        assistant.start()
        source.speak(read_wav(said_wav), silence_s=1.5)
        source.end()
        await asyncio.wait_for(assistant.wait_until_done(), 300)
        await assistant.stop()
        timers = scheduler.timers()
        await scheduler.close()
        return assistant, timers

    try:
        assistant, timers = asyncio.run(scenario())
    finally:
        listener.close()
    return assistant, events, session, timers


def index_of(events, predicate) -> int:
    return next(i for i, event in enumerate(events) if predicate(event))


def test_when_the_words_agree_the_fast_turn_is_the_reply(tmp_path, engine, synthesizer, make_speech_wav):
    assistant, events, session, _ = converse(tmp_path, engine, synthesizer, ShoutingWhisper(),
                                             make_speech_wav(QUESTION, 0.5, 1.5))
    fast, final = [e for e in events if e.type == "transcript"]
    assert fast.data["pass"] == "fast" and fast.data["text"].endswith("!")
    assert final.data["first_pass"] == "agreed" and same_words(fast.data["text"], final.data["text"])
    # One LLM call, on the fast text; its answer is the reply.
    assert session.prompted == [fast.data["text"]]
    (reply,) = [e for e in events if e.type == "reply"]
    assert reply.data["first_pass"] == "agreed" and reply.data["text"].startswith(LLM_REPLY)
    # Nothing of it was said or published before Whisper's text.
    final_at = events.index(final)
    for kind in ("reply_sentence", "tts_start", "reply"):
        assert index_of(events, lambda e: e.type == kind) > final_at, kind
    assert session.conversation.turns[-1].user == fast.data["text"]


def test_a_differing_final_text_restarts_the_turn_on_it(tmp_path, engine, synthesizer, make_speech_wav):
    # The LLM starts on a question that was never asked; Whisper hears the timer.
    assistant, events, session, timers = converse(tmp_path, engine, synthesizer, ScriptedFirstPass(QUESTION),
                                                  make_speech_wav(TIMER, 0.5, 1.5))
    fast, final = [e for e in events if e.type == "transcript"]
    assert fast.data["text"] == QUESTION and final.data["first_pass"] == "differs"
    assert "timer" in final.data["text"].lower()
    assert session.prompted == [QUESTION]  # started on the fast text, then dropped
    # Nothing of the LLM's answer to the fast text was said or published.
    assert not [e for e in events if e.type in ("reply_sentence", "tts_start") and LLM_REPLY in e.data["text"]]
    (reply,) = [e for e in events if e.type == "reply"]
    assert reply.data["first_pass"] == "restarted" and reply.data["source"] == "timers"
    assert [t.duration_s for t in timers] == [600.0]
    assert index_of(events, lambda e: e.type == "intent") > events.index(final)
    assert not session.conversation.turns  # the dropped start left no history


def test_nothing_acts_on_a_fast_text_that_does_not_stand(tmp_path, engine, synthesizer, make_speech_wav):
    # Moonshine's kind of mistake the other way round: a timer heard in a question.
    assistant, events, session, timers = converse(tmp_path, engine, synthesizer, ScriptedFirstPass(TIMER),
                                                  make_speech_wav(QUESTION, 0.5, 1.5))
    final = [e for e in events if e.type == "transcript"][-1]
    assert final.data["first_pass"] == "differs"
    assert timers == []
    assert not [e for e in events if e.type in ("intent", "timer_started")]
    assert session.prompted == [final.data["text"]]
    (reply,) = [e for e in events if e.type == "reply"]
    assert reply.data["first_pass"] == "restarted" and reply.data["source"] == "llm"
    assert reply.data["text"].startswith(LLM_REPLY)
    assert session.conversation.turns[-1].user == final.data["text"]


class Differs(Exception):
    pass


@pytest.mark.parametrize("stands", [True, False])
def test_a_home_command_on_a_fast_text_is_done_only_once_it_stands(tmp_path, scripted_gguf, stands):
    """The responder under `hold`: a template command is matched without acting, and acts
    only after `hold()` returns (the final text had the same words)."""
    import threading

    from edge_assistant.bench.answers import bench_config, simulated_home
    from edge_assistant.config import from_mapping
    from edge_assistant.respond import Response
    from tests.test_respond import session_for

    session = session_for(scripted_gguf)
    config = bench_config(from_mapping({}), tmp_path)

    async def run():
        home = await simulated_home(config)
        responder = build_responder(config, session, home=home)
        sent_before_hold: list[list] = []

        async def hold():
            sent_before_hold.append(list(home.connection.commands))
            if not stands:
                raise Differs

        response, events = Response(), []
        try:
            said = [s async for s in responder.sentences("Turn on the kitchen light.", threading.Event(), response,
                                                         lambda kind, data: events.append(kind), hold=hold)]
        except Differs:
            said = None
        return sent_before_hold, home.connection.commands, said, events

    try:
        sent_before_hold, sent, said, events = asyncio.run(run())
    finally:
        session.engine.close()
    assert sent_before_hold == [[]]  # matched, but nothing sent before the text stood
    if stands:
        assert [topic for topic, _ in sent] == ["home/kitchen/light/set"] and said
        assert "action" in events
    else:
        assert sent == [] and said is None and "action" not in events
