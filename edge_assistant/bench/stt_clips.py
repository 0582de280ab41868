"""The project's own speech-recognition clips, and their word error rate.

What a voice assistant hears: short questions and home commands, each spoken by several voices,
piper's (the configured voice at three speeds) and espeak-ng's (robotic formant voices, far from
any recorded speech), as a microphone in a quiet room hears them. The clips are made when they
are needed (bench, tests) from the texts and voices defined here; none is stored.

An engine is given each clip as the listener gives it an utterance: from a little before the
speech to the endpointer's trailing frames after it, so that the last word is whole.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Iterable

import numpy as np

from ..audio import pcm
from ..config import Config
from .clips import espeak_speech, in_room

QUESTIONS = (
    "What is the capital of France?",
    "How far away is the moon?",
    "What time is it in Tokyo?",
    "Who wrote Romeo and Juliet?",
    "How many minutes are in a day?",
    "What is the weather like tomorrow?",
    "Can you tell me a short joke?",
    "How do I boil an egg?",
)
COMMANDS = (
    "Turn on the kitchen lights.",
    "Turn off the bedroom lamp.",
    "Set the thermostat to twenty one degrees.",
    "Set a timer for ten minutes.",
    "Open the garage door.",
    "Dim the living room lights to fifty percent.",
    "Play some relaxing music in the living room.",
    "Remind me to call my mother tomorrow morning.",
)


@dataclass(frozen=True)
class Voice:
    family: str  # "piper" or "espeak"
    name: str  # e.g. "piper length 1.2", "espeak en-gb 160 wpm"
    length_scale: float = 1.0  # piper: 0.85 is faster, 1.2 slower
    espeak_voice: str = ""
    speed: int = 160


VOICES = (
    Voice("piper", "piper length 1.0"),
    Voice("piper", "piper length 0.85", length_scale=0.85),
    Voice("piper", "piper length 1.2", length_scale=1.2),
    Voice("espeak", "espeak en-us 160 wpm", espeak_voice="en-us"),
    Voice("espeak", "espeak en-gb 160 wpm", espeak_voice="en-gb"),
    Voice("espeak", "espeak en-us 130 wpm", espeak_voice="en-us", speed=130),
)
# The endpointer's pre-roll and what follows the speech until it closes the utterance.
LEAD_S = 0.3
TRAIL_S = 0.25


@dataclass(frozen=True)
class SttClip:
    text: str
    kind: str  # "question" or "command"
    voice: Voice
    samples: np.ndarray  # 16 kHz int16: the utterance as the listener hands it over


def clip_texts(quick: bool = False) -> list[tuple[str, str]]:
    """(text, kind) pairs; a few of each when `quick`."""
    count = 3 if quick else len(QUESTIONS)
    return ([(text, "question") for text in QUESTIONS[:count]]
            + [(text, "command") for text in COMMANDS[:count]])


# One piper and one espeak-ng voice, for quick runs.
QUICK_VOICES = (VOICES[0], VOICES[3])


def make_clips(config: Config, voice_path: Path, quick: bool = False,
               voices: Iterable[Voice] | None = None) -> list[SttClip]:
    """Every text spoken by every voice (espeak-ng must be installed for its voices)."""
    from ..tts import Synthesizer, spoken_samples

    if voices is None:
        voices = QUICK_VOICES if quick else VOICES
    clips = []
    for voice in voices:
        synthesizer = None
        if voice.family == "piper":
            # No sampling noise: the same clip every run, so transcripts are comparable.
            tts = replace(config.tts, length_scale=voice.length_scale, noise_scale=0.0, noise_w_scale=0.0)
            synthesizer = Synthesizer(tts, voice_path)
        try:
            for text, kind in clip_texts(quick):
                if synthesizer is not None:
                    speech = spoken_samples(synthesizer, text, pcm.SAMPLE_RATE)
                else:
                    speech = espeak_speech(text, voice.espeak_voice, voice.speed)
                clips.append(SttClip(text, kind, voice, utterance(speech)))
        finally:
            if synthesizer is not None:
                synthesizer.close()
    return clips


def utterance(speech: np.ndarray) -> np.ndarray:
    """The speech in a quiet room, cut where the listener would cut it."""
    clip = in_room(speech, lead_s=1.0, tail_s=1.0)
    start = max(0, clip.speech_start - int(LEAD_S * pcm.SAMPLE_RATE))
    return clip.samples[start : clip.speech_end + int(TRAIL_S * pcm.SAMPLE_RATE)]


# --- word error rate ------------------------------------------------------------------------------

_NUMBERS = {"21": "twenty one", "10": "ten", "50": "fifty"}
# Spellings that differ, not words: Moonshine writes the older British ones.
_SPELLINGS = (("to-morrow", "tomorrow"), ("per cent", "percent"))


def normalize(text: str) -> list[str]:
    """Lower-case words without punctuation; digits as the words the texts spell them with, and
    one spelling for words that have two."""
    text = unicodedata.normalize("NFKC", text).lower()
    for variant, spelling in _SPELLINGS:
        text = text.replace(variant, spelling)
    text = re.sub(r"(\d+)\s*%", r"\1 percent", text)
    words = re.sub(r"[^\w\s']", " ", text).split()
    return [part for word in words for part in _NUMBERS.get(word, word).split()]


def edit_distance(reference: list, hypothesis: list) -> int:
    row = list(range(len(hypothesis) + 1))
    for i, ref in enumerate(reference, 1):
        previous, row[0] = row[0], i
        for j, hyp in enumerate(hypothesis, 1):
            previous, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, previous + (ref != hyp))
    return row[-1]


def word_error_rate(reference: str, hypothesis: str) -> float:
    words = normalize(reference)
    return edit_distance(words, normalize(hypothesis)) / max(1, len(words))


def corpus_wer(pairs: Iterable[tuple[str, str]]) -> float:
    """Word errors over reference words, all (reference, hypothesis) pairs together."""
    errors = words = 0
    for reference, hypothesis in pairs:
        expected = normalize(reference)
        errors += edit_distance(expected, normalize(hypothesis))
        words += len(expected)
    return errors / max(1, words)
