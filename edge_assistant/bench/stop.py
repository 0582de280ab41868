"""The `stop` section: "Stop." said over a reply and over a ring, how long until it is silent,
and how well the stop word model (stop_word.py) hears it.

In process with the real models: the daemon's pipeline, listener, voice and timers (in a
temporary state directory).

- `stop.word_to_silence_s` (median, the target): from the end of the spoken word to the
  speaker falling silent, the word said over a reply. The runs alternate the configured piper
  voice and espeak-ng voices the model was not trained on.
- `stop.ring_word_to_stop_s`: the same over a timer's ring, to the ring stopped and silent.
- `stop.missed`: runs of these three in which the word was not heard (left out of them).
- `stop.between_rings_word_to_stop_s`: the word said as the first ring ends. The assistant then
  listens without the wake word (Whisper hears "stop"); with rings 2 s apart the next ring may
  already sound, and the stop word hear it.
- `stop.recall_clean`, `stop.recall_snr10`: the share of held-out voices (`HELD_OUT_*`, never in
  the training of `scripts/train-stop-word.py`) whose "Stop." the detector hears.
- `stop.false_accepts_per_hour`: detections in speech and noise without the word, per hour.
  The detector only runs while the assistant speaks, so an hour is an hour of its speaking.
- `stop.recall_over_reply`, `stop.false_accepts_per_hour_own_voice`: what the detector really
  hears while the assistant speaks, in a simulated room (room.py) after the echo canceller: the
  held-out voices' "Stop." 6 s into the assistant's talk, and that talk alone.
- `stop.own_voice_stops` over `stop.own_voice_replies` (100, 10 with --quick): replies spoken
  in real time into the simulated room, through the echo canceller to the daemon's listener, as
  the daemon wires them; each stop word heard in them counts (`stop.own_voice_wakes`: each wake
  word, though some replies say "Jarvis"; `stop.own_voice_cut`: replies cut short by either). Run it with the CPU loaded
  (`stress-ng --cpu 2`): that is when the canceller falls behind.

Every figure but the `_raw` ones is of the detector as the listener runs it: each detection read
back by the recognizer (stop_word.CheckedStopWord), `stop.vetoed` the detections it dropped.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from ..audio import pcm
from ..audio.earcons import earcon
from ..config import Config
from .barge_in import interrupted_reply
from .clips import Clip, espeak_speech, in_room
from .e2e import EventLog, EventTimeout, RecordingSink, RoomMicrophone
from .loaded import LoadedModels, assembly, voice_clip
from .options import TURN_TIMEOUT_S, BenchOptions, SectionSkipped
from .report import Report

RING_TIMEOUT_S = 30.0
REPLY_TIMEOUT_S = 60.0
# The voices the stop word model is measured on, and never trained on.
HELD_OUT_DIALECT = "en-gb-scotland"
HELD_OUT_VARIANTS = ("f5", "m7")
HELD_OUT_DIALECTS_FOR_VARIANTS = ("en-us", "en-gb", "en-029")
HELD_OUT_PIPER_STYLES = ((0.9, 0.5), (1.2, 0.8))
SPEEDS = (140, 175)
PITCHES = (40, 65)


def held_out_espeak_voices() -> list[tuple[str, int, int]]:
    """(voice, speed, pitch) of the held-out espeak-ng voices."""
    voices = [HELD_OUT_DIALECT] + [f"{HELD_OUT_DIALECT}+{v}" for v in ("m1", "f2")]
    voices += [f"{dialect}+{variant}" for dialect in HELD_OUT_DIALECTS_FOR_VARIANTS for variant in HELD_OUT_VARIANTS]
    return [(voice, speed, pitch) for voice in voices for speed in SPEEDS for pitch in PITCHES]


def _stop_clips(loaded: LoadedModels, count: int) -> list[Clip]:
    """`count` spoken "Stop."s: the configured voice and held-out espeak-ng voices in turn."""
    voices = held_out_espeak_voices()
    piper = voice_clip(loaded, "Stop.")
    return [piper if index % 2 == 0 else in_room(espeak_speech("Stop.", *voices[index * 7 % len(voices)]))
            for index in range(count)]


async def _stopped_ring(loaded: LoadedModels, config: Config, folder: Path, index: int, clip: Clip,
                        during_ring: bool) -> float:
    from ..events import Command
    from ..timers import TimerStore

    microphone = RoomMicrophone(config.audio.frame_ms)
    sink = RecordingSink(folder / f"stop-{index}.wav")
    events = EventLog()
    earcons = {"ring": earcon("ring")} if during_ring else {}
    try:
        # The daemon's timers, kept in the run's folder: they ring on the assistant.
        async with assembly(loaded, config, source=microphone, sink=sink, earcons=earcons, subscribers=[events],
                            timers_store=TimerStore(folder / f"timers-{index}.json")) as parts:
            assistant = await parts.start_assistant()
            scheduler = await parts.timers()
            stopped_at = await _stop_the_ring(assistant, scheduler, microphone, events, sink, clip, during_ring)
            assistant.handle_command(Command("cancel"))
            await asyncio.wait_for(assistant.idle(), TURN_TIMEOUT_S)
    finally:
        microphone.close()
        sink.close()
    return max(0.0, stopped_at - microphone.speech_ended_at)


async def _stop_the_ring(assistant, scheduler, microphone: RoomMicrophone, events: EventLog, sink: RecordingSink,
                         clip: Clip, during_ring: bool) -> float:
    """When a timer's ring, or the pause after its first, was stopped by what `clip` says."""
    scheduler.start_timer(1.0)
    if during_ring:
        await events.wait_for("tts_start", RING_TIMEOUT_S)  # the ring sounds
    else:
        await events.wait_for("tts_stop", RING_TIMEOUT_S)  # the first ring is over
    microphone.speak(clip)
    deadline = time.monotonic() + RING_TIMEOUT_S
    while scheduler.ringing:
        if time.monotonic() > deadline:
            raise EventTimeout("the ring was not stopped by the spoken word")
        await asyncio.sleep(0.005)
    stopped_at = time.monotonic()
    if during_ring:
        await events.wait_for("tts_stop", TURN_TIMEOUT_S)
        stopped_at = max(stopped_at, sink.plays[-1][1])  # and silent
    return stopped_at


