"""The core's parts that run without models: the table of command handlers, the turn queue,
and the speech stage handing each sentence to piper as it is."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

from edge_assistant.config import Config, TtsConfig
from edge_assistant.core.commands import HANDLERS, handle_command
from edge_assistant.core.stages import speech_stage
from edge_assistant.core.state import AssistantState
from edge_assistant.core.turns import Audio, Sentence, Turn, TurnEnd, TurnKind, TurnQueue, TurnRequest
from edge_assistant.events import COMMANDS, Command, EventType, State
from edge_assistant.tts import Synthesizer

MQTT_DOC = Path(__file__).resolve().parent.parent / "docs" / "mqtt.md"


class NoAnswers:
    """A responder for tests that answer nothing."""

    def sentences(self, *args, **kwargs):
        raise AssertionError("nothing is asked in these tests")

    def tool_context(self):
        return "", None


def bare_state(**parts) -> tuple[AssistantState, list]:
    state = AssistantState(Config(), session=None, responder=NoAnswers(), **{
        "synthesizer": None, "sink": None, **parts})
    events: list = []
    state.subscribers.append(events.append)
    return state, events


def documented_commands() -> set[str]:
    text = MQTT_DOC.read_text(encoding="utf-8")
    table = text[text.index("| Command | JSON fields | Plain payload |"):]
    table = table[: table.index("\n\n")]
    return set(re.findall(r"^\| `(\w+)` \|", table, re.MULTILINE))


def test_every_command_has_a_handler():
    assert set(HANDLERS) == set(COMMANDS)
    assert documented_commands() == set(COMMANDS)


def test_an_unknown_command_is_an_unknown_command_error():
    state, events = bare_state()
    handle_command(state, Command("dance", {}, "r1"))
    assert [(e.type, e.data["code"], e.data["command"], e.request_id) for e in events] == [
        (EventType.ERROR, "unknown_command", "dance", "r1")]
    assert "known: ask, say" in events[0].data["message"]


def test_a_command_goes_to_its_handler():
    state, events = bare_state()
    handle_command(state, Command("mute", {}, "m1"))
    assert state.muted and state.state == State.MUTED
    handle_command(state, Command("unmute", {}, "m2"))
    assert not state.muted and state.state == State.IDLE
    handle_command(state, Command("listen", {}, "l1"))
    assert [(e.data["code"], e.request_id) for e in events if e.type == EventType.ERROR] == [("no_microphone", "l1")]


def test_urgent_requests_go_first_and_a_full_queue_refuses():
    async def scenario():
        queue = TurnQueue(maxsize=3)
        first, second = TurnRequest(TurnKind.ASK, "one", "mqtt"), TurnRequest(TurnKind.ASK, "two", "mqtt")
        urgent = TurnRequest(TurnKind.ANNOUNCE, "now", "mqtt", urgent=True)
        assert queue.put(first) and queue.put(second) and queue.put(urgent)
        assert not queue.put(TurnRequest(TurnKind.ASK, "three", "mqtt"))
        return [await queue.next() for _ in range(3)]

    assert [request.text for request in asyncio.run(scenario())] == ["now", "one", "two"]


def test_only_the_turn_being_answered_is_cancelled_once():
    async def scenario():
        queue = TurnQueue(maxsize=2)
        assert not queue.cancel_active("nothing runs")
        turn = queue.active = Turn(TurnRequest(TurnKind.SAY, "hello", "mqtt"))
        assert queue.cancel_active("barge-in") and turn.cancelled
        assert not queue.cancel_active("again")
        assert not queue.empty
        queue.active = None
        assert queue.empty

    asyncio.run(scenario())


class RecordingSynthesizer(Synthesizer):
    def __init__(self, cfg) -> None:
        super().__init__(cfg)
        self.texts: list[tuple[str, dict]] = []

    def synthesize(self, text, **options):
        self.texts.append((text, options))
        return super().synthesize(text, **options)


def test_each_sentence_goes_to_the_synthesizer_whole():
    """A reply is split once, as it streams from the model: the speech stage does not split a
    sentence again (`split=False`), so "Dr. No. 5 runs." is one piece even to piper's side."""
    synthesizer = RecordingSynthesizer(TtsConfig(noise_scale=0.0, noise_w_scale=0.0))

    async def scenario():
        state, _ = bare_state(synthesizer=synthesizer)
        turn = Turn(TurnRequest(TurnKind.SAY, "", "mqtt"))
        stage = asyncio.create_task(speech_stage(state))
        for item in (Sentence(turn, "The film is called Dr. No. It is old."), TurnEnd(turn)):
            await state.sentences.put(item)
        items = []
        while not items or not isinstance(items[-1], TurnEnd):
            items.append(await asyncio.wait_for(state.audio.get(), 60))
        stage.cancel()
        return items

    items = asyncio.run(scenario())
    assert synthesizer.texts == [("The film is called Dr. No. It is old.", {"split": False})]
    audio = [item for item in items if isinstance(item, Audio)]
    assert audio and audio[0].first_of_sentence and {item.text for item in audio} == {
        "The film is called Dr. No. It is old."}
