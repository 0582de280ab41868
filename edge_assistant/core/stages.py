"""The stages a turn goes through after its request, each an asyncio task (assistant.py
starts them) joined by bounded queues:

    answering  turn requests -> prompt -> tokens -> sentences (worker thread) -> sentence queue
    speech     sentences -> audio chunks                       (worker thread) -> audio queue
    speaker    audio chunks -> the sink; the turn's end

Because each stage hands on as soon as it has something, the first sentence is playing while
the model writes the second, and sentence n+1 is synthesized while n plays. Items of a
cancelled turn still flow to the speaker stage, which skips their audio and closes the turn,
recording in the history what was actually heard.

A turn started on a fast first text (stt.first_pass) answers it while Whisper still
transcribes, but what it says, does and publishes waits for Whisper's text: where its words
are the same, the turn goes on as it is; otherwise that start is dropped unseen and the turn
starts again on Whisper's text. The `reply` event says which (`first_pass`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

from ..events import Event, EventType, State
from ..first_pass import FinalTextDiffers, HeldUntilFinal
from ..health import log_fault
from ..respond import Response
from ..thinking.sentences import SentenceSplitter
from .state import AssistantState
from .turns import Audio, Sentence, Turn, TurnEnd, TurnKind

log = logging.getLogger(__name__)


# --- answering ------------------------------------------------------------------------------


async def answering_stage(core: AssistantState) -> None:
    while True:
        request = await core.turns.next()
        if request.kind == TurnKind.RING and core.timers is not None and not core.timers.ringing:
            continue  # stopped while it waited
        turn = Turn(request)
        core.turns.active = turn
        try:
            await _generate(core, turn)
        except asyncio.CancelledError:
            turn.cancel.set()
            raise
        except Exception as error:
            log.exception("turn %s failed", request.turn_id)
            turn.failed = f"{type(error).__name__}: {error}"
            core.emit(Event(EventType.ERROR, {"code": "llm_failed", "message": str(error)},
                            turn_id=request.turn_id, request_id=request.request_id))
        await core.sentences.put(TurnEnd(turn))
        # One turn at a time: the next prompt must see this turn in its history.
        await turn.done.wait()


async def _generate(core: AssistantState, turn: Turn) -> None:
    request = turn.request
    timeout = core.config.service.conversation_timeout_s
    if timeout and time.monotonic() - core.last_turn_at > timeout and core.session.conversation.turns:
        log.info("conversation idle for over %.0f s: starting afresh", timeout)
        core.session.reset()
    turn.epoch = core.session.epoch
    core.counters["turns"] += 1
    core.set_state(State.THINKING, request.turn_id)
    if request.kind in (TurnKind.SAY, TurnKind.ANNOUNCE, TurnKind.RING):
        await _read_out(core, turn)
    elif request.final_text is None:
        await _answer(core, turn)
    else:
        await _answer_first_pass(core, turn)


async def _read_out(core: AssistantState, turn: Turn) -> None:
    """A text spoken as it is (say, announce, a timer's ring), after its chime."""
    request = turn.request
    if request.kind == TurnKind.RING:
        request.then_listen = True  # "stop" needs no wake word while it rings
    if request.kind == TurnKind.ANNOUNCE:
        core.emit(Event(EventType.ANNOUNCE_START, {"text": request.text}, turn_id=request.turn_id,
                        request_id=request.request_id))
    chime = core.earcons.get(request.chime)
    if chime is not None:
        await core.sentences.put(Sentence(turn, "", sound=chime))
    splitter = SentenceSplitter()
    for text in [*splitter.feed(request.text), *splitter.flush()]:
        await core.sentences.put(Sentence(turn, text))


async def _answer_first_pass(core: AssistantState, turn: Turn) -> None:
    """Answer the fast text, holding every effect until the final text is known; where its
    words differ, start again on it, with nothing of the first start seen."""
    request = turn.request
    assert request.final_text is not None
    held = HeldUntilFinal(turn, request.final_text, core.emit)
    try:
        if request.final_text.done():
            await held.wait()  # known while the turn waited: nothing starts on a wrong text
        await _answer(core, turn, held)
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
    await _answer(core, turn)


async def _answer(core: AssistantState, turn: Turn, held: HeldUntilFinal | None = None) -> None:
    """The answer to the request's text, to the speaker and as events. `held`: the text is
    a first guess; nothing is said or published until it stands."""
    request = turn.request
    index = 0

    def emit(kind: EventType, data: dict[str, Any]) -> None:
        event = Event(kind, data, turn_id=request.turn_id, request_id=request.request_id)
        if held is not None and not held.confirmed:
            held.events.append(event)
        else:
            core.emit(event)

    response = turn.response
    answer = core.responder.sentences(request.text, held.cancel if held else turn.cancel, response, emit,
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
                await core.sentences.put(Sentence(turn, text))
    if held is not None:
        await held.wait()
    if response.listen_for_answer:
        request.then_listen = True
    emit(EventType.REPLY, _reply_data(core, turn))


def _reply_data(core: AssistantState, turn: Turn) -> dict[str, Any]:
    """The `reply` event's data: plain strings, so that the journal logs it as it is."""
    response = turn.response
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
            "model": core.session.engine.info.name,
        })
    return data


