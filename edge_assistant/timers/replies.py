"""What the assistant says about timers and alarms (English).

Home Assistant's own responses (home-assistant-intents) are used for its Hass*Timer intents;
the sentences here cover the rest: alarms, questions, announcements, errors.
"""

from __future__ import annotations

import functools
from datetime import datetime, tzinfo
from typing import Any, Iterable, Mapping

import home_assistant_intents
import jinja2.sandbox

from .timer import Timer

RESPONSE_LANGUAGE = "en"


def duration_phrase(seconds: float, adjective: bool = False) -> str:
    """``1 hour and 30 minutes``; as an adjective ``1 hour 30 minute`` (a 10 minute timer)."""
    total = max(0, round(seconds))
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    parts = [
        f"{count} {unit}{'' if count == 1 or adjective else 's'}"
        for count, unit in ((hours, "hour"), (minutes, "minute"), (secs, "second"))
        if count
    ] or [f"0 second{'' if adjective else 's'}"]
    if adjective:
        return " ".join(parts)
    return join_words(parts)


def join_words(words: Iterable[str]) -> str:
    words = list(words)
    if len(words) <= 1:
        return "".join(words)
    return ", ".join(words[:-1]) + " and " + words[-1]


def clock_phrase(at: float, now: float, tz: tzinfo | None = None) -> str:
    """``7 AM``, ``6:30 AM tomorrow``, ``7:05 PM on Friday`` (local time, `tz` or the system's)."""
    local = datetime.fromtimestamp(at, tz)
    hour, half = local.hour % 12 or 12, "AM" if local.hour < 12 else "PM"
    text = f"{hour} {half}" if local.minute == 0 else f"{hour}:{local.minute:02d} {half}"
    days = (local.date() - datetime.fromtimestamp(now, tz).date()).days
    if days == 1:
        return f"{text} tomorrow"
    if days > 1:
        return f"{text} on {local.strftime('%A')}"
    return text


def timer_label(timer: Timer, tz: tzinfo | None = None) -> str:
    """``pasta timer``, ``10 minute timer``, ``7 AM alarm``."""
    if timer.kind == "alarm":
        at = _rings_at(timer)
        return f"{timer.name} alarm" if timer.name else f"{clock_phrase(at, at, tz)} alarm"
    if timer.name:
        return timer.name if timer.name.casefold().endswith("timer") else f"{timer.name} timer"
    return f"{duration_phrase(timer.duration_s, adjective=True)} timer"


def finished_announcement(timer: Timer, tz: tzinfo | None = None) -> str:
    """What to say when a timer or alarm finishes (with the sound)."""
    if timer.kind == "alarm" and not timer.name:
        at = _rings_at(timer)
        return f"It's {clock_phrase(at, at, tz)}. This is your alarm."
    return f"Your {timer_label(timer, tz)} is done." if timer.kind == "timer" else \
        f"Your {timer_label(timer, tz)} is ringing."


def missed_announcement(timer: Timer, tz: tzinfo | None = None) -> str:
    """What to say at start about a timer or alarm that finished while the assistant was off."""
    verb = "went off" if timer.kind == "alarm" else "finished"
    return f"Your {timer_label(timer, tz)} {verb} while I was off."


def which_one_question(timers: list[Timer], tz: tzinfo | None = None) -> str:
    kind = "alarm" if all(t.kind == "alarm" for t in timers) else "timer"
    labels = join_words(f"the {timer_label(t, tz)}" for t in timers)
    return f"Which {kind}? You have {labels}."


def alarm_status(alarms: list[Timer], now: float, tz: tzinfo | None = None) -> str:
    if not alarms:
        return "You have no alarms."
    times = [clock_phrase(_rings_at(a), now, tz) for a in alarms]
    if len(alarms) == 1:
        return f"Your alarm is set for {times[0]}."
    return f"You have {len(alarms)} alarms: {join_words(times)}."


def home_assistant_response(intent_name: str, key: str, slots: Mapping[str, Any]) -> str | None:
    """Home Assistant's response `key` of an intent rendered with `slots`; None if it has none."""
    template = _responses().get("intents", {}).get(intent_name, {}).get(key)
    if template is None:
        return None
    rendered = _compile(template).render(slots=slots)
    return " ".join(rendered.split())


def home_assistant_error(key: str) -> str:
    """Home Assistant's error sentence `key` (timer_not_found ...)."""
    return _responses().get("errors", {}).get(key) or "Sorry, I couldn't do that."


def _rings_at(alarm: Timer) -> float:
    # Alarms cannot be paused: ends_at is always there; the fallback only keeps types honest.
    return alarm.ends_at if alarm.ends_at is not None else alarm.created_at + alarm.total_s


@functools.cache
def _responses() -> dict[str, Any]:
    data = home_assistant_intents.get_intents(RESPONSE_LANGUAGE) or {}
    return data.get("responses", {})


@functools.cache
def _compile(template: str) -> jinja2.Template:
    return jinja2.sandbox.SandboxedEnvironment().from_string(template)
