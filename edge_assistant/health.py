"""The health of each part the assistant depends on: can it hear, speak, reach the broker, and
did its models and config load. One `Health` per daemon, fed by the parts as things happen
(callbacks, from any thread, never blocking), read by everything that shows it: systemd's
STATUS= line, the retained MQTT health topic and its Home Assistant problem sensor, the status
socket behind `edge-assistant status`, and `doctor`.

A part that fails is logged once, as one line with its fix; a part that is still failing the
same way is not logged again, and its recovery is one line too. `Fault` marks the failures
the service expects and handles by retrying (a device unplugged, a broker down): those never
log a traceback above debug level.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Callable, Iterable

log = logging.getLogger(__name__)

# In the order they are shown.
PARTS = ("models", "microphone", "speaker", "broker", "config")

# What to do about a failing part, as `doctor` says it.
BROKER_DOWN_FIX = "start the broker (sudo systemctl start mosquitto) or set mqtt.host/mqtt.port"
BROKER_REFUSED_FIX = "check mqtt.username and mqtt.password (or password_file)"
CONFIG_FIX = "correct that key (edge-assistant config check FILE), then reload again"
MODEL_FIX = "edge-assistant models pull NAME, or set llm.model to a GGUF file"


def device_fix(kind: str) -> str:
    """The fix for a missing or failing sound device; `kind` is "input" or "output"."""
    return (f"plug it in, check `edge-assistant devices` and `arecord -l`/`aplay -l`, "
            f"set audio.{kind}_device; the service user must be in group audio")


class Fault(RuntimeError):
    """A failure outside the program that the service expects and handles by retrying (a sound
    device that is gone, say): reported as one line, its traceback only at debug level."""


def log_fault(logger: logging.Logger, what: str, error: BaseException) -> None:
    """Log a failure the caller has handled. A `Fault` is reported through the health of its
    part, so here it goes to debug level only, with its traceback; anything else is a bug and is
    logged as an error with its traceback."""
    if isinstance(error, Fault):
        logger.debug("%s: %s", what, error, exc_info=error)
    else:
        logger.error("%s", what, exc_info=error)


class PartState(StrEnum):
    OK = "ok"
    STARTING = "starting"  # loading, connecting: not known to work yet, not a problem
    OFF = "off"  # not used in this configuration (no microphone, MQTT disabled)
    FAILED = "failed"


@dataclass(frozen=True)
class PartHealth:
    state: PartState
    # For a failed part: what is wrong in a few words ("missing, retrying"), for STATUS=.
    summary: str = ""
    # The device or broker in use, or the error in full.
    detail: str = ""
    fix: str = ""
    # Unix time of the last change of state.
    since: float = field(default_factory=time.time)

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"state": str(self.state), "detail": self.detail, "since": round(self.since, 3)}
        if self.state == PartState.FAILED:
            data.update(summary=self.summary, fix=self.fix)
        return data


Listener = Callable[["Health"], None]


class Health:
    """The health of every part in `PARTS`; thread-safe.

    Listeners are called after every change, one change at a time and in the order of the
    changes, on the thread that made it: they must not block (hand over to a loop, or append to
    a queue) and must not change the health themselves.
    """

    def __init__(self, logger: logging.Logger = log) -> None:
        self._log = logger
        self._lock = threading.RLock()
        self._parts = {part: PartHealth(PartState.STARTING) for part in PARTS}
        self.listeners: list[Listener] = []

    def set(self, part: str, state: PartState, detail: str = "", summary: str = "", fix: str = "") -> bool:
        """Record the state of `part`; True if that changed anything."""
        if part not in self._parts:
            raise ValueError(f"unknown part {part!r}; known: {', '.join(PARTS)}")
        with self._lock:
            before = self._parts[part]
            if (before.state, before.summary, before.detail) == (state, summary, detail):
                return False
            since = time.time() if state != before.state else before.since
            self._parts[part] = PartHealth(state, summary, detail, fix, since)
            self._log_change(part, before, self._parts[part])
            self.announce()
            return True

    def announce(self) -> None:
        """Call every listener with the health as it is (after a change, or for a listener
        that is new)."""
        with self._lock:
            for listener in self.listeners:
                try:
                    listener(self)
                except Exception:
                    self._log.exception("health listener failed")

    def ok(self, part: str, detail: str = "") -> bool:
        return self.set(part, PartState.OK, detail)

    def starting(self, part: str, detail: str = "") -> bool:
        return self.set(part, PartState.STARTING, detail)

    def off(self, part: str, detail: str = "") -> bool:
        return self.set(part, PartState.OFF, detail)

    def failed(self, part: str, summary: str, detail: str, fix: str = "") -> bool:
        return self.set(part, PartState.FAILED, detail, summary, fix)

    def part(self, part: str) -> PartHealth:
        with self._lock:
            return self._parts[part]

    def problems(self) -> list[tuple[str, PartHealth]]:
        with self._lock:
            return [(name, part) for name, part in self._parts.items() if part.state == PartState.FAILED]

    def reason(self) -> str:
        """The failing parts in a few words ("speaker missing, retrying"), "" if none."""
        return reason(self.problems())

    def status(self, state: str) -> str:
        """systemd's STATUS= line: the assistant's state, then what is failing, e.g.
        "listening; speaker missing, retrying"."""
        return "; ".join([state, *(f"{name} {part.summary}" for name, part in self.problems())])

    def to_json(self) -> dict[str, Any]:
        """The retained health payload: `problem`, `reason` and every part."""
        with self._lock:
            parts = dict(self._parts)
        failing = [(name, part) for name, part in parts.items() if part.state == PartState.FAILED]
        return {
            "problem": bool(failing),
            "reason": reason(failing),
            "parts": {name: part.to_json() for name, part in parts.items()},
            "timestamp": round(time.time(), 3),
        }

    def _log_change(self, name: str, before: PartHealth, after: PartHealth) -> None:
        if after.state == PartState.FAILED:
            if before.state == PartState.FAILED and before.summary == after.summary:
                self._log.debug("%s %s: %s", name, after.summary, after.detail)
            else:
                fix = f" (fix: {after.fix})" if after.fix else ""
                self._log.warning("%s %s: %s%s", name, after.summary, after.detail, fix)
        elif before.state == PartState.FAILED:
            self._log.info("%s works again%s", name, f": {after.detail}" if after.detail else "")


def reason(problems: Iterable[tuple[str, PartHealth]]) -> str:
    return "; ".join(f"{name} {part.summary}" for name, part in problems)


def format_report(report: dict[str, Any]) -> list[str]:
    """A status answer (health payload, maybe with `device`, `state`) as lines for a person."""
    parts: dict[str, dict[str, Any]] = report.get("parts", {})
    failing = [name for name, part in parts.items() if part.get("state") == PartState.FAILED]
    head = f"{report.get('device', 'edge-assistant')}: {report.get('state', 'running')}"
    head += f", {len(failing)} problem{'s' if len(failing) != 1 else ''}" if failing else ", every part works"
    lines = [head]
    for name, part in parts.items():
        state = str(part.get("state", "?"))
        detail = part.get("detail", "")
        if state == PartState.FAILED:
            lines.append(f"  {name:<11} {'FAILED':<8} {part.get('summary', '')}: {detail}")
            if part.get("fix"):
                lines.append(f"  {'':<11} {'':<8} fix: {part['fix']}")
        else:
            lines.append(f"  {name:<11} {state:<8} {detail}".rstrip())
    return lines
