"""The assistant's state and what every stage and command does with it: events out, the
state shown, turn requests queued and cancelled, short side tasks, a ringing timer stopped,
earcons and the error notice. The stages (stages.py, listening.py) and the commands
(commands.py) act on it; `assistant.Assistant` runs them."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any, Callable

from ..config import Config
from ..events import Event, EventType, State
from ..health import log_fault
from ..respond import Responder
from ..thinking.chat import ChatSession
from ..audio.own_sound import AssistantSound, OwnSound
from .own_sound import OwnSoundDecisions
from .parts import Answerer, AudioSink, EventBridge, FrameSource, SpeechListener, SpeechSynthesizer, TimerControl
from .turns import Audio, Sentence, Turn, TurnEnd, TurnKind, TurnQueue, TurnRequest

log = logging.getLogger(__name__)

SENTENCE_QUEUE = 16
AUDIO_QUEUE = 4

ERROR_NOTICE = "Sorry, something went wrong."

EventSink = Callable[[Event], None]


class AssistantState:
    """Everything runs on the loop that runs the stages."""

    def __init__(
        self,
        config: Config,
        *,
        session: ChatSession,
        synthesizer: SpeechSynthesizer,
        sink: AudioSink,
        listener: SpeechListener | None = None,
        source: FrameSource | None = None,
        bridge: EventBridge | None = None,
        earcons: dict[str, Any] | None = None,
        responder: Answerer | None = None,
        timers: TimerControl | None = None,
        own_sound: OwnSound | None = None,
    ) -> None:
        self.config = config
        self.session = session
        # Home intents and timers first, then the LLM; the LLM alone without a home.
        self.responder: Answerer = responder or Responder(session)
        self.timers = timers
        self.synthesizer = synthesizer
        self.sink = sink
        self.listener = listener
        self.source = source
        self.bridge = bridge
        self.earcons = earcons or {}
        self.state = State.IDLE
        self.muted = False
        self.subscribers: list[EventSink] = []
        self.turns = TurnQueue(config.mqtt.command_queue)
        self.sentences: asyncio.Queue[Sentence | TurnEnd] = asyncio.Queue(SENTENCE_QUEUE)
        self.audio: asyncio.Queue[Audio | TurnEnd] = asyncio.Queue(AUDIO_QUEUE)
        self.input_finished = asyncio.Event()
        self.last_turn_at = time.monotonic()
        self.counters = {"turns": 0, "cancelled": 0, "errors": 0}
        # Turns started on a fast first text (stt.first_pass), by turn id, until the final one.
        self.awaiting_final: dict[str, TurnRequest] = {}
        # Short tasks outside the stages (earcons, error notices): kept so that they can be
        # awaited on stop and their failures logged, never dropped.
        self.side_tasks: set[asyncio.Task] = set()
        # What the core decides about its own sound, as the microphone hears it (no own sound
        # handed in: nothing it plays is heard).
        self.sound_decisions = OwnSoundDecisions(own_sound if own_sound is not None else AssistantSound())

    @property
    def active(self) -> Turn | None:
        """The turn being answered."""
        return self.turns.active

    # --- events and state ---------------------------------------------------------------------

    def emit(self, event: Event) -> None:
        if event.type == EventType.ERROR:
            self.counters["errors"] += 1
        if self.bridge is not None:
            try:
                self.bridge.publish_event(event)
            except Exception:  # MQTT must never take the assistant down
                log.exception("publishing %s failed", event.type)
        for subscriber in self.subscribers:
            try:
                subscriber(event)
            except Exception:
                log.exception("event subscriber failed")

    def set_state(self, state: State, turn_id: str | None = None) -> None:
        if state == self.state:
            return
        self.state = state
        log.info("state: %s", state)
        self.emit(Event(EventType.STATE, {"state": state}, turn_id=turn_id))

    def resting_state(self) -> State:
        if self.muted:
            return State.MUTED
        if self.listener is not None and self.listener.listening:
            return State.LISTENING
        return State.IDLE

    # --- turns --------------------------------------------------------------------------------

    def submit(self, request: TurnRequest) -> bool:
        """Queue a turn; refused with a `busy` error when the queue is full."""
        if self.turns.put(request):
            return True
        self.emit(Event(EventType.ERROR, {"code": "busy", "message": "too many requests waiting"},
                        turn_id=request.turn_id, request_id=request.request_id))
        return False

    def cancel_turn(self, reason: str) -> None:
        if self.turns.cancel_active(reason):
            self.counters["cancelled"] += 1
            self.sink.stop()

    def ring(self, text: str, *, first: bool = False) -> None:
        """A finished timer rings: its sound and `text` (called again for each repeat until it
        is stopped). The first ring goes before anything waiting; repeats take their turn, so
        questions asked while it rings are answered."""
        if not self.turns.ring_waiting:  # one in the queue is enough: rings do not pile up
            self.turns.ring_waiting = self.submit(TurnRequest(TurnKind.RING, text, "timer", urgent=first, chime="ring"))

    def stop_ringing(self, reason: str) -> None:
        if self.timers is not None and self.timers.ringing:
            log.info("ringing stopped: %s", reason)
            self.timers.stop_ringing()
            active = self.active
            if active is not None and active.request.kind == TurnKind.RING:
                self.cancel_turn(reason)

    # --- sounds outside the turns -------------------------------------------------------------

    def start_side_task(self, work, name: str) -> None:
        task = asyncio.create_task(work, name=name)
        self.side_tasks.add(task)
        task.add_done_callback(self._side_task_done)

    def _side_task_done(self, task: asyncio.Task) -> None:
        self.side_tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log_fault(log, f"{task.get_name()} failed", task.exception())

    def play_earcon(self, kind: str) -> None:
        sound = self.earcons.get(kind)
        if sound is None or not self.config.service.earcons:
            return
        self.start_side_task(self.sink.play(sound.samples, sound.sample_rate), f"earcon-{kind}")

    async def error_notice(self, turn_id: str | None) -> None:
        """Tell the person the turn failed: an earcon, or a spoken sentence without earcons."""
        self.sound_decisions.sounding()
        self.set_state(State.ERROR, turn_id)
        try:
            sound = self.earcons.get("error")
            if self.config.service.earcons and sound is not None:
                await self.sink.play(sound.samples, sound.sample_rate)
            else:
                async with contextlib.aclosing(self.synthesizer.stream(ERROR_NOTICE)) as chunks:
                    async for chunk in chunks:
                        await self.sink.play(chunk.samples, chunk.sample_rate)
        except Exception as error:
            log_fault(log, "the error notice itself failed", error)
        if self.active is None:
            self.set_state(self.resting_state(), turn_id)
