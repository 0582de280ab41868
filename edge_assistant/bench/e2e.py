"""The `e2e` section: one spoken turn, in process with the real models, through the daemon's
streaming pipeline and through the sequential way (wait out the silence, transcribe, generate
everything, synthesize everything, then play), timed from the end of the user's speech; and,
where Moonshine is installed, through the streaming pipeline with its first pass
(`stt.first_pass`, `e2e.first_pass.*`): the LLM starts on Moonshine's text, nothing is said
before Whisper's, and the turn starts over when the two differ (`e2e.first_pass.restarts`)."""

from __future__ import annotations

import asyncio
import statistics
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ..audio import pcm, wav
from ..concurrency import Pacer
from ..config import Config
from ..thinking.llama_engine import sampling_arguments
from .clips import Clip, room_noise
from .loaded import LoadedModels, assembly, llm_settings, voice_clip
from .options import TURN_TIMEOUT_S, BenchOptions
from .report import Report, Timeline

# A different question, so that only the prompt's shared prefix (system prompt, examples)
# is in the KV cache when a measured turn starts: the state of a daemon between questions.
PRIMER_QUESTION = "Hello, are you there?"


class RoomMicrophone:
    """A microphone in a quiet room, in real time: room noise until closed, and a clip whenever
    one is spoken into it (`speak`), from the next frame on.

    Notes the moments the frames holding the clip's first and last speech samples are handed
    on: the end of the user's speech is where time to first audio is counted from.
    """

    def __init__(self, frame_ms: int, clip: Clip | None = None) -> None:
        self.frame_ms = frame_ms
        self.speech_started_at: float | None = None
        self.speech_ended_at: float | None = None
        self._next_clip = clip
        self._closed = False

    def speak(self, clip: Clip) -> None:
        self._next_clip = clip
        self.speech_started_at = self.speech_ended_at = None

    async def frames(self):
        size = pcm.frame_samples(self.frame_ms)
        noise = room_noise(pcm.SAMPLE_RATE, seed=3)
        pacer = Pacer()
        clip, position = None, 0
        count = 0
        while not self._closed:
            if self._next_clip is not None:
                clip, position, self._next_clip = self._next_clip, 0, None
            if clip is not None and position < clip.samples.size:
                chunk = clip.samples[position : position + size]
                chunk = np.concatenate([chunk, noise[: size - chunk.size]])
                position += size
                if self.speech_started_at is None and position > clip.speech_start:
                    self.speech_started_at = time.monotonic()
                if self.speech_ended_at is None and position >= clip.speech_end:
                    self.speech_ended_at = time.monotonic()
            else:
                at = count * size % (noise.size - size)
                chunk = noise[at : at + size]
            yield chunk.astype("<i2").tobytes()
            count += 1
            await pacer.wait(count * self.frame_ms / 1000)

    def close(self) -> None:
        self._closed = True

    async def aclose(self) -> None:
        self.close()


class RecordingSink(wav.WavSink):
    """A real-time WAV sink that notes when each play starts and ends."""

    def __init__(self, path: Path) -> None:
        super().__init__(path, realtime=True)
        self.plays: list[tuple[float, float]] = []

    async def play(self, samples, sample_rate: int) -> bool:
        started = time.monotonic()
        try:
            return await super().play(samples, sample_rate)
        finally:
            self.plays.append((started, time.monotonic()))


def _timed_synthesizer(config: Config, voice_path: Path):
    from ..tts import Synthesizer

    class TimedSynthesizer(Synthesizer):
        """Notes when each chunk was being synthesized (in the synthesis thread)."""

        def __init__(self, *args, **kwargs) -> None:
            super().__init__(*args, **kwargs)
            self.spans: list[tuple[float, float]] = []

        def synthesize(self, text: str, **options):
            chunks = super().synthesize(text, **options)
            try:
                while True:
                    started = time.monotonic()
                    chunk = next(chunks, None)
                    if chunk is None:
                        return
                    self.spans.append((started, time.monotonic()))
                    yield chunk
            finally:
                chunks.close()

    return TimedSynthesizer(config.tts, voice_path)


@dataclass
class Turn:
    timeline: Timeline
    heard: str  # the transcript the turn started on
    reply: str
    sentences: list[str]
    first_pass: str = ""  # stt.first_pass: "agreed" or "restarted"


