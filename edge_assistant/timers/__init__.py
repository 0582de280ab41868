"""Timers and alarms: set by voice or MQTT, kept across restarts, ringing until stopped.

- `TimerScheduler` (scheduler.py) runs them on the event loop and saves them (store.py);
- `Ringer` (ringer.py) decides when a finished one rings again;
- `Clock` (clock.py) is the time they run by, a fake one in tests.
"""

from .clock import SYSTEM_CLOCK, Clock, SystemClock
from .ringer import Ringer
from .scheduler import (
    TIMER_EVENT_TYPES,
    InvalidTimerError,
    TimerError,
    TimerLimitError,
    TimerNotFoundError,
    TimerScheduler,
)
from .store import STATE_FILE, TimerStore
from .timer import Timer

__all__ = [
    "SYSTEM_CLOCK", "Clock", "SystemClock", "Ringer", "TIMER_EVENT_TYPES", "InvalidTimerError",
    "TimerError", "TimerLimitError", "TimerNotFoundError", "TimerScheduler", "STATE_FILE",
    "TimerStore", "Timer",
]
