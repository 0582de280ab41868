"""Spoken timer and alarm commands: a recognized intent and its slots in, an action and the
sentence to say out.

Sentences are matched by hassil: Home Assistant's timer intents (home-assistant-intents,
HassStartTimer ... HassUnpauseTimer) and ours in `SENTENCES_PATH` (alarms, stopping a ring, and
a few common phrasings Home Assistant lacks). A recognizer that already loads Home Assistant's
intents merges `sentence_data()` into them (``hassil.merge_dict``) and routes the intents in
`HANDLED_INTENTS` to `TimerIntentHandler.handle_intent`; `recognize()` does all of it for
timers alone.

Which timer a command means, when it does not say (the rule):
- "cancel/stop the timer" stops the timers that are ringing, if any; otherwise, like every
  other command, it acts on the one timer that fits: the only timer with that name or duration,
  or the only timer at all (for pause, the only running one; for resume, the only paused one);
- with several that fit, nothing changes and the reply asks which one (``follow_up``);
- "how much time is left" reports on all of them (Home Assistant's wording: the soonest first);
- alarms follow the same rule, a time ("cancel the 7 AM alarm") picking among them.
A time of day without AM or PM is read on a 24-hour clock ("wake me up at 7" is 07:00), the
next time it comes in local time; "tomorrow" means the next day even if the time is still to
come today.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, tzinfo
from pathlib import Path
from typing import Any, Callable, Mapping

import hassil
import home_assistant_intents
import yaml

from ..number_words import spoken_number
from .replies import (
    alarm_status,
    clock_phrase,
    home_assistant_error,
    home_assistant_response,
    which_one_question,
)
from .scheduler import TimerError, TimerLimitError, TimerScheduler
from .timer import Timer

SENTENCES_PATH = Path(__file__).resolve().parent.parent / "data" / "timer_sentences_en.yaml"
LANGUAGE = "en"
HOME_ASSISTANT_INTENTS = (
    "HassStartTimer", "HassCancelTimer", "HassCancelAllTimers", "HassTimerStatus",
    "HassIncreaseTimer", "HassDecreaseTimer", "HassPauseTimer", "HassUnpauseTimer",
)
OWN_INTENTS = ("EdgeSetAlarm", "EdgeCancelAlarm", "EdgeAlarmStatus", "EdgeStopRinging")
HANDLED_INTENTS = frozenset(HOME_ASSISTANT_INTENTS + OWN_INTENTS)


@dataclass(frozen=True)
class TimerReply:
    text: str
    ok: bool = True
    # Why not: timer_not_found, multiple_timers_matched, timer_limit, timer_invalid,
    # nothing_ringing.
    code: str | None = None
    # The timers and alarms it started, changed, cancelled, stopped or reported on.
    timers: tuple[Timer, ...] = ()
    # The reply is a question ("Which timer?"): listen for the answer without the wake word.
    follow_up: bool = False


def sentence_data() -> dict[str, Any]:
    """Our sentences as a hassil intents dict (a new one each call: merging changes it)."""
    with SENTENCES_PATH.open(encoding="utf-8") as file:
        return yaml.safe_load(file)


@functools.cache
def timer_intents() -> hassil.Intents:
    """Home Assistant's timer intents and ours, alone."""
    data = home_assistant_intents.get_intents(LANGUAGE)
    data["intents"] = {name: data["intents"][name] for name in HOME_ASSISTANT_INTENTS}
    hassil.merge_dict(data, sentence_data())
    return hassil.Intents.from_dict(data)


def recognize(text: str) -> tuple[str, dict[str, Any]] | None:
    """The timer or alarm intent of `text` and its slot values, or None.

    Matching takes milliseconds, and the first call loads the sentences (a fraction of a
    second): call it in a worker thread.
    """
    # Home Assistant's sentences refer to areas; a single device has none to offer.
    result = hassil.recognize(text, timer_intents(),
                              slot_lists={"area": hassil.TextSlotList.from_strings([])})
    if result is None:
        return None
    return result.intent.name, {name: entity.value for name, entity in result.entities.items()}