class EventTimeout(RuntimeError):
    """The event waited for did not come (a turn's error is a plain RuntimeError)."""


class EventLog:
    """The assistant's events, each with the moment it reached the loop."""

    def __init__(self) -> None:
        self.events: list[tuple[float, Any]] = []
        # Events carry wall-clock stamps made where they happened (the listener's thread).
        self.offset = time.monotonic() - time.time()

    def __call__(self, event) -> None:
        self.events.append((time.monotonic(), event))

    def first(self, kind: str, predicate: Callable[[Any], bool] = lambda _: True):
        return next((e for _, e in self.events if e.type == kind and predicate(e)), None)

    def at(self, kind: str, predicate: Callable[[Any], bool] = lambda _: True) -> float | None:
        return next((t for t, e in self.events if e.type == kind and predicate(e)), None)

    def stamped(self, event) -> float:
        return event.timestamp + self.offset

    async def wait_for(self, kind: str, timeout: float = TURN_TIMEOUT_S):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            event = self.first(kind)
            if event is not None:
                return event
            errors = [e for _, e in self.events if e.type == "error"]
            if errors:
                raise RuntimeError(f"the turn failed: {errors[0].data}")
            await asyncio.sleep(0.01)
        raise EventTimeout(f"no {kind} event within {timeout:.0f} s")


def silence_endpointing(config: Config) -> Config:
    """The endpointing of most voice-assistant tutorials: the turn ends after `vad.silence_s`
    of silence, and only then is the whole utterance transcribed."""
    return replace(config, vad=replace(config.vad, smart_turn=False),
                   stt=replace(config.stt, speculative=False))


def _prime_cache(session) -> None:
    """A fresh conversation whose KV cache holds what every prompt starts with."""
    session.reset()
    llama = session.engine.llama
    llama.reset()
    llama.eval(list(session.prepare(PRIMER_QUESTION).tokens))


def _heard(log_: EventLog) -> tuple[Any, Any]:
    # With a first pass, its fast text is the first transcript: the turn starts on it.
    transcript = log_.first("transcript")
    speech_end = log_.first("speech_end")
    text = str(transcript.data.get("text", "")).strip()
    if not text:
        raise RuntimeError("the spoken question was not recognised (empty transcript)")
    return speech_end, transcript


def _timeline(source: RoomMicrophone, log_: EventLog, speech_end, transcript,
              llm: list[tuple[float, float]], tts: list[tuple[float, float]],
              speaker: list[tuple[float, float]], timing) -> Timeline:
    zero = source.speech_ended_at

    def rel(span: tuple[float, float]) -> tuple[float, float]:
        return (span[0] - zero, span[1] - zero)

    ended = log_.stamped(speech_end)
    final = log_.first("transcript", lambda e: e.data.get("pass") == "final")
    return Timeline(
        speech=rel((source.speech_started_at, zero)),
        endpoint=rel((zero, ended)),
        stt=rel((ended, log_.stamped(transcript))),
        llm=[rel(span) for span in llm],
        tts=[rel(span) for span in tts if span[1] >= zero],
        speaker=[rel(span) for span in speaker],
        turn_end=[rel((start, end)) for start, end, _ in timing.turn_end_calls],
        drafts=[rel((draft.started_at, draft.finished_at)) for draft in timing.drafts
                if draft.finished_at is not None],
        final_stt=rel((ended, log_.stamped(final))) if final is not None else None,
    )


