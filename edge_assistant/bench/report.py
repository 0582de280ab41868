"""The results of a run: one flat dict of dotted names (``llm.engine_tokens_per_s``), the targets
they are judged against, and their two forms, a table to read and JSON to compare runs."""

from __future__ import annotations

import json
import math
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Target:
    key: str
    op: str  # "<", "<=" or ">="
    limit: float
    what: str
    # Only meaningful with the embedded default models (memory of a bigger model is its own).
    embedded_only: bool = False

    def met(self, value: float) -> bool:
        return {"<": value < self.limit, "<=": value <= self.limit, ">=": value >= self.limit}[self.op]

    @property
    def text(self) -> str:
        return f"{self.op} {self.limit:g}"


# RSS may rise a little while a conversation fills KV cache pages (bounded by llm.n_ctx); a
# leak grows with every turn and passes this within 20 turns.
GROWTH_LIMIT_MB = 16.0

TARGETS = (
    Target("llm.ratio", ">=", 0.97, "our engine within 3% of plain llama-cpp-python tokens/s"),
    Target("kv_reuse.ratio", "<=", 0.20, "second-turn prompt evaluation with reuse at most 20% of cold"),
    Target("kv_reuse.first_turn_ratio", "<=", 0.25,
           "first-turn prompt evaluation after the warm-up at most 25% of a cold first turn"),
    Target("e2e.ratio", "<=", 0.30, "time to first audio at most 30% of the sequential baseline"),
    Target("stt.latency_s", "<=", 0.1, "the default engine's text within 0.1 s of the end of speech"),
    Target("endpoint.smart_turn.false_cutoffs", "<=", 0.05,
           "at most 5% of questions with a pause in mid-sentence cut off"),
    Target("endpoint.extra_false_cutoffs", "<=", 0.0, "no more cut-offs than vad.silence_s alone"),
    Target("idle.cpu_percent", "<", 10.0, "idle listening under 10% of one core"),
    Target("stop.word_to_silence_s", "<=", 0.3, "a spoken \"stop\" silences a reply within 300 ms"),
    Target("stop.ring_word_to_stop_s", "<=", 0.3, "a spoken \"stop\" ends a ring within 300 ms"),
    Target("stop.own_voice_stops", "<=", 0.0, "the assistant never stops its own replies"),
    Target("stop.false_accepts_per_hour", "<=", 1.0, "at most one false stop per hour of others' talk"),
    # openWakeWord's own targets, for the configured engine.
    Target("wake_accuracy.recall_clean", ">=", 0.95, "the wake phrase heard from at least 95% of the voices"),
    Target("wake_accuracy.false_accepts_per_hour", "<=", 0.5,
           "at most one false wake per two hours of other speech and noise"),
    Target("home.match_ms", "<=", 50.0, "a spoken command matched by the templates within 50 ms"),
    Target("home.publish_ms", "<=", 150.0, "a template command handed to MQTT within 150 ms of the transcript"),
    Target("home.template_accuracy", ">=", 0.95, "at least 95% of the sentences a template matched done right"),
    Target("home.wrong_device_actions", "<=", 0.0, "no action on a device the sentence did not mean"),
    Target("home.fallback_after_100_s", "<=", 1.5, "an LLM fallback within 1.5 s after 100 template commands"),
    Target("answers.invented", "<=", 0, "no invented answer: no made-up time, timer, action or device"),
    *(Target(f"answers.{category}", ">=", 1.0, f"every {category} question answered right (the device knows)")
      for category in ("time", "date", "timers", "alarms", "devices", "device", "arithmetic", "conversions")),
    Target("memory.peak_rss_mb", "<", 1024.0, "peak RSS under 1 GB with the embedded default models",
           embedded_only=True),
    Target("memory.growth_mb", "<=", GROWTH_LIMIT_MB, "no memory growth over the turns"),
)


@dataclass
class Timeline:
    """One spoken turn, in seconds from the end of the user's speech."""

    speech: tuple[float, float]
    endpoint: tuple[float, float]  # silence until the endpointer closed the utterance
    stt: tuple[float, float]
    llm: list[tuple[float, float]] = field(default_factory=list)
    tts: list[tuple[float, float]] = field(default_factory=list)
    speaker: list[tuple[float, float]] = field(default_factory=list)
    # The end-of-turn model's calls at pauses, and the transcripts made there (drafts).
    turn_end: list[tuple[float, float]] = field(default_factory=list)
    drafts: list[tuple[float, float]] = field(default_factory=list)
    # stt.first_pass: `stt` ends at the fast text, this at the final one (None without it).
    final_stt: tuple[float, float] | None = None

    @property
    def ttfa_s(self) -> float:
        return self.speaker[0][0]

    @property
    def total_s(self) -> float:
        return self.speaker[-1][1]