def alarm_time(now: float, hour: int, minute: int = 0, period: str | None = None,
               day: str | None = None, tz: tzinfo | None = None) -> float:
    """The wall time of the next `hour`:`minute` in `tz` (None: the system's time zone).

    `period` "am"/"pm" reads the hour on a 12-hour clock, without it on a 24-hour one; `day`
    "tomorrow" is the next day, "today" today (ValueError once that time has passed).
    """
    hour = _hour_of_day(hour, period)
    if not (0 <= hour <= 23 and 0 <= minute <= 59):
        raise ValueError(f"{hour}:{minute:02d} is not a time of day")
    today = datetime.fromtimestamp(now, tz).date()

    def at(day_: date) -> float:
        # A naive datetime's timestamp() is in the system's zone, daylight saving included.
        return datetime.combine(day_, time(hour, minute), tzinfo=tz).timestamp()

    if day == "tomorrow":
        return at(today + timedelta(days=1))
    if at(today) > now:
        return at(today)
    if day == "today":
        raise ValueError("that time has passed today")
    return at(today + timedelta(days=1))


class TimerIntentHandler:
    def __init__(self, scheduler: TimerScheduler, tz: tzinfo | None = None) -> None:
        self.scheduler = scheduler
        self.tz = tz
        self._handlers: dict[str, Callable[[dict[str, Any]], TimerReply]] = {
            "HassStartTimer": self._start,
            "HassCancelTimer": self._cancel,
            "HassCancelAllTimers": self._cancel_all,
            "HassTimerStatus": self._status,
            "HassIncreaseTimer": lambda slots: self._add(slots, "HassIncreaseTimer", +1),
            "HassDecreaseTimer": lambda slots: self._add(slots, "HassDecreaseTimer", -1),
            "HassPauseTimer": lambda slots: self._pause_or_resume(slots, "HassPauseTimer"),
            "HassUnpauseTimer": lambda slots: self._pause_or_resume(slots, "HassUnpauseTimer"),
            "EdgeSetAlarm": self._set_alarm,
            "EdgeCancelAlarm": self._cancel_alarm,
            "EdgeAlarmStatus": self._alarm_status,
            "EdgeStopRinging": self._stop_ringing,
        }

    def handle_intent(self, intent_name: str, slots: Mapping[str, Any]) -> TimerReply:
        """Do what the intent asks; slots map names to values (or hassil MatchEntity objects).

        Raises ValueError for an intent not in HANDLED_INTENTS; every other failure is a reply
        with ok False and a code. Call it on the scheduler's event loop (it is quick).
        """
        handler = self._handlers.get(intent_name)
        if handler is None:
            raise ValueError(f"not a timer intent: {intent_name!r}")
        values = {name: getattr(value, "value", value) for name, value in slots.items()}
        try:
            return handler(values)
        except TimerLimitError as error:
            return TimerReply(f"Sorry, I can keep at most {self.scheduler.config.max_timers} "
                              "timers and alarms.", ok=False, code=error.code)
        except TimerError as error:
            return TimerReply(f"Sorry, {error}.", ok=False, code=error.code)

    # -- timers --------------------------------------------------------------------------------

    def _start(self, slots: dict[str, Any]) -> TimerReply:
        command = _text(slots.get("conversation_command"))
        timer = self.scheduler.start_timer(_seconds(slots), _text(slots.get("name")),
                                           command=command)
        key = "command" if command else "default"
        return self._home_assistant_reply("HassStartTimer", slots, [timer], key)

    def _cancel(self, slots: dict[str, Any]) -> TimerReply:
        stopped = self._stop_ringing_matching(slots, "timer")
        if stopped:
            return TimerReply("Timer stopped.", timers=tuple(stopped))
        target = self._target(slots, "timer")
        if isinstance(target, TimerReply):
            return target
        self.scheduler.cancel(target.id)
        return self._home_assistant_reply("HassCancelTimer", slots, [target])

    def _cancel_all(self, slots: dict[str, Any]) -> TimerReply:
        cancelled = self.scheduler.stop_ringing(kind="timer") + self.scheduler.cancel_all("timer")
        return self._home_assistant_reply("HassCancelAllTimers", {"canceled": len(cancelled)},
                                          cancelled)

    def _status(self, slots: dict[str, Any]) -> TimerReply:
        timers = self._matching(slots, "timer")
        now = self.scheduler.now()
        statuses = [_timer_status(timer, now) for timer in timers]
        text = home_assistant_response("HassTimerStatus", "default", {"timers": statuses})
        return TimerReply(text or "", timers=tuple(timers))

    def _add(self, slots: dict[str, Any], intent_name: str, sign: int) -> TimerReply:
        target = self._target(slots, "timer")
        if isinstance(target, TimerReply):
            return target
        updated = self.scheduler.add_time(target.id, sign * _seconds(slots))
        return self._home_assistant_reply(intent_name, slots, [updated])

    def _pause_or_resume(self, slots: dict[str, Any], intent_name: str) -> TimerReply:
        pausing = intent_name == "HassPauseTimer"
        target = self._target(slots, "timer", paused=not pausing)
        if isinstance(target, TimerReply):
            return target
        change = self.scheduler.pause if pausing else self.scheduler.resume
        return self._home_assistant_reply(intent_name, slots, [change(target.id)])

    # -- alarms --------------------------------------------------------------------------------

    def _set_alarm(self, slots: dict[str, Any]) -> TimerReply:
        now = self.scheduler.now()
        try:
            at = alarm_time(now, int(slots["hour"]), int(slots.get("minute") or 0),
                            slots.get("period"), slots.get("day"), self.tz)
        except (KeyError, ValueError) as error:
            return TimerReply(f"Sorry, I can't set an alarm for that time ({error}).", ok=False,
                              code="timer_invalid")
        alarm = self.scheduler.set_alarm(at)
        return TimerReply(f"Alarm set for {clock_phrase(at, now, self.tz)}.", timers=(alarm,))

    def _cancel_alarm(self, slots: dict[str, Any]) -> TimerReply:
        now = self.scheduler.now()
        if slots.get("all"):
            stopped = self.scheduler.stop_ringing(kind="alarm")
            cancelled = stopped + self.scheduler.cancel_all("alarm")
            if not cancelled:
                return TimerReply("You have no alarms.", ok=False, code="timer_not_found")
            count = len(cancelled)
            return TimerReply(f"{count} alarm{'s' if count > 1 else ''} cancelled.",
                              timers=tuple(cancelled))
        if "hour" not in slots:
            stopped = self.scheduler.stop_ringing(kind="alarm")
            if stopped:
                return TimerReply("Alarm stopped.", timers=tuple(stopped))
        alarms = [a for a in self.scheduler.timers("alarm") if self._alarm_fits(a, slots)]
        if not alarms:
            return TimerReply("You have no alarm at that time." if "hour" in slots
                              else "You have no alarms.", ok=False, code="timer_not_found")
        if len(alarms) > 1:
            return self._which_one(alarms)
        alarm = self.scheduler.cancel(alarms[0].id)
        return TimerReply(f"Alarm for {clock_phrase(alarm.ends_at or now, now, self.tz)} "
                          "cancelled.", timers=(alarm,))

    def _alarm_status(self, slots: dict[str, Any]) -> TimerReply:
        alarms = self.scheduler.timers("alarm")
        return TimerReply(alarm_status(alarms, self.scheduler.now(), self.tz), timers=tuple(alarms))

    def _stop_ringing(self, slots: dict[str, Any]) -> TimerReply:
        stopped = self.scheduler.stop_ringing()
        if not stopped:
            return TimerReply("Nothing is ringing.", ok=False, code="nothing_ringing")
        return TimerReply("Stopped.", timers=tuple(stopped))

    def _alarm_fits(self, alarm: Timer, slots: dict[str, Any]) -> bool:
        if "hour" not in slots:
            return True
        local = datetime.fromtimestamp(alarm.ends_at or 0.0, self.tz)
        hour = _hour_of_day(int(slots["hour"]), slots.get("period"))
        # Without AM or PM, "the 7 alarm" is 7:00 or 19:00.
        hours = {hour} if slots.get("period") or hour >= 12 else {hour, hour + 12}
        if local.hour not in hours or local.minute != int(slots.get("minute") or 0):
            return False
        if slots.get("day") == "tomorrow":
            tomorrow = datetime.fromtimestamp(self.scheduler.now(), self.tz).date() + timedelta(days=1)
            return local.date() == tomorrow
        return True

    # -- choosing a timer ----------------------------------------------------------------------

    def _matching(self, slots: dict[str, Any], kind: str) -> list[Timer]:
        return self.scheduler.find(kind=kind, name=_text(slots.get("name")),
                                   duration_s=_seconds(slots, "start_") or None)

    def _target(self, slots: dict[str, Any], kind: str, paused: bool | None = None) -> Timer | TimerReply:
        """The one timer the slots mean, or the reply saying there is none or asking which."""
        timers = self._matching(slots, kind)
        if paused is not None:
            timers = [t for t in timers if t.paused == paused]
        if not timers:
            return TimerReply(home_assistant_error("timer_not_found"), ok=False,
                              code="timer_not_found")
        if len(timers) > 1:
            return self._which_one(timers)
        return timers[0]

    def _which_one(self, timers: list[Timer]) -> TimerReply:
        return TimerReply(which_one_question(timers, self.tz), ok=False,
                          code="multiple_timers_matched", timers=tuple(timers), follow_up=True)

    def _stop_ringing_matching(self, slots: dict[str, Any], kind: str) -> list[Timer]:
        name, duration = _text(slots.get("name")), _seconds(slots, "start_") or None
        ringing = [t for t in self.scheduler.ringing
                   if t.kind == kind and t.matches(name, duration)]
        for timer in ringing:
            self.scheduler.stop_ringing(timer.id)
        return ringing

    def _home_assistant_reply(self, intent_name: str, slots: Mapping[str, Any],
                              timers: list[Timer], key: str = "default") -> TimerReply:
        # Durations as spoken ("8", not 8.0): the responses compare them with "1" and "one".
        speech_slots = {name: str(spoken_number(value)) if name in ("hours", "minutes", "seconds")
                        else value for name, value in slots.items()}
        if isinstance(speech_slots.get("name"), str):
            speech_slots["name"] = speech_slots["name"].strip()
        text = home_assistant_response(intent_name, key, speech_slots)
        return TimerReply(text or "Done.", timers=tuple(timers))