async def _streaming_turn(loaded: LoadedModels, config: Config, clip: Clip, synthesizer, folder: Path,
                          listener=None):
    """The daemon's turn; `listener`: one with a first pass (stt.first_pass) instead of the
    models' own."""
    session = loaded.session
    _prime_cache(session)
    synthesizer.spans.clear()
    source = RoomMicrophone(config.audio.frame_ms, clip)
    sink = RecordingSink(folder / "streaming.wav")
    events = EventLog()
    try:
        async with assembly(loaded, config, source=source, sink=sink, synthesizer=synthesizer, earcons={},
                            listener=listener, subscribers=[events]) as parts:
            assistant = await parts.assistant()
            listener = await parts.listener()
            listener.listen_now()  # as after the wake word, or an MQTT `listen`
            await parts.start()
            await events.wait_for("transcript")
            speech_end, transcript = _heard(events)
            # The transcript has queued the turn: idle() waits until it is spoken.
            await asyncio.wait_for(assistant.idle(), TURN_TIMEOUT_S)
    finally:
        source.close()
        sink.close()
    reply = events.first("reply")
    if reply is None or not sink.plays:
        raise RuntimeError(f"the turn produced no speech: {[e.type for _, e in events.events]}")
    llm_span = (events.at("state", lambda e: e.data.get("state") == "thinking"), events.at("reply"))
    timeline = _timeline(source, events, speech_end, transcript, [llm_span],
                         synthesizer.spans, sink.plays, listener.timing)
    sentences = [e.data["text"] for _, e in events.events if e.type == "reply_sentence"]
    return Turn(timeline, transcript.data["text"], reply.data["text"], sentences,
                reply.data.get("first_pass", ""))


async def _sequential_turn(loaded: LoadedModels, config: Config, clip: Clip, synthesizer, folder: Path,
                           listener):
    """The way most llama-cpp-python voice tutorials do it: wait out the silence, then for the
    whole transcript, the whole reply, the whole speech, then play. The same prompt, settings
    and models; `listener` ends turns on silence alone (`silence_endpointing`)."""
    session = loaded.session
    engine = session.engine
    _prime_cache(session)
    synthesizer.spans.clear()
    source = RoomMicrophone(config.audio.frame_ms, clip)
    sink = RecordingSink(folder / "sequential.wav")
    events = EventLog()
    listener.listen_now()
    # The microphone keeps being heard meanwhile, as in the daemon.
    listening = asyncio.create_task(listener.run(source.frames(), events))
    try:
        await events.wait_for("transcript")
        speech_end, transcript = _heard(events)
        text = transcript.data["text"]

        def answer():
            settings = engine.config
            started = time.monotonic()
            prompt = session.prepare(text)
            completion = engine.llama.create_completion(
                prompt=list(prompt.tokens),
                max_tokens=settings.max_tokens,
                **sampling_arguments(settings),
                stop=list(dict.fromkeys((*prompt.stop, *settings.stop))),
            )
            generated = (started, time.monotonic())
            reply = completion["choices"][0]["text"].strip()
            chunks = list(synthesizer.synthesize(reply))
            return generated, reply, chunks

        generated, reply, chunks = await asyncio.to_thread(answer)
        if not chunks:
            raise RuntimeError(f"the reply has nothing to say: {reply!r}")
        samples = np.concatenate([chunk.samples for chunk in chunks])
        await sink.play(samples, chunks[0].sample_rate)
        timeline = _timeline(source, events, speech_end, transcript, [generated],
                             synthesizer.spans, sink.plays, listener.timing)
        return Turn(timeline, text, reply, [reply])
    finally:
        source.close()
        await listening
        sink.close()


def _closest_to_median(timelines: list[Timeline], values: list[float]) -> Timeline:
    median = statistics.median(values)
    return min(zip(timelines, values), key=lambda pair: abs(pair[1] - median))[0]


def first_pass_listener(config: Config, loaded: LoadedModels):
    """A listener with Moonshine's first pass (stt.first_pass) on the run's recognizer, or None
    where there is none to add (Moonshine missing, or already the recognizer)."""
    from ..hearing.listener import Listener

    listener = Listener(replace(config, stt=replace(config.stt, first_pass="moonshine")),
                        stt_model_path=loaded.paths.stt)
    if listener.first_pass is None:
        listener.close()
        return None
    return listener