@dataclass
class Report:
    values: dict[str, Any] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    timelines: dict[str, Timeline] = field(default_factory=dict)

    def add(self, key: str, value: Any) -> None:
        self.values[key] = _rounded(value)

    def add_series(self, key: str, samples: list[float]) -> float:
        """The median under `key`, min and max beside it (when repeated); returns the median."""
        median = statistics.median(samples)
        self.add(key, median)
        if len(samples) > 1:
            self.add(f"{key}.min", min(samples))
            self.add(f"{key}.max", max(samples))
        return median

    def add_ratio(self, key: str, numerator: float, denominator: float) -> None:
        # From the medians themselves, so that the JSON is consistent with itself.
        self.values[key] = _rounded(_rounded(numerator) / _rounded(denominator))


def _rounded(value: Any) -> Any:
    if isinstance(value, float) and math.isfinite(value):
        return float(f"{value:.5g}")
    return value


# Words, not figures: printed under the table.
TEXT_KEYS = frozenset({"e2e.question", "e2e.transcript", "e2e.reply", "e2e.reply_sentences",
                       "e2e.first_pass.transcript",
                       "e2e.sequential_reply", "stt.engine", "barge_in.wake_word",
                       "endpoint.pauses_s", "endpoint.engine",
                       "wake_accuracy.phrase", "wake_accuracy.engine",
                       "answers.model", "answers.misses", "answers.invented_answers"})


def _is_figure(key: str, value: Any) -> bool:
    return (isinstance(value, (int, float)) and not isinstance(value, bool)
            and not key.endswith((".min", ".max")) and not key.startswith(("machine.", "bench.", "models.")))


def _number(value: Any) -> str:
    if isinstance(value, int):
        return str(value)
    if value == 0 or 0.01 <= abs(value) < 100000:
        return f"{value:.3g}" if abs(value) < 10 else f"{value:.1f}"
    return f"{value:.3g}"


def format_table(report: Report) -> str:
    values = report.values
    lines = [
        f"edge-assistant bench {values.get('bench.version', '')}: medians of {values.get('bench.runs')} "
        f"run(s), min and max beside them",
        f"machine: {values.get('machine.cpu')}, {values.get('machine.cores_logical')} cores, "
        f"{values.get('machine.ram_gb')} GB, {values.get('machine.os')}; load average "
        f"{values.get('machine.load_avg_start')} at start, {values.get('machine.load_avg_end')} at end",
        f"llm: {values.get('models.llm_name', '?')} ({values.get('models.llm_quantization', '?')}), "
        f"{values.get('models.llm')}",
        f"voice: {values.get('models.voice')}; stt: {values.get('models.stt_engine', '?')} "
        f"{values.get('models.stt')}; wake: {values.get('models.wake')}",
        "",
    ]
    rows = [("metric", "median", "min", "max", "target", "result")]
    notes = []
    for key, value in values.items():
        if key.endswith((".skipped", ".error", ".warning")):
            notes.append(f"{key.rsplit('.', 1)[0]}: {key.rsplit('.', 1)[1]}: {value}")
        elif key in TEXT_KEYS or key.endswith(".text"):
            notes.append(f"{key}: {value}")
        elif _is_figure(key, value) and not key.startswith("targets."):
            low, high = values.get(f"{key}.min"), values.get(f"{key}.max")
            rows.append((
                key, _number(value),
                _number(low) if low is not None else "", _number(high) if high is not None else "",
                str(values.get(f"targets.{key}.limit", "")), str(values.get(f"targets.{key}", "")),
            ))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        cells = [row[0].ljust(widths[0])] + [cell.rjust(width) for cell, width in zip(row[1:4], widths[1:4])]
        cells += [row[4].ljust(widths[4]), row[5]]
        lines.append("  ".join(cells).rstrip())
    if notes:
        lines.append("")
        lines += notes
    return "\n".join(lines)


def write_json(report: Report, path: str | Path) -> None:
    Path(path).write_text(json.dumps(report.values, indent=2, ensure_ascii=False) + "\n")
