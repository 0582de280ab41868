"""The `stop` section: a timer rings, the person says "Stop.", how long until it is stopped.

In process with the real models: the daemon's pipeline, listener, voice and timers (in a
temporary state directory). Between two rings the assistant listens without the wake word; the
figure is `stop.word_to_stop_s`, from the end of the spoken word to the ring stopped (median).
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from ..config import Config
from .e2e import EventLog, RecordingSink, RoomMicrophone
from .loaded import LoadedModels
from .options import TURN_TIMEOUT_S, BenchOptions
from .report import Report

RING_TIMEOUT_S = 30.0


async def _stopped_ring(loaded: LoadedModels, config: Config, folder: Path, index: int) -> float:
    from ..events import Command
    from ..pipeline import Assistant
    from ..respond import Responder
    from ..timers import TimerIntentHandler, TimerScheduler, TimerStore, recognize

    microphone = RoomMicrophone(config.audio.frame_ms)
    sink = RecordingSink(folder / f"stop-{index}.wav")
    store = TimerStore(folder / f"timers-{index}.json")
    assistant: Assistant | None = None
    scheduler = TimerScheduler(store, config.timers,
                               on_ring=lambda timer, count: assistant and assistant.ring("Your timer is done.",
                                                                                         first=count == 1))
    responder = Responder(loaded.session, timers=TimerIntentHandler(scheduler), recognize_timers=recognize)
    assistant = Assistant(config, session=loaded.session, synthesizer=loaded.synthesizer, sink=sink,
                          listener=loaded.listener, source=microphone, earcons={}, responder=responder,
                          timers=scheduler)
    events = EventLog()
    assistant.subscribers.append(events)
    stop_clip = loaded.clip("Stop.")
    assistant.start()
    await scheduler.start()
    try:
        scheduler.start_timer(1.0)
        await events.wait_for("tts_stop", RING_TIMEOUT_S)  # the first ring has been said
        microphone.speak(stop_clip)
        deadline = time.monotonic() + RING_TIMEOUT_S
        while scheduler.ringing:
            if time.monotonic() > deadline:
                raise RuntimeError("the ring was not stopped by the spoken word")
            await asyncio.sleep(0.005)
        stopped_at = time.monotonic()
        assistant.handle_command(Command("cancel"))
        await asyncio.wait_for(assistant.idle(), TURN_TIMEOUT_S)
    finally:
        microphone.close()
        await scheduler.close()
        await assistant.stop()
        sink.close()
    return max(0.0, stopped_at - microphone.speech_ended_at)


def bench_stop(loaded: LoadedModels, report: Report, options: BenchOptions) -> None:
    base = loaded.config
    # Rings every 2 s while the test runs; no earcons, so only the ring's words are heard.
    config = replace(base, service=replace(base.service, earcons=False),
                     timers=replace(base.timers, ring_interval_s=2.0, ring_max_s=RING_TIMEOUT_S))
    loaded.listener.config = config
    samples = []
    with tempfile.TemporaryDirectory() as folder:
        for index in range(options.runs):
            samples.append(asyncio.run(_stopped_ring(loaded, config, Path(folder), index)))
    loaded.listener.config = base
    report.add_series("stop.word_to_stop_s", samples)
