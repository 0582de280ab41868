"""`edge-assistant bench`: what a person feels (latency) and what the device can afford (CPU,
memory), measured on the configured models and written so that runs can be compared.

Sections, each runnable alone::

    llm       tokens/s (generation and prompt) and time to first token, our engine against
              plain llama-cpp-python on the same `Llama`, alternating runs
    kv_reuse  prompt evaluation of a second turn with the KV cache reused, against cold
    stt       real-time factor and end-of-speech-to-text latency per engine
    tts       real-time factor and time to the first audio of a sentence
    wake      CPU seconds per second of audio of the listening front end
    idle      CPU of the whole daemon (a subprocess) while it waits for the wake word
    e2e       time to first audio of a spoken question, streaming pipeline against the
              sequential way (transcribe, generate everything, synthesize everything)
    memory    RSS of a fresh process with every model loaded, and over many turns

Every timed figure is a median over `runs` repetitions, with `.min` and `.max` beside it.
Results are one flat dict of dotted names (``llm.engine_tokens_per_s``), printed as a table and
written as JSON; a section that cannot run on this setup is reported as skipped, with why.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import json
import logging
import math
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

from . import __version__, audio, models
from .config import Config
from .llm import sampling_arguments

log = logging.getLogger(__name__)

SECTIONS = ("llm", "kv_reuse", "stt", "tts", "wake", "idle", "e2e", "memory")
DEFAULT_RUNS = 5
QUICK_RUNS = 2

DEFAULT_QUESTION = "What is the capital of France?"
KV_FIRST_QUESTION = "What is the capital of France?"
KV_SECOND_QUESTION = "And what is the capital of Italy?"
# A different question, so that only the prompt's shared prefix (system prompt, examples)
# is in the KV cache when a measured turn starts: the state of a daemon between questions.
PRIMER_QUESTION = "Hello, are you there?"
TTS_TEXT = (
    "The capital of France is Paris. It is known for the Eiffel Tower, its museums and its cafes."
)
MEMORY_QUESTIONS = (
    "What is the capital of France?",
    "How many legs does a spider have?",
    "What is the weather usually like in spring?",
    "Name a fruit that is yellow.",
    "What do bees make?",
)

# A quiet room through a real microphone (about -60 dBFS), not digital zeros.
ROOM_NOISE_RMS = 30.0
# Samples louder than this (about -36 dBFS) count as speech when finding where the question ends.
SPEECH_LEVEL = 500
TURN_TIMEOUT_S = 600.0
READY_TIMEOUT_S = 600.0


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
    Target("e2e.ratio", "<=", 0.30, "time to first audio at most 30% of the sequential baseline"),
    Target("idle.cpu_percent", "<", 10.0, "idle listening under 10% of one core"),
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


# ---------------------------------------------------------------------------------------------
# Running


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
    loaded = _Models(config)
    sections: dict[str, Callable[[], None]] = {
        "llm": lambda: bench_llm(loaded, report, options),
        "kv_reuse": lambda: bench_kv_reuse(loaded, report, options),
        "stt": lambda: bench_stt(loaded, report, options),
        "tts": lambda: bench_tts(loaded, report, options),
        "wake": lambda: bench_wake(loaded, report, options),
        "idle": lambda: bench_idle(config, report, options),
        "e2e": lambda: bench_e2e(loaded, report, options),
        "memory": lambda: bench_memory(config, report, options),
    }
    for name in options.sections:
        progress(f"{name} ({options.runs} run{'s' if options.runs > 1 else ''})")
        started = time.monotonic()
        try:
            sections[name]()
        except SectionSkipped as skipped:
            report.add(f"{name}.skipped", str(skipped))
        except _expected_errors() as error:
            report.add(f"{name}.skipped", str(error))
        except Exception as error:
            log.exception("bench section %s failed", name)
            report.add(f"{name}.error", f"{type(error).__name__}: {error}")
            report.errors.append(name)
        progress(f"{name} done in {time.monotonic() - started:.0f} s")
    report.values.update(model_info(config, loaded))
    report.add("machine.load_avg_end", _load_average())
    judge(report, config)
    return report


def _expected_errors() -> tuple[type[Exception], ...]:
    """Failures that mean "this model or engine is not set up here", not a bug."""
    from .llm import LlmError
    from .prompt import PromptError
    from .stt import SttError
    from .tts import TtsError

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


class _Models:
    """The configured models, each loaded the first time a section needs it."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self._session = None
        self._synthesizer = None
        self._listener = None

    @property
    def loaded_session(self):
        return self._session

    @property
    def session(self):
        if self._session is None:
            from .llm import load_session

            self._session = load_session(self.config)
        return self._session

    @property
    def voice_path(self) -> Path:
        return models.resolve_voice(self.config.tts.voice, self.config.state_dir())

    @property
    def synthesizer(self):
        if self._synthesizer is None:
            from .tts import Synthesizer

            self._synthesizer = Synthesizer(self.config.tts, self.voice_path)
        return self._synthesizer

    @property
    def listener(self):
        if self._listener is None:
            from .listener import Listener

            self._listener = Listener(self.config, stt_model_path=stt_model_path(self.config))
        return self._listener

    def clip(self, text: str) -> "_Clip":
        return spoken_clip(self.config, self.voice_path, text)


def stt_model_path(config: Config) -> Path | None:
    """stt.model resolved the way the daemon resolves it."""
    return models.resolve_stt(config.stt.model, config.state_dir(), config.stt.engine)


@contextlib.contextmanager
def _llm_settings(engine, **changes) -> Iterator[Any]:
    """The engine's settings changed for one measurement (it reads them per generation)."""
    saved = engine.config
    engine.config = replace(saved, **changes)
    try:
        yield engine.config
    finally:
        engine.config = saved


# ---------------------------------------------------------------------------------------------
# Machine and models


