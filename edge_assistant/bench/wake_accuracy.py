"""The `wake_accuracy` section: how often each wake word engine hears the wake word, and how
often it hears one that nobody said.

Recall: the wake phrase spoken by every voice there is offline, piper's (the configured voice at
several speeds and amounts of its sampling noise) and espeak-ng's (American, British and
Scottish English at several speeds and pitches), each clean and in pink noise at 10 and 0 dB
SNR. False accepts: at least half an hour (full run) of other speech and sounds, streamed
through one detector as a microphone would be: espeak-ng and piper reading varied text, a quiet
room, and pink noise. Both engines (microWakeWord, openWakeWord) are measured on the same
audio; the configured one also goes under the plain names, which the targets judge
(openWakeWord's own: recall >= 95% clean, <= 0.5 false accepts per hour).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from ..audio import pcm
from ..config import Config, TtsConfig
from ..hearing.wake import MICRO_MODELS, OPENWAKEWORD_MODELS
from .clips import SPEECH_LEVEL, espeak_speech, room_noise
from .loaded import LoadedModels
from .options import BenchOptions, SectionSkipped
from .report import Report

ENGINES = ("micro", "openwakeword")
SNRS_DB = (10, 0)
# piper: (length_scale: 0.8 is faster, 1.25 slower; noise_scale: how much its sampling noise
# colours the voice). The run fixes that noise's seed (clips.fix_speech_noise): same clips every run.
PIPER_STYLES = [(length, noise) for length in (0.8, 1.0, 1.25) for noise in (0.0, 0.667, 1.0)]
ESPEAK_VOICES = ("en-us", "en-gb", "en-gb-scotland")
ESPEAK_SPEEDS = (130, 160, 190)
ESPEAK_PITCHES = (35, 50, 70)
# The false-accept audio of a full run, in minutes of each kind.
FALSE_ACCEPT_MINUTES = {"espeak": 10.0, "piper": 10.0, "quiet": 5.0, "noise": 5.0}
QUICK_FALSE_ACCEPT_MINUTES = {"espeak": 0.5, "piper": 0.5, "quiet": 0.25, "noise": 0.25}
# Silence around each spoken wake phrase.
PAD_S = 1.0

# Everyday talk for the false accepts, read in turn by each voice (and with the text of any GPL
# on the machine, for length and variety).
VARIED_TEXT = """
Good morning. The coffee is ready, and the bus leaves in twenty minutes. Did you see the news
about the bridge? They say it will be closed until the end of the month. Can you turn the
music down a little? I am trying to read. What should we cook tonight, pasta or rice? There is
some chicken left in the fridge, and the tomatoes from the garden are ripe. My sister called
yesterday; she wants to visit in June with the children. The weather forecast says rain on
Saturday, so maybe we should go hiking on Sunday instead. Have you seen my keys? I left them on
the table next to the window. The meeting was moved to Thursday at three o'clock. Please
remember to water the plants and feed the cat before you leave. The dishwasher is full again.
How many eggs do we need for the cake? Three, and a cup of sugar. The football match starts at
eight, and the neighbours are coming over to watch it. Turn on the kitchen light, please. Set
a timer for ten minutes. What is the capital of Australia? Play some jazz in the living room.
It is getting cold; close the door behind you. The train was late again this morning, so I
missed the first half of the lecture. I would like a cup of tea with milk and no sugar. Jarred
fruit is on the top shelf, next to the jars of jam. Harvest time is busy on the farm. Her
vase fell off the shelf. Harvey and Jasmine are arriving at nine. Hey, is anybody home?
"""


@dataclass(frozen=True)
class SpokenPhrase:
    voice: str  # how it was spoken, e.g. "espeak en-gb 160 wpm pitch 50"
    samples: np.ndarray  # 16 kHz int16, the phrase alone


def pink_noise(count: int, seed: int = 0) -> np.ndarray:
    """Pink (1/f) noise of unit RMS, float32."""
    rng = np.random.default_rng(seed)
    spectrum = np.fft.rfft(rng.standard_normal(count))
    frequencies = np.arange(spectrum.size, dtype=np.float64)
    spectrum[1:] /= np.sqrt(frequencies[1:])
    spectrum[0] = 0.0
    noise = np.fft.irfft(spectrum, count)
    return (noise / max(1e-9, float(np.sqrt(np.mean(noise**2))))).astype(np.float32)


def with_noise(speech: np.ndarray, snr_db: float | None, seed: int = 0) -> np.ndarray:
    """`speech` padded with a quiet room, and pink noise at `snr_db` under the speech's level
    (measured where it is speech); None: no added noise."""
    pad = np.zeros(int(PAD_S * pcm.SAMPLE_RATE), dtype=np.float32)
    signal = np.concatenate([pad, speech.astype(np.float32), pad])
    signal += room_noise(signal.size, seed=seed)
    if snr_db is not None:
        loud = speech[np.abs(speech.astype(np.int32)) > SPEECH_LEVEL].astype(np.float64)
        level = float(np.sqrt(np.mean(loud**2))) if loud.size else 1000.0
        signal += pink_noise(signal.size, seed) * level / 10 ** (snr_db / 20)
    return pcm.float_to_int16(signal)


def wake_phrase_text(config: Config) -> str:
    model = config.wake.model
    if model not in MICRO_MODELS or model not in OPENWAKEWORD_MODELS:
        raise SectionSkipped(f"wake.model {model!r} is not shipped with both engines: its words "
                             "and a second engine to compare are not known here")
    return " ".join(word.capitalize() for word in model.split("_"))


def _piper(loaded: LoadedModels, tts: TtsConfig, text: str) -> np.ndarray:
    from ..tts import Synthesizer, spoken_samples

    synthesizer = Synthesizer(tts, loaded.paths.voice)
    try:
        return spoken_samples(synthesizer, text, pcm.SAMPLE_RATE)
    finally:
        synthesizer.close()


def spoken_phrases(loaded: LoadedModels, phrase: str, quick: bool) -> list[SpokenPhrase]:
    """The wake phrase in every voice and style (a few of them when `quick`)."""
    styles = [(1.0, 0.667)] if quick else PIPER_STYLES
    phrases = []
    for length, noise in styles:
        tts = replace(loaded.config.tts, length_scale=length, noise_scale=noise)
        phrases.append(SpokenPhrase(f"piper {loaded.paths.voice.stem} length {length} noise {noise}",
                                    _piper(loaded, tts, f"{phrase}.")))
    espeak = ([("en-us", 160, 50), ("en-gb", 160, 50)] if quick else
              [(v, s, p) for v in ESPEAK_VOICES for s in ESPEAK_SPEEDS for p in ESPEAK_PITCHES])
    for voice, speed, pitch in espeak:
        phrases.append(SpokenPhrase(f"espeak {voice} {speed} wpm pitch {pitch}",
                                    espeak_speech(phrase, voice, speed, pitch)))
    return phrases


def _sentences(text: str) -> list[str]:
    return [s.strip() for s in re.split(r"(?<=[.!?;])\s+", " ".join(text.split())) if len(s.strip()) > 3]


def _reading_text(phrase: str) -> list[str]:
    """Sentences to read for the false accepts: everyday talk, then any GPL text there is,
    without the wake phrase's last word in them."""
    text = VARIED_TEXT
    for licence in (Path("/usr/share/common-licenses/GPL-3"), Path("/usr/share/common-licenses/GPL-2")):
        if licence.is_file():
            text += "\n" + licence.read_text(errors="replace")
            break
    wake_word = phrase.split()[-1].lower()
    return [s for s in _sentences(text) if wake_word not in s.lower() and re.search(r"[a-z]", s)]


