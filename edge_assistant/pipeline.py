"""The assistant's core: a state machine on one asyncio loop, with a task per stage.

    frontend  mic frames -> wake word -> VAD -> STT        (listener.Listener, worker thread)
    commands  MQTT/Hermes commands                          (mqtt.MqttBridge.commands)
    llm       turn requests -> prompt -> tokens -> sentences (worker thread)  -> sentence queue
    tts       sentences -> audio chunks                      (worker thread)  -> audio queue
    speaker   audio chunks -> the sink

The queues are bounded, so a stage that falls behind slows the one before it instead of piling
up memory. Because each stage hands on as soon as it has something, the first sentence is
playing while the model writes the second, and sentence n+1 is synthesized while n plays.

Barge-in (the wake word, MQTT `cancel` or `listen` during a reply) sets the turn's cancel flag,
which the generation checks after every token, and stops the sink mid-block: both take effect
within tens of milliseconds. Items of a cancelled turn still flow to the speaker stage, which
skips their audio and closes the turn, recording in the history what was actually heard.

A fast first text (`stt.first_pass`: a transcript with "pass": "fast") starts its turn at once,
so the LLM reads the prompt while Whisper still transcribes; but what the turn says, does and
publishes waits for Whisper's text (the "final" transcript of the same turn id). Where its
words are the same, the turn goes on as it is; otherwise that start is dropped unseen and the
turn starts again on Whisper's text. The `reply` event says which (`first_pass`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, AsyncIterable, AsyncIterator, Callable, Protocol

from .thinking.chat import ChatSession
from .concurrency import Backoff
from .config import Config
from .events import Command, Event, EventType, State, new_id
from .first_pass import FinalTextDiffers, HeldUntilFinal
from .health import log_fault
from .respond import Responder, Response
from .thinking.sentences import SentenceSplitter
from .audio.own_sound import AssistantSound, OwnSound
from .hearing.stop_word import says_stop
from .timers import TimerError, run_timer_command

log = logging.getLogger(__name__)

# Backoff for a stage that keeps failing (a microphone that is gone, say); a stage that ran a
# minute before failing again starts from the shortest pause.
RESTART_BACKOFF_S = (0.5, 1.0, 2.0, 5.0, 10.0, 30.0)
HEALTHY_AFTER_S = 60.0
SENTENCE_QUEUE = 16
AUDIO_QUEUE = 4

ERROR_NOTICE = "Sorry, something went wrong."


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


EventSink = Callable[[Event], None]


# --- what the assistant needs of each stage's part ------------------------------------------


class FrameSource(Protocol):
    """The microphone (or a WAV file standing in for it): 16 kHz mono s16le frames."""

    def frames(self) -> AsyncIterator[bytes]: ...

    async def aclose(self) -> None: ...


class AudioSink(Protocol):
    """The speaker (or a WAV file): `play` returns False if `stop` cut it short."""

    async def play(self, samples: Any, sample_rate: int) -> bool: ...

    def stop(self) -> None: ...

    def set_volume(self, volume: float) -> None: ...

    async def aclose(self) -> None: ...


class SpeechChunkLike(Protocol):
    samples: Any
    sample_rate: int


class SpeechSynthesizer(Protocol):
    """Text to audio, streamed chunk by chunk (tts.Synthesizer)."""

    def stream(self, text: str) -> AsyncIterator[SpeechChunkLike]: ...


class SpeechListener(Protocol):
    """Wake word, endpointing and speech recognition over the frames (listener.Listener)."""

    listening: bool

    async def run(self, frames: AsyncIterable[bytes], on_event: Callable[[Event], None]) -> None: ...

    def listen_now(self, timeout_s: float | None = None) -> None: ...

    def set_speaking(self, speaking: bool) -> None: ...


class TimerControl(Protocol):
    """The timers (timers.TimerScheduler), for what the assistant itself does with them: a ring
    is stopped by the wake word, `stop` or `cancel`; MQTT `cmd/timer` changes them."""

    @property
    def ringing(self) -> list[Any]: ...

    def stop_ringing(self, timer_id: str | None = None) -> list[Any]: ...


class EventBridge(Protocol):
    """Events out and commands in (mqtt.MqttBridge). `publish_event` must never block."""

    commands: asyncio.Queue[Command]

    def publish_event(self, event: Event) -> None: ...

    def set_muted(self, muted: bool) -> None: ...

    def set_volume(self, volume: float) -> None: ...


class Assistant:
    """Owns the state and the stage tasks; everything runs on the loop that calls `run()`."""

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
        responder: Responder | None = None,
        timers: TimerControl | None = None,
        own_sound: OwnSound | None = None,
    ) -> None:
        self.config = config
        # What the microphone hears of the assistant's own sound (none: nothing it plays is heard).
        self.own_sound = own_sound if own_sound is not None else AssistantSound()
        self.session = session
        # Home intents and timers first, then the LLM; the LLM alone without a home.
        self.responder = responder or Responder(session)
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
        # (urgency, arrival, request): urgent announcements first, otherwise first come.
        self.turn_requests: asyncio.PriorityQueue[tuple[int, int, TurnRequest]] = asyncio.PriorityQueue(
            maxsize=config.mqtt.command_queue
        )
        self._arrivals = 0
        self._ring_waiting = False
        self.sentences: asyncio.Queue[Sentence | TurnEnd] = asyncio.Queue(SENTENCE_QUEUE)
        self.audio: asyncio.Queue[Audio | TurnEnd] = asyncio.Queue(AUDIO_QUEUE)
        self.active: Turn | None = None
        self.input_finished = asyncio.Event()
        self.tasks: dict[str, asyncio.Task] = {}
        self.last_turn_at = time.monotonic()
        self.counters = {"turns": 0, "cancelled": 0, "errors": 0}
        # Turns started on a fast first text (stt.first_pass), by turn id, until the final one.
        self._awaiting_final: dict[str, TurnRequest] = {}
        # Short tasks outside the stages (earcons, error notices): kept so that they can be
        # awaited on stop and their failures logged, never dropped.
        self.side_tasks: set[asyncio.Task] = set()

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

    def _resting_state(self) -> State:
        if self.muted:
            return State.MUTED
        if self.listener is not None and self.listener.listening:
            return State.LISTENING
        return State.IDLE

    # --- running ------------------------------------------------------------------------------

    def start(self) -> None:
        """Start the stage tasks on the running loop."""
        stages: dict[str, Callable[[], Any]] = {
            "llm": self._llm_stage,
            "tts": self._tts_stage,
            "speaker": self._speaker_stage,
        }
        if self.listener is not None and self.source is not None:
            stages["frontend"] = self._frontend_stage
        else:
            self.input_finished.set()
        if self.bridge is not None:
            stages["commands"] = self._command_stage
            # This process's mute and volume before its first state: MQTT never goes on
            # showing the previous process's.
            self.bridge.set_muted(self.muted)
            volume = getattr(self.sink, "volume", None)
            if volume is not None:
                self.bridge.set_volume(volume)
        for name, stage in stages.items():
            self.tasks[name] = asyncio.create_task(self._supervise(name, stage), name=name)
        self.emit(Event(EventType.STATE, {"state": self.state}))

    async def _supervise(self, name: str, stage: Callable[[], Any]) -> None:
        """Run a stage for ever: log a crash, back off, start it again."""
        backoff = Backoff(RESTART_BACKOFF_S, healthy_after_s=HEALTHY_AFTER_S)
        while True:
            try:
                await stage()
                return
            except asyncio.CancelledError:
                raise
            except Exception as error:
                delay = backoff.next()
                log.exception("stage %s failed; restarting in %.1f s", name, delay)
                self.emit(Event(EventType.ERROR, {"code": f"{name}_failed", "message": str(error)}))
                await asyncio.sleep(delay)

    async def stop(self) -> None:
        """End the current turn and every stage."""
        self.cancel_turn("stopping")
        if self.source is not None:
            await self.source.aclose()
        tasks = [*self.tasks.values(), *self.side_tasks]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self.tasks.clear()

    async def wait_until_done(self) -> None:
        """Until the input has ended and every turn it caused has been spoken."""
        await self.input_finished.wait()
        while True:
            await self.idle()
            # A transcript emitted at the very end may still be on its way to the queue.
            await asyncio.sleep(0.05)
            if self.turn_requests.empty() and self.active is None:
                return

    async def idle(self) -> None:
        while not self.turn_requests.empty() or self.active is not None:
            active = self.active
            if active is not None:
                await active.done.wait()
            else:
                await asyncio.sleep(0.02)

    # --- frontend -----------------------------------------------------------------------------

    async def _frontend_stage(self) -> None:
        await self.listener.run(self._gated_frames(self.source.frames()), self._on_listener_event)
        # The input ran out (a file; a microphone ends only when closed): nothing more to hear.
        self.input_finished.set()

    async def _gated_frames(self, frames: AsyncIterable[bytes]) -> AsyncIterator[bytes]:
        """The microphone, minus what arrives while muted (still read, so nothing overflows).

        While listening for a person's words, what is left of a reply's end and its echo after
        cancelling is silence for the endpointer (a source that cancels echo says when that
        was: `hears_own_sound`). The wake earcon is not: people talk straight on after the
        wake word, and their words over it must be heard. Its echo is cancelled; without a
        canceller it is not played over a person already speaking (`_on_wake`), and the
        recognizer makes no words of the short tones."""
        async for frame in frames:
            if self.muted:
                continue
            # Not after a wake word that came while nothing played: then only the wake earcon
            # sounds, over the person's words.
            if self.own_sound.cancels_echo and not self.own_sound.earcon_only:
                listening = self.state == State.LISTENING or self.listener.listening
                if listening and self.own_sound.hears_own_sound:
                    frame = bytes(len(frame))
            yield frame

    def _on_listener_event(self, event: Event) -> None:
        self.emit(event)
        if event.type == EventType.WAKE:
            self._stop_ringing("wake word")
            # A reply cut short still echoes; otherwise only the wake earcon will sound.
            self.own_sound.set_earcon_only(self.active is None)
            if self.active is not None:
                self.cancel_turn("wake word")
            self.set_state(State.LISTENING, event.turn_id)
            self._on_wake(event)
        elif event.type == EventType.STOP_WORD:
            self._stop_ringing("stop word")
            self.cancel_turn("stop word")
        elif event.type == EventType.TRANSCRIPT and self._first_pass_transcript(event):
            pass
        elif event.type == EventType.TRANSCRIPT:
            text = str(event.data.get("text", "")).strip()
            if text:
                self.submit(TurnRequest(TurnKind.ASK, text, "voice", turn_id=event.turn_id or new_id()))
            elif self.active is None:
                self.set_state(self._resting_state())
        elif event.type == EventType.SPEECH_END and event.data.get("reason") == "timeout":
            if self.active is None:
                self.set_state(self._resting_state())
        elif event.type == EventType.SPEECH_START and self.active is None:
            self.set_state(State.LISTENING, event.turn_id)
        elif event.type == EventType.ERROR and (self._settle_final_text(event.turn_id, "") or self.active is None):
            # Speech recognition failed: the person must not be left waiting for an answer.
            self._start_side_task(self._error_notice(event.turn_id), "error-notice")

    def _first_pass_transcript(self, event: Event) -> bool:
        """A fast text starts its turn; the final text after one settles it. False for any
        other transcript."""
        if event.data.get("pass") == "fast":
            text = str(event.data.get("text", "")).strip()
            request = TurnRequest("ask", text, "voice", turn_id=event.turn_id or new_id(),
                                  final_text=asyncio.get_running_loop().create_future())
            if self.submit(request):
                self._awaiting_final[request.turn_id] = request
            return True
        return self._settle_final_text(event.turn_id, str(event.data.get("text", "")).strip())

    def _settle_final_text(self, turn_id: str | None, text: str) -> bool:
        """Hand the final text to the turn started on the fast one; False if there is none."""
        request = self._awaiting_final.pop(turn_id, None) if turn_id else None
        if request is None:
            return False
        assert request.final_text is not None
        if not request.final_text.done():
            request.final_text.set_result(text)
        return True

    def _start_side_task(self, work, name: str) -> None:
        task = asyncio.create_task(work, name=name)
        self.side_tasks.add(task)
        task.add_done_callback(self._side_task_done)

    def _side_task_done(self, task: asyncio.Task) -> None:
        self.side_tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log_fault(log, f"{task.get_name()} failed", task.exception())

    def _on_wake(self, event: Event) -> None:
        """The wake earcon says "I am listening", unless the person is talking already: they
        need no cue then, and a microphone that hears the speaker whole would hear it over
        their words (with echo cancellation it is cancelled, so it plays all the same)."""
        if event.data.get("speaking") and not self.own_sound.cancels_echo:
            log.debug("wake earcon left out: the person is already speaking")
            return
        self._play_earcon("wake")

    def _play_earcon(self, kind: str) -> None:
        sound = self.earcons.get(kind)
        if sound is None or not self.config.service.earcons:
            return
        self._start_side_task(self.sink.play(sound.samples, sound.sample_rate), f"earcon-{kind}")

    # --- commands -----------------------------------------------------------------------------

    async def _command_stage(self) -> None:
        while True:
            command = await self.bridge.commands.get()
            try:
                self.handle_command(command)
            except Exception as error:
                log.exception("command %s failed", command.name)
                self.emit(Event(EventType.ERROR, {"code": "command_failed", "message": str(error)},
                                request_id=command.request_id))

    def handle_command(self, command: Command) -> None:
        name, data, request_id = command.name, command.data, command.request_id
        if name in ("ask", "say"):
            request = TurnRequest(TurnKind(name), data["text"], command.origin, request_id=request_id,
                                  speak=data.get("speak", True))
            if self.submit(request) and request.kind == TurnKind.ASK:
                # Typed questions leave the trace spoken ones leave with their transcript.
                self.emit(Event(EventType.QUESTION, {"text": request.text, "origin": command.origin},
                                turn_id=request.turn_id, request_id=request_id))
        elif name == "announce":
            urgent = data.get("priority") == "high"
            if urgent:
                self.cancel_turn("urgent announcement")
            self.submit(TurnRequest(TurnKind.ANNOUNCE, data["text"], command.origin, request_id=request_id,
                                    urgent=urgent, chime="announce" if data.get("chime", True) else "",
                                    then_listen=data.get("then_listen", False)))
        elif name in ("cancel", "stop"):
            self._stop_ringing(f"{name} command")
            self.cancel_turn(f"{name} command")
            self.set_state(self._resting_state())
        elif name == "timer":
            if self.timers is None:
                raise RuntimeError("timers are not available")
            try:
                run_timer_command(self.timers, data["command"], request_id=request_id)
            except TimerError as error:
                self.emit(Event(EventType.ERROR, {"code": error.code, "message": str(error)}, request_id=request_id))
        elif name == "listen":
            self.cancel_turn("listen command")
            if self.listener is None or self.source is None:
                self.emit(Event(EventType.ERROR, {"code": "no_microphone", "message": "no audio input"},
                                request_id=request_id))
                return
            if self.muted:
                self.emit(Event(EventType.ERROR, {"code": "muted", "message": "the microphone is muted"},
                                request_id=request_id))
                return
            self.listener.listen_now()
            self.set_state(State.LISTENING)
        elif name == "mute":
            self.muted = True
            if self.bridge is not None:
                self.bridge.set_muted(True)
            if self.active is None:
                self.set_state(State.MUTED)
        elif name == "unmute":
            self.muted = False
            if self.bridge is not None:
                self.bridge.set_muted(False)
            if self.active is None:
                self.set_state(self._resting_state())
        elif name == "volume":
            self.sink.set_volume(float(data["volume"]))
            if self.bridge is not None:
                self.bridge.set_volume(float(data["volume"]))
        elif name == "reset":
            self.session.reset()
            # The fresh conversation's prompt start, into the cache before the next question.
            context, _ = self.responder.tool_context()
            self._start_side_task(asyncio.to_thread(self.session.warm, context), "warm-prompt")

    def ring(self, text: str, *, first: bool = False) -> None:
        """A finished timer rings: its sound and `text` (called again for each repeat until it
        is stopped). The first ring goes before anything waiting; repeats take their turn, so
        questions asked while it rings are answered."""
        if not self._ring_waiting:  # one in the queue is enough: rings do not pile up
            self._ring_waiting = self.submit(TurnRequest(TurnKind.RING, text, "timer", urgent=first, chime="ring"))

    def _stop_ringing(self, reason: str) -> None:
        if self.timers is not None and self.timers.ringing:
            log.info("ringing stopped: %s", reason)
            self.timers.stop_ringing()
            active = self.active
            if active is not None and active.request.kind == TurnKind.RING:
                self.cancel_turn(reason)

    def submit(self, request: TurnRequest) -> bool:
        """Queue a turn; refused with a `busy` error when the queue is full."""
        try:
            self._arrivals += 1
            self.turn_requests.put_nowait((0 if request.urgent else 1, self._arrivals, request))
            return True
        except asyncio.QueueFull:
            self.emit(Event(EventType.ERROR, {"code": "busy", "message": "too many requests waiting"},
                            turn_id=request.turn_id, request_id=request.request_id))
            return False

    def cancel_turn(self, reason: str) -> None:
        turn = self.active
        if turn is None or turn.cancelled:
            return
        log.info("turn %s cancelled: %s", turn.request.turn_id, reason)
        self.counters["cancelled"] += 1
        turn.cancel.set()
        self.sink.stop()

    # --- llm ----------------------------------------------------------------------------------

    async def _llm_stage(self) -> None:
        while True:
            _, _, request = await self.turn_requests.get()
            if request.kind == TurnKind.RING:
                self._ring_waiting = False
                if self.timers is not None and not self.timers.ringing:
                    continue  # stopped while it waited
            turn = Turn(request)
            self.active = turn
            try:
                await self._generate(turn)
            except asyncio.CancelledError:
                turn.cancel.set()
                raise
            except Exception as error:
                log.exception("turn %s failed", request.turn_id)
                turn.failed = f"{type(error).__name__}: {error}"
                self.emit(Event(EventType.ERROR, {"code": "llm_failed", "message": str(error)},
                                turn_id=request.turn_id, request_id=request.request_id))
            await self.sentences.put(TurnEnd(turn))
            # One turn at a time: the next prompt must see this turn in its history.
            await turn.done.wait()

    async def _generate(self, turn: Turn) -> None:
        request = turn.request
        timeout = self.config.service.conversation_timeout_s
        if timeout and time.monotonic() - self.last_turn_at > timeout and self.session.conversation.turns:
            log.info("conversation idle for over %.0f s: starting afresh", timeout)
            self.session.reset()
        turn.epoch = self.session.epoch
        self.counters["turns"] += 1
        self.set_state(State.THINKING, request.turn_id)
        if request.kind in (TurnKind.SAY, TurnKind.ANNOUNCE, TurnKind.RING):
            if request.kind == TurnKind.RING:
                request.then_listen = True  # "stop" needs no wake word while it rings
            if request.kind == TurnKind.ANNOUNCE:
                self.emit(Event(EventType.ANNOUNCE_START, {"text": request.text}, turn_id=request.turn_id,
                                request_id=request.request_id))
            chime = self.earcons.get(request.chime)
            if chime is not None:
                await self.sentences.put(Sentence(turn, "", sound=chime))
            splitter = SentenceSplitter()
            for text in [*splitter.feed(request.text), *splitter.flush()]:
                await self.sentences.put(Sentence(turn, text))
            return
        if request.final_text is None:
            await self._answer(turn)
        else:
            await self._answer_first_pass(turn)

    async def _answer_first_pass(self, turn: Turn) -> None:
        """Answer the fast text, holding every effect until the final text is known; where its
        words differ, start again on it, with nothing of the first start seen."""
        request = turn.request
        assert request.final_text is not None
        held = HeldUntilFinal(turn, request.final_text, self.emit)
        try:
            if request.final_text.done():
                await held.wait()  # known while the turn waited: nothing starts on a wrong text
            await self._answer(turn, held)
            return
        except FinalTextDiffers:
            pass
        turn.response = Response()
        turn.first_pass = "restarted"
        log.info("turn %s: the final text differs from the fast one; starting again", request.turn_id)
        if turn.cancelled or not held.final:
            # No words after all, or the person barged in meanwhile: the turn ends unheard, as
            # a cancelled one (no follow-up window, no error notice).
            turn.cancel.set()
            return
        request.text = held.final
        await self._answer(turn)

    async def _answer(self, turn: Turn, held: HeldUntilFinal | None = None) -> None:
        """The answer to the request's text, to the speaker and as events. `held`: the text is
        a first guess; nothing is said or published until it stands."""
        request = turn.request
        index = 0

        def emit(kind: EventType, data: dict[str, Any]) -> None:
            event = Event(kind, data, turn_id=request.turn_id, request_id=request.request_id)
            if held is not None and not held.confirmed:
                held.events.append(event)
            else:
                self.emit(event)

        response = turn.response
        answer = self.responder.sentences(request.text, held.cancel if held else turn.cancel, response, emit,
                                          hold=held.wait if held else None)
        async with contextlib.aclosing(answer) as stream:
            async for text in stream:
                if held is not None:
                    await held.wait()
                if turn.cancelled:
                    break
                emit(EventType.REPLY_SENTENCE, {"text": text, "index": index})
                index += 1
                if request.speak:
                    await self.sentences.put(Sentence(turn, text))
        if held is not None:
            await held.wait()
        if response.listen_for_answer:
            request.then_listen = True
        # Plain strings in event data: the journal logs it as it is.
        data: dict[str, Any] = {"text": response.text, "source": str(response.source), "cancelled": turn.cancelled}
        if turn.first_pass:
            data["first_pass"] = turn.first_pass
        if response.reply is not None:
            generation = response.reply.generation
            data.update({
                "prompt_tokens": generation.prompt_tokens,
                "cached_tokens": generation.cached_tokens,
                "completion_tokens": generation.completion_tokens,
                "timings": generation.timings.as_dict(),
                "model": self.session.engine.info.name,
            })
        emit(EventType.REPLY, data)

    # --- tts ----------------------------------------------------------------------------------

    async def _tts_stage(self) -> None:
        while True:
            item = await self.sentences.get()
            if isinstance(item, TurnEnd):
                await self.audio.put(item)
                continue
            turn = item.turn
            if turn.cancelled:
                continue
            if item.sound is not None:
                await self.audio.put(Audio(turn, "", item.sound.samples, item.sound.sample_rate, False))
                continue
            first = True
            try:
                async with contextlib.aclosing(self.synthesizer.stream(item.text)) as chunks:
                    async for chunk in chunks:
                        if turn.cancelled:
                            break
                        await self.audio.put(Audio(turn, item.text, chunk.samples, chunk.sample_rate, first))
                        first = False
            except Exception as error:
                log.exception("speech synthesis failed")
                turn.failed = turn.failed or f"{type(error).__name__}: {error}"
                self.emit(Event(EventType.ERROR, {"code": "tts_failed", "message": str(error)},
                                turn_id=turn.request.turn_id, request_id=turn.request.request_id))

    # --- speaker ------------------------------------------------------------------------------

    async def _speaker_stage(self) -> None:
        while True:
            item = await self.audio.get()
            if isinstance(item, TurnEnd):
                await self._finish_turn(item.turn)
                continue
            turn = item.turn
            if turn.cancelled:
                continue
            request = turn.request
            # Held before the stop word starts to listen, for as long as this plays, and again
            # once it has played: the device's buffer and the room's echo come after.
            own_stop = self.listener is not None and says_stop(item.text)
            if own_stop:
                self.own_sound.hold_stop_word(len(item.samples) / item.sample_rate)
            self.own_sound.set_earcon_only(False)
            if not turn.speaking_started:
                turn.speaking_started = True
                if self.listener is not None:
                    self.listener.set_speaking(True)
                self.set_state(State.SPEAKING, request.turn_id)
                self.emit(Event(EventType.TTS_START, {"text": item.text}, turn_id=request.turn_id,
                                request_id=request.request_id))
            if item.first_of_sentence:
                turn.spoken.append(item.text)
            try:
                await self.sink.play(item.samples, item.sample_rate)
                if own_stop:
                    self.own_sound.hold_stop_word(0.0)
            except Exception as error:
                log_fault(log, "playback failed", error)
                turn.failed = turn.failed or f"{type(error).__name__}: {error}"
                turn.cancel.set()
                self.emit(Event(EventType.ERROR, {"code": "audio_output_failed", "message": str(error)},
                                turn_id=request.turn_id, request_id=request.request_id))

    async def _finish_turn(self, turn: Turn) -> None:
        request = turn.request
        try:
            if turn.speaking_started:
                self.emit(Event(EventType.TTS_STOP, {"text": " ".join(turn.spoken), "cancelled": turn.cancelled},
                                turn_id=request.turn_id, request_id=request.request_id))
            if request.kind == TurnKind.ANNOUNCE:
                self.emit(Event(EventType.ANNOUNCE_END, {"text": request.text, "cancelled": turn.cancelled},
                                turn_id=request.turn_id, request_id=request.request_id))
            response = turn.response
            if request.kind == TurnKind.ASK and response.for_history and (response.text or response.reply is not None):
                heard = " ".join(turn.spoken) if (turn.cancelled and request.speak) else response.text
                self.session.remember(request.text, heard, cut_short=turn.cancelled, epoch=turn.epoch)
            if turn.failed and not turn.cancelled:
                await self._error_notice(request.turn_id)
        finally:
            if self.listener is not None:
                self.listener.set_speaking(False, behind_s=self._unheard_s())
            self.last_turn_at = time.monotonic()
            self.active = None
            turn.done.set()
        follow_up = self.config.service.follow_up_s
        if request.then_listen:
            # A question asked by an automation: the answer needs no wake word.
            follow_up = follow_up or self.config.vad.no_speech_timeout_s
        if (follow_up and (request.origin == "voice" or request.then_listen) and not turn.cancelled
                and not self.muted and self.listener is not None and not self.input_finished.is_set()):
            self.listener.listen_now(follow_up, behind_s=self._unheard_s())
            self.set_state(State.LISTENING, request.turn_id)
        else:
            self.set_state(self._resting_state(), request.turn_id)

    def _unheard_s(self) -> float:
        """Seconds of sound captured by now that the listener has yet to hear (the source's
        queue: a listener on a loaded machine falls behind the microphone)."""
        return self.own_sound.queued_s

    async def _error_notice(self, turn_id: str | None) -> None:
        """Tell the person the turn failed: an earcon, or a spoken sentence without earcons."""
        self.own_sound.set_earcon_only(False)
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
            self.set_state(self._resting_state(), turn_id)