def bench_e2e(loaded: LoadedModels, report: Report, options: BenchOptions) -> None:
    base = loaded.config
    # No follow-up window or earcons: one turn, measured to its last sample.
    config = replace(base, service=replace(base.service, follow_up_s=0.0, earcons=False))
    clip = voice_clip(loaded, options.question)
    engine = loaded.session.engine
    synthesizer = _timed_synthesizer(config, loaded.paths.voice)
    turns: dict[str, list[Turn]] = {}

    async def measure(folder: Path, plain_listener, fast_listener) -> None:
        kinds = ["streaming", "sequential", *(["first_pass"] if fast_listener is not None else [])]
        for index in range(options.runs):
            # Each kind in turn first, so that none always runs on a machine warmed by another.
            for kind in kinds[index % len(kinds):] + kinds[:index % len(kinds)]:
                if kind == "sequential":
                    turn = _sequential_turn(loaded, config, clip, synthesizer, folder, plain_listener)
                else:
                    turn = _streaming_turn(loaded, config, clip, synthesizer, folder,
                                           fast_listener if kind == "first_pass" else None)
                turns.setdefault(kind, []).append(await asyncio.wait_for(turn, TURN_TIMEOUT_S))

    from ..hearing.listener import Listener

    plain_listener = Listener(silence_endpointing(config), stt_model_path=loaded.paths.stt)
    fast_listener = first_pass_listener(config, loaded)
    try:
        # Greedy: both pipelines write the same reply, so only the plumbing differs.
        with llm_settings(engine, temperature=0.0), tempfile.TemporaryDirectory() as folder:
            asyncio.run(measure(Path(folder), plain_listener, fast_listener))
    finally:
        plain_listener.close()
        if fast_listener is not None:
            fast_listener.close()
        loaded.session.reset()
    streaming, sequential = turns["streaming"], turns["sequential"]
    report.add("e2e.question", options.question)
    report.add("e2e.transcript", streaming[-1].heard)
    report.add("e2e.reply", streaming[-1].reply)
    report.add("e2e.reply_sentences", len(streaming[-1].sentences))
    if sequential[-1].reply != streaming[-1].reply:
        report.add("e2e.sequential_reply", sequential[-1].reply)
    ttfa = report.add_series("e2e.ttfa_s", [t.timeline.ttfa_s for t in streaming])
    sequential_ttfa = report.add_series("e2e.sequential_ttfa_s", [t.timeline.ttfa_s for t in sequential])
    report.add_ratio("e2e.ratio", ttfa, sequential_ttfa)
    report.add_series("e2e.total_s", [t.timeline.total_s for t in streaming])
    report.add_series("e2e.sequential_total_s", [t.timeline.total_s for t in sequential])
    report.add_series("e2e.endpoint_s", [t.timeline.endpoint[1] - t.timeline.endpoint[0] for t in streaming])
    report.add_series("e2e.stt_s", [t.timeline.stt[1] - t.timeline.stt[0] for t in streaming])
    # From the transcript on, the part of the wait that streaming can shorten.
    reply = report.add_series("e2e.reply_ttfa_s", [t.timeline.ttfa_s - t.timeline.stt[1] for t in streaming])
    sequential_reply = report.add_series("e2e.sequential_reply_ttfa_s",
                                         [t.timeline.ttfa_s - t.timeline.stt[1] for t in sequential])
    report.add_ratio("e2e.reply_ratio", reply, sequential_reply)
    for kind, kind_turns in turns.items():
        report.timelines[kind] = _closest_to_median([t.timeline for t in kind_turns],
                                                    [t.timeline.ttfa_s for t in kind_turns])
    if fast_listener is None:
        report.add("e2e.first_pass.text", "not measured: no Moonshine model to add as a first pass")
    else:
        _report_first_pass(report, turns["first_pass"], sequential_ttfa)


def _report_first_pass(report: Report, turns: list[Turn], sequential_ttfa: float) -> None:
    """The same turn with Moonshine's text first (stt.first_pass): the LLM starts on it, and
    the turn starts over when Whisper's text differs."""
    report.add("e2e.first_pass.transcript", turns[-1].heard)
    ttfa = report.add_series("e2e.first_pass.ttfa_s", [t.timeline.ttfa_s for t in turns])
    report.add_ratio("e2e.first_pass.ratio", ttfa, sequential_ttfa)
    report.add_series("e2e.first_pass.endpoint_s",
                      [t.timeline.endpoint[1] - t.timeline.endpoint[0] for t in turns])
    report.add_series("e2e.first_pass.stt_s", [t.timeline.stt[1] - t.timeline.stt[0] for t in turns])
    report.add_series("e2e.first_pass.final_stt_s", [t.timeline.final_stt[1] - t.timeline.final_stt[0]
                                                      for t in turns if t.timeline.final_stt is not None])
    report.add("e2e.first_pass.restarts", sum(t.first_pass == "restarted" for t in turns))
