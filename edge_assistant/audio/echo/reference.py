"""What the speaker played, on the microphone's timeline: the reference the canceller takes out."""

from __future__ import annotations

import collections
import threading
import time
from typing import Any, Callable

import numpy as np

from ..capture_clock import CaptureClock
from ..pcm import SAMPLE_RATE, as_int16, stream_resampler

# How much of what was played is kept: the canceller may be this far behind the speaker (the
# microphone's queue on a loaded machine); older blocks are dropped even if it never read them
# (a microphone that is gone while the speaker plays on).
REFERENCE_KEEP_S = 60.0


class PlaybackReference:
    """What the speaker played, at 16 kHz, on the microphone's timeline.

    `tap()` is a sink tap (it runs in the sink's writing thread); `read()` is for the canceller.
    """

    def __init__(self, clock: CaptureClock, now: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._now = now
        self._lock = threading.Lock()
        # (first sample index, samples), in order and never overlapping.
        self._blocks: collections.deque[tuple[int, np.ndarray]] = collections.deque()
        self._end: int | None = None  # where the next contiguous block goes
        self._resampler: Any = None
        self._resampler_rate = 0

    @property
    def end(self) -> int | None:
        """The sample index just after the last block handed to the device."""
        return self._end

    def tap(self, block: np.ndarray, rate: int) -> None:
        handed = self._now()
        index = self.clock.index_at(handed)
        if index is None:
            return  # nobody listens yet
        with self._lock:
            contiguous = self._end is not None and self._end >= index
            samples = self._to_16k(as_int16(block), rate, contiguous)
            # Still playing the previous block: this one follows it without a gap.
            start = self._end if contiguous else index
            if samples.size:  # a resampler may hold back the first few
                self._blocks.append((start, samples))
            self._end = start + samples.size
            oldest = self._end - int(REFERENCE_KEEP_S * SAMPLE_RATE)
            while self._blocks and self._blocks[0][0] + self._blocks[0][1].size <= oldest:
                self._blocks.popleft()

    def restart(self) -> None:
        """The microphone's timeline started again: what was placed on the old one is void."""
        with self._lock:
            self._blocks.clear()
            self._end = None

    def _to_16k(self, block: np.ndarray, rate: int, contiguous: bool) -> np.ndarray:
        if rate == SAMPLE_RATE:
            return block
        if not contiguous or self._resampler is None or self._resampler_rate != rate:
            self._resampler = stream_resampler(rate, SAMPLE_RATE)
            self._resampler_rate = rate
        resampled = self._resampler.resample_chunk(block.astype(np.float32))
        return np.clip(np.rint(resampled), -32768, 32767).astype(np.int16)

    def forget_before(self, index: int) -> None:
        """Drop what played wholly before `index`: the canceller reads forwards only."""
        with self._lock:
            while self._blocks and self._blocks[0][0] + self._blocks[0][1].size <= index:
                self._blocks.popleft()

    def read(self, start: int, count: int) -> np.ndarray:
        """Samples [start, start + count) as played; silence where nothing was."""
        out = np.zeros(count, dtype=np.int16)
        end = start + count
        with self._lock:
            for first, samples in self._blocks:
                if first >= end:
                    break
                lo, hi = max(start, first), min(end, first + samples.size)
                if lo < hi:
                    out[lo - start : hi - start] = samples[lo - first : hi - first]
        return out
