"""The listening stage: the microphone's frames to the listener (wake word, endpointing,
speech recognition), and what the assistant does with each of its events.

A fast first text (`stt.first_pass`: a transcript with "pass": "fast") starts its turn at once;
the final text of the same turn id settles it (stages.py holds what the turn does until then)."""

from __future__ import annotations

import asyncio
from typing import AsyncIterable, AsyncIterator

from ..events import Event, EventType, State, new_id
from .state import AssistantState
from .turns import TurnKind, TurnRequest


async def listening_stage(core: AssistantState) -> None:
    await core.listener.run(core.sound_decisions.marked(_unmuted(core, core.source.frames())),
                            lambda event: on_listener_event(core, event))
    # The input ran out (a file; a microphone ends only when closed): nothing more to hear.
    core.input_finished.set()


async def _unmuted(core: AssistantState, frames: AsyncIterable[bytes]) -> AsyncIterator[bytes]:
    """The microphone, minus what arrives while muted (still read, so nothing overflows)."""
    async for frame in frames:
        if not core.muted:
            yield frame


def on_listener_event(core: AssistantState, event: Event) -> None:
    core.emit(event)
    if event.type == EventType.WAKE:
        _on_wake(core, event)
    elif event.type == EventType.STOP_WORD:
        core.stop_ringing("stop word")
        core.cancel_turn("stop word")
    elif event.type == EventType.TRANSCRIPT and _first_pass_transcript(core, event):
        pass
    elif event.type == EventType.TRANSCRIPT:
        text = str(event.data.get("text", "")).strip()
        if text:
            core.submit(TurnRequest(TurnKind.ASK, text, "voice", turn_id=event.turn_id or new_id()))
        elif core.active is None:
            core.set_state(core.resting_state())
    elif event.type == EventType.SPEECH_END and event.data.get("reason") == "timeout":
        if core.active is None:
            core.set_state(core.resting_state())
    elif event.type == EventType.SPEECH_START and core.active is None:
        core.set_state(State.LISTENING, event.turn_id)
    elif event.type == EventType.ERROR and (settle_final_text(core, event.turn_id, "") or core.active is None):
        # Speech recognition failed: the person must not be left waiting for an answer.
        core.start_side_task(core.error_notice(event.turn_id), "error-notice")


def _on_wake(core: AssistantState, event: Event) -> None:
    core.stop_ringing("wake word")
    core.sound_decisions.woken(reply_cut_short=core.active is not None)
    if core.active is not None:
        core.cancel_turn("wake word")
    core.set_state(State.LISTENING, event.turn_id)
    if core.sound_decisions.wake_earcon(event.data):
        core.play_earcon("wake")


def _first_pass_transcript(core: AssistantState, event: Event) -> bool:
    """A fast text starts its turn; the final text after one settles it. False for any other
    transcript."""
    if event.data.get("pass") == "fast":
        text = str(event.data.get("text", "")).strip()
        request = TurnRequest("ask", text, "voice", turn_id=event.turn_id or new_id(),
                              final_text=asyncio.get_running_loop().create_future())
        if core.submit(request):
            core.awaiting_final[request.turn_id] = request
        return True
    return settle_final_text(core, event.turn_id, str(event.data.get("text", "")).strip())


def settle_final_text(core: AssistantState, turn_id: str | None, text: str) -> bool:
    """Hand the final text to the turn started on the fast one; False if there is none."""
    request = core.awaiting_final.pop(turn_id, None) if turn_id else None
    if request is None:
        return False
    assert request.final_text is not None
    if not request.final_text.done():
        request.final_text.set_result(text)
    return True