def _accuracy(loaded: LoadedModels, report: Report, options: BenchOptions) -> None:
    from ..hearing.stop_word import CheckedStopWord, StopWordDetector
    from .wake_accuracy import SNRS_DB, false_accept_audio, with_noise

    frame = pcm.frame_bytes(loaded.config.audio.frame_ms)
    # The listener's recognizer reads each detection back, as in the daemon.
    detector = CheckedStopWord(StopWordDetector(cutoff=loaded.config.wake.stop_word_threshold),
                               loaded.listener.stop_word.read)

    def detections(samples: np.ndarray) -> int:
        data = samples.astype("<i2").tobytes()
        return sum(detector.process(data[at : at + frame]) is not None for at in range(0, len(data), frame))

    voices = held_out_espeak_voices()
    if options.quick:
        voices = voices[::6]
    spoken = [espeak_speech("Stop.", *voice) for voice in voices]
    styles = HELD_OUT_PIPER_STYLES[:1] if options.quick else HELD_OUT_PIPER_STYLES
    for length, noise in styles:
        tts = replace(loaded.config.tts, length_scale=length, noise_scale=noise)
        from ..tts import Synthesizer, spoken_samples

        synthesizer = Synthesizer(tts, loaded.paths.voice)
        try:
            spoken.append(spoken_samples(synthesizer, "Stop.", pcm.SAMPLE_RATE))
        finally:
            synthesizer.close()
    report.add("stop.voices", len(spoken))
    for condition, snr in (("clean", None), *((f"snr{s}", s) for s in SNRS_DB[:1])):
        heard = sum(detections(with_noise(samples, snr, seed=index)) > 0 for index, samples in enumerate(spoken))
        report.add(f"stop.recall_{condition}", heard / len(spoken))
    other = false_accept_audio(loaded, "stop", options.quick)
    hours = sum(samples.size for samples in other.values()) / pcm.SAMPLE_RATE / 3600
    accepts = {kind: detections(samples) for kind, samples in other.items()}
    report.add("stop.false_accept_hours", hours)
    for kind, count in accepts.items():
        if count:
            report.add(f"stop.false_accepts_{kind}", count)
    report.add("stop.false_accepts_per_hour", sum(accepts.values()) / hours)
    _over_own_voice(detector, detections, spoken, other["piper"], loaded.config.audio.echo_canceller, report)


