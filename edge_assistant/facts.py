"""What the device itself knows, said from the device and never left to the LLM: the time,
the date and the day, sums and unit conversions (`calculator`), its own volume and mute, and
that a command for the home cannot be done because the home is out of reach.

    facts = DeviceFacts(volume=lambda: sink.volume, muted=lambda: assistant.muted)
    fact = facts.answer("what time is it")   # Fact("It is 7:28 AM.", "EdgeGetTime")

Questions are matched whole (after politeness is set aside), so "what time is my alarm" or
"what is the capital of France" are never taken for them.
"""

from __future__ import annotations

import datetime
import math
import re
import time
from dataclasses import dataclass
from typing import Callable

from . import calculator

MAX_TEXT_CHARS = 200


@dataclass(frozen=True)
class Fact:
    text: str
    # The intent as events name it: EdgeGetTime, EdgeGetDate, EdgeGetDay, EdgeCalculate, ...
    intent: str
    # An error event's code when the answer is a refusal (a division by zero, no home).
    error: str | None = None


_POLITE = re.compile(
    r"^(?:(?:hey|hi|ok|okay|so|and|um|uh|please|jarvis|computer|assistant|excuse me)\b[\s,]*)+"
    r"|^(?:(?:can|could|would) you (?:please )?(?:tell me|say)|(?:do you know|tell me|i (?:want|would like) to know))\s+"
)
_TRAILING = re.compile(r"\s+(?:please|now|right now|at the moment|currently|thanks|thank you)$")

_TIME = re.compile(
    r"^(?:what(?:'s| is) the (?:current |exact )?time|what time is it|what time it is|the time|"
    r"what(?:'s| is) the time (?:here|now)|current time|time)$")
_DATE = re.compile(
    r"^(?:what(?:'s| is) (?:the|today's) date(?: today)?|what date is it(?: today)?|what(?:'s| is) today|"
    r"what(?:'s| is) the date today|today's date|the date|what date it is(?: today)?|date)$")
_DAY = re.compile(
    r"^(?:what day (?:is it|of the week is it|is today|it is)(?: today)?|which day is (?:it|today)|"
    r"what(?:'s| is) the day(?: today)?|what day of the week it is|what(?:'s| is) the day of the week)$")
_TOMORROW = re.compile(r"^(?:what day is tomorrow|what(?:'s| is) tomorrow's date|what date is tomorrow)$")
_MONTH = re.compile(r"^(?:what month is it|what(?:'s| is) the month|which month is it)$")
_YEAR = re.compile(r"^(?:what year is it|what(?:'s| is) the year|which year is it)$")
_VOLUME = re.compile(
    r"^(?:what(?:'s| is) (?:the|your|my|the speaker's|the current) volume(?: set to| at)?|how loud are you|"
    r"what volume are you (?:at|on|set to)|what(?:'s| is) the volume level)$")
_MUTED = re.compile(
    r"^(?:are you (?:on )?mute[d]?|is (?:the|your) (?:microphone|mic) (?:on )?mute[d]?|"
    r"is (?:the|your) (?:microphone|mic) (?:on|off)|are you listening)$")

# A command or question for the home's devices: checked only when the home cannot answer it.
_HOME_COMMAND = re.compile(
    r"^(?:(?:turn|switch|power|put) (?:on|off)\b|(?:turn|switch|power) (?:the|my|all|every)\b.* (?:on|off|up|down)$|"
    r"(?:open|close|shut|lock|unlock|dim|brighten|toggle) (?:the|my|all|every|up)\b|"
    r"set (?:the|my)\b(?!.*\b(?:timer|alarm)s?\b).* to \d|"
    r"(?:is|are) (?:the|my|all|any)\b(?!.*\b(?:timer|alarm)s?\b).* (?:on|off|open|closed|locked|unlocked|running)$|"
    r"what(?:'s| is) the (?:temperature|humidity) in\b)")


def normalized(text: str) -> str:
    """Lower case, no punctuation at the ends, politeness set aside: "Hey, what's the time?" ->
    "what's the time"."""
    text = " ".join(text.casefold().replace("’", "'").split())
    text = re.sub(r"[.?!,;:]+$", "", text).strip()
    text = re.sub(r"[.?!,;:]+\s", " ", text)
    previous = None
    while previous != text:
        previous = text
        text = _POLITE.sub("", text).strip()
        text = _TRAILING.sub("", text).strip()
    return text


def is_home_command(text: str) -> bool:
    """A command or question for the home's devices ("turn on the kitchen light", "is the door
    locked"): said to be out of reach, not guessed at, while the home cannot be reached."""
    return bool(_HOME_COMMAND.match(normalized(text)))


def spoken_time(moment: datetime.datetime) -> str:
    hour = moment.hour % 12 or 12
    return f"{hour}:{moment.minute:02d} {'AM' if moment.hour < 12 else 'PM'}"


def spoken_date(day: datetime.date) -> str:
    return f"{day:%A}, {day:%B} {day.day}, {day.year}"


class DeviceFacts:
    """Answers from the device's clock, calculator and audio settings."""

    def __init__(self, *, clock: Callable[[], float] = time.time, tz: datetime.tzinfo | None = None,
                 volume: Callable[[], float | None] | None = None,
                 muted: Callable[[], bool | None] | None = None) -> None:
        self.clock = clock
        self.tz = tz
        self.volume = volume
        self.muted = muted

    def now(self) -> datetime.datetime:
        return datetime.datetime.fromtimestamp(self.clock(), self.tz)

    def answer(self, text: str) -> Fact | None:
        """The device's answer to `text`, or None if it is not a question the device answers."""
        if len(text) > MAX_TEXT_CHARS:
            return None
        question = normalized(text)
        if not question:
            return None
        now = self.now()
        if _TIME.match(question):
            return Fact(f"It is {spoken_time(now)}.", "EdgeGetTime")
        if _DATE.match(question):
            return Fact(f"Today is {spoken_date(now.date())}.", "EdgeGetDate")
        if _DAY.match(question):
            return Fact(f"Today is {now:%A}.", "EdgeGetDay")
        if _TOMORROW.match(question):
            return Fact(f"Tomorrow is {spoken_date(now.date() + datetime.timedelta(days=1))}.", "EdgeGetDate")
        if _MONTH.match(question):
            return Fact(f"It is {now:%B}.", "EdgeGetDate")
        if _YEAR.match(question):
            return Fact(f"It is {now.year}.", "EdgeGetDate")
        if _VOLUME.match(question):
            return self._volume()
        if _MUTED.match(question):
            return self._muted(question)
        calculation = calculator.answer(question)
        if calculation is not None:
            refused = isinstance(calculation.value, float) and math.isnan(calculation.value)
            return Fact(calculation.text, "EdgeCalculate", "not_understood" if refused else None)
        return None

    def _volume(self) -> Fact:
        level = self.volume() if self.volume is not None else None
        if level is None:
            return Fact("I can't tell my volume from here.", "EdgeGetVolume")
        return Fact(f"My volume is {round(level * 100)} percent.", "EdgeGetVolume")

    def _muted(self, question: str) -> Fact:
        muted = self.muted() if self.muted is not None else None
        if muted is None:
            return Fact("I can't tell from here whether my microphone is muted.", "EdgeGetMute")
        if question == "are you listening":
            return Fact("No, my microphone is muted." if muted else "Yes, I am listening.", "EdgeGetMute")
        return Fact("Yes, my microphone is muted." if muted else "No, my microphone is on.", "EdgeGetMute")
