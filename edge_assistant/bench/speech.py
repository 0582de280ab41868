"""The speech sections: `stt` (per engine: real-time factor, latency after the end of speech,
peak memory, word error rate on the project's clip set; how often `stt.first_pass` would start
a turn over), `tts` (real-time factor and time to first audio) and `wake` (CPU of the listening
front end)."""

from __future__ import annotations

import math
import pickle
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from ..audio import pcm
from .. import models
from ..config import Config
from . import stt_clips
from .clips import room_noise
from ..assembly import model_paths
from .loaded import LoadedModels, voice_clip
from .options import BenchOptions, SectionSkipped
from .report import Report

TTS_TEXT = (
    "The capital of France is Paris. It is known for the Eiffel Tower, its museums and its cafes."
)


def stt_engines(config: Config) -> tuple[str, dict[str, Path], dict[str, str]]:
    """The engine the daemon would use, the model folder of each engine that can run, and why
    the others cannot."""
    from ..hearing import stt

    folder = model_paths(config).stt
    primary = stt.select_engine(config.stt, folder)
    folders: dict[str, Path] = {}
    skipped: dict[str, str] = {}
    # Whisper: the configured folder when it is a Whisper model, else the embedded tiny.en.
    if folder is not None and stt.is_whisper_model(folder):
        folders["whisper"] = folder
    else:
        try:
            folders["whisper"] = models.embedded_whisper_path()
        except models.ModelError as error:
            skipped["whisper"] = str(error)
    if folder is not None and stt.is_moonshine_model(folder):
        folders["moonshine"] = folder
    else:
        try:
            folders["moonshine"] = models.embedded_moonshine_path()
        except models.ModelError as error:
            skipped["moonshine"] = str(error)
    vosk_folder = folder if folder is not None and stt.is_vosk_model(folder) else None
    vosk_folder = vosk_folder or models.pulled_vosk_model(config.state_dir())
    if vosk_folder is not None:
        folders["vosk"] = vosk_folder
    else:
        skipped["vosk"] = ("no vosk model configured (stt.model) or pulled "
                           "(edge-assistant models pull vosk-model-small-en-us)")
    return primary, folders, skipped


def bench_stt(loaded: LoadedModels, report: Report, options: BenchOptions) -> None:
    """Per engine, in a process of its own (so that its peak memory is its own): the question's
    real-time factor and latency, then the project's clip set (`stt_clips`): word error rate
    and the latency after the end of speech."""
    config = loaded.config
    primary, folders, skipped = stt_engines(config)
    clip = voice_clip(loaded, options.question)
    margin = int(0.2 * pcm.SAMPLE_RATE)
    utterance = clip.samples[max(0, clip.speech_start - margin) : clip.speech_end + margin]
    clips = stt_clips.make_clips(config, loaded.paths.voice, quick=options.quick)
    report.add("stt.engine", primary)
    report.add("stt.audio_s", utterance.size / pcm.SAMPLE_RATE)
    report.add("stt.clips", len(clips))
    report.add("stt.clip_voices", ", ".join(dict.fromkeys(c.voice.name for c in clips)))
    for name, reason in skipped.items():
        report.add(f"stt.{name}.skipped", reason)
    heard: dict[str, list[str]] = {}
    for name, folder in folders.items():
        figures = _in_own_process(config.stt, name, folder, utterance, clips, options.runs)
        _report_engine(report, name, figures, clips, is_primary=name == primary)
        if not figures["fallback"]:
            heard[name] = [text for text, _latency in figures["heard"]]
    whisper, moonshine = (report.values.get(f"stt.{n}.clip_latency_s") for n in ("whisper", "moonshine"))
    if whisper and moonshine:
        report.add_ratio("stt.moonshine_latency_ratio", moonshine, whisper)
    if "whisper" in heard and "moonshine" in heard:
        _report_first_pass(report, clips, heard["moonshine"], heard["whisper"])


def restart_rate(fast: list[str], final: list[str]) -> float:
    """The share of utterances whose final text has other words than the fast one: those a
    turn started on the fast text (stt.first_pass) starts over on."""
    from ..hearing.stt import same_words

    if not final:
        return math.nan
    return sum(not same_words(a, b) for a, b in zip(fast, final, strict=True)) / len(final)


def _report_first_pass(report: Report, clips: list, moonshine: list[str], whisper: list[str]) -> None:
    """stt.first_pass = "moonshine": how often Whisper's text of a clip differs from Moonshine's,
    so that the turn started on Moonshine's starts over (commands and questions apart)."""
    report.add("stt.first_pass_restart_rate", restart_rate(moonshine, whisper))
    groups = {f"{kind}s": lambda clip, kind=kind: clip.kind == kind for kind in ("question", "command")}
    for family in dict.fromkeys(clip.voice.family for clip in clips):
        groups[family] = lambda clip, family=family: clip.voice.family == family
    for name, belongs in groups.items():
        chosen = [i for i, clip in enumerate(clips) if belongs(clip)]
        report.add(f"stt.first_pass_restart_rate_{name}",
                   restart_rate([moonshine[i] for i in chosen], [whisper[i] for i in chosen]))


