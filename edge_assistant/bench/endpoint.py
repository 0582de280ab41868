"""The `endpoint` section: where spoken turns end, the old way and the new, in the same run on
the same clips.

- `silence`: the turn ends after `vad.silence_s` of silence, then the engine transcribes it all.
- `smart_turn`: Smart Turn v3 judges each pause of `vad.pause_s`, held while the transcript
  made at that pause stops mid-phrase (`vad.smart_turn`, `stt.speculative`).

The clips are questions spoken by the configured voice (without its randomness, in a quiet
room), played in real time into a listener put straight into listening: with a natural pause
in mid-sentence (the sentence spoken whole, and `PAUSES_S` of silence inserted where its first
words end: "Set a timer for ... ten minutes.") and without. A turn is cut off when it ended
before the clip's last speech was heard. Per way::

    endpoint.<way>.false_cutoffs  share of the paused questions cut off
    endpoint.<way>.delay_s        end of speech to the end of the turn (turns not cut off)
    endpoint.<way>.transcript_s   end of speech to the transcript (turns not cut off)

and for `smart_turn`, the share of turns ended by the model (`by_model`), of transcripts that
were the draft of the last pause (`speculative`), and of paused questions where the model
judged the pause in mid-sentence the end (`model_alone_cutoffs`: without the words to hold it,
those would have been cut off). `smart_turn` runs with the default engine (`endpoint.engine`),
and again with each other engine that can run here: Whisper or Moonshine, and vosk when a
model is configured or pulled (`endpoint.<engine>.*`).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, replace

from ..config import Config
from .clips import Clip, spoken_clip
from .e2e import EventLog, RoomMicrophone, silence_endpointing
from .loaded import LoadedModels, voice_clip
from .options import TURN_TIMEOUT_S, BenchOptions
from .report import Report
from .speech import stt_engines

# (question, the words after which the speaker pauses); each cut checked to fall between words.
PAUSED_QUESTIONS = (
    ("Set a timer for ten minutes.", "Set a timer for"),
    ("What is the capital of France?", "What is the capital of"),
    ("Turn on the kitchen lights.", "Turn on the"),
    ("What is the weather like in Paris today?", "What is the weather like in"),
)
PAUSES_S = (0.4, 0.55, 0.7)
QUICK_PAUSES_S = (0.4, 0.7)


@dataclass(frozen=True)
class TurnEnd:
    paused: bool
    cut_off: bool
    delay_s: float  # end of speech to speech_end (0 when cut off)
    transcript_s: float
    by_model: bool
    speculative: bool
    # The model judged a pause before the last speech complete: alone, it would have cut off.
    model_would_cut: bool


def smart_turn_endpointing(config: Config) -> Config:
    return replace(config, vad=replace(config.vad, smart_turn=True),
                   stt=replace(config.stt, speculative=True))


async def _turn(listener, clip: Clip, frame_ms: int, paused: bool) -> TurnEnd:
    microphone = RoomMicrophone(frame_ms, clip)
    events = EventLog()
    listening = asyncio.create_task(listener.run(microphone.frames(), events, skip_wake=True,
                                                 max_turns=1))
    try:
        speech_end = await events.wait_for("speech_end")
        if speech_end.data["reason"] == "timeout":
            raise RuntimeError("the listener heard no speech in the clip")
        transcript = await events.wait_for("transcript")
    finally:
        microphone.close()
        await listening
    ended, heard = events.stamped(speech_end), microphone.speech_ended_at
    cut_off = heard is None or ended < heard
    zero = ended if heard is None else heard
    threshold = listener.config.vad.smart_turn_threshold
    model_would_cut = any(probability >= threshold and (heard is None or at < heard)
                          for at, _, probability in listener.timing.turn_end_calls)
    return TurnEnd(paused, cut_off, ended - zero, events.stamped(transcript) - zero,
                   speech_end.data["reason"] == "end_of_turn", transcript.data["speculative"],
                   model_would_cut)


def _report_way(report: Report, way: str, turns: list[TurnEnd]) -> None:
    paused = [turn for turn in turns if turn.paused]
    whole = [turn for turn in turns if not turn.cut_off]
    report.add(f"endpoint.{way}.false_cutoffs", sum(t.cut_off for t in paused) / len(paused))
    if whole:
        report.add_series(f"endpoint.{way}.delay_s", [t.delay_s for t in whole])
        report.add_series(f"endpoint.{way}.transcript_s", [t.transcript_s for t in whole])
    if way != "silence":
        report.add(f"endpoint.{way}.by_model", sum(t.by_model for t in turns) / len(turns))
        report.add(f"endpoint.{way}.speculative", sum(t.speculative for t in turns) / len(turns))
        report.add(f"endpoint.{way}.model_alone_cutoffs",
                   sum(t.model_would_cut for t in paused) / len(paused))


def bench_endpoint(loaded: LoadedModels, report: Report, options: BenchOptions) -> None:
    from ..hearing.listener import Listener

    config = loaded.config
    questions = PAUSED_QUESTIONS[:2] if options.quick else PAUSED_QUESTIONS
    pauses = QUICK_PAUSES_S if options.quick else PAUSES_S
    clips = [(voice_clip(loaded, text), False) for text, _ in questions]
    for text, before_pause in questions:
        clips += [(spoken_clip(config, loaded.paths.voice, text, pause_after=before_pause,
                               pause_s=pause_s), True) for pause_s in pauses]
    primary, folders, skipped = stt_engines(config)
    ways = {"silence": (silence_endpointing(config), folders.get(primary)),
            "smart_turn": (smart_turn_endpointing(config), folders.get(primary))}
    for engine, folder in folders.items():
        if engine != primary:
            other = replace(config, stt=replace(config.stt, engine=engine))
            ways[engine] = (smart_turn_endpointing(other), folder)
    for engine, reason in skipped.items():
        report.add(f"endpoint.{engine}.skipped", reason)
    listeners = {}
    try:
        for way, (way_config, folder) in ways.items():
            listeners[way] = Listener(way_config, stt_model_path=folder)

        async def measure() -> dict[str, list[TurnEnd]]:
            turns: dict[str, list[TurnEnd]] = {way: [] for way in listeners}
            for index, (clip, paused) in enumerate(clips):
                # Alternating which way goes first spreads the machine's slow moments.
                order = list(listeners) if index % 2 == 0 else list(reversed(listeners))
                for way in order:
                    turns[way].append(await asyncio.wait_for(
                        _turn(listeners[way], clip, config.audio.frame_ms, paused), TURN_TIMEOUT_S))
            return turns

        turns = asyncio.run(measure())
    finally:
        for listener in listeners.values():
            listener.close()
    report.add("endpoint.questions", len(clips))
    report.add("endpoint.paused_questions", sum(paused for _, paused in clips))
    report.add("endpoint.pauses_s", ", ".join(f"{pause:g}" for pause in pauses))
    report.add("endpoint.engine", primary)
    for way, way_turns in turns.items():
        _report_way(report, way, way_turns)
    report.add("endpoint.extra_false_cutoffs",
               report.values["endpoint.smart_turn.false_cutoffs"]
               - report.values["endpoint.silence.false_cutoffs"])
    medians = [report.values.get(f"endpoint.{way}.transcript_s") for way in ("silence", "smart_turn")]
    if None not in medians:
        report.add("endpoint.transcript_sooner_s", medians[0] - medians[1])