def _over_own_voice(detector, detections, spoken: list[np.ndarray], talk: np.ndarray, canceller: str,
                    report: Report) -> None:
    from .room import play_through_room

    rate = pcm.SAMPLE_RATE
    word_at_s, after_s = 6.0, 1.5
    heard = 0
    for index, samples in enumerate(spoken):
        start = index * int(word_at_s * rate) % max(1, talk.size - int(10 * rate))
        played = talk[start : start + int((word_at_s + 3.0) * rate)]
        voice = (samples.astype(np.float64) * 3000.0 / max(1.0, float(np.std(samples)))).astype(np.int16)
        _, _, cleaned, _ = play_through_room(played, delay_s=0.12, noise_rms=30.0, voice=voice,
                                             voice_at_s=word_at_s, seed=index, engine=canceller)
        detector.reset()
        detections(cleaned[: int((word_at_s - 0.5) * rate)])  # the reply so far: context
        heard += detections(cleaned[int((word_at_s - 0.5) * rate) : int((word_at_s + after_s) * rate)]) > 0
    report.add("stop.recall_over_reply", heard / len(spoken))
    _, _, cleaned, _ = play_through_room(talk, delay_s=0.12, noise_rms=30.0, engine=canceller)
    detector.reset()
    report.add("stop.false_accepts_per_hour_own_voice", detections(cleaned) / (cleaned.size / rate / 3600))
    report.add("stop.vetoed", detector.vetoed)


# The assistant's own talk for stop.own_voice_stops: two of these a reply, in changing pairs.
OWN_TALK = (
    "The capital of France is Paris.", "It will be sunny tomorrow, with a light breeze.",
    "Your timer for ten minutes is set.", "The kitchen light is now off.",
    "I could not find that song.", "It is twenty past seven in the evening.",
    "Rain is expected in the afternoon, so take an umbrella.", "The oven timer has two minutes left.",
    "You called Jarvis. The lights are off.", "Hey Jarvis is the phrase that wakes me.",
    "The top shelf is in the shop.", "Scott has a new job at the bus station.",
    "A kilometre is a little over half a mile.", "Fifteen times twelve is one hundred and eighty.",
    "The front door is locked.", "Good morning! The coffee machine is warming up.",
    "The bedroom lamp is at fifty percent.", "Spot the dog is asleep on the step.",
    "The garage door is closed.", "I set an alarm for six thirty tomorrow morning.",
    "The music is paused.", "Tea is best steeped for three to five minutes.",
    "The thermostat is set to twenty one degrees.", "The film starts at eight.",
)


def own_voice_replies(count: int) -> list[str]:
    return [f"{OWN_TALK[i % len(OWN_TALK)]} {OWN_TALK[(i * 7 + 3) % len(OWN_TALK)]}" for i in range(count)]


async def _talk(assistant, events: EventLog, replies: list[str]) -> float:
    """Each reply spoken in turn; the seconds spoken."""
    from ..events import Command

    talk_s = 0.0
    for index, reply in enumerate(replies):
        since = len(events.events)
        assistant.handle_command(Command("announce", {"text": reply, "chime": False}, f"own-{index}"))
        deadline = time.monotonic() + REPLY_TIMEOUT_S
        while not any(e.type == "tts_stop" for _, e in events.events[since:]):
            if time.monotonic() > deadline:
                raise RuntimeError(f"reply {index} was not over within {REPLY_TIMEOUT_S:.0f} s")
            await asyncio.sleep(0.02)
        await asyncio.wait_for(assistant.idle(), TURN_TIMEOUT_S)
        times = {e.type: t for t, e in events.events[since:] if e.type in ("tts_start", "tts_stop")}
        talk_s += times.get("tts_stop", 0.0) - times.get("tts_start", 0.0)
    return talk_s


