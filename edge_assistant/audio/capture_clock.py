"""The microphone's timeline: when each captured sample was heard, in `time.monotonic()`.

A listener or canceller may be seconds behind the microphone on a loaded machine (frames wait
in its queue); what happens in real time (a reply ends, a follow-up window opens) must be put
on the samples captured at that moment, not on the frame being processed.
"""

from __future__ import annotations

import threading

from .pcm import SAMPLE_RATE


class CaptureClock:
    """Maps `time.monotonic()` to the microphone's sample index.

    Frames are observed as they arrive: arrival = capture + some latency, so the smallest
    `arrival - index / rate` seen is the best estimate of when sample 0 was captured. It may
    creep up by `drift` (seconds per second) so that a microphone clock slower than the
    system's is followed. Frames that arrive late because they waited in the microphone's
    queue (a listener behind on a loaded machine) say nothing new; only `restart()` (the
    device was opened again) starts the estimate anew.
    """

    def __init__(self, rate: int = SAMPLE_RATE, drift: float = 2e-4) -> None:
        self.rate = rate
        self.drift = drift
        self._lock = threading.Lock()
        self._origin: float | None = None
        self._last_seen = 0.0

    def observe(self, captured: int, now: float) -> None:
        """`captured` samples have arrived by `now`."""
        candidate = now - captured / self.rate
        with self._lock:
            if self._origin is None:
                self._origin = candidate
            else:
                allowed = self._origin + self.drift * (now - self._last_seen)
                self._origin = min(allowed, candidate)
            self._last_seen = now

    def restart(self) -> None:
        """The device started again: samples from now on were captured after a gap."""
        with self._lock:
            self._origin = None

    def time_at(self, index: int) -> float | None:
        """When microphone sample `index` was captured; None before the first frame."""
        with self._lock:
            return None if self._origin is None else self._origin + index / self.rate

    def index_at(self, moment: float) -> int | None:
        """The microphone sample captured at `moment`; None before the first frame."""
        with self._lock:
            if self._origin is None:
                return None
            return int(round((moment - self._origin) * self.rate))
