"""The one audio format past the inputs, its framing, and conversions between sample formats.

The stage modules (wake, vad, listener, stt) import this for `SAMPLE_RATE` and `SAMPLE_WIDTH`,
so it loads nothing heavier than numpy: soxr is imported where resampling happens.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import soxr

SAMPLE_RATE = 16000
SAMPLE_WIDTH = 2
FRAME_MS_CHOICES = (10, 20, 30)


def frame_samples(frame_ms: int) -> int:
    if frame_ms not in FRAME_MS_CHOICES:
        raise ValueError(f"frame_ms must be one of {FRAME_MS_CHOICES}, got {frame_ms!r}")
    return SAMPLE_RATE * frame_ms // 1000


def frame_bytes(frame_ms: int) -> int:
    return frame_samples(frame_ms) * SAMPLE_WIDTH


def as_int16(samples: np.ndarray | bytes | bytearray | memoryview) -> np.ndarray:
    """Mono int16 samples from int16 arrays, s16le bytes or float arrays in [-1, 1]."""
    if isinstance(samples, (bytes, bytearray, memoryview)):
        data = bytes(samples)
        if len(data) % SAMPLE_WIDTH:
            raise ValueError("s16le audio must have an even number of bytes")
        return np.frombuffer(data, dtype="<i2").astype(np.int16)
    array = np.asarray(samples)
    if array.ndim != 1:
        raise ValueError(f"expected mono samples (1-D), got shape {array.shape}")
    if array.dtype == np.int16:
        return array
    if np.issubdtype(array.dtype, np.floating):
        return float_to_int16(array * 32768.0)
    raise ValueError(f"expected int16 or float samples, got {array.dtype}")


def float_to_int16(scaled: np.ndarray) -> np.ndarray:
    """Float samples already on the int16 scale -> int16, rounded and clipped."""
    return np.clip(np.rint(scaled), -32768, 32767).astype(np.int16)


def resample(samples: np.ndarray, from_rate: int, to_rate: int) -> np.ndarray:
    """Resample a whole int16 signal (high quality); returned unchanged when the rates match."""
    samples = as_int16(samples)
    if from_rate == to_rate or samples.size == 0:
        return samples
    import soxr

    converted = soxr.resample(samples.astype(np.float32), from_rate, to_rate, quality="HQ")
    return float_to_int16(converted)


def stream_resampler(from_rate: int, to_rate: int) -> "soxr.ResampleStream":
    """A resampler for a signal that arrives in blocks: float32 mono in, float32 mono out."""
    import soxr

    return soxr.ResampleStream(from_rate, to_rate, 1, dtype="float32", quality="HQ")


def apply_volume(samples: np.ndarray, volume: float) -> np.ndarray:
    if volume == 1.0:
        return samples
    return float_to_int16(samples.astype(np.float32) * volume)


def check_volume(volume: float) -> float:
    volume = float(volume)
    if not (math.isfinite(volume) and 0.0 <= volume <= 2.0):
        raise ValueError(f"volume must be between 0.0 and 2.0, got {volume!r}")
    return volume
