"""A turn's answer to a fast first text (`stt.first_pass`), held until the final text.

The listener sends Moonshine's text of an utterance at once ("pass": "fast") and Whisper's after
it ("pass": "final"). The assistant starts answering the fast one, so that the LLM reads the
prompt while Whisper still transcribes, through a `HeldUntilFinal`: what the answer emits waits
in it, and what would act (the home, the timers, a tool call) or be said awaits `wait()`. Where
the final text has the same words, `wait()` lets the held events out and the answer goes on;
otherwise it stops the generation and raises `FinalTextDiffers`, and the turn starts over on the
final text with nothing of the first start seen.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from typing import Any, Callable

from .events import Event
from .hearing.stt import same_words

log = logging.getLogger(__name__)

# Longest wait for the final text after a fast one: the recognizer takes under a second; past
# this the listener is taken to have failed, and the turn is dropped.
FINAL_TEXT_WAIT_S = 30.0


class FinalTextDiffers(Exception):
    """The final text's words are not the fast text's: what was started on it is dropped."""


class _EitherSet(threading.Event):
    """Set when any of `events` is: the turn's cancel, or this start's own."""

    def __init__(self, *events: threading.Event) -> None:
        super().__init__()
        self.events = events

    def is_set(self) -> bool:
        return super().is_set() or any(event.is_set() for event in self.events)


class HeldUntilFinal:
    """A turn's answer to a fast first text (stt.first_pass), held until the final text: its
    events wait in `events`; `wait()` lets them out where the words agree, and otherwise stops
    the generation and raises `FinalTextDiffers`."""

    def __init__(self, turn: Any, final_text: asyncio.Future[str], emit: Callable[[Event], None]) -> None:
        self.turn = turn
        self.final_text = final_text
        self.emit = emit
        self.restart = threading.Event()
        self.cancel = _EitherSet(turn.cancel, self.restart)
        self.events: list[Event] = []
        self.confirmed = False
        self.final = ""

    async def wait(self) -> None:
        if self.confirmed:
            return
        try:
            self.final = await asyncio.wait_for(asyncio.shield(self.final_text), FINAL_TEXT_WAIT_S)
        except asyncio.TimeoutError:
            log.error("no final text %.0f s after the fast one: the turn is dropped", FINAL_TEXT_WAIT_S)
            self.final = ""
        if not same_words(self.final, self.turn.request.text):
            self.restart.set()
            raise FinalTextDiffers
        self.confirmed = True
        self.turn.first_pass = "agreed"
        events, self.events = self.events, []
        for event in events:
            self.emit(event)
