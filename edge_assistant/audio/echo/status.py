"""The canceller's state as `doctor` and the metrics read it, kept in the state dir."""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EchoStatus:
    """What `doctor` and the metrics report."""

    active: bool
    engine: str
    delay_ms: float | None = None
    confidence: float | None = None

    def to_json_dict(self) -> dict[str, Any]:
        return {"active": self.active, "engine": self.engine, "delay_ms": self.delay_ms,
                "confidence": self.confidence}



def status_file(state_dir: Path) -> Path:
    """Where the service leaves the echo canceller's state for `doctor`."""
    return Path(state_dir) / "echo.json"


def write_status(path: Path, status: EchoStatus) -> None:
    """Write `status` (from the canceller's thread; a failure is only logged)."""
    data = {**status.to_json_dict(), "measured_at": time.time()}
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(".part")
        partial.write_text(json.dumps(data))
        partial.replace(path)
    except OSError as error:
        log.warning("cannot record the echo canceller's state in %s: %s", path, error)


def read_status(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None
