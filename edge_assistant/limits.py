"""Rate limits that keep a flood (of bad input, of one recurring failure) from turning into a
flood of log lines or error replies."""

from __future__ import annotations

import logging
import threading
import time
from typing import Any, Callable


class LogLimiter:
    """Logs each kind of problem at most once per interval, then says how many were skipped."""

    def __init__(
        self, logger: logging.Logger, interval_s: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._logger = logger
        self._interval_s = interval_s
        self._clock = clock
        self._lock = threading.Lock()
        self._last: dict[str, float] = {}
        self._skipped: dict[str, int] = {}

    def log(self, level: int, key: str, message: str, *args: Any, exc_info: Any = None) -> None:
        now = self._clock()
        with self._lock:
            last = self._last.get(key)
            if last is not None and now - last < self._interval_s:
                self._skipped[key] = self._skipped.get(key, 0) + 1
                return
            self._last[key] = now
            skipped = self._skipped.pop(key, 0)
        if skipped:
            message += " (%d similar messages suppressed)"
            args += (skipped,)
        # stacklevel: the record names the caller, not this method.
        self._logger.log(level, message, *args, exc_info=exc_info, stacklevel=2)


class TokenBucket:
    """At most `rate` takes a second on average, `burst` at once."""

    def __init__(self, rate: float, burst: int, clock: Callable[[], float] = time.monotonic) -> None:
        self._rate = rate
        self._burst = float(burst)
        self._tokens = float(burst)
        self._clock = clock
        self._stamp = clock()
        self._lock = threading.Lock()

    def take(self) -> bool:
        with self._lock:
            now = self._clock()
            self._tokens = min(self._burst, self._tokens + (now - self._stamp) * self._rate)
            self._stamp = now
            if self._tokens < 1.0:
                return False
            self._tokens -= 1.0
            return True
