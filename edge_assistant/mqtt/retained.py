"""The retained topics that events update: what a newcomer (Home Assistant after a restart)
reads as the device's latest state, question, reply, error, action and timers."""

from __future__ import annotations

import math
from datetime import datetime, timezone
from typing import Any

from ..events import Event, EventType
from .client import dumps
from .topics import Topics

# Event types that change the running timers, and whether the timer runs on afterwards.
TIMER_EVENTS = {
    EventType.TIMER_STARTED: True,
    EventType.TIMER_UPDATED: True,
    EventType.TIMER_CANCELLED: False,
    EventType.TIMER_FINISHED: False,
}


class RetainedStates:
    """Maps events to (retained topic, payload) updates and keeps the running timers.

    Not thread-safe: the bridge calls it under its lock."""

    def __init__(self, topics: Topics) -> None:
        self._topics = topics
        # Timer id -> the data of its latest event.
        self._timers: dict[str, dict[str, Any]] = {}

    def updates(self, event: Event, payload: bytes) -> list[tuple[str, bytes]]:
        """The retained topics `event` changes; `payload` is the event's JSON."""
        topics, data = self._topics, event.data
        text = data.get("text")
        if event.type == EventType.STATE and isinstance(data.get("state"), str):
            return [(topics.state, data["state"].encode())]
        if event.type == EventType.TRANSCRIPT and isinstance(text, str):
            updates = [(topics.transcript, text.encode())]
            if text.strip():  # an empty transcript (noise) is no question
                updates.append((topics.last(EventType.QUESTION), payload))
            return updates
        if event.type == EventType.QUESTION and isinstance(text, str):
            return [(topics.last(EventType.QUESTION), payload)]
        if event.type == EventType.REPLY and isinstance(text, str):
            return [(topics.reply, text.encode()), (topics.last(EventType.REPLY), payload)]
        if event.type == EventType.ERROR and isinstance(data.get("code"), str):
            return [(topics.last(EventType.ERROR), payload)]
        if event.type == EventType.ACTION:
            return [(topics.last(EventType.ACTION), payload)]
        if event.type in TIMER_EVENTS and isinstance(data.get("id"), (str, int)):
            timer_id = str(data["id"])
            if TIMER_EVENTS[event.type]:
                self._timers[timer_id] = dict(data)
            else:
                self._timers.pop(timer_id, None)
            return [self.timers()]
        return []

    def timers(self) -> tuple[str, bytes]:
        """The timers topic: ``next`` (ISO 8601 end of the timer that ends first, or null),
        its ``name``, ``count`` and every running ``timers`` entry, soonest first."""
        running = sorted(
            self._timers.values(),
            key=lambda timer: (_instant(timer.get("ends_at")) or datetime.max.replace(tzinfo=timezone.utc)),
        )
        first = running[0] if running else {}
        ends = _instant(first.get("ends_at"))
        payload = {
            "next": ends.isoformat() if ends else None,
            "name": first.get("name"),
            "count": len(running),
            "timers": running,
        }
        return self._topics.timers, dumps(payload)


def _instant(value: Any) -> datetime | None:
    """A timer's end: Unix seconds or an ISO 8601 text (UTC when it names no zone)."""
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        try:
            return datetime.fromtimestamp(value, timezone.utc)
        except (OverflowError, OSError, ValueError):
            return None
    if isinstance(value, str):
        try:
            instant = datetime.fromisoformat(value)
        except ValueError:
            return None
        return instant if instant.tzinfo else instant.replace(tzinfo=timezone.utc)
    return None
