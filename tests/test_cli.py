"""The commands as a user runs them: `ask`, `prompt` on real GGUFs; `config check` and
`status` as the administrator of an installed service meets them."""

import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import pytest

from edge_assistant import cli, config as config_module, models


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


# --- config check and the service's state directory ---------------------------------------


def files_under(folder: Path) -> list[Path]:
    return sorted(path for path in folder.rglob("*"))


def test_config_check_writes_nothing(tmp_path):
    # The embedded defaults (the 241 MiB Gemma among them) in the state directory of a person
    # with an empty home: checked, not assembled there.
    home = tmp_path / "home"
    home.mkdir()
    config = tmp_path / "c.toml"
    config.write_text("[mqtt]\nenabled = false\n")
    env = {**{k: v for k, v in os.environ.items() if k not in ("STATE_DIRECTORY", "EDGE_ASSISTANT_SERVICE_STATE_DIR")},
           "HOME": str(home), "XDG_CACHE_HOME": str(home / ".cache"), "XDG_DATA_HOME": str(home / ".local" / "share")}
    result = subprocess.run([sys.executable, "-m", "edge_assistant.cli", "-c", str(config), "config", "check"],
                            capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"{config}: OK"
    assert files_under(home) == []
    assert files_under(tmp_path) == [config, home]


def test_config_check_still_refuses_a_model_that_is_not_on_disk(tmp_path):
    config = tmp_path / "c.toml"
    config.write_text(f"[llm]\nmodel = 'tinyllama-1.1b-chat-q4'\n[service]\nstate_dir = '{tmp_path / 'state'}'\n")
    result = run("config", "check", str(config))
    assert result.returncode == 1
    assert b"llm.model: model 'tinyllama-1.1b-chat-q4' is not pulled yet" in result.stderr
    assert not (tmp_path / "state").exists()


@pytest.fixture
def system_config(tmp_path, monkeypatch):
    """The service's config and state directory of an installed device, moved under tmp_path."""
    etc, var_lib = tmp_path / "etc" / "edge-assistant", tmp_path / "var" / "lib" / "edge-assistant"
    etc.mkdir(parents=True)
    var_lib.mkdir(parents=True)
    monkeypatch.setattr(config_module, "SYSTEM_CONFIG", etc / "edge-assistant.toml")
    monkeypatch.setattr(config_module, "SYSTEM_STATE_DIR", var_lib)
    monkeypatch.delenv("STATE_DIRECTORY", raising=False)
    monkeypatch.delenv("EDGE_ASSISTANT_SERVICE_STATE_DIR", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    return config_module.SYSTEM_CONFIG, var_lib


def pulled_in(state_dir: Path, name: str) -> Path:
    """A registry model as `models pull` leaves it (the file and its verified marker)."""
    model = models.entry(name)
    folder = models.models_dir(state_dir) / name
    folder.mkdir(parents=True)
    (folder / model.main_file).write_bytes(b"GGUF")
    (folder / ".verified").write_text("ok\n")
    return folder / model.main_file


def test_commands_on_the_system_config_use_the_service_state_dir(system_config, tmp_path, capsys):
    path, var_lib = system_config
    path.write_text("[llm]\nmodel = 'tinyllama-1.1b-chat-q4'\n[mqtt]\nenabled = false\n")
    pulled = pulled_in(var_lib, "tinyllama-1.1b-chat-q4")
    assert cli.main(["-c", str(path), "config", "check"]) == 0
    assert cli.main(["-c", str(path), "models", "path", "tinyllama-1.1b-chat-q4"]) == 0
    assert capsys.readouterr().out.splitlines() == [f"{path}: OK", str(pulled)]
    # The same file elsewhere is a person's config: their own state directory.
    copy = tmp_path / "mine.toml"
    copy.write_text(path.read_text())
    assert cli.main(["-c", str(copy), "config", "check"]) == 1
    assert "is not pulled yet" in capsys.readouterr().err
    assert not (tmp_path / "home").exists()


# --- status as a user who may not ask ------------------------------------------------------


@pytest.fixture
def status_socket():
    """A real status socket, in a folder of /tmp that another user can reach (pytest's tmp_path
    is root's alone), as the service makes it: mode 0660, owned by the service (here root)."""
    from edge_assistant.status import StatusServer

    folder = Path(tempfile.mkdtemp(prefix="edge-assistant-status-", dir="/tmp"))
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="status-server", daemon=True)
    thread.start()
    server = StatusServer(folder / "status.sock",
                          lambda: {"device": "probe", "state": "idle", "problem": False, "parts": {}}, None)
    try:
        assert asyncio.run_coroutine_threadsafe(server.start(), loop).result(10)
        yield server.path
    finally:
        asyncio.run_coroutine_threadsafe(server.aclose(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()
        shutil.rmtree(folder, ignore_errors=True)


def as_nobody(*args):
    command = [sys.executable, "-m", "edge_assistant.cli", *args]
    if os.geteuid() == 0:
        command = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", "--", *command]
    return subprocess.run(command, capture_output=True, text=True, timeout=60,
                          env={**os.environ, "HOME": "/nonexistent"}, cwd="/")


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("setpriv") is None,
                    reason="needs root and setpriv, to ask as the user nobody")
@pytest.mark.parametrize("folder_mode", [0o750, 0o755], ids=["folder-closed", "socket-closed"])
def test_status_by_a_user_who_may_not_ask_says_so_in_one_line(status_socket, folder_mode):
    # /run/edge-assistant is RuntimeDirectoryMode=0750; with the folder open, the socket's 0660
    # still keeps others out.
    status_socket.parent.chmod(folder_mode)
    # The config, as /etc/edge-assistant/edge-assistant.toml: root:edge-assistant 0640.
    config = status_socket.parent / "edge-assistant.toml"
    config.write_text("[mqtt]\nenabled = false\n")
    config.chmod(0o640)
    allowed = run("status", "--socket", str(status_socket), config=config)
    assert allowed.returncode == 0, allowed.stderr
    assert allowed.stdout.decode().startswith("probe: idle, every part works")
    refused = as_nobody("-c", str(config), "status", "--socket", str(status_socket))
    assert refused.stdout == ""
    assert refused.stderr.splitlines() == [
        f"edge-assistant: may not ask the service on {status_socket} (permission denied): run it with "
        "sudo, or join the group edge-assistant (sudo usermod -aG edge-assistant $USER, then log in again)"]
    assert refused.returncode == 4 == cli.EXIT_NOT_ALLOWED


def test_status_exit_codes_are_documented():
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    row = next(line for line in readme.splitlines() if line.startswith("| `edge-assistant status"))
    assert "1 when a part fails" in row and "3 when none runs" in row and "4 when this user may not ask" in row
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
