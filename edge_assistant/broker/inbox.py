"""Messages paho's network thread received, handed to the asyncio loop: paho's thread only
appends to a bounded inbox and, when none is pending, asks the loop (``call_soon_threadsafe``)
to empty it; beyond the bound, messages are dropped and counted."""

from __future__ import annotations

import asyncio
import collections
import logging
import threading
from typing import Callable

from ..limits import LogLimiter
from .client import LOG_INTERVAL_S

log = logging.getLogger(__name__)

# Messages handed over in one turn of the loop: a flood leaves the loop room for the rest.
DRAIN_BATCH = 256


class Inbox:
    """`put` on paho's thread; `handler(topic, payload)` on `loop`, in the order received."""

    def __init__(self, loop: asyncio.AbstractEventLoop, handler: Callable[[str, bytes], None],
                 limit: int, name: str) -> None:
        self._loop = loop
        self._handler = handler
        self._limit = limit
        self._name = name
        # Held only to append or take messages.
        self._lock = threading.Lock()
        self._messages: collections.deque[tuple[str, bytes]] = collections.deque()
        self._drain_scheduled = False
        self.dropped = 0
        self._log = LogLimiter(log, LOG_INTERVAL_S)

    def put(self, topic: str, payload: bytes) -> None:
        """paho's thread: never blocks."""
        with self._lock:
            kept = len(self._messages) < self._limit
            if kept:
                self._messages.append((topic, payload))
                schedule, self._drain_scheduled = not self._drain_scheduled, True
            else:
                self.dropped += 1
                schedule = False
        if not kept:
            self._log.log(logging.WARNING, "dropped", "%s: %d messages received still to handle: dropping more",
                          self._name, self._limit)
        elif schedule:
            try:
                self._loop.call_soon_threadsafe(self._drain)
            except RuntimeError:  # the loop is closed: shutting down
                with self._lock:
                    self._messages.clear()
                    self._drain_scheduled = False

    def _drain(self) -> None:
        """On the loop."""
        with self._lock:
            batch = [self._messages.popleft() for _ in range(min(DRAIN_BATCH, len(self._messages)))]
            more = self._drain_scheduled = bool(self._messages)
        if more:
            self._loop.call_soon(self._drain)
        for topic, payload in batch:
            try:
                self._handler(topic, payload)
            except Exception:  # one bad message must not stop the others
                self._log.log(logging.ERROR, "handler_crash", "%s: error handling an MQTT message on %s",
                              self._name, topic[:200], exc_info=True)
