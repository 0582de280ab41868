"""What a benchmark run is asked to do, and the two ways a section cannot do it."""

from __future__ import annotations

from dataclasses import dataclass

SECTIONS = ("llm", "kv_reuse", "stt", "tts", "wake", "wake_accuracy", "idle", "endpoint", "e2e", "barge_in",
            "stop", "home", "answers", "memory")
DEFAULT_RUNS = 5
QUICK_RUNS = 2
DEFAULT_QUESTION = "What is the capital of France?"
# The longest a spoken turn, or the daemon's start, may take before its section fails.
TURN_TIMEOUT_S = 600.0


class BenchError(RuntimeError):
    """The benchmark cannot do what was asked (a missing optional package, a bad option)."""


class SectionSkipped(Exception):
    """This section cannot run on this setup; the message says why."""


@dataclass(frozen=True)
class BenchOptions:
    sections: tuple[str, ...] = SECTIONS
    runs: int = DEFAULT_RUNS
    # Smaller workloads (fewer tokens, seconds of audio, turns) for tests and smoke checks.
    quick: bool = False
    question: str = DEFAULT_QUESTION
    # The daemon started by `idle` reads the same config file.
    config_path: str | None = None
