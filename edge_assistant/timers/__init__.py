"""Timers and alarms: set by voice or MQTT, kept across restarts, ringing until stopped.

- `TimerScheduler` (scheduler.py) runs them on the event loop and saves them (store.py);
- `Ringer` (ringer.py) decides when a finished one rings again;
- `Clock` (clock.py) is the time they run by, a fake one in tests;
- `TimerIntentHandler` (intents.py) does what a recognized spoken command asks and words the
  reply (replies.py), with the sentences in edge_assistant/data/timer_sentences_en.yaml;
- `parse_timer_command` and `run_timer_command` (commands.py) are the MQTT side; the bridge
  keeps the retained timers list from the timer events.
"""

from .clock import SYSTEM_CLOCK, Clock, SystemClock
from .commands import (
    TIMER_ACTIONS,
    TimerCommand,
    TimerCommandError,
    parse_timer_command,
    run_timer_command,
)
from .intents import (
    HANDLED_INTENTS,
    SENTENCES_PATH,
    TimerIntentHandler,
    TimerReply,
    alarm_time,
    recognize,
    sentence_data,
)
from .replies import finished_announcement, missed_announcement
from .ringer import Ringer
from .scheduler import (
    TIMER_EVENT_TYPES,
    AmbiguousTimerError,
    InvalidTimerError,
    TimerError,
    TimerLimitError,
    TimerNotFoundError,
    TimerScheduler,
)
from .store import STATE_FILE, TimerStore
from .timer import Timer

__all__ = [
    "TIMER_ACTIONS", "TimerCommand", "TimerCommandError", "parse_timer_command",
    "run_timer_command", "AmbiguousTimerError",
    "HANDLED_INTENTS", "SENTENCES_PATH", "TimerIntentHandler", "TimerReply", "alarm_time",
    "recognize", "sentence_data", "finished_announcement", "missed_announcement",
    "SYSTEM_CLOCK", "Clock", "SystemClock", "Ringer", "TIMER_EVENT_TYPES", "InvalidTimerError",
    "TimerError", "TimerLimitError", "TimerNotFoundError", "TimerScheduler", "STATE_FILE",
    "TimerStore", "Timer",
]
