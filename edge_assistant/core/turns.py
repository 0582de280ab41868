"""Turns: what is asked of the assistant (`TurnRequest`), the turn answering it (`Turn`), what
flows between the stages for it, and the queue of requests with the one being answered
(`TurnQueue`): urgent requests first, otherwise first come; one turn at a time."""

from __future__ import annotations

import asyncio
import logging
import threading
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from ..events import new_id
from ..respond import Response

log = logging.getLogger(__name__)


class TurnKind(StrEnum):
    """What a turn does with its text."""

    ASK = "ask"  # answered
    SAY = "say"  # spoken as is
    ANNOUNCE = "announce"  # a chime, then spoken as is
    RING = "ring"  # a finished timer: its sound, then spoken as is, then listening for "stop"


@dataclass
class TurnRequest:
    kind: TurnKind
    text: str
    origin: str  # "voice", "mqtt", "hermes", "cli"
    turn_id: str = field(default_factory=new_id)
    request_id: str | None = None
    speak: bool = True
    # Before every normal request in the queue (an announcement with priority "high").
    urgent: bool = False
    # The earcon played first ("announce", "ring"), or "".
    chime: str = ""
    # After speaking, listen for an answer without the wake word.
    then_listen: bool = False
    # Set for a turn started on a fast first text (stt.first_pass): the final text ("" for
    # none), which decides whether the answer stands.
    final_text: asyncio.Future[str] | None = None


@dataclass
class Turn:
    request: TurnRequest
    # The conversation it belongs to (ChatSession.epoch): a reset meanwhile starts another.
    epoch: int = 0
    cancel: threading.Event = field(default_factory=threading.Event)
    response: Response = field(default_factory=Response)
    # Sentences whose playback began: what the listener heard of the reply.
    spoken: list[str] = field(default_factory=list)
    speaking_started: bool = False
    failed: str | None = None
    done: asyncio.Event = field(default_factory=asyncio.Event)
    # stt.first_pass: "agreed" (the answer to the fast text stood) or "restarted".
    first_pass: str = ""

    @property
    def cancelled(self) -> bool:
        return self.cancel.is_set()


@dataclass(frozen=True)
class TurnEnd:
    turn: Turn


@dataclass(frozen=True)
class Sentence:
    turn: Turn
    text: str
    # A sound played as it is instead of speaking `text` (an announcement's chime).
    sound: Any = None


@dataclass(frozen=True)
class Audio:
    turn: Turn
    text: str
    samples: Any
    sample_rate: int
    first_of_sentence: bool


class TurnQueue:
    """The requests waiting and the turn being answered (`active`)."""

    def __init__(self, maxsize: int) -> None:
        # (urgency, arrival, request): urgent announcements first, otherwise first come.
        self.requests: asyncio.PriorityQueue[tuple[int, int, TurnRequest]] = asyncio.PriorityQueue(maxsize=maxsize)
        self._arrivals = 0
        self.active: Turn | None = None
        # A timer's ring waits in the queue: one is enough, rings do not pile up.
        self.ring_waiting = False

    def put(self, request: TurnRequest) -> bool:
        """Queue a request; False when the queue is full."""
        try:
            self._arrivals += 1
            self.requests.put_nowait((0 if request.urgent else 1, self._arrivals, request))
            return True
        except asyncio.QueueFull:
            return False

    async def next(self) -> TurnRequest:
        """The next request to answer, once there is one."""
        _, _, request = await self.requests.get()
        if request.kind == TurnKind.RING:
            self.ring_waiting = False
        return request

    def cancel_active(self, reason: str) -> bool:
        """Cancel the turn being answered; False if there is none, or it is cancelled already."""
        turn = self.active
        if turn is None or turn.cancelled:
            return False
        log.info("turn %s cancelled: %s", turn.request.turn_id, reason)
        turn.cancel.set()
        return True

    @property
    def empty(self) -> bool:
        """Nothing waiting and nothing being answered."""
        return self.requests.empty() and self.active is None

    async def idle(self) -> None:
        """Until nothing waits and no turn is being answered."""
        while not self.empty:
            active = self.active
            if active is not None:
                await active.done.wait()
            else:
                await asyncio.sleep(0.02)
