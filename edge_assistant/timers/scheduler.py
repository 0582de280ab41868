"""Timers and alarms that run on the event loop, persist, and ring when they finish.

One asyncio task sleeps until the next thing is due (a timer or alarm ending, a ring) or until
a change wakes it, and at most `_MAX_SLEEP_S`, so a wall clock that was set meanwhile is
noticed. Timers measure elapsed time: when the wall clock jumps (NTP after boot), their
`ends_at` moves with it and they still ring after the time they were set for. Alarms are times
of day: they follow the wall clock.

Every change is saved to the `TimerStore` in a worker thread (fsync on an SD card can take
long enough to stall the loop); writes are coalesced, one at a time, so a burst of changes
costs a write or two. `flush()` waits until the file matches.

Callbacks run on the event loop and must not block: schedule slow work (speech) yourself. An
exception in one is logged and does not stop the scheduler.
- ``on_event(event)``: an `Event` of `TIMER_EVENT_TYPES`, data as `Timer.event_data`
  (``timer_finished`` adds ``missed``: true for one that finished while the assistant was off);
  its request id is the one the change was asked with (``request_id=`` of the change).
- ``on_ring(timer, ring_number)``: a timer or alarm rings: 1 the moment it finishes (or, for
  one restored late, the moment it is loaded), then 2, 3, ... every ``timers.ring_interval_s``
  until `stop_ringing` or ``timers.ring_max_s``. One callback for every ring, so that no
  caller can miss the first.

On start, a timer that ended while the assistant was off rings late if its ringing would not
be over yet (it ended less than ``ring_max_s`` ago, as after a quick restart); an older one is
reported as missed: returned by `start()` and in a ``timer_finished`` event with missed: true.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import math
from typing import Any, Callable

from ..concurrency import Backoff
from ..config import TimersConfig
from ..events import Event, EventType, new_id
from .clock import SYSTEM_CLOCK, Clock
from .ringer import Ringer
from .store import TimerStore
from .timer import MAX_DURATION_S, MAX_NAME_CHARS, Timer

log = logging.getLogger(__name__)

TIMER_EVENT_TYPES = (EventType.TIMER_STARTED, EventType.TIMER_UPDATED, EventType.TIMER_CANCELLED,
                     EventType.TIMER_FINISHED)

# Longest sleep of the loop, so that a wall clock set meanwhile is noticed within this time.
_MAX_SLEEP_S = 30.0
# A larger change of (wall - monotonic) between two looks is the wall clock being set.
_CLOCK_JUMP_S = 1.0


class TimerError(Exception):
    """A timer request that cannot be done; `code` suits an error event."""

    code = "timer_error"


class TimerLimitError(TimerError):
    code = "timer_limit"


class TimerNotFoundError(TimerError):
    code = "timer_not_found"


class InvalidTimerError(TimerError):
    code = "timer_invalid"


class AmbiguousTimerError(TimerError):
    code = "multiple_timers_matched"


class TimerScheduler:
    def __init__(
        self,
        store: TimerStore,
        config: TimersConfig = TimersConfig(),
        *,
        clock: Clock = SYSTEM_CLOCK,
        on_event: Callable[[Event], None] | None = None,
        on_ring: Callable[[Timer, int], None] | None = None,
    ) -> None:
        self.store = store
        self.config = config
        self.clock = clock
        self.on_event = on_event
        self.on_ring = on_ring
        self._ringer = Ringer(config.ring_interval_s, config.ring_max_s)
        self._timers: dict[str, Timer] = {}
        self._wall_offset = 0.0
        self._changed = asyncio.Event()
        self._dirty = False
        self._writer: asyncio.Task | None = None
        self._task: asyncio.Task | None = None

    # -- lifecycle -----------------------------------------------------------------------------

    async def start(self) -> list[Timer]:
        """Load the saved timers and start the loop; returns those missed while off."""
        if self._task is not None:
            raise RuntimeError("the timer scheduler is already started")
        loaded = await asyncio.to_thread(self.store.load)
        wall, monotonic = self.clock.time(), self.clock.monotonic()
        self._wall_offset = wall - monotonic
        missed, late = [], []
        for timer in loaded:
            if timer.ends_at is None or timer.ends_at > wall:
                self._timers[timer.id] = timer
            elif wall - timer.ends_at < self.config.ring_max_s:
                late.append(timer)
            else:
                missed.append(timer)
        self._task = asyncio.create_task(self._run(), name="timers")
        if missed or late:
            self._save()
        for timer in sorted(missed, key=lambda t: t.ends_at or 0.0):
            self._emit(EventType.TIMER_FINISHED, timer, remaining_s=0.0, missed=True)
        for timer in sorted(late, key=lambda t: t.ends_at or 0.0):
            self._finish(timer, monotonic, finished_at=monotonic - (wall - (timer.ends_at or wall)))
        return missed

    async def close(self) -> None:
        """Stop the loop and wait for the last write. Nothing rings after this."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                current = asyncio.current_task()
                if current is not None and current.cancelling():
                    raise
        self._ringer.stop()
        await self.flush()

    async def __aenter__(self) -> "TimerScheduler":
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def flush(self) -> None:
        """Return once the state file holds every change made so far."""
        while self._writer is not None and not self._writer.done():
            await asyncio.shield(self._writer)

    # -- queries -------------------------------------------------------------------------------

    def now(self) -> float:
        return self.clock.time()

    def timers(self, kind: str | None = None) -> list[Timer]:
        """Timers and alarms set (of `kind`): running ones, soonest first, then paused ones."""
        now = self.clock.time()
        found = [t for t in self._timers.values() if kind is None or t.kind == kind]
        return sorted(found, key=lambda t: (t.paused, t.remaining_s(now)))

    def get(self, timer_id: str) -> Timer | None:
        return self._timers.get(timer_id)

    def find(self, *, kind: str | None = "timer", name: str | None = None,
             duration_s: float | None = None) -> list[Timer]:
        """Timers (or alarms) with this name (in any case) and set for this long, where given."""
        return [timer for timer in self.timers(kind) if timer.matches(name, duration_s)]

    @property
    def ringing(self) -> list[Timer]:
        """Finished timers and alarms that are still ringing."""
        return self._ringer.ringing

    def event_data(self, timer: Timer) -> dict[str, Any]:
        return timer.event_data(self.clock.time())

    # -- changes -------------------------------------------------------------------------------

    def start_timer(self, seconds: float, name: str | None = None, *,
                    command: str | None = None, request_id: str | None = None) -> Timer:
        """Start a timer. Raises TimerLimitError, InvalidTimerError."""
        seconds = _duration(seconds, "seconds")
        if seconds <= 0:
            raise InvalidTimerError(f"a timer needs a duration > 0 seconds, got {seconds:g}")
        return self._add("timer", seconds, _clean_name(name), command, request_id)

    def set_alarm(self, at: float, name: str | None = None, *, request_id: str | None = None) -> Timer:
        """Set an alarm at wall time `at` (epoch seconds). Raises TimerLimitError, InvalidTimerError."""
        if not isinstance(at, (int, float)) or not math.isfinite(at):
            raise InvalidTimerError(f"an alarm needs a time, got {at!r}")
        seconds = at - self.clock.time()
        if not 0 < seconds <= MAX_DURATION_S:
            raise InvalidTimerError("an alarm must be in the future, at most a week ahead")
        return self._add("alarm", seconds, _clean_name(name), None, request_id)

    def cancel(self, timer_id: str, *, request_id: str | None = None) -> Timer:
        timer = self._existing(timer_id)
        del self._timers[timer_id]
        self._save()
        self._emit(EventType.TIMER_CANCELLED, timer, request_id=request_id)
        return timer

    def cancel_all(self, kind: str | None = "timer", *, request_id: str | None = None) -> list[Timer]:
        """Cancel every timer (or alarm, or both with None); the ones cancelled."""
        return [self.cancel(timer.id, request_id=request_id) for timer in self.timers(kind)]

    def add_time(self, timer_id: str, seconds: float, *, request_id: str | None = None) -> Timer:
        """Add `seconds` (negative: take them off); one taken to zero finishes now."""
        timer = self._existing(timer_id)
        seconds = _duration(seconds, "seconds")
        now = self.clock.time()
        remaining = timer.remaining_s(now) + seconds
        if remaining > MAX_DURATION_S:
            raise InvalidTimerError("a timer can run for at most a week")
        total = max(0.0, timer.total_s + seconds)
        if timer.paused and remaining > 0:
            updated = dataclasses.replace(timer, total_s=total, paused_remaining_s=remaining)
        else:
            # Running, or paused and taken to zero: it ends now at the earliest.
            updated = dataclasses.replace(timer, total_s=total, ends_at=now + max(0.0, remaining),
                                          paused_remaining_s=None)
        return self._replace(updated, request_id)

    def pause(self, timer_id: str, *, request_id: str | None = None) -> Timer:
        timer = self._existing(timer_id)
        if timer.kind != "timer":
            raise InvalidTimerError("an alarm cannot be paused")
        if timer.paused:
            return timer
        remaining = timer.remaining_s(self.clock.time())
        return self._replace(dataclasses.replace(timer, ends_at=None, paused_remaining_s=remaining), request_id)

    def resume(self, timer_id: str, *, request_id: str | None = None) -> Timer:
        timer = self._existing(timer_id)
        if not timer.paused:
            return timer
        ends_at = self.clock.time() + (timer.paused_remaining_s or 0.0)
        return self._replace(dataclasses.replace(timer, ends_at=ends_at, paused_remaining_s=None), request_id)

    def stop_ringing(self, timer_id: str | None = None, *, kind: str | None = None) -> list[Timer]:
        """Stop one finished timer ringing, or all (of `kind`); the ones that were ringing."""
        if timer_id is None and kind is not None:
            stopped = [t for t in self._ringer.ringing if t.kind == kind]
            for timer in stopped:
                self._ringer.stop(timer.id)
        else:
            stopped = self._ringer.stop(timer_id)
        self._changed.set()
        return stopped

    # -- internals -----------------------------------------------------------------------------

    def _add(self, kind: str, seconds: float, name: str | None, command: str | None,
             request_id: str | None) -> Timer:
        self._require_started()
        if len(self._timers) >= self.config.max_timers:
            raise TimerLimitError(
                f"{len(self._timers)} timers and alarms are set, the most allowed "
                f"(timers.max_timers = {self.config.max_timers})"
            )
        now = self.clock.time()
        timer = Timer(id=new_id(), kind=kind, name=name, duration_s=seconds, total_s=seconds,
                      ends_at=now + seconds, created_at=now, command=command)
        self._timers[timer.id] = timer
        self._save()
        self._emit(EventType.TIMER_STARTED, timer, request_id=request_id)
        return timer

    def _replace(self, timer: Timer, request_id: str | None = None) -> Timer:
        self._timers[timer.id] = timer
        self._save()
        self._emit(EventType.TIMER_UPDATED, timer, request_id=request_id)
        return timer

    def _existing(self, timer_id: str) -> Timer:
        self._require_started()
        timer = self._timers.get(timer_id)
        if timer is None:
            raise TimerNotFoundError(f"no timer or alarm has the id {timer_id!r}")
        return timer

    def _require_started(self) -> None:
        # Before start() the saved timers are not loaded, and a save would overwrite them.
        if self._task is None:
            raise RuntimeError("the timer scheduler is not started")
        # A change computes times from the wall clock as it is now: a jump not yet noticed
        # would later be applied to this change too.
        self._follow_wall_clock()

    def _save(self) -> None:
        self._dirty = True
        self._changed.set()
        if self._writer is None or self._writer.done():
            self._writer = asyncio.get_running_loop().create_task(self._write(), name="timers-save")

    async def _write(self) -> None:
        while self._dirty:
            self._dirty = False
            snapshot = list(self._timers.values())
            try:
                await asyncio.to_thread(self.store.save, snapshot)
            except OSError as error:
                # Kept in memory; the next change tries again.
                log.error("cannot save timers to %s: %s", self.store.path, error)

    async def _run(self) -> None:
        backoff = Backoff.exponential(1.0, _MAX_SLEEP_S)
        while True:
            try:
                self._follow_wall_clock()
                self._fire_due()
                delay = self._next_delay()
                self._changed.clear()
                await self._sleep_unless_changed(delay)
                backoff.reset()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("timer loop failed; going on")
                await self.clock.sleep(backoff.next())

    def _follow_wall_clock(self) -> None:
        offset = self.clock.time() - self.clock.monotonic()
        jump, self._wall_offset = offset - self._wall_offset, offset
        if abs(jump) < _CLOCK_JUMP_S:
            return
        log.info("the wall clock moved by %+.1f s; timers keep their remaining time", jump)
        for timer in list(self._timers.values()):
            if timer.kind == "timer" and timer.ends_at is not None:
                self._replace(dataclasses.replace(timer, ends_at=timer.ends_at + jump))

    def _fire_due(self) -> None:
        wall, monotonic = self.clock.time(), self.clock.monotonic()
        due = sorted(
            (t for t in self._timers.values() if t.ends_at is not None and t.ends_at <= wall),
            key=lambda t: t.ends_at or 0.0,
        )
        for timer in due:
            del self._timers[timer.id]
        if due:
            self._save()
        for timer in due:
            self._finish(timer, monotonic)
        for timer, ring_number in self._ringer.due(monotonic):
            self._call(self.on_ring, timer, ring_number)

    def _finish(self, timer: Timer, monotonic: float, finished_at: float | None = None) -> None:
        rings = self._ringer.start(timer, monotonic, finished_at)
        self._changed.set()
        self._emit(EventType.TIMER_FINISHED, timer, remaining_s=0.0, missed=False)
        if rings:
            self._call(self.on_ring, timer, 1)

    def _next_delay(self) -> float:
        wall, monotonic = self.clock.time(), self.clock.monotonic()
        delays = [t.ends_at - wall for t in self._timers.values() if t.ends_at is not None]
        next_ring = self._ringer.next_at()
        if next_ring is not None:
            delays.append(next_ring - monotonic)
        return max(0.0, min([_MAX_SLEEP_S, *delays]))

    async def _sleep_unless_changed(self, delay: float) -> None:
        sleeper = asyncio.ensure_future(self.clock.sleep(delay))
        changed = asyncio.ensure_future(self._changed.wait())
        try:
            await asyncio.wait((sleeper, changed), return_when=asyncio.FIRST_COMPLETED)
        finally:
            sleeper.cancel()
            changed.cancel()

    def _emit(self, event_type: EventType, timer: Timer, *, request_id: str | None = None,
              **extra: Any) -> None:
        data = {**timer.event_data(self.clock.time()), **extra}
        self._call(self.on_event, Event(event_type, data, request_id=request_id))

    @staticmethod
    def _call(callback: Callable[..., Any] | None, *args: Any) -> None:
        if callback is None:
            return
        try:
            callback(*args)
        except Exception:
            log.exception("timer callback %r failed", callback)


def _duration(value: Any, field: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise InvalidTimerError(f"{field} must be a number, got {value!r}")
    if abs(value) > MAX_DURATION_S:
        raise InvalidTimerError(f"{field} must be at most {MAX_DURATION_S:g} (a week), got {value:g}")
    return float(value)


def _clean_name(name: Any) -> str | None:
    if name is None:
        return None
    if not isinstance(name, str):
        raise InvalidTimerError(f"a timer name must be text, got {name!r}")
    name = " ".join(name.split())
    if len(name) > MAX_NAME_CHARS:
        raise InvalidTimerError(f"a timer name has at most {MAX_NAME_CHARS} characters")
    return name or None
