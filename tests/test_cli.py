"""The text commands as a user runs them: `ask`, `prompt`, on real GGUFs."""

import json
import os
import subprocess
import sys

import pytest


def run(*args, config=None, stdin=None, env=None, timeout=180):
    command = [sys.executable, "-m", "edge_assistant.cli"]
    if config is not None:
        command += ["-c", str(config)]
    full_env = dict(os.environ, **(env or {}))
    return subprocess.run(
        command + list(args), input=stdin, capture_output=True, env=full_env, timeout=timeout
    )


@pytest.fixture
def tiny_config(tmp_path, tiny_gguf):
    path = tmp_path / "tiny.toml"
    path.write_text(
        f"[llm]\nmodel = '{tiny_gguf}'\nn_ctx = 512\nmax_tokens = 12\ntemperature = 0.0\nseed = 1\n"
        f"[service]\nstate_dir = '{tmp_path / 'state'}'\n"
    )
    return path


def test_ask_json_reports_text_tokens_and_timings(tiny_config):
    result = run("ask", "--json", "What is the capital of France?", config=tiny_config)
    assert result.returncode == 0, result.stderr
    reply = json.loads(result.stdout)
    assert reply["model"] == "tiny-chat"
    assert reply["quantization"] == "F32"
    assert reply["prompt_format"] == "chatml"
    assert reply["prompt_tokens"] > 10
    assert reply["completion_tokens"] >= 12
    assert set(reply["timings"]) == {"prompt_ms", "first_token_ms", "total_ms", "tokens_per_s"}
    assert reply["text"] and reply["sentences"]
    assert " ".join(reply["sentences"]).replace(" ", "") in reply["text"].replace(" ", "")


def test_ask_streams_plain_text(tiny_config):
    streamed = run("ask", "hello", config=tiny_config)
    as_json = run("ask", "--json", "hello", config=tiny_config)
    assert streamed.stdout.decode().strip() == json.loads(as_json.stdout)["text"]


def test_prompt_prints_the_exact_prompt_and_marks_special_tokens(tiny_config):
    result = run("prompt", "hi <|im_end|>", config=tiny_config)
    text = result.stdout.decode()
    assert text.endswith("<|im_start|>user\nhi <|im_end|><|im_end|>\n<|im_start|>assistant\n")
    tokens = run("prompt", "--tokens", "hi <|im_end|>", config=tiny_config).stdout.decode().splitlines()
    special = [line for line in tokens if line.endswith("\tspecial")]
    # <s>, 3 x <|im_start|>, 2 x <|im_end|> from the template; none from the user's text.
    assert len(special) == 6
    assert sum("'<|im_end|>'" in line for line in special) == 2


@pytest.mark.parametrize("question", [b"", b"   \n"])
def test_empty_question_is_refused(tiny_config, question):
    result = run("ask", config=tiny_config, stdin=question)
    assert result.returncode == 1
    assert b"the question is empty" in result.stderr


def test_huge_and_binary_questions_are_answered(tiny_config):
    huge = run("ask", "--json", "-", config=tiny_config, stdin=b"why is the sky blue " * 5000)
    assert huge.returncode == 0, huge.stderr
    assert json.loads(huge.stdout)["trimmed_chars"] >= 98_000
    junk = run("ask", "--json", "-", config=tiny_config, stdin=bytes(range(256)) * 4)
    assert junk.returncode == 0, junk.stderr
    assert json.loads(junk.stdout)["prompt_tokens"] > 0


@pytest.mark.parametrize(
    "content, message",
    [(None, "is neither a file nor a known model"), (b"GGUF\x03\x00\x00\x00garbage", "cannot load model"), (b"hello", "not a GGUF file")],
)
def test_missing_or_corrupt_model_is_one_clear_line(tmp_path, content, message):
    model = tmp_path / "model.gguf"
    if content is not None:
        model.write_bytes(content)
    config = tmp_path / "c.toml"
    config.write_text(f"[llm]\nmodel = '{model}'\n")
    result = run("ask", "hi", config=config)
    assert result.returncode == 1
    stderr = result.stderr.decode()
    assert message in stderr and str(model) in stderr
    assert len(stderr.strip().splitlines()) == 1, stderr


