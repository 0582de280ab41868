"""The commands (MQTT `cmd/<name>`, Hermes, the status socket's callers): one small function
each, in `HANDLERS` by the command's name (events.COMMANDS, documented in docs/mqtt.md)."""

from __future__ import annotations

import asyncio
import logging
from typing import Callable

from ..events import COMMANDS, Command, Event, EventType, State
from ..timers import TimerError, run_timer_command
from .state import AssistantState
from .turns import TurnKind, TurnRequest

log = logging.getLogger(__name__)

Handler = Callable[[AssistantState, Command], None]


async def command_stage(core: AssistantState) -> None:
    while True:
        command = await core.bridge.commands.get()
        try:
            handle_command(core, command)
        except Exception as error:
            log.exception("command %s failed", command.name)
            core.emit(Event(EventType.ERROR, {"code": "command_failed", "message": str(error)},
                            request_id=command.request_id))


def handle_command(core: AssistantState, command: Command) -> None:
    handler = HANDLERS.get(command.name)
    if handler is None:
        message = f"unknown command {command.name!r}; known: {', '.join(COMMANDS)}"
        core.emit(Event(EventType.ERROR, {"code": "unknown_command", "message": message, "command": command.name},
                        request_id=command.request_id))
        return
    handler(core, command)


def _error(core: AssistantState, command: Command, code: str, message: str) -> None:
    core.emit(Event(EventType.ERROR, {"code": code, "message": message}, request_id=command.request_id))


def ask_or_say(core: AssistantState, command: Command) -> None:
    request = TurnRequest(TurnKind(command.name), command.data["text"], command.origin,
                          request_id=command.request_id, speak=command.data.get("speak", True))
    if core.submit(request) and request.kind == TurnKind.ASK:
        # Typed questions leave the trace spoken ones leave with their transcript.
        core.emit(Event(EventType.QUESTION, {"text": request.text, "origin": command.origin},
                        turn_id=request.turn_id, request_id=command.request_id))


def announce(core: AssistantState, command: Command) -> None:
    data = command.data
    urgent = data.get("priority") == "high"
    if urgent:
        core.cancel_turn("urgent announcement")
    core.submit(TurnRequest(TurnKind.ANNOUNCE, data["text"], command.origin, request_id=command.request_id,
                            urgent=urgent, chime="announce" if data.get("chime", True) else "",
                            then_listen=data.get("then_listen", False)))


def cancel_or_stop(core: AssistantState, command: Command) -> None:
    core.stop_ringing(f"{command.name} command")
    core.cancel_turn(f"{command.name} command")
    core.set_state(core.resting_state())


def timer(core: AssistantState, command: Command) -> None:
    if core.timers is None:
        raise RuntimeError("timers are not available")
    try:
        run_timer_command(core.timers, command.data["command"], request_id=command.request_id)
    except TimerError as error:
        _error(core, command, error.code, str(error))


def listen(core: AssistantState, command: Command) -> None:
    core.cancel_turn("listen command")
    if core.listener is None or core.source is None:
        _error(core, command, "no_microphone", "no audio input")
    elif core.muted:
        _error(core, command, "muted", "the microphone is muted")
    else:
        core.listener.listen_now()
        core.set_state(State.LISTENING)


def mute(core: AssistantState, command: Command) -> None:
    core.muted = True
    if core.bridge is not None:
        core.bridge.set_muted(True)
    if core.active is None:
        core.set_state(State.MUTED)


def unmute(core: AssistantState, command: Command) -> None:
    core.muted = False
    if core.bridge is not None:
        core.bridge.set_muted(False)
    if core.active is None:
        core.set_state(core.resting_state())


def volume(core: AssistantState, command: Command) -> None:
    core.sink.set_volume(float(command.data["volume"]))
    if core.bridge is not None:
        core.bridge.set_volume(float(command.data["volume"]))


def reset(core: AssistantState, command: Command) -> None:
    core.session.reset()
    # The fresh conversation's prompt start, into the cache before the next question.
    context, _ = core.responder.tool_context()
    core.start_side_task(asyncio.to_thread(core.session.warm, context), "warm-prompt")


HANDLERS: dict[str, Handler] = {
    "ask": ask_or_say,
    "say": ask_or_say,
    "announce": announce,
    "cancel": cancel_or_stop,
    "stop": cancel_or_stop,
    "timer": timer,
    "listen": listen,
    "mute": mute,
    "unmute": unmute,
    "volume": volume,
    "reset": reset,
}