def _load_average() -> float:
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:
        return -1.0


def _cpu_model() -> str:
    try:
        model = Path("/proc/device-tree/model").read_bytes().rstrip(b"\0").decode()
        if model:
            return model  # a Raspberry Pi or a Jetson names the board here
    except OSError:
        pass
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() in ("model name", "Model", "Hardware") and value.strip():
                return value.strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _os_name() -> str:
    try:
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                return line.split("=", 1)[1].strip().strip('"')
    except OSError:
        pass
    return platform.platform()


def _version(package: str) -> str:
    from importlib import metadata

    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def _llama_features() -> str:
    """The instruction sets llama.cpp was built for (AVX2, NEON, CUDA, ...)."""
    try:
        import llama_cpp

        return " ".join(llama_cpp.llama_print_system_info().decode().split())
    except Exception as error:  # a broken build must not cost the other figures
        return f"unavailable: {error}"


def machine_info() -> dict[str, Any]:
    import psutil

    return {
        "machine.cpu": _cpu_model(),
        "machine.arch": platform.machine(),
        "machine.cores_physical": psutil.cpu_count(logical=False) or os.cpu_count(),
        "machine.cores_logical": os.cpu_count(),
        "machine.ram_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "machine.os": _os_name(),
        "machine.kernel": platform.release(),
        "machine.python": platform.python_version(),
        "machine.llama_cpp_python": _version("llama-cpp-python"),
        "machine.llama_cpp_features": _llama_features(),
        "machine.onnxruntime": _version("onnxruntime"),
        "machine.faster_whisper": _version("faster-whisper"),
        "machine.piper_tts": _version("piper-tts"),
        "machine.load_avg_start": _load_average(),
    }


def _gguf_summary(path: Path) -> tuple[str, str]:
    """The model's name and quantization from its GGUF header, without loading it."""
    from gguf import GGUFReader

    from .llm import FILE_TYPES

    fields = GGUFReader(str(path)).fields
    name = fields["general.name"].contents() if "general.name" in fields else path.stem
    file_type = fields["general.file_type"].contents() if "general.file_type" in fields else None
    quantization = FILE_TYPES.get(int(file_type), f"type {file_type}") if file_type is not None else "unknown"
    return str(name), quantization


def model_info(config: Config, loaded: _Models) -> dict[str, Any]:
    info: dict[str, Any] = {}
    state_dir = config.state_dir()
    try:
        session = loaded.loaded_session
        if session is not None:
            engine = session.engine
            info.update({
                "models.llm": engine.info.path,
                "models.llm_name": engine.info.name,
                "models.llm_quantization": engine.info.quantization,
                "models.llm_threads": engine.threads,
                "models.prompt_format": session.builder.format.name,
            })
        else:
            path = models.resolve_llm(config.llm.model, state_dir)
            name, quantization = _gguf_summary(path)
            info.update({"models.llm": str(path), "models.llm_name": name,
                         "models.llm_quantization": quantization})
        info["models.llm_size_mb"] = round(Path(info["models.llm"]).stat().st_size / 2**20, 1)
    except Exception as error:  # the model info must never cost the results
        info["models.llm"] = f"unavailable: {error}"
    info["models.llm_n_ctx"] = config.llm.n_ctx
    try:
        info["models.voice"] = str(models.resolve_voice(config.tts.voice, state_dir))
    except Exception as error:
        info["models.voice"] = f"unavailable: {error}"
    try:
        from . import stt

        folder = stt_model_path(config)
        engine_name = stt.select_engine(config.stt, folder)
        if engine_name == "whisper" and (folder is None or not stt.is_whisper_model(folder)):
            folder = stt.embedded_whisper_model()
        info["models.stt_engine"] = engine_name
        info["models.stt"] = str(folder)
    except Exception as error:
        info["models.stt"] = f"unavailable: {error}"
    info["models.wake"] = f"{config.wake.engine}:{config.wake.model}" if config.wake.enabled else "off"
    info["models.vad"] = config.vad.engine
    return info


# ---------------------------------------------------------------------------------------------
# Audio made for the measurements


@dataclass(frozen=True)
class _Clip:
    """A spoken question at 16 kHz, with where its speech starts and ends."""

    samples: np.ndarray
    speech_start: int
    speech_end: int


