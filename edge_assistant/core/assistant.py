"""The assistant: its state (state.py) and one named asyncio task per stage, each restarted
with backoff when it fails. The tasks, by name (also in a failure's `<name>_failed` error):

    frontend  mic frames -> wake word -> VAD -> STT      (listening.py; listener.Listener, worker thread)
    commands  MQTT/Hermes commands                        (commands.py; mqtt.MqttBridge.commands)
    llm       turn requests -> answers, sentence by sentence  (stages.py; worker thread)
    tts       sentences -> audio chunks                   (stages.py; worker thread)
    speaker   audio chunks -> the sink                    (stages.py)

The queues are bounded, so a stage that falls behind slows the one before it instead of piling
up memory. Barge-in (the wake word, MQTT `cancel` or `listen` during a reply) sets the turn's
cancel flag, which the generation checks after every token, and stops the sink mid-block: both
take effect within tens of milliseconds.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Callable

from ..concurrency import Backoff
from ..events import Command, Event, EventType
from .commands import command_stage, handle_command
from .listening import listening_stage
from .stages import answering_stage, speaker_stage, speech_stage
from .state import AssistantState

log = logging.getLogger(__name__)

# Backoff for a stage that keeps failing (a microphone that is gone, say); a stage that ran a
# minute before failing again starts from the shortest pause.
RESTART_BACKOFF_S = (0.5, 1.0, 2.0, 5.0, 10.0, 30.0)
HEALTHY_AFTER_S = 60.0

# The stages by their task's name (a failure's error event is `<name>_failed`).
STAGES: dict[str, Callable[[AssistantState], Any]] = {
    "llm": answering_stage,
    "tts": speech_stage,
    "speaker": speaker_stage,
    "frontend": listening_stage,
    "commands": command_stage,
}


class Assistant(AssistantState):
    """Runs the stages on the loop that calls `start()`."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.tasks: dict[str, asyncio.Task] = {}

    def start(self) -> None:
        """Start the stage tasks on the running loop."""
        names = ["llm", "tts", "speaker"]
        if self.listener is not None and self.source is not None:
            names.append("frontend")
        else:
            self.input_finished.set()
        if self.bridge is not None:
            names.append("commands")
            # This process's mute and volume before its first state: MQTT never goes on
            # showing the previous process's.
            self.bridge.set_muted(self.muted)
            volume = getattr(self.sink, "volume", None)
            if volume is not None:
                self.bridge.set_volume(volume)
        for name in names:
            self.tasks[name] = asyncio.create_task(self._supervise(name, STAGES[name]), name=name)
        self.emit(Event(EventType.STATE, {"state": self.state}))

    async def _supervise(self, name: str, stage: Callable[[AssistantState], Any]) -> None:
        """Run a stage for ever: log a crash, back off, start it again."""
        backoff = Backoff(RESTART_BACKOFF_S, healthy_after_s=HEALTHY_AFTER_S)
        while True:
            try:
                await stage(self)
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
            if self.turns.empty:
                return

    async def idle(self) -> None:
        await self.turns.idle()

    def handle_command(self, command: Command) -> None:
        """Do what a command asks (commands.HANDLERS); an unknown one is an `unknown_command` error."""
        handle_command(self, command)
