"""The listening front end: wake word, then endpointing and speech recognition, as events.

`Listener` chains `wake.WakeDetector` -> `vad.Endpointer` -> `stt.Transcriber` over a stream of
frames and reports, in order and with one `turn_id` per utterance::

    wake -> speech_start -> transcript_partial* -> speech_end -> transcript
    wake -> speech_end (reason "timeout": nobody spoke)

An empty `transcript` text means speech was heard but no words were recognized. A failing
recognizer yields an `error` event (code "stt_failed") in place of the transcript, and
listening goes on.

Where a turn ends: at each pause (`vad.pause_s`) the end-of-turn model (Smart Turn v3,
`vad.smart_turn`) judges whether the person has finished, and the recognizer starts on what
was said so far in a background thread (`stt.speculative`). The turn ends there when the model
says it is complete and that draft does not stop mid-phrase (English: "... the capital of");
otherwise after `vad.silence_s` as before. If nobody spoke after the pause, the draft is the
final transcript, so Whisper has often finished by the time the turn is known to be over.

A first pass (`stt.first_pass`, `drafts.FirstPassText`): Moonshine's text goes out at the end as
a `transcript` with "pass": "fast", emitted before Whisper starts; Whisper's follows ("pass":
"final", "first_pass": "agreed" or "differs") before any later frame is heard. At a pause judged
complete, Moonshine's words, not Whisper's draft, say whether the turn ends there.

The model calls block, so `run()` hands frames to a worker thread in batches of `BATCH_S`
(one thread hop ten times a second); a cancelled `run()` ends once the batch in hand is done.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import math
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import AsyncIterable, Awaitable, Callable

from ..audio.capture_clock import CaptureClock
from ..audio.own_sound import AssistantSound, OwnSound, silenced_own_sound
from ..audio.pcm import SAMPLE_RATE, SAMPLE_WIDTH
from ..concurrency import to_thread_joined
from ..config import Config
from ..events import Event, EventType, new_id
from .drafts import Draft, Drafter, FirstPassText, TimedJudge, TurnTiming
from .listener_models import ListenerModels
from .stop_listener import StopWordListener, stop_word_wanted
from .stop_word import CheckedStopWord
from .stt import Transcriber, same_words
from .turn_end import TurnEndModel
from .vad import REASON_TIMEOUT, EndpointEvent, Endpointer, VoiceActivityDetector
from .wake import WakeDetector

log = logging.getLogger(__name__)

BATCH_S = 0.1
_BATCH_BYTES = int(BATCH_S * SAMPLE_RATE) * SAMPLE_WIDTH
# Audio after a wake word in which a person talking straight on is heard: without echo
# cancellation the wake event waits this long to say whether they do (`speaking`), so that the
# wake earcon is not played over their words.
WAKE_SPEECH_LOOKAHEAD_S = 0.3
# Audio kept while waiting for the wake word: the words said straight after it were heard
# before the detector fired (from `Detection.phrase_end_s` on, they go to the endpointer).
_WAKE_LOOKBACK_BYTES = int(1.0 * SAMPLE_RATE) * SAMPLE_WIDTH
_REPLAY_FRAME_BYTES = SAMPLE_RATE // 100 * SAMPLE_WIDTH

Emit = Callable[[Event], "Awaitable[None] | None"]


@dataclass
class _Confirmation:
    """The fast text went out; the final text is still to come (stt.first_pass)."""

    draft: Draft | None
    fast_text: str
    turn_id: str | None
    # Frames of the batch after the utterance: heard once the final text is out.
    held: list[bytes] = field(default_factory=list)


def wake_speech_lookahead_s(config: Config, own_sound: OwnSound) -> float:
    """How long a wake event may wait to say whether the person talks on: only where the wake
    earcon could sound over their words (earcons on, its echo not cancelled)."""
    return WAKE_SPEECH_LOOKAHEAD_S if config.service.earcons and not own_sound.cancels_echo else 0.0


class Listener:
    """Holds the loaded models; `run()` one audio stream at a time.

    `own_sound`: what the microphone hears of the assistant itself (`audio.own_sound`); without
    one (`edge-assistant listen`, a file), nothing the assistant plays is heard and no earcon
    covers a person's words. `set_speaking()` and `listen_now()` may be called from any thread
    while it runs.
    """

    def __init__(
        self,
        config: Config,
        *,
        own_sound: OwnSound | None = None,
        stt_model_path: Path | None = None,
        transcriber: Transcriber | None = None,
        turn_end: TurnEndModel | None = None,
        stop_word_reader: Transcriber | None = None,
        first_pass: Transcriber | None = None,
    ) -> None:
        self.config = config
        self.own_sound = own_sound if own_sound is not None else AssistantSound()
        self.wake = WakeDetector(config.wake, own_sound=self.own_sound) if config.wake.enabled else None
        vad = VoiceActivityDetector(config.vad.engine)
        # The stop word: heard while the assistant speaks (None: wake.stop_word is off).
        stop_word = stop_word_wanted(config, self.own_sound)
        self.models = ListenerModels.load(config, stop_word=stop_word, stt_model_path=stt_model_path,
                                          transcriber=transcriber, turn_end=turn_end,
                                          stop_word_reader=stop_word_reader, first_pass=first_pass)
        self.transcriber, self.turn_end, self.first_pass = (self.models.transcriber, self.models.turn_end,
                                                            self.models.first_pass)
        self._stop_listener = (StopWordListener(config, self.models.stop_word_reader, self.own_sound)
                               if stop_word else None)
        self.stop_word: CheckedStopWord | None = self._stop_listener and self._stop_listener.checked
        self._confirmation: _Confirmation | None = None
        self.timing = TurnTiming()
        self._drafts = Drafter(self.transcriber, config.stt.language, lambda: self.timing)
        self._first_pass_text = FirstPassText(self.first_pass, config)
        speculative = config.stt.speculative
        self.endpointer = Endpointer(
            config.vad,
            vad=vad,
            turn_end=TimedJudge(self.turn_end, lambda: self.timing) if self.turn_end is not None else None,
            on_pause=self._start_draft if speculative else None,
            words_allow_end=self._words_allow_end if speculative or self.first_pass is not None else None,
        )
        self._before_wake = bytearray()  # the last _WAKE_LOOKBACK_BYTES while not listening
        # When each frame heard was captured: frames may wait in the source's queue while the
        # listener catches up, and the assistant saying "stop" itself is about the sound
        # captured then, not the frame being processed.
        self._capture = CaptureClock()
        self._heard_bytes = 0
        self._listen_request: float | None = None  # no-speech timeout of a pending listen_now()
        self._request_lock = threading.Lock()
        self._turn_id: str | None = None
        self._listening = False
        self._woken = False  # the current turn began with a wake event
        self._turns = 0
        self._max_turns: int | None = None
        # False once the VAD missed frames (waiting for the wake word).
        self._vad_in_sync = False
        # How long a wake event may wait to say whether the person talks on (0: not held).
        self.wake_speech_lookahead_s = wake_speech_lookahead_s(config, own_sound) if own_sound is not None else 0.0
        self._held_wake: Event | None = None  # a wake event waiting for that answer
        self._held_events: list[Event] = []  # the events of the turn meanwhile
        self._held_bytes = 0  # audio the wake event may still wait for

    def close(self) -> None:
        """Let go of the speech and end-of-turn models (freed once nothing else uses them),
        after a speculative transcript still running."""
        self._drafts.close()
        self.models.close()

    # --- control, from any thread -----------------------------------------------------------

    def set_speaking(self, speaking: bool, *, behind_s: float = 0.0) -> None:
        """The assistant is (not) speaking: its own voice must not wake it, and "stop" ends it.

        `behind_s`: audio captured before this moment and not yet heard (the source's queue):
        it holds the reply too."""
        if self.wake is not None:
            self.wake.set_speaking(speaking, behind_s=behind_s)
        if self._stop_listener is not None:
            self._stop_listener.wanted = speaking

    def listen_now(self, no_speech_timeout_s: float | None = None, *, behind_s: float = 0.0) -> None:
        """Skip the wake word for the next turn (MQTT `listen`, a follow-up window).

        `no_speech_timeout_s` replaces `vad.no_speech_timeout_s` for that turn. `behind_s`:
        audio captured before this moment and not yet heard (the source's queue, on a loaded
        machine): the window counts from the sound captured now, since a person answers the
        assistant they hear, not the frames the listener has reached.
        """
        with self._request_lock:
            self._listen_request = (no_speech_timeout_s or self.config.vad.no_speech_timeout_s) + behind_s

    @property
    def listening(self) -> bool:
        """Past the wake word: looking for, or inside, an utterance."""
        return self._listening

    @property
    def finished(self) -> bool:
        return self._max_turns is not None and self._turns >= self._max_turns

    # --- the blocking part, run in a worker thread --------------------------------------------

    def begin(self, *, skip_wake: bool = False, max_turns: int | None = None) -> None:
        """Prepare for a new stream."""
        self._turns = 0
        self._max_turns = max_turns
        self._listening = False
        self._vad_in_sync = False
        self.endpointer.reset()
        if self.wake is not None:
            self.wake.reset()
        if self._stop_listener is not None:
            self._stop_listener.reset()
        self._held_wake, self._held_events = None, []
        self._before_wake.clear()
        self._capture.restart()
        self._heard_bytes = 0
        if skip_wake:
            self.listen_now()

    def process(self, frames: list[bytes]) -> list[Event]:
        """Feed frames; the events they caused, in order. Blocking (model calls)."""
        events = self.confirm()
        self._capture.observe((self._heard_bytes + sum(map(len, frames))) // SAMPLE_WIDTH, time.monotonic())
        events += self._hear(frames)
        return events

    def _hear(self, frames: list[bytes]) -> list[Event]:
        events: list[Event] = []
        for index, frame in enumerate(frames):
            if self.finished:
                break
            if self._confirmation is not None:
                # A fast text went out: the rest waits for the final one (`confirm`).
                self._confirmation.held = list(frames[index:])
                break
            self._heard_bytes += len(frame)
            # The wake detector hears every frame, so its context never goes stale (resetting
            # openWakeWord costs most of a second of CPU); while listening, its detections
            # are dropped.
            detection = self.wake.process(frame) if self.wake is not None else None
            if self._stop_listener is not None:
                score = self._stop_listener.hear(frame, self._captured_at)
                if score is not None:
                    events.append(Event(EventType.STOP_WORD, {"score": round(score, 3)}))
            if not self._listening:
                self._take_listen_request()
            if self._listening:
                self._before_wake.clear()
                heard = silenced_own_sound(frame)
                if self._held_wake is None:
                    self._follow_utterance(heard, events)
                else:
                    self._follow_utterance(heard, self._held_events)
                    self._held_bytes -= len(frame)
                    self._release_wake(events)
                continue
            self._before_wake += frame
            del self._before_wake[: max(0, len(self._before_wake) - _WAKE_LOOKBACK_BYTES)]
            if detection is not None:
                self._wake(detection, events)
            else:
                # The VAD only hears frames past the wake word.
                self._vad_in_sync = False
        return events

    def _wake(self, detection, events: list[Event]) -> None:
        """Start the turn where the wake word ended, not where it was detected: what was said
        since (people say the wake word and the request in one breath) goes to the endpointer."""
        self._start_turn(self.config.vad.no_speech_timeout_s, woken=True)
        since_wake = int(max(0.0, self.wake.time_s - detection.phrase_end_s) * SAMPLE_RATE) * SAMPLE_WIDTH
        replay = bytes(self._before_wake[len(self._before_wake) - min(since_wake, len(self._before_wake)):])
        self._before_wake.clear()
        followed: list[Event] = []
        for start in range(0, len(replay), _REPLAY_FRAME_BYTES):
            if not self._listening:
                break
            self._follow_utterance(replay[start : start + _REPLAY_FRAME_BYTES], followed)
        # "speaking": the person is talking on already (the wake earcon may be left out).
        wake = Event(EventType.WAKE, {"model": detection.model, "score": round(detection.score, 3),
                              "speaking": self._person_talks_on()}, turn_id=self._turn_id)
        if wake.data["speaking"] or detection.barge_in or self.wake_speech_lookahead_s <= 0:
            events.append(wake)
            events.extend(followed)
            return
        self._held_wake, self._held_events = wake, followed
        self._held_bytes = int(self.wake_speech_lookahead_s * SAMPLE_RATE) * SAMPLE_WIDTH

    def _person_talks_on(self) -> bool:
        return bool(self.endpointer.in_speech or self.endpointer.hearing_speech)

    def _release_wake(self, events: list[Event], *, now: bool = False) -> None:
        """Let a held wake event go, with the events after it, once the person is heard
        talking on, the lookahead is over, or the turn ended."""
        assert self._held_wake is not None
        speaking = self._person_talks_on() or any(e.type == EventType.SPEECH_START for e in self._held_events)
        if not (speaking or now or self._held_bytes <= 0 or not self._listening):
            return
        self._held_wake.data["speaking"] = speaking
        events.append(self._held_wake)
        events.extend(self._held_events)
        self._held_wake, self._held_events = None, []

    def flush(self) -> list[Event]:
        """The stream ended: close an utterance in progress."""
        events = self.confirm()
        if self._held_wake is not None:
            self._release_wake(events, now=True)
        # A turn nobody heard of yet (no wake event, no speech) ends silently.
        announced = self._woken or self.endpointer.in_speech
        if self._listening and announced and not self.finished:
            for ended in self.endpointer.flush():
                self._end_utterance(ended, events)
        return events + self.confirm()

    def _captured_at(self) -> float:
        """When the frame being processed was captured (`time.monotonic()`)."""
        captured_at = self._capture.time_at(self._heard_bytes // SAMPLE_WIDTH)
        now = time.monotonic()
        return now if captured_at is None else min(captured_at, now)

    def _take_listen_request(self) -> None:
        with self._request_lock:
            timeout, self._listen_request = self._listen_request, None
        if timeout is not None:
            self._start_turn(timeout)
        elif self.wake is None:
            # Always listening: waiting for speech is the normal state, not a timeout.
            self._start_turn(math.inf)

    def _start_turn(self, no_speech_timeout_s: float, *, woken: bool = False) -> None:
        self._turn_id = new_id()
        self._listening = True
        self._woken = woken
        if not self._vad_in_sync:
            # A gap in what the VAD heard: context from before it would only mislead it.
            self.endpointer.vad.reset()
            self._vad_in_sync = True
        after_word_s = self.wake.phrase_end_margin_s if woken and self.wake is not None else 0.0
        self.endpointer.reset(no_speech_timeout_s=no_speech_timeout_s, after_word_s=after_word_s)
        self._drafts.forget()
        self._first_pass_text.forget()
        self.timing = TurnTiming()

    def _follow_utterance(self, frame: bytes, events: list[Event]) -> None:
        was_in_speech = self.endpointer.in_speech
        changes = self.endpointer.process(frame)
        if was_in_speech:
            self._feed(frame, events)
        for change in changes:
            if change.type == "speech_start":
                events.append(Event(EventType.SPEECH_START, {}, turn_id=self._turn_id))
                # The utterance so far: pre-roll and the speech that proved it is speech,
                # this frame included.
                self.transcriber.start()
                if self.first_pass is not None:
                    self.first_pass.start()
                self._feed(self.endpointer.utterance(), events)
            elif change.type == "pause":
                self._first_pass_text.hear_pause(change.probability, self.endpointer.speech_end_position)
            elif change.type == "speech_end":
                self._end_utterance(change, events)

    # --- speculative transcripts (stt.speculative) ---------------------------------------------

    def _start_draft(self) -> None:
        """A pause: transcribe the utterance so far in the background."""
        self._drafts.start(self.endpointer.speech_end_position)

    def _words_allow_end(self) -> bool | None:
        """Whether this pause's words let the turn end: the first pass's, else the draft's."""
        allowed = self._first_pass_text.words_allow_end(self.endpointer.speech_end_position)
        if allowed is None and self.config.stt.speculative:
            return self._drafts.words_allow_end()
        return True if allowed is None else allowed

    def _feed(self, data: bytes, events: list[Event]) -> None:
        try:
            partial = self.transcriber.accept(data)
        except Exception as error:  # a recognizer failure must not end listening
            log.exception("speech recognition failed")
            events.append(Event(EventType.ERROR, {"code": "stt_failed", "message": str(error)},
                                turn_id=self._turn_id))
            return
        if self.first_pass is not None:
            self.first_pass.accept(data)  # keeps the audio: cannot fail
        if partial is not None:
            events.append(Event(EventType.TRANSCRIPT_PARTIAL, {"text": partial}, turn_id=self._turn_id))

    def _end_utterance(self, ended: EndpointEvent, events: list[Event]) -> None:
        data = {"duration_s": round(ended.duration_s, 3), "reason": ended.reason}
        if ended.probability is not None:
            data["probability"] = round(ended.probability, 3)
        events.append(Event(EventType.SPEECH_END, data, turn_id=self._turn_id))
        if ended.reason != REASON_TIMEOUT:
            draft = self._drafts.take_final(self.endpointer.speech_end_position)
            fast = self._fast_transcript(draft)
            if fast is not None:
                events.append(Event(EventType.TRANSCRIPT, fast, turn_id=self._turn_id))
                self._confirmation = _Confirmation(draft, fast["text"], self._turn_id)
            else:
                events += self._final_transcript(draft, self._turn_id)
        self._turns += 1
        self._listening = False

    def _fast_transcript(self, draft: Draft | None) -> dict | None:
        """stt.first_pass: the fast text's data; None where the final is as soon known, or none."""
        final_known = draft is not None and draft.future.done()
        transcript = self._first_pass_text.at_end(self.endpointer.speech_end_position, final_known)
        if transcript is None:
            return None
        data = transcript.to_json_dict()
        data.pop("words", None)
        data.update({"speculative": False, "pass": "fast"})
        return data

    def _final_transcript(self, draft: Draft | None, turn_id: str | None,
                          fast_text: str | None = None) -> list[Event]:
        try:
            transcript = self.transcriber.finish(draft.future if draft is not None else None)
        except Exception as error:
            log.exception("speech recognition failed")
            return [Event(EventType.ERROR, {"code": "stt_failed", "message": str(error)}, turn_id=turn_id)]
        if draft is not None:
            draft.final = transcript.speculative
        data = transcript.to_json_dict()
        data.pop("words", None)
        data["speculative"] = transcript.speculative
        if fast_text is not None:
            agreed = same_words(fast_text, transcript.text)
            self.timing.first_pass_agreed = agreed
            data.update({"pass": "final", "first_pass": "agreed" if agreed else "differs"})
        return [Event(EventType.TRANSCRIPT, data, turn_id=turn_id)]

    def confirm(self) -> list[Event]:
        """After a fast text: the final one, then the events of the frames held behind it.
        Blocking (model calls); nothing to do (no events) when no fast text went out."""
        events: list[Event] = []
        while self._confirmation is not None:
            confirmation, self._confirmation = self._confirmation, None
            events += self._final_transcript(confirmation.draft, confirmation.turn_id, confirmation.fast_text)
            events += self._hear(confirmation.held)
        return events

    @property
    def confirming(self) -> bool:
        """A fast text went out and the final one is still to come (`confirm()`)."""
        return self._confirmation is not None

    # --- the asyncio side -----------------------------------------------------------------------

    async def run(
        self,
        frames: AsyncIterable[bytes],
        emit: Emit,
        *,
        skip_wake: bool = False,
        max_turns: int | None = None,
    ) -> None:
        """Listen to `frames` until they end or `max_turns` utterances were handled.

        `emit` receives each event (a plain function or a coroutine function).
        """
        # Resetting a wake engine can take a while (openWakeWord refills its window).
        await to_thread_joined(self.begin, skip_wake=skip_wake, max_turns=max_turns)
        batch: list[bytes] = []
        batch_bytes = 0
        async for frame in frames:
            batch.append(frame)
            batch_bytes += len(frame)
            if batch_bytes < _BATCH_BYTES:
                continue
            await self._emit_work(emit, self.process, batch)
            batch, batch_bytes = [], 0
            if self.finished:
                return
        if batch:
            await self._emit_work(emit, self.process, batch)
        await self._emit_work(emit, self.flush)

    async def _emit_work(self, emit: Emit, work: Callable[..., list[Event]], *args) -> None:
        """Run `work` off the loop and emit its events; a fast text (stt.first_pass) goes out
        before the final one is worked out."""
        await _emit_all(emit, await to_thread_joined(work, *args))
        while self.confirming:
            await _emit_all(emit, await to_thread_joined(self.confirm))


async def _emit_all(emit: Emit, events: list[Event]) -> None:
    for event in events:
        result = emit(event)
        if inspect.isawaitable(result):
            await result


async def listen(
    config: Config,
    frames: AsyncIterable[bytes],
    emit: Emit,
    *,
    skip_wake: bool = False,
    max_turns: int | None = None,
    stt_model_path: Path | None = None,
) -> None:
    """`edge-assistant listen`: load the models (off the loop), then `Listener.run()`."""
    listener = await asyncio.to_thread(Listener, config, stt_model_path=stt_model_path)
    await listener.run(frames, emit, skip_wake=skip_wake, max_turns=max_turns)
