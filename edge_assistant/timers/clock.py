"""The time a scheduler lives by, injectable so that tests run hours of timers in milliseconds.

Wall time (epoch seconds) is what people and the state file talk in: "ends at 18:05", an alarm
at 7:00. Monotonic time measures how long things last (ringing) and notices when the wall clock
is set, as it is by NTP shortly after a Raspberry Pi without a real-time clock boots.
"""

from __future__ import annotations

import asyncio
import time
from typing import Protocol


class Clock(Protocol):
    def time(self) -> float:
        """Wall time, seconds since the epoch."""

    def monotonic(self) -> float:
        """Seconds from an arbitrary origin, never set back."""

    async def sleep(self, seconds: float) -> None:
        """Return once `seconds` of monotonic time have passed."""


class SystemClock:
    def time(self) -> float:
        return time.time()

    def monotonic(self) -> float:
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds))


SYSTEM_CLOCK = SystemClock()
