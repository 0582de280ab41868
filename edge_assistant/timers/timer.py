"""One timer or alarm: an immutable record, replaced whole whenever it changes."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

KINDS = ("timer", "alarm")
# Longest timer, and furthest alarm, accepted: a week is past any kitchen or bedroom use and
# keeps every time representable.
MAX_DURATION_S = 7 * 24 * 3600.0
MAX_NAME_CHARS = 100


@dataclass(frozen=True)
class Timer:
    id: str
    kind: str  # "timer" (a duration) or "alarm" (a time of day)
    name: str | None
    # As asked ("the 10 minute timer"); for an alarm, from when it was set to when it rings.
    duration_s: float
    # duration_s with what was added or taken off since.
    total_s: float
    # Wall time it finishes; None while paused.
    ends_at: float | None
    paused_remaining_s: float | None = None
    created_at: float = 0.0
    # Text of a spoken command to carry out when it finishes ("in 5 minutes turn off the light").
    command: str | None = None

    @property
    def paused(self) -> bool:
        return self.ends_at is None

    def remaining_s(self, now: float) -> float:
        if self.ends_at is None:
            return self.paused_remaining_s or 0.0
        return max(0.0, self.ends_at - now)

    def matches(self, name: str | None = None, duration_s: float | None = None) -> bool:
        """Whether it has this name (in any case) and was set for this long, where given."""
        if name is not None and _name_key(self.name or "") != _name_key(name):
            return False
        return duration_s is None or math.isclose(self.duration_s, duration_s, abs_tol=0.5)

    def event_data(self, now: float) -> dict[str, Any]:
        """What events, the retained list and the spoken status say about it."""
        return {
            "id": self.id,
            "name": self.name,
            "kind": self.kind,
            "total_s": round(self.total_s, 3),
            "remaining_s": round(self.remaining_s(now), 3),
            "ends_at": iso_time(self.ends_at) if self.ends_at is not None else None,
            "paused": self.paused,
        }

    def to_record(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_record(cls, record: Any) -> "Timer":
        """The timer a `to_record()` dict describes. Raises ValueError if it is not one."""
        if not isinstance(record, dict):
            raise ValueError(f"a timer must be an object, got {type(record).__name__}")
        fields = {f.name for f in dataclasses.fields(cls)}
        missing = {"id", "kind", "duration_s", "total_s", "ends_at"} - set(record)
        if missing or set(record) - fields:
            raise ValueError(f"timer fields {sorted(record)} do not match {sorted(fields)}")
        timer = cls(**record)
        timer._validate()
        return timer

    def _validate(self) -> None:
        def number(value: Any, optional: bool = False) -> bool:
            if value is None:
                return optional
            return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)

        def text(value: Any) -> bool:
            return value is None or (isinstance(value, str) and len(value) <= 10_000)

        valid = (
            isinstance(self.id, str) and 0 < len(self.id) <= 128
            and self.kind in KINDS
            and text(self.name) and text(self.command)
            and number(self.duration_s) and number(self.total_s) and number(self.created_at)
            and number(self.ends_at, optional=True)
            and number(self.paused_remaining_s, optional=True)
            and (self.ends_at is None) != (self.paused_remaining_s is None)
        )
        if not valid:
            raise ValueError(f"invalid timer record {self.to_record()!r}")


def _name_key(name: str) -> str:
    return " ".join(name.casefold().split())


def iso_time(epoch_s: float) -> str:
    """ISO 8601 in UTC, as in ``2026-11-29T18:05:00+00:00``."""
    return datetime.fromtimestamp(epoch_s, timezone.utc).isoformat(timespec="seconds")