@dataclass
class OwnVoice:
    """What the assistant's own replies did to it through the room and the canceller."""

    cut: int  # replies cut short
    stop_words: int  # by the stop word
    wakes: int  # by the wake word
    hours: float  # of its talk


async def _own_voice_in_room(loaded: LoadedModels, config: Config, folder: Path, count: int) -> OwnVoice:
    """Replies spoken into a simulated room in real time, heard back through the echo canceller
    by the daemon's listener."""
    from ..audio.wav import WavSink
    from ..assembly import own_sound_for
    from .room import SimulatedRoom

    replies = own_voice_replies(count)
    room = SimulatedRoom(delay_s=0.12, duration_s=12.0 * count + 60.0)
    sink = WavSink(folder / "own-voice.wav", sample_rate=pcm.SAMPLE_RATE, realtime=True)
    sink.taps.append(room.speaker_tap)
    source, own_sound = own_sound_for(room.microphone(config.audio.frame_ms), sink, config)
    events = EventLog()
    try:
        # The listener hears the assistant's own sound through the canceller, as in the daemon.
        async with assembly(loaded, config, source=source, own_sound=own_sound, sink=sink, earcons={},
                            subscribers=[events]) as parts:
            talk_s = await _talk(await parts.start_assistant(), events, replies)
    finally:
        sink.close()
    heard = [e.type for _, e in events.events if e.type in ("stop_word", "wake")]
    return OwnVoice(cut=sum(1 for _, e in events.events if e.type == "tts_stop" and e.data.get("cancelled")),
                    stop_words=heard.count("stop_word"), wakes=heard.count("wake"), hours=talk_s / 3600)


def bench_stop(loaded: LoadedModels, report: Report, options: BenchOptions) -> None:
    base = loaded.config
    if not base.wake.stop_word:
        raise SectionSkipped("wake.stop_word is false: only the wake word and MQTT stop a reply")
    # Rings every 2 s while the test runs; no earcons but the ring's own, so only the reply (or
    # the ring) is heard.
    config = replace(base, service=replace(base.service, earcons=False, follow_up_s=0.0),
                     timers=replace(base.timers, ring_interval_s=2.0, ring_max_s=RING_TIMEOUT_S))
    clips = _stop_clips(loaded, options.runs)
    missed = 0

    def heard(run):
        """A run's figures, or None (counted) where the word was not heard: a held-out voice the
        detector or the read-back misses is a miss, not a failed section."""
        nonlocal missed
        try:
            return asyncio.run(run)
        except EventTimeout:
            missed += 1
            return None

    with tempfile.TemporaryDirectory() as folder:
        replies = [heard(interrupted_reply(loaded, config, clip, Path(folder), index, heard="stop_word"))
                   for index, clip in enumerate(clips)]
        rings = [heard(_stopped_ring(loaded, config, Path(folder), index, clip, True))
                 for index, clip in enumerate(clips)]
        between = [heard(_stopped_ring(loaded, config, Path(folder), index, clips[0], False))
                   for index in range(options.runs)]
    replies = [run for run in replies if run is not None]
    for key, values in (("stop.word_to_silence_s", [run[2] for run in replies]),
                        ("stop.heard_to_silence_s", [run[0] for run in replies]),
                        ("stop.ring_word_to_stop_s", [run for run in rings if run is not None]),
                        ("stop.between_rings_word_to_stop_s", [run for run in between if run is not None])):
        if values:
            report.add_series(key, values)
    report.add("stop.missed", missed)
    _accuracy(loaded, report, options)
    count = 10 if options.quick else 100
    with tempfile.TemporaryDirectory() as folder:
        own = asyncio.run(_own_voice_in_room(loaded, config, Path(folder), count))
    report.add("stop.own_voice_replies", count)
    report.add("stop.own_voice_hours", own.hours)
    report.add("stop.own_voice_stops", own.stop_words)
    report.add("stop.own_voice_wakes", own.wakes)
    report.add("stop.own_voice_cut", own.cut)
