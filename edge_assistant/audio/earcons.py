"""Earcons: the short sounds that say "I am listening", "that failed", "listen to this" and
"your timer is done"."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .pcm import SAMPLE_RATE, float_to_int16
from .wav import read_wav


@dataclass(frozen=True)
class Sound:
    samples: np.ndarray
    sample_rate: int


def tones(
    frequencies: list[tuple[float, float]], harmonics: int = 1, amplitude: float = 0.3
) -> np.ndarray:
    """(frequency Hz, seconds) tones one after another at 16 kHz; 0 Hz is a pause. `harmonics`
    odd harmonics make a buzz of a tone; `amplitude` is the peak, as a fraction of full scale."""
    parts = []
    for frequency, seconds in frequencies:
        t = np.arange(int(SAMPLE_RATE * seconds)) / SAMPLE_RATE
        wave = sum(np.sin(2 * np.pi * frequency * k * t) / k for k in range(1, 2 * harmonics, 2))
        # Short fades: a tone that starts or stops abruptly clicks.
        fade = np.minimum(1.0, np.minimum(t, t[::-1]) / 0.005)
        parts.append(wave * fade)
    signal = np.concatenate(parts)
    signal *= amplitude / max(1e-9, float(np.max(np.abs(signal))))
    return float_to_int16(signal * 32767.0)


def earcon(kind: str, path: str | Path = "") -> Sound:
    """The "wake" (rising two-tone), "error" (low buzz), "announce" (a three-note chime) or "ring"
    (a bright repeated beep) sound, or the WAV at `path` instead."""
    if path:
        return Sound(read_wav(path), SAMPLE_RATE)
    if kind == "wake":
        # Short and above most of speech: people talk on over it, and a microphone without
        # echo cancellation hears it with their first words (0.2 s of 660/880 Hz made Whisper
        # hear "set a timer" as "set the timer").
        return Sound(tones([(880.0, 0.05), (1320.0, 0.07)]), SAMPLE_RATE)
    if kind == "error":
        return Sound(tones([(180.0, 0.12), (0.0, 0.06), (180.0, 0.2)], harmonics=4), SAMPLE_RATE)
    if kind == "announce":
        return Sound(tones([(523.3, 0.12), (659.3, 0.12), (784.0, 0.22)], amplitude=0.25), SAMPLE_RATE)
    if kind == "ring":
        return Sound(tones([(1046.5, 0.1), (0.0, 0.06)] * 3 + [(0.0, 0.3)], amplitude=0.3), SAMPLE_RATE)
    raise ValueError(f"unknown earcon {kind!r} (known: wake, error, announce, ring)")
