"""The ways work crosses time and threads here, each written once.

- `Backoff`: the pauses between retries of anything that keeps failing (a stage, a microphone,
  a server), growing to a cap and starting small again once things work.
- `Pacer`: paces a producer at real time (a WAV file played as a microphone or a speaker).
- `iterate_in_thread`: a blocking iterator (a generation, a synthesis) run in a worker thread
  with its items handed to the event loop through a bounded buffer, so a slow consumer holds the
  producer back instead of letting items pile up. Leaving early cancels and joins the worker.
- `to_thread_joined`: one blocking call in a worker thread that a cancelled caller still waits
  for, so the models it uses can be closed once the caller's task has ended.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
import time
from typing import AsyncIterator, Callable, Iterator, Sequence, TypeVar

T = TypeVar("T")
R = TypeVar("R")

_FINISHED = object()  # what iterate_in_thread's worker hands over after the last item


class Backoff:
    """Retry pauses: `delays` in turn, then the last one for ever.

    A success (`reset()`), or a run that lasted `healthy_after_s` since the previous failure,
    starts the sequence again, so one failure a day never waits the longest pause.
    """

    def __init__(self, delays: Sequence[float], healthy_after_s: float | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if not delays or min(delays) < 0:
            raise ValueError("delays must be a non-empty sequence of non-negative seconds")
        self.delays = tuple(delays)
        self.healthy_after_s = healthy_after_s
        self.clock = clock
        self.failures = 0
        self._last_failure: float | None = None

    @classmethod
    def exponential(cls, initial: float, maximum: float, factor: float = 2.0,
                    healthy_after_s: float | None = None) -> "Backoff":
        delays = [min(initial, maximum)]
        while delays[-1] < maximum:
            delays.append(min(delays[-1] * factor, maximum))
        return cls(delays, healthy_after_s)

    def next(self) -> float:
        """The pause before the next attempt, counting this failure."""
        now = self.clock()
        if (self.healthy_after_s is not None and self._last_failure is not None
                and now - self._last_failure > self.healthy_after_s):
            self.failures = 0
        self._last_failure = now
        delay = self.delays[min(self.failures, len(self.delays) - 1)]
        self.failures += 1
        return delay

    def reset(self) -> None:
        self.failures = 0
        self._last_failure = None


class Pacer:
    """Real-time pacing: `await pacer.wait(offset_s)` returns once `offset_s` has passed since
    the pacer started, never earlier, and never sleeps past a deadline already missed."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.start = clock()

    def remaining(self, offset_s: float) -> float:
        return max(0.0, self.start + offset_s - self.clock())

    async def wait(self, offset_s: float) -> None:
        # Always yields to the loop, so a producer that is behind does not starve other tasks.
        await asyncio.sleep(self.remaining(offset_s))


async def iterate_in_thread(
    items: Iterator[T],
    cancel: threading.Event,
    *,
    ahead: int = 8,
    executor: concurrent.futures.Executor | None = None,
) -> AsyncIterator[T]:
    """Items of a blocking iterator (a generator: it runs only when asked) read in a worker
    thread, at most `ahead` of them unread.

    Leaving the loop early (break with `contextlib.aclosing`, an exception, a cancelled task)
    sets `cancel`, which the producer is expected to check between items, and waits for the
    worker to end, so whatever it holds (a model's lock) is free when this returns. Use it as
    ``async with contextlib.aclosing(iterate_in_thread(...)) as items``: an async generator left
    without closing is finalized later, on another task, while its worker still runs.
    """
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue = asyncio.Queue()
    room = threading.Semaphore(max(1, ahead))

    def deliver(item: object, error: BaseException | None) -> None:
        try:
            loop.call_soon_threadsafe(queue.put_nowait, (item, error))
        except RuntimeError:  # the loop has closed: nobody is left to read it
            cancel.set()

    worker = loop.run_in_executor(executor, _produce, items, cancel, room, deliver)
    complete = False
    try:
        while True:
            item, error = await queue.get()
            if error is not None:
                complete = True
                raise error
            if item is _FINISHED:
                complete = True
                return
            room.release()
            yield item
    finally:
        if not complete:
            cancel.set()
            room.release()  # a worker waiting for room must wake to see the cancellation
        await asyncio.shield(worker)


def _produce(items: Iterator, cancel: threading.Event, room: threading.Semaphore,
             deliver: Callable[[object, BaseException | None], None]) -> None:
    """iterate_in_thread's worker: each item once there is room for it, then `_FINISHED`."""
    try:
        try:
            for item in items:
                room.acquire()
                if cancel.is_set():
                    break  # the consumer still gets `_FINISHED`, if it is waiting
                deliver(item, None)
        finally:
            close = getattr(items, "close", None)
            if close is not None:
                close()  # on this thread: a generator's cleanup may hold a model's lock
    except BaseException as error:  # raised again on the loop's side
        deliver(_FINISHED, error)
    else:
        deliver(_FINISHED, None)


async def to_thread_joined(func: Callable[..., R], /, *args, **kwargs) -> R:
    """`asyncio.to_thread`, except that a cancellation waits for the call to return before it
    propagates: the thread never outlives the task that started it, and whoever closes the
    models it uses after that task has ended does not close them under it."""
    call = asyncio.ensure_future(asyncio.to_thread(func, *args, **kwargs))
    try:
        return await asyncio.shield(call)
    except asyncio.CancelledError:
        while not call.done():
            try:
                await asyncio.wait({call})
            except asyncio.CancelledError:
                pass  # cancelled again: the first cancellation is raised once the call returns
        raise