def _read_aloud(sentences: list[str], seconds: float, speak) -> np.ndarray:
    """Sentences spoken in turn by `speak(sentence, index)`, half a second apart, until
    `seconds` of audio."""
    parts, total, index = [], 0, 0
    gap = np.zeros(pcm.SAMPLE_RATE // 2, dtype=np.int16)
    while total < seconds * pcm.SAMPLE_RATE:
        spoken = speak(sentences[index % len(sentences)], index)
        parts += [spoken, gap]
        total += spoken.size + gap.size
        index += 1
    return np.concatenate(parts)[: int(seconds * pcm.SAMPLE_RATE)]


def false_accept_audio(loaded: LoadedModels, phrase: str, quick: bool) -> dict[str, np.ndarray]:
    """Minutes of audio in which nobody says the wake phrase, by kind."""
    minutes = QUICK_FALSE_ACCEPT_MINUTES if quick else FALSE_ACCEPT_MINUTES
    sentences = _reading_text(phrase)
    voices = [(v, s, p) for v in ESPEAK_VOICES for s in ESPEAK_SPEEDS for p in ESPEAK_PITCHES]

    def espeak(sentence: str, index: int) -> np.ndarray:
        return espeak_speech(sentence, *voices[index % len(voices)])

    from ..tts import Synthesizer, spoken_samples

    synthesizers = [Synthesizer(replace(loaded.config.tts, length_scale=length, noise_scale=noise),
                                loaded.paths.voice) for length, noise in PIPER_STYLES]
    try:
        def piper(sentence: str, index: int) -> np.ndarray:
            synthesizer = synthesizers[index % len(synthesizers)]
            return spoken_samples(synthesizer, sentence, pcm.SAMPLE_RATE)

        # piper starts further into the text, so the two do not read the same sentences.
        offset = len(sentences) // 2
        audio = {
            "espeak": _read_aloud(sentences, minutes["espeak"] * 60, espeak),
            "piper": _read_aloud(sentences[offset:] + sentences[:offset], minutes["piper"] * 60, piper),
        }
    finally:
        for synthesizer in synthesizers:
            synthesizer.close()
    quiet = int(minutes["quiet"] * 60 * pcm.SAMPLE_RATE)
    audio["quiet"] = room_noise(quiet, seed=3)
    noise = int(minutes["noise"] * 60 * pcm.SAMPLE_RATE)
    # Pink noise at a loud room's level (about -30 dBFS), over the quiet room.
    audio["noise"] = pcm.float_to_int16(pink_noise(noise, seed=4) * 1000.0 + room_noise(noise, seed=5))
    # Speech in a quiet room, as a microphone hears it.
    for kind in ("espeak", "piper"):
        audio[kind] = pcm.float_to_int16(audio[kind].astype(np.float32) + room_noise(audio[kind].size, seed=6))
    return audio


def _detector(config: Config, engine: str):
    from ..hearing.wake import WakeDetector

    # The configured threshold belongs to the configured engine; the other keeps its model's.
    threshold = config.wake.threshold if engine == config.wake.engine else 0.0
    return WakeDetector(replace(config.wake, engine=engine, threshold=threshold))


def _detections(detector, samples: np.ndarray, frame_ms: int) -> int:
    data = samples.astype("<i2").tobytes()
    size = pcm.frame_bytes(frame_ms)
    return sum(detector.process(data[offset : offset + size]) is not None
               for offset in range(0, len(data), size))


def bench_wake_accuracy(loaded: LoadedModels, report: Report, options: BenchOptions) -> None:
    config = loaded.config
    phrase = wake_phrase_text(config)
    frame_ms = config.audio.frame_ms
    phrases = spoken_phrases(loaded, phrase, options.quick)
    conditions: dict[str, list[tuple[str, np.ndarray]]] = {"clean": [], **{f"snr{snr}": [] for snr in SNRS_DB}}
    for index, spoken in enumerate(phrases):
        conditions["clean"].append((spoken.voice, with_noise(spoken.samples, None, seed=index)))
        for snr in SNRS_DB:
            conditions[f"snr{snr}"].append((spoken.voice, with_noise(spoken.samples, snr, seed=index)))
    other = false_accept_audio(loaded, phrase, options.quick)
    hours = sum(samples.size for samples in other.values()) / pcm.SAMPLE_RATE / 3600
    report.add("wake_accuracy.phrase", phrase)
    report.add("wake_accuracy.voices", len(phrases))
    report.add("wake_accuracy.false_accept_hours", hours)
    for kind, samples in other.items():
        report.add(f"wake_accuracy.false_accept_{kind}_minutes", samples.size / pcm.SAMPLE_RATE / 60)
    for engine in ENGINES:
        detector = _detector(config, engine)
        for condition, clips in conditions.items():
            heard, missed = 0, []
            for voice, samples in clips:
                detector.reset()
                if _detections(detector, samples, frame_ms):
                    heard += 1
                else:
                    missed.append(voice)
            recall = heard / len(clips)
            report.add(f"wake_accuracy.{engine}.recall_{condition}", recall)
            if condition == "clean" and missed:
                report.add(f"wake_accuracy.{engine}.missed_clean.text", "; ".join(missed))
            if engine == config.wake.engine:
                report.add(f"wake_accuracy.recall_{condition}", recall)
        detector.reset()
        accepts = {kind: _detections(detector, samples, frame_ms) for kind, samples in other.items()}
        total = sum(accepts.values())
        report.add(f"wake_accuracy.{engine}.false_accepts", total)
        for kind, count in accepts.items():
            if count:
                report.add(f"wake_accuracy.{engine}.false_accepts_{kind}", count)
        report.add(f"wake_accuracy.{engine}.false_accepts_per_hour", total / hours)
        if engine == config.wake.engine:
            report.add("wake_accuracy.false_accepts_per_hour", total / hours)
    report.add("wake_accuracy.engine", config.wake.engine)
