"""Models loaded once per process and shared while anything uses them, then freed.

Two transcribers of one vosk model, or a synthesizer and the `say` command on one voice, share
one copy in memory. Each user `acquire`s a lease and releases it when done (a reload that
changes models releases the old ones): the last release drops the model, so a daemon that
reloads for months does not keep every model it ever loaded. An acquire that meets a release
under way waits for the old copy to be freed before it loads the model again: one model is
never in memory twice.
"""

from __future__ import annotations

import logging
import threading
from typing import Any, Callable, Generic, Hashable, TypeVar

log = logging.getLogger(__name__)

M = TypeVar("M")


class Lease(Generic[M]):
    """One user's hold on a shared model; `release()` once (more calls do nothing)."""

    def __init__(self, cache: "SharedModels[M]", key: Hashable, model: M, lock: threading.Lock) -> None:
        self._cache = cache
        self.key = key
        self.model = model
        # Serializes use of the model across its users (one inference at a time).
        self.lock = lock
        self.released = False

    def release(self) -> None:
        if not self.released:
            self.released = True
            self._cache._release(self.key)


class SharedModels(Generic[M]):
    def __init__(self, name: str, on_evict: Callable[[M], Any] | None = None) -> None:
        self.name = name
        self.on_evict = on_evict
        self._entries: dict[Hashable, list] = {}  # key -> [model, users, lock]
        self._load_locks: dict[Hashable, threading.Lock] = {}
        self._lock = threading.Lock()

    def acquire(self, key: Hashable, load: Callable[[], M]) -> Lease[M]:
        # One load lock per key: two users asking for one model load it once, while another
        # model may load at the same time. The last release frees the model under that lock,
        # so a new load waits until the old copy is gone.
        while True:
            with self._lock:
                load_lock = self._load_locks.setdefault(key, threading.Lock())
            with load_lock:
                with self._lock:
                    if self._load_locks.get(key) is not load_lock:
                        continue  # freed and dropped while we waited: take the current lock
                    entry = self._entries.get(key)
                    if entry is not None:
                        entry[1] += 1
                        return Lease(self, key, entry[0], entry[2])
                model = load()
                with self._lock:
                    entry = self._entries[key] = [model, 1, threading.Lock()]
                return Lease(self, key, model, entry[2])

    def _release(self, key: Hashable) -> None:
        with self._lock:
            # The lock the entry was loaded under: dropped only by the last release, below.
            load_lock = self._load_locks.get(key)
        if load_lock is None:
            return
        with load_lock:
            with self._lock:
                entry = self._entries.get(key)
                if entry is None:
                    return
                entry[1] -= 1
                if entry[1] > 0:
                    return
                del self._entries[key]
            log.info("%s %s unloaded: no longer used", self.name, key)
            try:
                if self.on_evict is not None:
                    self.on_evict(entry[0])
            finally:
                with self._lock:
                    del self._load_locks[key]

    def __contains__(self, key: Hashable) -> bool:
        with self._lock:
            return key in self._entries

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)
