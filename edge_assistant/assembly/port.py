"""The assistant as the parts it is built from reach it back: the timers ring on it and report
through it, the facts read its mute, the microphone and the LLM's fallback tell of their
faults. Those parts are built before the assistant (it is built with them), so they are built
with its port, which `Assembly` connects once the assistant exists: the one place that link
is made. Until then nothing rings, events go nowhere and the mute is not known."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from typing import Any

from ..config import Config
from ..events import Event, EventType
from ..timers import SYSTEM_CLOCK, Clock, Timer, TimerScheduler, TimerStore, finished_announcement
from .answering import timer_store


class AssistantPort:
    def __init__(self, assistant: Any = None, loop: asyncio.AbstractEventLoop | None = None) -> None:
        self.assistant = assistant
        # The loop the assistant runs on, for what other threads tell it.
        self.loop = loop

    def connect(self, assistant: Any) -> None:
        if self.assistant is not None and self.assistant is not assistant:
            raise RuntimeError("the port is connected to another assistant")
        self.assistant = assistant

    def emit(self, event: Event) -> None:
        if self.assistant is not None:
            self.assistant.emit(event)

    def ring(self, timer: Timer, count: int) -> None:
        """A finished timer's `on_ring`."""
        if self.assistant is not None:
            self.assistant.ring(finished_announcement(timer), first=count == 1)

    def muted(self) -> bool | None:
        return self.assistant.muted if self.assistant is not None else None

    def microphone_fault(self, error: Exception) -> None:
        self.emit(Event(EventType.ERROR, {"code": "audio_input_failed", "message": str(error)}))

    def llm_event(self, event: Event) -> None:
        """The remote backend falling back to the local model (llm.fallback_local), told from
        the generating thread: an event of the turn being answered."""
        if self.loop is not None:
            self.loop.call_soon_threadsafe(self._emit_in_turn, event)

    def _emit_in_turn(self, event: Event) -> None:
        assistant = self.assistant
        if assistant is None:
            return
        turn = assistant.active
        if turn is not None:
            event = replace(event, turn_id=turn.request.turn_id, request_id=turn.request.request_id)
        assistant.emit(event)


def timer_scheduler(config: Config, port: AssistantPort, *, store: TimerStore | None = None,
                    clock: Clock = SYSTEM_CLOCK) -> TimerScheduler:
    """The timers kept for this device id (or in `store`), ringing on `port`'s assistant."""
    return TimerScheduler(store if store is not None else timer_store(config), config.timers,
                          clock=clock, on_event=port.emit, on_ring=port.ring)