# --- speech ---------------------------------------------------------------------------------


async def speech_stage(core: AssistantState) -> None:
    while True:
        item = await core.sentences.get()
        if isinstance(item, TurnEnd):
            await core.audio.put(item)
            continue
        turn = item.turn
        if turn.cancelled:
            continue
        if item.sound is not None:
            await core.audio.put(Audio(turn, "", item.sound.samples, item.sound.sample_rate, False))
            continue
        first = True
        try:
            # Each item is one sentence already (the reply's, split as the model wrote it).
            async with contextlib.aclosing(core.synthesizer.stream(item.text, split=False)) as chunks:
                async for chunk in chunks:
                    if turn.cancelled:
                        break
                    await core.audio.put(Audio(turn, item.text, chunk.samples, chunk.sample_rate, first))
                    first = False
        except Exception as error:
            log.exception("speech synthesis failed")
            turn.failed = turn.failed or f"{type(error).__name__}: {error}"
            core.emit(Event(EventType.ERROR, {"code": "tts_failed", "message": str(error)},
                            turn_id=turn.request.turn_id, request_id=turn.request.request_id))


# --- speaker --------------------------------------------------------------------------------


async def speaker_stage(core: AssistantState) -> None:
    while True:
        item = await core.audio.get()
        if isinstance(item, TurnEnd):
            await _finish_turn(core, item.turn)
        elif not item.turn.cancelled:
            await _play(core, item)


async def _play(core: AssistantState, item: Audio) -> None:
    turn = item.turn
    request = turn.request
    held = core.sound_decisions.playing(item.text, item.samples, item.sample_rate)
    if not turn.speaking_started:
        turn.speaking_started = True
        if core.listener is not None:
            core.listener.set_speaking(True)
        core.set_state(State.SPEAKING, request.turn_id)
        core.emit(Event(EventType.TTS_START, {"text": item.text}, turn_id=request.turn_id,
                        request_id=request.request_id))
    if item.first_of_sentence:
        turn.spoken.append(item.text)
    try:
        await core.sink.play(item.samples, item.sample_rate)
        core.sound_decisions.played(held)
    except Exception as error:
        log_fault(log, "playback failed", error)
        turn.failed = turn.failed or f"{type(error).__name__}: {error}"
        turn.cancel.set()
        core.emit(Event(EventType.ERROR, {"code": "audio_output_failed", "message": str(error)},
                        turn_id=request.turn_id, request_id=request.request_id))


async def _finish_turn(core: AssistantState, turn: Turn) -> None:
    request = turn.request
    try:
        if turn.speaking_started:
            core.emit(Event(EventType.TTS_STOP, {"text": " ".join(turn.spoken), "cancelled": turn.cancelled},
                            turn_id=request.turn_id, request_id=request.request_id))
        if request.kind == TurnKind.ANNOUNCE:
            core.emit(Event(EventType.ANNOUNCE_END, {"text": request.text, "cancelled": turn.cancelled},
                            turn_id=request.turn_id, request_id=request.request_id))
        response = turn.response
        if request.kind == TurnKind.ASK and response.for_history and (response.text or response.reply is not None):
            heard = " ".join(turn.spoken) if (turn.cancelled and request.speak) else response.text
            core.session.remember(request.text, heard, cut_short=turn.cancelled, epoch=turn.epoch)
        if turn.failed and not turn.cancelled:
            await core.error_notice(request.turn_id)
    finally:
        if core.listener is not None:
            core.listener.set_speaking(False, behind_s=core.sound_decisions.unheard_s())
        core.last_turn_at = time.monotonic()
        core.turns.active = None
        turn.done.set()
    _listen_after(core, turn)


def _listen_after(core: AssistantState, turn: Turn) -> None:
    """Listen for an answer without the wake word where the turn asks for one (a follow-up
    window after a spoken question, or a question asked by an automation)."""
    request = turn.request
    follow_up = core.config.service.follow_up_s
    if request.then_listen:
        # A question asked by an automation: the answer needs no wake word.
        follow_up = follow_up or core.config.vad.no_speech_timeout_s
    if (follow_up and (request.origin == "voice" or request.then_listen) and not turn.cancelled
            and not core.muted and core.listener is not None and not core.input_finished.is_set()):
        core.listener.listen_now(follow_up, behind_s=core.sound_decisions.unheard_s())
        core.set_state(State.LISTENING, request.turn_id)
    else:
        core.set_state(core.resting_state(), request.turn_id)