def _in_own_process(*arguments) -> dict:
    """`engine_figures(*arguments)` in a fresh Python process (arguments and result pickled)."""
    with tempfile.TemporaryDirectory() as directory:
        job, result = Path(directory) / "job.pickle", Path(directory) / "result.pickle"
        job.write_bytes(pickle.dumps(arguments))
        code = ("import pickle, sys; from edge_assistant.bench.speech import engine_figures; "
                "arguments = pickle.loads(open(sys.argv[1], 'rb').read()); "
                "open(sys.argv[2], 'wb').write(pickle.dumps(engine_figures(*arguments)))")
        done = subprocess.run([sys.executable, "-c", code, str(job), str(result)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, check=False)
        if done.returncode != 0:
            last = (done.stderr.strip().splitlines() or ["no output"])[-1]
            raise RuntimeError(f"the {arguments[1]} engine's process failed: {last}")
        return pickle.loads(result.read_bytes())


def engine_figures(stt_config, name: str, folder: Path, utterance: np.ndarray,
                   clips: list[stt_clips.SttClip], runs: int) -> dict:
    """One engine's figures, run in a process of its own (see `bench_stt`)."""
    import resource

    import psutil

    from ..hearing import stt

    before_mb = psutil.Process().memory_info().rss / 2**20
    transcriber = stt.create_transcriber(stt_config, engine=name, model_path=folder)
    transcriber.transcribe(utterance)  # warm-up: first-call allocations
    step = int(0.1 * pcm.SAMPLE_RATE)  # the listener's batches
    rtfs, latencies = [], []
    for _ in range(runs):
        start = time.perf_counter()
        transcriber.start()
        for offset in range(0, utterance.size, step):
            transcriber.accept(utterance[offset : offset + step].tobytes())
        transcript = transcriber.finish()
        rtfs.append((time.perf_counter() - start) / (utterance.size / pcm.SAMPLE_RATE))
        latencies.append(transcript.latency_s)
    heard = []
    for spoken in clips:
        result = transcriber.transcribe(spoken.samples)
        heard.append((result.text, result.latency_s))
    transcriber.close()
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"text": transcript.text, "rtf": rtfs, "latency_s": latencies, "heard": heard,
            "fallback": transcriber.fallback, "peak_rss_mb": peak_mb, "added_mb": peak_mb - before_mb}


def _report_engine(report: Report, name: str, figures: dict, clips: list, is_primary: bool) -> None:
    if figures["fallback"]:
        report.add(f"stt.{name}.skipped", figures["fallback"])
        return
    report.add(f"stt.{name}.text", figures["text"])
    for figure in ("rtf", "latency_s"):
        report.add_series(f"stt.{name}.{figure}", figures[figure])
        if is_primary:
            # The engine the daemon would use also goes under the plain names.
            report.add_series(f"stt.{figure}", figures[figure])
    heard = figures["heard"]
    latencies = sorted(latency for _text, latency in heard)
    report.add(f"stt.{name}.clip_latency_s", statistics.median(latencies))
    report.add(f"stt.{name}.clip_latency_p90_s", latencies[int(0.9 * (len(latencies) - 1))])
    audio_s = sum(c.samples.size for c in clips) / pcm.SAMPLE_RATE
    report.add(f"stt.{name}.clip_rtf", sum(latencies) / audio_s)
    pairs = [(c, text) for c, (text, _latency) in zip(clips, heard)]
    report.add(f"stt.{name}.wer", stt_clips.corpus_wer((c.text, t) for c, t in pairs))
    for family in dict.fromkeys(c.voice.family for c, _t in pairs):
        for kind in ("question", "command"):
            chosen = [(c.text, t) for c, t in pairs if c.voice.family == family and c.kind == kind]
            report.add(f"stt.{name}.wer_{family}_{kind}s", stt_clips.corpus_wer(chosen))
        report.add(f"stt.{name}.wer_{family}",
                   stt_clips.corpus_wer((c.text, t) for c, t in pairs if c.voice.family == family))
    report.add(f"stt.{name}.peak_rss_mb", figures["peak_rss_mb"])
    report.add(f"stt.{name}.added_mb", figures["added_mb"])


def bench_tts(loaded: LoadedModels, report: Report, options: BenchOptions) -> None:
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


def bench_wake(loaded: LoadedModels, report: Report, options: BenchOptions) -> None:
    config = loaded.config
    if not config.wake.enabled:
        raise SectionSkipped("wake.enabled is false: the device listens without a wake word")
    listener = loaded.listener
    seconds = 5.0 if options.quick else 60.0
    noise = room_noise(int(seconds * pcm.SAMPLE_RATE), seed=1).astype("<i2").tobytes()
    size = pcm.frame_bytes(config.audio.frame_ms)
    frames = [noise[offset : offset + size] for offset in range(0, len(noise) - size + 1, size)]
    audio_s = len(frames) * size / (2 * pcm.SAMPLE_RATE)
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
