"""When finished timers and alarms ring again: a state machine with the time passed in.

A timer rings first when it finishes (ring 1, sounded by the scheduler), then again
every `interval_s` (rings 2, 3, ...) until it is stopped or `max_s` has passed since it
finished; a ring that would come at or after `max_s` does not sound. A loop that wakes late
rings once, not once per interval missed.
"""

from __future__ import annotations

from dataclasses import dataclass

from .timer import Timer


@dataclass
class _Ringing:
    timer: Timer
    finished_at: float
    rings: int
    next_ring_at: float


class Ringer:
    def __init__(self, interval_s: float, max_s: float) -> None:
        if interval_s <= 0 or max_s < 0:
            raise ValueError("interval_s must be > 0 and max_s >= 0")
        self.interval_s = interval_s
        self.max_s = max_s
        self._ringing: dict[str, _Ringing] = {}

    @property
    def ringing(self) -> list[Timer]:
        return [entry.timer for entry in self._ringing.values()]

    def start(self, timer: Timer, now: float, finished_at: float | None = None) -> bool:
        """Ring 1 sounds now; `finished_at` (monotonic) if it finished earlier, unnoticed.

        False, and nothing rings, when the ringing would already be over.
        """
        finished_at = now if finished_at is None else finished_at
        if now - finished_at > self.max_s:
            return False
        self._ringing[timer.id] = _Ringing(timer, finished_at, 1, now + self.interval_s)
        return True

    def due(self, now: float) -> list[tuple[Timer, int]]:
        """The rings to sound now, as (timer, ring number); ringing past `max_s` ends."""
        rings = []
        for timer_id, entry in list(self._ringing.items()):
            if now - entry.finished_at >= self.max_s:
                del self._ringing[timer_id]
            elif now >= entry.next_ring_at:
                entry.rings += 1
                entry.next_ring_at += self.interval_s
                if entry.next_ring_at <= now:
                    entry.next_ring_at = now + self.interval_s
                rings.append((entry.timer, entry.rings))
        return rings

    def next_at(self) -> float | None:
        """When `due` has something to do next: a ring, or the end of one's ringing."""
        return min(
            (min(entry.next_ring_at, entry.finished_at + self.max_s)
             for entry in self._ringing.values()),
            default=None,
        )

    def stop(self, timer_id: str | None = None) -> list[Timer]:
        """Stop one timer ringing, or all of them; the timers that were ringing."""
        if timer_id is None:
            stopped = self.ringing
            self._ringing.clear()
            return stopped
        entry = self._ringing.pop(timer_id, None)
        return [entry.timer] if entry is not None else []