def _timer_status(timer: Timer, now: float) -> dict[str, Any]:
    """A timer as Home Assistant's HassTimerStatus response reads it."""
    left = round(timer.remaining_s(now))
    # Spoken precision: to 5 minutes past an hour, to 15 seconds past a minute.
    step = 300 if left >= 3600 else 15 if left >= 60 else 1
    rounded = round(left / step) * step
    start_hours, start_rest = divmod(round(timer.duration_s), 3600)
    return {
        "id": timer.id,
        "name": timer.name or "",
        "area": "",
        "is_active": not timer.paused,
        "total_seconds_left": left,
        "rounded_hours_left": rounded // 3600,
        "rounded_minutes_left": rounded % 3600 // 60,
        "rounded_seconds_left": rounded % 60,
        "start_hours": start_hours,
        "start_minutes": start_rest // 60,
        "start_seconds": start_rest % 60,
    }


def _seconds(slots: Mapping[str, Any], prefix: str = "") -> float:
    """hours, minutes and seconds slots (with a prefix: start_hours ...) as seconds."""
    total = 0.0
    for unit, factor in (("hours", 3600), ("minutes", 60), ("seconds", 1)):
        value = slots.get(prefix + unit)
        if value is not None:
            total += float(value) * factor
    return total


def _hour_of_day(hour: int, period: str | None) -> int:
    if period == "pm" and 1 <= hour <= 11:
        return hour + 12
    if period == "am" and hour == 12:
        return 0
    return hour


def _text(value: Any) -> str | None:
    if not isinstance(value, str):
        return None
    return " ".join(value.split()) or None