def room_noise(samples: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.clip(rng.normal(0.0, ROOM_NOISE_RMS, samples), -32768, 32767).astype(np.int16)


def spoken_clip(config: Config, voice_path: Path, text: str, lead_s: float = 0.5,
                tail_s: float = 0.3) -> _Clip:
    """`text` spoken by the configured voice, as a microphone in a quiet room would hear it."""
    from .tts import Synthesizer, spoken_samples

    # Without piper's noise the clip is the same every run, so transcripts are comparable.
    synthesizer = Synthesizer(replace(config.tts, noise_scale=0.0, noise_w_scale=0.0), voice_path)
    speech = spoken_samples(synthesizer, text, audio.SAMPLE_RATE)
    if not speech.size:
        raise BenchError(f"the voice produced no audio for {text!r}")
    loud = np.flatnonzero(np.abs(speech.astype(np.int32)) > SPEECH_LEVEL)
    first, last = (int(loud[0]), int(loud[-1]) + 1) if loud.size else (0, speech.size)
    lead = int(lead_s * audio.SAMPLE_RATE)
    samples = np.concatenate([
        np.zeros(lead, dtype=np.int16), speech, np.zeros(int(tail_s * audio.SAMPLE_RATE), dtype=np.int16),
    ])
    mixed = samples.astype(np.int32) + room_noise(samples.size)
    return _Clip(np.clip(mixed, -32768, 32767).astype(np.int16), lead + first, lead + last)


# ---------------------------------------------------------------------------------------------
# llm


@dataclass
class _LlmRun:
    ttft_s: float
    decode_s: float
    prompt_tokens: int
    sampled_tokens: int

    @property
    def tokens_per_s(self) -> float:
        # After the first token, each further token is one evaluation and one sampling.
        return (self.sampled_tokens - 1) / self.decode_s

    @property
    def prompt_tokens_per_s(self) -> float:
        return self.prompt_tokens / self.ttft_s


def _sampled_tokens(llama, prompt_tokens: int) -> int:
    # Every sampled token but the last was evaluated into the context.
    return llama.n_tokens - prompt_tokens + 1


def _engine_run(engine, prompt) -> _LlmRun:
    from .llm import Generation

    engine.llama.reset()  # a cold KV cache: the whole prompt is evaluated
    start = time.perf_counter()
    first = None
    for _piece in engine.generate(prompt, None, Generation()):
        if first is None:
            first = time.perf_counter()
    end = time.perf_counter()
    if first is None:
        raise RuntimeError("the model wrote no text to time")
    return _LlmRun(first - start, end - first, len(prompt.tokens),
                   _sampled_tokens(engine.llama, len(prompt.tokens)))


def _raw_run(llama, prompt, settings, max_tokens: int) -> _LlmRun:
    """What a llama-cpp-python user writes: create_completion, streaming, same settings."""
    llama.reset()
    start = time.perf_counter()
    first = None
    for chunk in llama.create_completion(
        prompt=list(prompt.tokens),
        max_tokens=max_tokens,
        **sampling_arguments(settings),
        stop=[],
        stream=True,
    ):
        if first is None and chunk["choices"][0]["text"]:
            first = time.perf_counter()
    end = time.perf_counter()
    if first is None:
        raise RuntimeError("the model wrote no text to time")
    return _LlmRun(first - start, end - first, len(prompt.tokens),
                   _sampled_tokens(llama, len(prompt.tokens)))


def bench_llm(loaded: _Models, report: Report, options: BenchOptions) -> None:
    session = loaded.session
    engine = session.engine
    wanted = 16 if options.quick else 64
    # The prompt of a real turn, without stop strings: both sides write the same number of
    # tokens, and greedy decoding makes them the same tokens.
    prompt = replace(session.prepare(DEFAULT_QUESTION), stop=())
    with _llm_settings(engine, temperature=0.0, max_tokens=wanted, stop=()) as settings:
        warm = _engine_run(engine, prompt)
        tokens = warm.sampled_tokens
        if tokens < 4:
            raise SectionSkipped(f"the model ends its reply after {tokens} tokens; too few to time")
        _raw_run(engine.llama, prompt, settings, tokens)
        ours: list[_LlmRun] = []
        raw: list[_LlmRun] = []
        for index in range(options.runs):
            # Alternating which goes first spreads cache and clock effects over both.
            order = ("ours", "raw") if index % 2 == 0 else ("raw", "ours")
            for side in order:
                if side == "ours":
                    ours.append(_engine_run(engine, prompt))
                else:
                    raw.append(_raw_run(engine.llama, prompt, settings, tokens))
    mismatched = {run.sampled_tokens for run in ours + raw} - {tokens}
    if mismatched:
        report.add("llm.warning", f"token counts differ between runs: {sorted(mismatched | {tokens})}")
    report.add("llm.prompt_tokens", len(prompt.tokens))
    report.add("llm.completion_tokens", tokens)
    ours_tps = report.add_series("llm.engine_tokens_per_s", [r.tokens_per_s for r in ours])
    raw_tps = report.add_series("llm.raw_tokens_per_s", [r.tokens_per_s for r in raw])
    report.add_ratio("llm.ratio", ours_tps, raw_tps)
    ours_pps = report.add_series("llm.engine_prompt_tokens_per_s", [r.prompt_tokens_per_s for r in ours])
    raw_pps = report.add_series("llm.raw_prompt_tokens_per_s", [r.prompt_tokens_per_s for r in raw])
    report.add_ratio("llm.prompt_ratio", ours_pps, raw_pps)
    report.add_series("llm.engine_ttft_s", [r.ttft_s for r in ours])
    report.add_series("llm.raw_ttft_s", [r.ttft_s for r in raw])


# ---------------------------------------------------------------------------------------------
# kv_reuse


def _prompt_eval_s(engine, prompt) -> tuple[float, int]:
    """Seconds from the call to the first sampled token, and the prompt tokens reused."""
    from .llm import Generation

    result = Generation()
    with _llm_settings(engine, max_tokens=1):
        for _piece in engine.generate(prompt, None, result):
            pass
    return result.timings.prompt_ms / 1000, result.cached_tokens


def bench_kv_reuse(loaded: _Models, report: Report, options: BenchOptions) -> None:
    from .llm import Generation, Reply

    session = loaded.session
    engine = session.engine
    reply_tokens = 8 if options.quick else engine.config.max_tokens
    warm, cold, cached, sizes = [], [], [], []
    with _llm_settings(engine, temperature=0.0, max_tokens=reply_tokens):
        for _ in range(options.runs):
            # Turn one, answered and remembered as the daemon does.
            session.reset()
            engine.llama.reset()
            first = session.prepare(KV_FIRST_QUESTION)
            reply = Reply(first, Generation())
            for _sentence in session.sentences(first, None, reply):
                pass
            session.record(KV_FIRST_QUESTION, reply)
            second = session.prepare(KV_SECOND_QUESTION)
            seconds, reused = _prompt_eval_s(engine, second)
            warm.append(seconds)
            cached.append(reused)
            sizes.append(len(second.tokens))
            engine.llama.reset()
            seconds, _ = _prompt_eval_s(engine, second)
            cold.append(seconds)
    session.reset()
    report.add("kv_reuse.prompt_tokens", round(statistics.median(sizes)))
    report.add("kv_reuse.cached_tokens", round(statistics.median(cached)))
    warm_s = report.add_series("kv_reuse.warm_prompt_s", warm)
    cold_s = report.add_series("kv_reuse.cold_prompt_s", cold)
    report.add_ratio("kv_reuse.ratio", warm_s, cold_s)


# ---------------------------------------------------------------------------------------------
# stt


def _stt_engines(config: Config) -> tuple[str, dict[str, Path], dict[str, str]]:
    """The engine the daemon would use, the model folder of each engine that can run, and why
    the others cannot."""
    from . import stt

    folder = stt_model_path(config)
    primary = stt.select_engine(config.stt, folder)
    folders: dict[str, Path] = {}
    skipped: dict[str, str] = {}
    # Whisper: the configured folder when it is a Whisper model, else the embedded tiny.en.
    if folder is not None and stt.is_whisper_model(folder):
        folders["whisper"] = folder
    else:
        try:
            folders["whisper"] = stt.embedded_whisper_model()
        except stt.SttError as error:
            skipped["whisper"] = str(error)
    vosk_folder = folder if folder is not None and stt.is_vosk_model(folder) else None
    vosk_folder = vosk_folder or models.pulled_vosk_model(config.state_dir())
    if vosk_folder is not None:
        folders["vosk"] = vosk_folder
    else:
        skipped["vosk"] = ("no vosk model configured (stt.model) or pulled "
                           "(edge-assistant models pull vosk-model-small-en-us)")
    return primary, folders, skipped


def bench_stt(loaded: _Models, report: Report, options: BenchOptions) -> None:
    from . import stt

    config = loaded.config
    primary, folders, skipped = _stt_engines(config)
    clip = loaded.clip(options.question)
    margin = int(0.2 * audio.SAMPLE_RATE)
    utterance = clip.samples[max(0, clip.speech_start - margin) : clip.speech_end + margin]
    duration_s = utterance.size / audio.SAMPLE_RATE
    step = int(0.1 * audio.SAMPLE_RATE)  # the listener's batches
    report.add("stt.engine", primary)
    report.add("stt.audio_s", duration_s)
    for name, reason in skipped.items():
        report.add(f"stt.{name}.skipped", reason)
    for name, folder in folders.items():
        transcriber = stt.create_transcriber(config.stt, engine=name, model_path=folder)
        transcriber.transcribe(utterance)  # warm-up: first-call allocations
        rtfs, latencies = [], []
        for _ in range(options.runs):
            start = time.perf_counter()
            transcriber.start()
            for offset in range(0, utterance.size, step):
                transcriber.accept(utterance[offset : offset + step].tobytes())
            transcript = transcriber.finish()
            rtfs.append((time.perf_counter() - start) / duration_s)
            latencies.append(transcript.latency_s)
        report.add(f"stt.{name}.text", transcript.text)
        for figure, samples in (("rtf", rtfs), ("latency_s", latencies)):
            report.add_series(f"stt.{name}.{figure}", samples)
            if name == primary:
                # The engine the daemon would use also goes under the plain names.
                report.add_series(f"stt.{figure}", samples)


# ---------------------------------------------------------------------------------------------
# tts


def bench_tts(loaded: _Models, report: Report, options: BenchOptions) -> None:
    synthesizer = loaded.synthesizer
    for _chunk in synthesizer.synthesize(TTS_TEXT):  # warm-up
        pass
    rtfs, firsts = [], []
    for _ in range(options.runs):
        start = time.perf_counter()
        first = None
        samples = 0
        for chunk in synthesizer.synthesize(TTS_TEXT):
            if first is None:
                first = time.perf_counter() - start
            samples += chunk.samples.size
        elapsed = time.perf_counter() - start
        rtfs.append(elapsed / (samples / synthesizer.sample_rate))
        firsts.append(first)
    report.add("tts.audio_s", samples / synthesizer.sample_rate)
    report.add("tts.sample_rate", synthesizer.sample_rate)
    report.add_series("tts.rtf", rtfs)
    report.add_series("tts.first_chunk_s", firsts)


# ---------------------------------------------------------------------------------------------
# wake


def _listener_cpu(listener, frames: list[bytes], listening: bool) -> tuple[float, list]:
    """CPU seconds of this process to run the listener over `frames`, and its events."""
    listener.begin()
    if listening:
        # Past the wake word for good: wake detector and VAD on every frame.
        listener.listen_now(math.inf)
    per_batch = 10  # the listener's 0.1 s batches of 10 ms frames
    events = []
    cpu = time.process_time()
    for offset in range(0, len(frames), per_batch):
        events += listener.process(frames[offset : offset + per_batch])
    return time.process_time() - cpu, events


def bench_wake(loaded: _Models, report: Report, options: BenchOptions) -> None:
    config = loaded.config
    if not config.wake.enabled:
        raise SectionSkipped("wake.enabled is false: the device listens without a wake word")
    listener = loaded.listener
    seconds = 5.0 if options.quick else 60.0
    noise = room_noise(int(seconds * audio.SAMPLE_RATE), seed=1).astype("<i2").tobytes()
    size = audio.frame_bytes(config.audio.frame_ms)
    frames = [noise[offset : offset + size] for offset in range(0, len(noise) - size + 1, size)]
    audio_s = len(frames) * size / (2 * audio.SAMPLE_RATE)
    _listener_cpu(listener, frames[:100], listening=False)  # warm-up
    waiting, listening = [], []
    for _ in range(options.runs):
        cpu, events = _listener_cpu(listener, frames, listening=False)
        waiting.append(cpu / audio_s)
        cpu, events_listening = _listener_cpu(listener, frames, listening=True)
        listening.append(cpu / audio_s)
        heard = [e.type for e in events + events_listening]
        if heard:
            report.add("wake.warning", f"the quiet room caused events: {sorted(set(heard))}")
    listener.begin()
    report.add("wake.audio_s", audio_s)
    report.add_series("wake.cpu_per_audio_s", waiting)
    report.add_series("wake.listening_cpu_per_audio_s", listening)


# ---------------------------------------------------------------------------------------------
# idle: the daemon as a subprocess


class _NotifySocket:
    """Receives the daemon's sd_notify datagrams, as systemd would."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.socket.bind(str(path))
        self.socket.settimeout(0.2)

    def wait_for(self, line: str, timeout: float, alive: Callable[[], bool]) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and alive():
            try:
                data = self.socket.recv(4096)
            except (socket.timeout, OSError):
                continue
            if line in data.decode("utf-8", "replace").splitlines():
                return True
        return False

    def close(self) -> None:
        self.socket.close()


def _peak_rss_mb(pid: int) -> float | None:
    """The kernel's high-water mark of a process's RSS (VmHWM), Linux only."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except (OSError, ValueError):
        pass
    return None


def _daemon_command(options: BenchOptions, input_wav: Path, output_wav: Path) -> list[str]:
    command = [sys.executable, "-m", "edge_assistant.cli"]
    if options.config_path:
        command += ["-c", options.config_path]
    return command + ["--log-level", "warning", "run", "--input", str(input_wav), "--output", str(output_wav)]


def bench_idle(config: Config, report: Report, options: BenchOptions) -> None:
    import psutil

    window_s = 3.0 if options.quick else 20.0
    settle_s = 1.0 if options.quick else 3.0
    with tempfile.TemporaryDirectory(prefix="edge-assistant-bench-") as folder:
        folder = Path(folder)
        # The daemon leaves when its input ends: the file outlasts every window.
        length_s = settle_s + options.runs * window_s + 30.0
        silence = folder / "quiet-room.wav"
        audio.write_wav(silence, room_noise(int(length_s * audio.SAMPLE_RATE), seed=2), audio.SAMPLE_RATE)
        notify = _NotifySocket(folder / "notify.sock")
        env = {**os.environ, "NOTIFY_SOCKET": str(notify.path), "EDGE_ASSISTANT_MQTT_ENABLED": "false"}
        env.pop("WATCHDOG_USEC", None)
        log_path = folder / "daemon.log"
        with open(log_path, "w") as log_file:
            daemon = subprocess.Popen(
                _daemon_command(options, silence, folder / "speaker.wav"),
                stdout=log_file, stderr=subprocess.STDOUT, env=env,
            )
        try:
            if not notify.wait_for("READY=1", READY_TIMEOUT_S, lambda: daemon.poll() is None):
                tail = log_path.read_text()[-2000:]
                raise RuntimeError(f"the daemon never became ready (exit {daemon.poll()}): {tail}")
            time.sleep(settle_s)
            process = psutil.Process(daemon.pid)
            percents = []
            for _ in range(options.runs):
                before, started = process.cpu_times(), time.monotonic()
                time.sleep(window_s)
                after, ended = process.cpu_times(), time.monotonic()
                used = (after.user + after.system + after.children_user + after.children_system
                        - before.user - before.system - before.children_user - before.children_system)
                percents.append(100.0 * used / (ended - started))
            rss_mb = process.memory_info().rss / 2**20
            peak_mb = _peak_rss_mb(daemon.pid)
            if daemon.poll() is not None:
                raise RuntimeError(f"the daemon stopped while measured: {log_path.read_text()[-2000:]}")
        finally:
            if daemon.poll() is None:
                daemon.send_signal(signal.SIGTERM)
                try:
                    daemon.wait(30)
                except subprocess.TimeoutExpired:
                    daemon.kill()
                    daemon.wait()
            notify.close()
    report.add("idle.window_s", window_s)
    report.add_series("idle.cpu_percent", percents)
    report.add("idle.rss_mb", rss_mb)
    if peak_mb is not None:
        report.add("idle.peak_rss_mb", peak_mb)


# ---------------------------------------------------------------------------------------------
# e2e: one spoken turn, streaming and sequential


class _SpokenQuestion:
    """A microphone, in real time: the question once, then a quiet room until closed.

    Notes the moment the frame holding the last speech sample is handed on: the end of the
    user's speech, from which time to first audio is counted.
    """

    def __init__(self, clip: _Clip, frame_ms: int) -> None:
        self.clip = clip
        self.frame_ms = frame_ms
        self.speech_started_at: float | None = None
        self.speech_ended_at: float | None = None
        self._closed = False

    async def frames(self):
        size = audio.frame_samples(self.frame_ms)
        noise = room_noise(audio.SAMPLE_RATE, seed=3)
        start = time.monotonic()
        count = 0
        while not self._closed:
            offset = count * size
            if offset < self.clip.samples.size:
                chunk = self.clip.samples[offset : offset + size]
                chunk = np.concatenate([chunk, noise[: size - chunk.size]])
            else:
                at = offset % (noise.size - size)
                chunk = noise[at : at + size]
            if self.speech_started_at is None and offset + size > self.clip.speech_start:
                self.speech_started_at = time.monotonic()
            if self.speech_ended_at is None and offset + size >= self.clip.speech_end:
                self.speech_ended_at = time.monotonic()
            yield chunk.astype("<i2").tobytes()
            count += 1
            await asyncio.sleep(max(0.0, start + count * self.frame_ms / 1000 - time.monotonic()))

    def close(self) -> None:
        self._closed = True


class _RecordingSink(audio.WavSink):
    """A real-time WAV sink that notes when each play starts and ends."""

    def __init__(self, path: Path) -> None:
        super().__init__(path, realtime=True)
        self.plays: list[tuple[float, float]] = []

    async def play(self, samples, sample_rate: int) -> bool:
        started = time.monotonic()
        try:
            return await super().play(samples, sample_rate)
        finally:
            self.plays.append((started, time.monotonic()))


def _timed_synthesizer(config: Config, voice_path: Path):
    from .tts import Synthesizer

    class TimedSynthesizer(Synthesizer):
        """Notes when each chunk was being synthesized (in the synthesis thread)."""

        def __init__(self, *args, **kwargs) -> None:
            super().__init__(*args, **kwargs)
            self.spans: list[tuple[float, float]] = []

        def synthesize(self, text: str):
            chunks = super().synthesize(text)
            try:
                while True:
                    started = time.monotonic()
                    chunk = next(chunks, None)
                    if chunk is None:
                        return
                    self.spans.append((started, time.monotonic()))
                    yield chunk
            finally:
                chunks.close()

    return TimedSynthesizer(config.tts, voice_path)


class _EventLog:
    def __init__(self) -> None:
        self.events: list[tuple[float, Any]] = []
        # Events carry wall-clock stamps made where they happened (the listener's thread).
        self.offset = time.monotonic() - time.time()

    def __call__(self, event) -> None:
        self.events.append((time.monotonic(), event))

    def first(self, kind: str, predicate: Callable[[Any], bool] = lambda _: True):
        return next((e for _, e in self.events if e.type == kind and predicate(e)), None)

    def at(self, kind: str, predicate: Callable[[Any], bool] = lambda _: True) -> float | None:
        return next((t for t, e in self.events if e.type == kind and predicate(e)), None)

    def stamped(self, event) -> float:
        return event.timestamp + self.offset

    async def wait_for(self, kind: str, timeout: float = TURN_TIMEOUT_S):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            event = self.first(kind)
            if event is not None:
                return event
            errors = [e for _, e in self.events if e.type == "error"]
            if errors:
                raise RuntimeError(f"the turn failed: {errors[0].data}")
            await asyncio.sleep(0.01)
        raise RuntimeError(f"no {kind} event within {timeout:.0f} s")


def _prime_cache(session) -> None:
    """A fresh conversation whose KV cache holds what every prompt starts with."""
    session.reset()
    llama = session.engine.llama
    llama.reset()
    llama.eval(list(session.prepare(PRIMER_QUESTION).tokens))


def _heard(log_: _EventLog) -> tuple[Any, Any]:
    transcript = log_.first("transcript")
    speech_end = log_.first("speech_end")
    text = str(transcript.data.get("text", "")).strip()
    if not text:
        raise RuntimeError("the spoken question was not recognised (empty transcript)")
    return speech_end, transcript


def _timeline(source: _SpokenQuestion, log_: _EventLog, speech_end, transcript,
              llm: list[tuple[float, float]], tts: list[tuple[float, float]],
              speaker: list[tuple[float, float]]) -> Timeline:
    zero = source.speech_ended_at

    def rel(span: tuple[float, float]) -> tuple[float, float]:
        return (span[0] - zero, span[1] - zero)

    ended = log_.stamped(speech_end)
    return Timeline(
        speech=rel((source.speech_started_at, zero)),
        endpoint=rel((zero, ended)),
        stt=rel((ended, log_.stamped(transcript))),
        llm=[rel(span) for span in llm],
        tts=[rel(span) for span in tts if span[1] >= zero],
        speaker=[rel(span) for span in speaker],
    )


async def _streaming_turn(loaded: _Models, config: Config, clip: _Clip, synthesizer, folder: Path):
    from .pipeline import Assistant

    session = loaded.session
    _prime_cache(session)
    synthesizer.spans.clear()
    source = _SpokenQuestion(clip, config.audio.frame_ms)
    sink = _RecordingSink(folder / "streaming.wav")
    assistant = Assistant(config, session=session, synthesizer=synthesizer, sink=sink,
                          listener=loaded.listener, source=source, earcons={})
    events = _EventLog()
    assistant.subscribers.append(events)
    loaded.listener.listen_now()  # as after the wake word, or an MQTT `listen`
    assistant.start()
    try:
        await events.wait_for("transcript")
        speech_end, transcript = _heard(events)
        # The transcript has queued the turn: idle() waits until it is spoken.
        await asyncio.wait_for(assistant.idle(), TURN_TIMEOUT_S)
        reply = events.first("reply")
        if reply is None or not sink.plays:
            raise RuntimeError(f"the turn produced no speech: {[e.type for _, e in events.events]}")
        llm_span = (events.at("state", lambda e: e.data.get("state") == "thinking"), events.at("reply"))
        timeline = _timeline(source, events, speech_end, transcript, [llm_span],
                             synthesizer.spans, sink.plays)
        sentences = [e.data["text"] for _, e in events.events if e.type == "reply_sentence"]
        return timeline, transcript.data["text"], reply.data["text"], sentences
    finally:
        source.close()
        await assistant.stop()
        sink.close()


async def _sequential_turn(loaded: _Models, config: Config, clip: _Clip, synthesizer, folder: Path):
    """The way most llama-cpp-python voice tutorials do it: wait for the whole transcript, the
    whole reply, the whole speech, then play. Same endpointing, prompt, settings and models."""
    session = loaded.session
    engine = session.engine
    _prime_cache(session)
    synthesizer.spans.clear()
    source = _SpokenQuestion(clip, config.audio.frame_ms)
    sink = _RecordingSink(folder / "sequential.wav")
    events = _EventLog()
    listener = loaded.listener
    listener.listen_now()
    # The microphone keeps being heard meanwhile, as in the daemon.
    listening = asyncio.create_task(listener.run(source.frames(), events))
    try:
        await events.wait_for("transcript")
        speech_end, transcript = _heard(events)
        text = transcript.data["text"]

        def answer():
            settings = engine.config
            started = time.monotonic()
            prompt = session.prepare(text)
            completion = engine.llama.create_completion(
                prompt=list(prompt.tokens),
                max_tokens=settings.max_tokens,
                **sampling_arguments(settings),
                stop=list(dict.fromkeys((*prompt.stop, *settings.stop))),
            )
            generated = (started, time.monotonic())
            reply = completion["choices"][0]["text"].strip()
            chunks = list(synthesizer.synthesize(reply))
            return generated, reply, chunks

        generated, reply, chunks = await asyncio.to_thread(answer)
        if not chunks:
            raise RuntimeError(f"the reply has nothing to say: {reply!r}")
        samples = np.concatenate([chunk.samples for chunk in chunks])
        await sink.play(samples, chunks[0].sample_rate)
        timeline = _timeline(source, events, speech_end, transcript, [generated],
                             synthesizer.spans, sink.plays)
        return timeline, text, reply, [reply]
    finally:
        source.close()
        await listening
        sink.close()


def _closest_to_median(timelines: list[Timeline], values: list[float]) -> Timeline:
    median = statistics.median(values)
    return min(zip(timelines, values), key=lambda pair: abs(pair[1] - median))[0]


def bench_e2e(loaded: _Models, report: Report, options: BenchOptions) -> None:
    base = loaded.config
    # No follow-up window or earcons: one turn, measured to its last sample.
    config = replace(base, service=replace(base.service, follow_up_s=0.0, earcons=False))
    clip = loaded.clip(options.question)
    engine = loaded.session.engine
    synthesizer = _timed_synthesizer(config, loaded.voice_path)
    streaming: list[Timeline] = []
    sequential: list[Timeline] = []
    replies: dict[str, str] = {}

    async def measure(folder: Path) -> None:
        for index in range(options.runs):
            order = ("streaming", "sequential") if index % 2 == 0 else ("sequential", "streaming")
            for kind in order:
                turn = _streaming_turn if kind == "streaming" else _sequential_turn
                timeline, heard, reply, sentences = await asyncio.wait_for(
                    turn(loaded, config, clip, synthesizer, folder), TURN_TIMEOUT_S)
                (streaming if kind == "streaming" else sequential).append(timeline)
                replies[f"{kind}.transcript"] = heard
                replies[f"{kind}.reply"] = reply
                if kind == "streaming":
                    replies["sentences"] = str(len(sentences))

    try:
        # Greedy: both pipelines write the same reply, so only the plumbing differs.
        with _llm_settings(engine, temperature=0.0), tempfile.TemporaryDirectory() as folder:
            asyncio.run(measure(Path(folder)))
    finally:
        loaded.session.reset()
    report.add("e2e.question", options.question)
    report.add("e2e.transcript", replies["streaming.transcript"])
    report.add("e2e.reply", replies["streaming.reply"])
    report.add("e2e.reply_sentences", int(replies["sentences"]))
    if replies["sequential.reply"] != replies["streaming.reply"]:
        report.add("e2e.sequential_reply", replies["sequential.reply"])
    ttfa = report.add_series("e2e.ttfa_s", [t.ttfa_s for t in streaming])
    sequential_ttfa = report.add_series("e2e.sequential_ttfa_s", [t.ttfa_s for t in sequential])
    report.add_ratio("e2e.ratio", ttfa, sequential_ttfa)
    report.add_series("e2e.total_s", [t.total_s for t in streaming])
    report.add_series("e2e.sequential_total_s", [t.total_s for t in sequential])
    report.add_series("e2e.endpoint_s", [t.endpoint[1] - t.endpoint[0] for t in streaming])
    report.add_series("e2e.stt_s", [t.stt[1] - t.stt[0] for t in streaming])
    # From the transcript on, the part of the wait that streaming can shorten.
    reply = report.add_series("e2e.reply_ttfa_s", [t.ttfa_s - t.stt[1] for t in streaming])
    sequential_reply = report.add_series("e2e.sequential_reply_ttfa_s", [t.ttfa_s - t.stt[1] for t in sequential])
    report.add_ratio("e2e.reply_ratio", reply, sequential_reply)
    report.timelines["streaming"] = _closest_to_median(streaming, [t.ttfa_s for t in streaming])
    report.timelines["sequential"] = _closest_to_median(sequential, [t.ttfa_s for t in sequential])


# ---------------------------------------------------------------------------------------------
# memory: a fresh process, as the daemon


def memory_child(config_path: str | None, turns: int) -> None:
    """Runs in a fresh interpreter: load what the daemon loads, talk for `turns` turns, and print
    the measurements as one JSON line."""
    import resource

    import psutil

    from . import config as config_module
    from .events import Command
    from .pipeline import Assistant
    from .service import load_models

    def peak_mb() -> float:
        # VmHWM belongs to this program alone; ru_maxrss (kilobytes on Linux) would also count
        # the parent's memory that this process shared between its fork and exec.
        hwm = _peak_rss_mb(os.getpid())
        return hwm if hwm is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    config = config_module.load(config_path)
    process = psutil.Process()
    session, synthesizer, listener, earcons = load_models(config, with_listener=True)
    loaded_mb = process.memory_info().rss / 2**20
    loading_peak_mb = peak_mb()
    after: list[float] = []

    async def talk(folder: Path) -> None:
        sink = audio.WavSink(folder / "speaker.wav")
        assistant = Assistant(config, session=session, synthesizer=synthesizer, sink=sink,
                              listener=listener, earcons=earcons)
        assistant.start()
        try:
            for index in range(turns):
                question = MEMORY_QUESTIONS[index % len(MEMORY_QUESTIONS)]
                assistant.handle_command(Command("ask", {"text": question, "speak": True}, f"m{index}"))
                await asyncio.wait_for(assistant.idle(), TURN_TIMEOUT_S)
                after.append(process.memory_info().rss / 2**20)
        finally:
            await assistant.stop()
            sink.close()

    with tempfile.TemporaryDirectory() as folder:
        asyncio.run(talk(Path(folder)))
    print(json.dumps({"loaded_mb": loaded_mb, "loading_peak_mb": loading_peak_mb, "after_mb": after,
                      "peak_mb": peak_mb()}), flush=True)


def bench_memory(config: Config, report: Report, options: BenchOptions) -> None:
    turns = 2 if options.quick else 20
    # The first turns grow memory to a plateau (ONNX Runtime's and malloc's arenas sizing up to
    # the longest sentence yet); growth is measured over the turns after that.
    warmup = 1 if options.quick else 20
    # A process of its own: this one holds the benchmark's own allocations.
    code = "import sys; from edge_assistant.bench import memory_child; memory_child(sys.argv[1] or None, int(sys.argv[2]))"
    finished = subprocess.run(
        [sys.executable, "-c", code, options.config_path or "", str(warmup + turns)],
        capture_output=True, text=True, timeout=TURN_TIMEOUT_S + turns * 120,
    )
    lines = [line for line in finished.stdout.splitlines() if line.startswith("{")]
    if finished.returncode != 0 or not lines:
        raise RuntimeError(f"the measuring process failed (exit {finished.returncode}): {finished.stderr[-2000:]}")
    result = json.loads(lines[-1])
    after = result["after_mb"]
    report.add("memory.turns", turns)
    report.add("memory.warmup_turns", warmup)
    report.add("memory.rss_loaded_mb", result["loaded_mb"])
    report.add("memory.loading_peak_rss_mb", result["loading_peak_mb"])
    report.add("memory.rss_after_first_turn_mb", after[0])
    report.add("memory.warmup_growth_mb", after[warmup - 1] - after[0])
    report.add("memory.rss_after_turns_mb", after[-1])
    report.add("memory.growth_mb", after[-1] - after[warmup - 1])
    report.add("memory.peak_rss_mb", result["peak_mb"])


# ---------------------------------------------------------------------------------------------
# Output


# Words, not figures: printed under the table.
TEXT_KEYS = frozenset({"e2e.question", "e2e.transcript", "e2e.reply", "e2e.reply_sentences",
                       "e2e.sequential_reply", "stt.engine"})


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


STAGE_ROWS = ("user speech", "listen / STT", "LLM generating", "TTS synthesizing", "speaker playing")
STAGE_COLORS = ("#9e9e9e", "#5c6bc0", "#ef6c00", "#2e7d32", "#c62828")


def check_plotting() -> None:
    """Fail before a long run, not after it, when plots cannot be drawn."""
    import importlib.util

    if importlib.util.find_spec("matplotlib") is None:
        raise BenchError("--plot needs matplotlib: pip install 'edge-assistant[bench]'")


def write_plot(report: Report, path: str | Path) -> None:
    """Both pipelines' turn, one above the other, each stage on its own row."""
    if not report.timelines:
        raise BenchError("no turn to plot: the e2e section did not run or failed")
    check_plotting()
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    kinds = [kind for kind in ("streaming", "sequential") if kind in report.timelines]
    figure, axes = plt.subplots(len(kinds), 1, figsize=(11, 2.6 * len(kinds) + 0.8), sharex=True,
                                squeeze=False)
    end = max(report.timelines[kind].total_s for kind in kinds)
    start = min(report.timelines[kind].speech[0] for kind in kinds)
    for axis, kind in zip(axes[:, 0], kinds):
        timeline = report.timelines[kind]
        rows = (
            [timeline.speech],
            [timeline.endpoint, timeline.stt],
            timeline.llm,
            timeline.tts,
            timeline.speaker,
        )
        for index, spans in enumerate(rows):
            y = len(STAGE_ROWS) - 1 - index
            bars = [(a, max(b - a, 0.005)) for a, b in spans]
            colors = STAGE_COLORS[index]
            if index == 1:
                # Waiting out the silence, then transcribing.
                colors = ["#c5cae9", STAGE_COLORS[1]]
            # White edges keep back-to-back chunks (one per sentence) apart.
            axis.broken_barh(bars, (y - 0.35, 0.7), facecolors=colors, edgecolor="white", linewidth=0.8)
        for (a, b), label in zip((timeline.endpoint, timeline.stt), ("silence", "STT")):
            if b - a > 0.07 * (end - start):
                axis.text((a + b) / 2, len(STAGE_ROWS) - 2, label, ha="center", va="center", fontsize=8)
        axis.set_yticks(range(len(STAGE_ROWS)), list(reversed(STAGE_ROWS)))
        axis.axvline(0.0, color="black", linewidth=1)
        axis.axvline(timeline.ttfa_s, color=STAGE_COLORS[4], linestyle="--", linewidth=1)
        axis.set_title(f"{kind}: first audio {timeline.ttfa_s:.2f} s after the end of speech, "
                       f"turn over at {timeline.total_s:.2f} s", fontsize=10, loc="left")
        axis.set_xlim(start - 0.2, end + 0.3)
        axis.grid(axis="x", alpha=0.3)
    axes[-1, 0].set_xlabel("seconds from the end of the user's speech "
                           "(listen row: light = waiting out the silence, dark = transcribing)")
    values = report.values
    reply = str(values.get("e2e.reply", ""))
    reply = reply if len(reply) <= 70 else reply[:69].rstrip() + "…"
    figure.suptitle(
        f"One spoken turn: \"{values.get('e2e.question', '')}\" -> \"{reply}\" "
        f"({values.get('e2e.reply_sentences', '?')} sentence(s))\n"
        f"{values.get('models.llm_name', '')} ({values.get('models.llm_quantization', '')}) on "
        f"{values.get('machine.cpu', '')}, load {values.get('machine.load_avg_start', '')}",
        fontsize=10,
    )
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
