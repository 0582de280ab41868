"""timers.json in the device's state directory: what survives a restart or a power cut.

Timers belong to one device id (`Config.device_state_dir`): two daemons run by one user with no
state directory set keep theirs apart. A timers.json that an earlier version kept in the shared
folder is not read (whose it is cannot be known); a warning names it and where it would go.

The file is replaced whole: written to a temporary file, flushed to the disk (fsync), renamed
over the old one, and the directory flushed, so after a power cut it holds either the old or
the new list, never half of one. A file that cannot be read as a list of timers is renamed
aside (``timers.json.corrupt-<UTC time>``) with a warning, and the assistant starts with none.
Saving blocks on the disk (an SD card can take a while to fsync): the scheduler calls it in a
worker thread.
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path
from typing import Iterable

from ..config import Config
from .timer import Timer

log = logging.getLogger(__name__)

STATE_FILE = "timers.json"
FORMAT_VERSION = 1


class TimerStore:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    @classmethod
    def in_state_dir(cls, state_dir: str | Path) -> "TimerStore":
        return cls(Path(state_dir) / STATE_FILE)

    @classmethod
    def of_device(cls, config: Config) -> "TimerStore":
        """The timers of `config`'s device (blocking: it looks for a shared file to warn of)."""
        store = cls.in_state_dir(config.device_state_dir())
        shared = cls.in_state_dir(config.state_dir()).path
        if shared != store.path and shared.exists():
            log.warning("%s holds timers an earlier version kept for every device id; they are not "
                        "loaded. If they are %s's, move the file to %s", shared, config.device_id(),
                        store.path)
        return store

    def load(self) -> list[Timer]:
        """The saved timers; none if there is no file, or if it is corrupt (then set aside)."""
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return []
        except UnicodeDecodeError as error:
            self._set_aside(f"not UTF-8: {error}")
            return []
        except OSError as error:
            log.error("cannot read %s, starting without timers: %s", self.path, error)
            return []
        try:
            document = json.loads(text)
            if not isinstance(document, dict) or document.get("version") != FORMAT_VERSION:
                raise ValueError(f"not a version {FORMAT_VERSION} timers document")
            records = document.get("timers")
            if not isinstance(records, list):
                raise ValueError("'timers' is not a list")
            timers = [Timer.from_record(record) for record in records]
            if len({timer.id for timer in timers}) != len(timers):
                raise ValueError("two timers have the same id")
        except (ValueError, TypeError, RecursionError) as error:
            self._set_aside(str(error))
            return []
        return timers

    def save(self, timers: Iterable[Timer]) -> None:
        """Replace the file atomically and durably. Blocking; raises OSError."""
        document = {"version": FORMAT_VERSION, "timers": [timer.to_record() for timer in timers]}
        directory = self.path.parent
        directory.mkdir(parents=True, exist_ok=True)
        temporary = directory / f".{self.path.name}.tmp"
        with open(temporary, "w", encoding="utf-8") as file:
            json.dump(document, file, indent=1)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, self.path)
        # The rename itself is durable only once the directory is.
        directory_fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(directory_fd)
        finally:
            os.close(directory_fd)

    def _set_aside(self, reason: str) -> None:
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        aside = self.path.with_name(f"{self.path.name}.corrupt-{stamp}")
        suffix = 1
        while aside.exists():
            aside = self.path.with_name(f"{self.path.name}.corrupt-{stamp}-{suffix}")
            suffix += 1
        try:
            os.replace(self.path, aside)
        except OSError as error:
            log.warning("%s is corrupt (%s) and cannot be set aside (%s); starting without "
                        "timers", self.path, reason, error)
            return
        log.warning("%s is corrupt (%s); set aside as %s, starting without timers",
                    self.path, reason, aside.name)
