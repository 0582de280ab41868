"""The sections that measure the daemon as its own process: `idle` (CPU of `edge-assistant run`
waiting for the wake word) and `memory` (RSS of a fresh process with every model loaded, and
over many turns)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

from ..audio import pcm, wav
from .clips import room_noise
from .loaded import LoadedModels, assembly
from .options import TURN_TIMEOUT_S, BenchOptions
from .report import Report

MEMORY_QUESTIONS = (
    "What is the capital of France?",
    "How many legs does a spider have?",
    "What is the weather usually like in spring?",
    "Name a fruit that is yellow.",
    "What do bees make?",
)
READY_TIMEOUT_S = 600.0


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


def bench_idle(loaded: LoadedModels, report: Report, options: BenchOptions) -> None:
    import psutil

    window_s = 3.0 if options.quick else 20.0
    settle_s = 1.0 if options.quick else 3.0
    with tempfile.TemporaryDirectory(prefix="edge-assistant-bench-") as folder:
        folder = Path(folder)
        # The daemon leaves when its input ends: the file outlasts every window.
        length_s = settle_s + options.runs * window_s + 30.0
        silence = folder / "quiet-room.wav"
        wav.write_wav(silence, room_noise(int(length_s * pcm.SAMPLE_RATE), seed=2), pcm.SAMPLE_RATE)
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


def memory_child(config_path: str | None, turns: int) -> None:
    """Runs in a fresh interpreter: load what the daemon loads, talk for `turns` turns, and print
    the measurements as one JSON line."""
    import resource

    import psutil

    from .. import config as config_module
    from ..assembly import load_models
    from ..events import Command

    def peak_mb() -> float:
        # VmHWM belongs to this program alone; ru_maxrss (kilobytes on Linux) would also count
        # the parent's memory that this process shared between its fork and exec.
        hwm = _peak_rss_mb(os.getpid())
        return hwm if hwm is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    config = config_module.load(config_path)
    process = psutil.Process()
    loaded = load_models(config, with_listener=True)
    loaded_mb = process.memory_info().rss / 2**20
    loading_peak_mb = peak_mb()
    after: list[float] = []

    async def talk(folder: Path) -> None:
        sink = wav.WavSink(folder / "speaker.wav")
        try:
            # No microphone: the questions come as MQTT `ask` commands would.
            async with assembly(loaded, config, sink=sink, hears=False) as parts:
                assistant = await parts.start_assistant()
                for index in range(turns):
                    question = MEMORY_QUESTIONS[index % len(MEMORY_QUESTIONS)]
                    assistant.handle_command(Command("ask", {"text": question, "speak": True}, f"m{index}"))
                    await asyncio.wait_for(assistant.idle(), TURN_TIMEOUT_S)
                    after.append(process.memory_info().rss / 2**20)
        finally:
            await sink.aclose()

    try:
        with tempfile.TemporaryDirectory() as folder:
            asyncio.run(talk(Path(folder)))
    finally:
        loaded.close()
    print(json.dumps({"loaded_mb": loaded_mb, "loading_peak_mb": loading_peak_mb, "after_mb": after,
                      "peak_mb": peak_mb()}), flush=True)


def bench_memory(loaded: LoadedModels, report: Report, options: BenchOptions) -> None:
    turns = 2 if options.quick else 20
    # The first turns grow memory to a plateau (ONNX Runtime's and malloc's arenas sizing up to
    # the longest sentence yet); growth is measured over the turns after that.
    warmup = 1 if options.quick else 20
    # A process of its own: this one holds the benchmark's own allocations.
    code = ("import sys; from edge_assistant.bench.daemon import memory_child; "
            "memory_child(sys.argv[1] or None, int(sys.argv[2]))")
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
