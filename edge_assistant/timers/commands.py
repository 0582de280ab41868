"""Timers over MQTT: the ``cmd/timer`` payload read into a typed command, and the retained list.

Payload (JSON object; ``id`` stays the request id echoed in events, as for every command, so a
timer is named by ``timer_id``; unknown keys are ignored):

- ``{"action": "start", "seconds": 90, "name": "pasta"}`` (name optional)
- ``{"action": "alarm", "at": "07:30", "name": "work"}``: the next 07:30 in local time, or an
  ISO 8601 date and time with its UTC offset (``2027-01-16T07:30:00+01:00``)
- ``{"action": "cancel", "timer_id": "..."}`` or ``"name"``; ``{"action": "cancel", "all": true}``
- ``{"action": "add", "timer_id" or "name", "seconds": 120}`` (negative takes time off)
- ``{"action": "pause" or "resume", "timer_id" or "name"}``
- ``{"action": "stop"}``: stop ringing (one with ``timer_id`` or ``name``, else all)
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from datetime import datetime, time, tzinfo
from typing import Any, Mapping

from .intents import alarm_time
from .scheduler import AmbiguousTimerError, TimerNotFoundError, TimerScheduler
from .timer import MAX_DURATION_S, MAX_NAME_CHARS, Timer

TIMER_ACTIONS = ("start", "alarm", "cancel", "add", "pause", "resume", "stop")
_TARGETED = ("cancel", "add", "pause", "resume")


class TimerCommandError(ValueError):
    """The payload is not a timer command; the message says why."""

    code = "bad_request"


@dataclass(frozen=True)
class TimerCommand:
    action: str  # one of TIMER_ACTIONS
    seconds: float | None = None  # start, add
    name: str | None = None
    timer_id: str | None = None
    # alarm: a time of day (the next one, local) or an aware date and time.
    at: time | datetime | None = None
    # cancel: every timer and alarm.
    all: bool = False


def parse_timer_command(payload: Mapping[str, Any] | str | bytes) -> TimerCommand:
    """Read a ``cmd/timer`` payload. Raises TimerCommandError with a clear message."""
    body = _json_object(payload) if isinstance(payload, (str, bytes)) else payload
    if not isinstance(body, Mapping):
        raise TimerCommandError("a timer command must be a JSON object")
    action = body.get("action")
    if action not in TIMER_ACTIONS:
        raise TimerCommandError(f"'action' must be one of {', '.join(TIMER_ACTIONS)}, got {action!r}")
    name = _optional_text(body, "name", MAX_NAME_CHARS)
    timer_id = _optional_text(body, "timer_id", 128)
    everything = body.get("all", False)
    if not isinstance(everything, bool) or (everything and action != "cancel"):
        raise TimerCommandError("'all' is true or false, and only for cancel")
    if action in _TARGETED and not everything and (name is None) == (timer_id is None):
        raise TimerCommandError(f"{action} needs either 'timer_id' or 'name'")
    if action == "stop" and name is not None and timer_id is not None:
        raise TimerCommandError("stop takes 'timer_id' or 'name', not both")
    seconds = None
    if action in ("start", "add"):
        seconds = _seconds(body.get("seconds"), allow_negative=action == "add")
    at = _alarm_at(body.get("at")) if action == "alarm" else None
    return TimerCommand(action, seconds, name, timer_id, at, everything)


def run_timer_command(scheduler: TimerScheduler, command: TimerCommand,
                      tz: tzinfo | None = None, *, request_id: str | None = None) -> list[Timer]:
    """Do it, on the scheduler's event loop; the timers started, changed, cancelled or
    stopped. The timer events it causes carry `request_id`. Raises TimerError (its `code` for
    the error event)."""
    action = command.action
    if action == "start":
        return [scheduler.start_timer(command.seconds or 0.0, command.name, request_id=request_id)]
    if action == "alarm":
        at = command.at
        if isinstance(at, time):
            when = alarm_time(scheduler.now(), at.hour, at.minute, tz=tz)
        else:
            when = at.timestamp() if at is not None else math.nan
        return [scheduler.set_alarm(when, command.name, request_id=request_id)]
    if action == "stop":
        if command.timer_id is None and command.name is None:
            return scheduler.stop_ringing()
        ringing = [t for t in scheduler.ringing
                   if t.id == command.timer_id or (command.name and t.matches(command.name))]
        return [stopped for t in ringing for stopped in scheduler.stop_ringing(t.id)]
    if action == "cancel" and command.all:
        return scheduler.cancel_all(kind=None, request_id=request_id)
    timer_id = _target(scheduler, command)
    if action == "cancel":
        return [scheduler.cancel(timer_id, request_id=request_id)]
    if action == "add":
        return [scheduler.add_time(timer_id, command.seconds or 0.0, request_id=request_id)]
    if action == "pause":
        return [scheduler.pause(timer_id, request_id=request_id)]
    return [scheduler.resume(timer_id, request_id=request_id)]


def _target(scheduler: TimerScheduler, command: TimerCommand) -> str:
    if command.timer_id is not None:
        return command.timer_id
    found = scheduler.find(kind=None, name=command.name)
    if not found:
        raise TimerNotFoundError(f"no timer or alarm is named {command.name!r}")
    if len(found) > 1:
        raise AmbiguousTimerError(f"{len(found)} timers are named {command.name!r}; use 'timer_id'")
    return found[0].id


def _json_object(payload: str | bytes) -> Any:
    try:
        return json.loads(payload)
    except (ValueError, RecursionError):
        raise TimerCommandError("a timer command must be a JSON object") from None


def _optional_text(body: Mapping[str, Any], key: str, limit: int) -> str | None:
    value = body.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or not 0 < len(value.strip()) <= limit:
        raise TimerCommandError(f"'{key}' must be a string of 1 to {limit} characters")
    return value.strip()


def _seconds(value: Any, allow_negative: bool) -> float:
    valid = (isinstance(value, (int, float)) and not isinstance(value, bool)
             and math.isfinite(value) and 0 < (abs(value) if allow_negative else value) <= MAX_DURATION_S)
    if not valid:
        sign = "non-zero " if allow_negative else ""
        raise TimerCommandError(
            f"'seconds' must be a {sign}number of seconds up to {MAX_DURATION_S:g} (a week), "
            f"got {value!r}")
    return float(value)


def _alarm_at(value: Any) -> time | datetime:
    if isinstance(value, str):
        text = value.strip()
        clock = re.fullmatch(r"(\d{1,2}):(\d{2})", text)
        try:
            if clock:
                return time(int(clock[1]), int(clock[2]))
            at = datetime.fromisoformat(text)
        except ValueError:
            pass
        else:
            if at.tzinfo is not None:
                return at
    raise TimerCommandError(
        f"'at' must be a time of day (\"07:30\") or an ISO 8601 date and time with its UTC "
        f"offset, got {value!r}")
