"""Running the chosen sections in order, and judging the figures against the targets."""

from __future__ import annotations

import datetime
import functools
import logging
import time
from typing import Callable

from .. import __version__, models
from ..config import Config
from .answers import bench_answers
from .clips import fix_speech_noise
from .barge_in import bench_barge_in
from .daemon import bench_idle, bench_memory
from .e2e import bench_e2e
from .endpoint import bench_endpoint
from .home import bench_home
from .stop import bench_stop
from .llm import bench_kv_reuse, bench_llm
from .loaded import LoadedModels
from .machine import load_average, machine_info, model_info
from .options import SECTIONS, BenchOptions, SectionSkipped
from .report import TARGETS, Report
from .speech import bench_stt, bench_tts, bench_wake
from .wake_accuracy import bench_wake_accuracy

log = logging.getLogger(__name__)

Measure = Callable[[LoadedModels, Report, BenchOptions], None]

# In the order they run; the same names as options.SECTIONS.
MEASURES: dict[str, Measure] = {
    "llm": bench_llm,
    "kv_reuse": bench_kv_reuse,
    "stt": bench_stt,
    "tts": bench_tts,
    "wake": bench_wake,
    "wake_accuracy": bench_wake_accuracy,
    "idle": bench_idle,
    "endpoint": bench_endpoint,
    "e2e": bench_e2e,
    "barge_in": bench_barge_in,
    "stop": bench_stop,
    "home": bench_home,
    "answers": bench_answers,
    "memory": bench_memory,
}


def run(config: Config, options: BenchOptions, progress: Callable[[str], None] = lambda _: None) -> Report:
    """Run the chosen sections in order; a section's failure is recorded, not raised."""
    report = Report()
    report.values.update(machine_info())
    report.add("bench.version", __version__)
    report.add("bench.date", datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"))
    report.add("bench.config", config.source)
    report.add("bench.runs", options.runs)
    report.add("bench.quick", options.quick)
    report.add("bench.sections", ",".join(options.sections))
    fix_speech_noise()
    loaded = LoadedModels(config)
    try:
        for name in options.sections:
            progress(f"{name} ({options.runs} run{'s' if options.runs > 1 else ''})")
            started = time.monotonic()
            run_section(report, name, functools.partial(MEASURES[name], loaded, report, options))
            progress(f"{name} done in {time.monotonic() - started:.0f} s")
        report.values.update(model_info(config, loaded))
    finally:
        loaded.close()
    report.add("machine.load_avg_end", load_average())
    judge(report, config)
    return report


def run_section(report: Report, name: str, measure: Callable[[], None]) -> None:
    """Run one section: what it cannot do here is reported as skipped, a failure as an error
    (and in `report.errors`); neither stops the sections after it."""
    try:
        measure()
    except SectionSkipped as skipped:
        report.add(f"{name}.skipped", str(skipped))
    except _expected_errors() as error:
        report.add(f"{name}.skipped", str(error))
    except Exception as error:
        log.exception("bench section %s failed", name)
        report.add(f"{name}.error", f"{type(error).__name__}: {error}")
        report.errors.append(name)


def _expected_errors() -> tuple[type[Exception], ...]:
    """Failures that mean "this model or engine is not set up here", not a bug."""
    from ..thinking.chat import LlmError
    from ..thinking.prompt import PromptError
    from ..hearing.stt import SttError
    from ..tts import TtsError

    return (models.ModelError, LlmError, PromptError, SttError, TtsError)


def judge(report: Report, config: Config) -> None:
    """PASS or MISS for every target whose figure was measured."""
    embedded = not (config.llm.model or config.tts.voice or config.stt.model)
    for target in TARGETS:
        value = report.values.get(target.key)
        if not isinstance(value, (int, float)):
            continue
        report.add(f"targets.{target.key}.limit", target.text)
        report.add(f"targets.{target.key}.what", target.what)
        if target.embedded_only and not embedded:
            report.add(f"targets.{target.key}", "n/a")
        else:
            report.add(f"targets.{target.key}", "PASS" if target.met(value) else "MISS")