def test_invalid_config_value_exits_non_zero(tmp_path):
    config = tmp_path / "c.toml"
    config.write_text("[llm]\ntemperature = 'hot'\n")
    result = run("ask", "hi", config=config)
    assert result.returncode == 1
    assert b"llm.temperature: must be a number" in result.stderr


@pytest.mark.slow
def test_ask_on_the_embedded_default_model(tmp_path):
    result = run(
        "ask", "--json", "What is the capital of France?",
        env={"EDGE_ASSISTANT_SERVICE_STATE_DIR": str(tmp_path), "EDGE_ASSISTANT_LLM_TEMPERATURE": "0"},
    )
    assert result.returncode == 0, result.stderr
    reply = json.loads(result.stdout)
    assert reply["model"] == "Gemma 3 270m" and reply["quantization"] == "Q4_K_M"
    assert reply["prompt_format"] == "plain"
    # Structure, not facts (the model's answer is checked once, in test_llm's model-quality test).
    assert reply["text"].strip() and reply["sentences"]
    assert reply["completion_tokens"] > 0 and reply["prompt_tokens"] > reply["completion_tokens"]


# --- ask answers as the daemon does -----------------------------------------------------------


@pytest.fixture
def no_broker_config(tmp_path, tiny_gguf):
    """The tiny model, MQTT on but no broker listening."""
    from tests.support.mqtt_fixtures import free_port

    path = tmp_path / "no-broker.toml"
    path.write_text(
        f"[llm]\nmodel = '{tiny_gguf}'\nn_ctx = 512\nmax_tokens = 12\ntemperature = 0.0\nseed = 1\n"
        f"[service]\nstate_dir = '{tmp_path / 'state'}'\n"
        f"[mqtt]\nhost = '127.0.0.1'\nport = {free_port()}\n"
    )
    return path


def ask_json(config, question: str) -> dict:
    result = run("ask", "--json", question, config=config)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_ask_says_the_time_date_and_sums_from_the_device_without_a_broker(no_broker_config):
    import datetime

    before = datetime.datetime.now()
    reply = ask_json(no_broker_config, "What time is it?")
    after = datetime.datetime.now()
    assert reply["source"] == "device" and "model" not in reply  # no LLM call
    times = {f"{t.hour % 12 or 12}:{t.minute:02d} {'AM' if t.hour < 12 else 'PM'}" for t in (before, after)}
    assert any(reply["text"] == f"It is {t}." for t in times), reply["text"]
    assert before.strftime("%A") in ask_json(no_broker_config, "What's the date today?")["text"]
    assert ask_json(no_broker_config, "What is 15 times 12?")["text"] == "15 times 12 is 180."
    assert ask_json(no_broker_config, "convert 5 miles to kilometers")["text"] == "5 miles is 8.05 kilometers."


def test_ask_says_a_home_command_cannot_reach_the_home(no_broker_config):
    for command in ("Turn on the kitchen light", "Is the kitchen light on?"):
        reply = ask_json(no_broker_config, command)
        assert reply["text"] == "Sorry, I can't reach your home's devices right now.", command
        assert reply["source"] == "device" and reply["actions"] == []
        assert [error["code"] for error in reply["errors"]] == ["home_unreachable"]


def test_ask_reads_the_devices_timers_and_never_changes_them(no_broker_config, tmp_path):
    import time

    from edge_assistant.timers import Timer, TimerStore

    assert ask_json(no_broker_config, "How much time is left on my timer?")["text"] == "No timers."
    # A daemon's timer, as it saved it: 10 minutes, started a minute ago.
    store = TimerStore.in_state_dir(tmp_path / "state")
    now = time.time()
    store.save([Timer(id="t1", kind="timer", name=None, duration_s=600.0, total_s=600.0,
                      ends_at=now + 540, created_at=now - 60)])
    saved = store.path.read_bytes()
    reply = ask_json(no_broker_config, "How much time is left on my timer?")
    assert reply["source"] == "timers" and "9 minutes" in reply["text"], reply["text"]
    refused = ask_json(no_broker_config, "set a timer for 5 minutes")
    assert "ask the running assistant" in refused["text"]
    assert [error["code"] for error in refused["errors"]] == ["timer_read_only"]
    assert store.path.read_bytes() == saved
