"""The `barge_in` section: the wake word spoken over a reply, in process with the real models
(the daemon's pipeline, listener and voice), and how long until the speaker is silent."""

from __future__ import annotations

import asyncio
import tempfile
from dataclasses import replace
from pathlib import Path

from ..config import Config
from ..hearing.wake import OPENWAKEWORD_MODELS
from .clips import Clip
from .e2e import EventLog, RecordingSink, RoomMicrophone
from .loaded import LoadedModels, assembly, voice_clip
from .options import TURN_TIMEOUT_S, BenchOptions, SectionSkipped
from .report import Report

# Spoken as is (a `say` turn), so that the reply lasts the same whatever the model would answer.
LONG_REPLY = (
    "The capital of France is Paris. It is known for the Eiffel Tower, its museums and its cafes. "
    "Millions of people visit it every year, walking along the river from one bridge to the next."
)
# How long the reply plays before the wake word is spoken over it.
SPEAKING_BEFORE_WAKE_S = 1.0
WAKE_TIMEOUT_S = 10.0


def wake_phrase(config: Config) -> str:
    """The words of a shipped wake word model: hey_jarvis is "Hey Jarvis."."""
    if not config.wake.enabled:
        raise SectionSkipped("wake.enabled is false: there is no wake word to barge in with")
    if not config.wake.barge_in:
        raise SectionSkipped("wake.barge_in is false: the wake word does not interrupt a reply")
    model = config.wake.model
    if model not in OPENWAKEWORD_MODELS:
        raise SectionSkipped(f"wake.model {model!r} is a model file: its words are not known here")
    return " ".join(word.capitalize() for word in model.split("_")) + "."


async def interrupted_reply(loaded: LoadedModels, config: Config, clip: Clip, folder: Path,
                            index: int, heard: str = "wake") -> tuple[float, float, float]:
    """One reply cut by what `clip` says (the wake word, or "stop": the `heard` event): seconds
    from that event to silence and to the end of the turn, and from the end of the spoken word
    to silence."""
    from ..events import Command

    microphone = RoomMicrophone(config.audio.frame_ms)
    sink = RecordingSink(folder / f"barge-in-{index}.wav")
    events = EventLog()
    try:
        async with assembly(loaded, config, source=microphone, sink=sink, earcons={},
                            subscribers=[events]) as parts:
            assistant = await parts.start_assistant()
            assistant.handle_command(Command("say", {"text": LONG_REPLY}, f"barge-in-{index}"))
            await events.wait_for("tts_start")
            await asyncio.sleep(SPEAKING_BEFORE_WAKE_S)
            microphone.speak(clip)
            wake = await events.wait_for(heard, WAKE_TIMEOUT_S)
            stopped = await events.wait_for("tts_stop")
            await asyncio.wait_for(assistant.idle(), TURN_TIMEOUT_S)
    finally:
        microphone.close()
        sink.close()
    if not stopped.data["cancelled"]:
        raise RuntimeError(f"the reply was over before the {heard} event")
    woke_at = events.stamped(wake)  # in the listener's thread, as the detector fired
    # Audio of the cut turn is skipped, so the last play is the one the wake word stopped.
    silent_at = sink.plays[-1][1]
    # Zero when the wake word fell in the gap between two sentences.
    return (max(0.0, silent_at - woke_at), events.at("tts_stop") - woke_at,
            silent_at - microphone.speech_ended_at)


def bench_barge_in(loaded: LoadedModels, report: Report, options: BenchOptions) -> None:
    phrase = wake_phrase(loaded.config)
    base = loaded.config
    # No earcons: the only audio is the reply, so its end is the silence measured.
    config = replace(base, service=replace(base.service, follow_up_s=0.0, earcons=False))
    wake_clip = voice_clip(loaded, phrase)

    async def measure(folder: Path) -> list[tuple[float, float, float]]:
        return [await interrupted_reply(loaded, config, wake_clip, folder, index)
                for index in range(options.runs)]

    with tempfile.TemporaryDirectory() as folder:
        runs = asyncio.run(measure(Path(folder)))
    report.add("barge_in.wake_word", phrase)
    report.add_series("barge_in.wake_to_silence_s", [run[0] for run in runs])
    report.add_series("barge_in.wake_to_turn_end_s", [run[1] for run in runs])
    report.add_series("barge_in.word_to_silence_s", [run[2] for run in runs])
