"""The delay between what the speaker played and what the microphone heard, measured (GCC-PHAT)."""

from __future__ import annotations

import collections
from dataclasses import dataclass

import numpy as np

from ..pcm import SAMPLE_RATE

# Played samples at least this loud (about -50 dBFS) are a sound the microphone may hear.
SOUNDING_LEVEL = 100


@dataclass(frozen=True)
class DelayEstimate:
    delay_s: float
    # Peak of the correlation over the spread of the rest: above ~8 it is the echo.
    confidence: float


class EchoDelayEstimator:
    """Speaker-to-microphone delay, from what was played and what was heard (GCC-PHAT).

    Feed it both signals on the same timeline (`add`); every `interval_s` of audio in which
    the speaker played, it cross-correlates the last `window_s` and, when the peak stands out,
    reports the lag of the direct path. A new delay is adopted once `AGREEING` estimates in a
    row agree within `tolerance_s` and it differs from the one in use by more than that.
    """

    MIN_CONFIDENCE = 8.0
    # The earliest lag at least this share of the strongest peak is taken for the direct path.
    DIRECT_PATH_SHARE = 0.5
    # Estimates in a row that must agree before a delay is adopted.
    AGREEING = 3

    def __init__(self, max_delay_s: float = 0.5, window_s: float = 2.0, interval_s: float = 1.0,
                 tolerance_s: float = 0.004) -> None:
        self.max_lag = int(max_delay_s * SAMPLE_RATE)
        self.window = int(window_s * SAMPLE_RATE) + self.max_lag
        self.interval = int(interval_s * SAMPLE_RATE)
        self.tolerance = int(tolerance_s * SAMPLE_RATE)
        # Rings of the last `window` samples; `_written` is where the next sample goes.
        self._near = np.zeros(self.window, dtype=np.float32)
        self._far = np.zeros(self.window, dtype=np.float32)
        self._written = 0
        self._playing = 0  # played samples since the last estimate
        self._recent: collections.deque[int] = collections.deque(maxlen=self.AGREEING)
        self.delay: int | None = None  # adopted, in samples
        self.last: DelayEstimate | None = None

    def add(self, near: np.ndarray, far: np.ndarray) -> bool:
        """Both signals for the same samples; True when the adopted delay changed."""
        count = near.size
        positions = (self._written + np.arange(count)) % self.window
        self._near[positions] = near
        self._far[positions] = far
        self._written = (self._written + count) % self.window
        if np.max(np.abs(far), initial=0) >= SOUNDING_LEVEL:
            self._playing += count
        if self._playing < self.interval:
            return False
        self._playing = 0
        estimate = self.estimate()
        if estimate is None:
            return False
        lag = int(round(estimate.delay_s * SAMPLE_RATE))
        self._recent.append(lag)
        recent = list(self._recent)
        agreed = len(recent) == self.AGREEING and max(recent) - min(recent) <= self.tolerance
        if agreed and (self.delay is None or abs(lag - self.delay) > self.tolerance):
            self.delay = int(np.median(recent))
            return True
        return False

    def estimate(self) -> DelayEstimate | None:
        """The delay in the current window, or None when no peak stands out."""
        size = 1 << int(np.ceil(np.log2(2 * self.window)))
        # Oldest first: the ring starts where the next sample would go.
        near = np.fft.rfft(np.roll(self._near, -self._written), size)
        far = np.fft.rfft(np.roll(self._far, -self._written), size)
        cross = near * np.conj(far)
        # PHAT: every frequency counts by its phase alone, so the lag of the direct path stands
        # out instead of a broad hump of the voice's low frequencies. Bands the speaker barely
        # played (below 1/1000 of the strongest) are left out: their phase is noise.
        magnitude = np.abs(cross)
        cross = np.where(magnitude > 1e-3 * magnitude.max(initial=0.0), cross / (magnitude + 1e-12), 0)
        correlation = np.fft.irfft(cross, size)[: self.max_lag + 1]
        strongest = int(np.argmax(correlation))
        spread = float(np.std(correlation))
        if spread <= 0:
            return None
        confidence = float(correlation[strongest]) / spread
        # The direct path arrives first; a reflection may come out stronger, but later.
        peak = int(np.argmax(correlation >= self.DIRECT_PATH_SHARE * correlation[strongest]))
        self.last = DelayEstimate(peak / SAMPLE_RATE, confidence)
        return self.last if confidence >= self.MIN_CONFIDENCE else None
