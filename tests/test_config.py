import dataclasses
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from edge_assistant import config as config_module
from edge_assistant.config import Config, ConfigError

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_FILE = ROOT / "config" / "edge-assistant.toml"


def load_text(tmp_path: Path, text: str, environ: dict | None = None) -> Config:
    path = tmp_path / "config.toml"
    path.write_text(text)
    return config_module.load(path, environ=environ or {})


def test_documented_file_lists_every_key_with_its_default():
    documented = tomllib.loads(DEFAULT_FILE.read_text())
    defaults = Config()
    assert set(documented) == set(config_module.TABLES)
    for table_name in config_module.TABLES:
        table = getattr(defaults, table_name)
        keys = {f.name for f in dataclasses.fields(table)}
        assert set(documented[table_name]) == keys, table_name
        for key in keys:
            value = documented[table_name][key]
            expected = getattr(table, key)
            assert (tuple(value) if isinstance(value, list) else value) == expected, f"{table_name}.{key}"


def test_documented_file_comments_every_key():
    # A key is documented by the comment block right above it (a group may share one).
    lines = DEFAULT_FILE.read_text().splitlines()
    for index, line in enumerate(lines):
        if "=" not in line or line.startswith("#"):
            continue
        above = index - 1
        while above >= 0 and lines[above].strip() and not lines[above].startswith("["):
            if lines[above].startswith("#"):
                break
            above -= 1
        assert above >= 0 and lines[above].startswith("#"), f"uncommented key: {line}"


def test_loaded_objects_are_typed_and_frozen(tmp_path):
    config = load_text(tmp_path, "[llm]\nn_ctx = 4096\ntemperature = 1\nstop = ['###']\n")
    assert config.llm.n_ctx == 4096
    assert config.llm.temperature == 1.0 and isinstance(config.llm.temperature, float)
    assert config.llm.stop == ("###",)
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.llm.n_ctx = 1


@pytest.mark.parametrize(
    "text, message",
    [
        ("[llm]\nn_ctx = 'big'\n", "llm.n_ctx: must be an integer, got 'big'"),
        ("[llm]\nn_ctx = 16\n", "llm.n_ctx: must be between 128 and 1048576, got 16"),
        ("[llm]\ntemperature = -1\n", "llm.temperature: must be between 0.0 and 5.0, got -1.0"),
        ("[llm]\nuse_mmap = 1\n", "llm.use_mmap: must be true or false, got 1"),
        ("[llm]\nn_thread = 4\n", "llm.n_thread: unknown key"),
        ("[lm]\nmodel = 'x'\n", "lm: unknown table"),
        ("llm = 3\n", "llm: must be a table"),
        ("[wake]\nengine = 'snowboy'\n", "wake.engine: must be one of 'micro', 'openwakeword'"),
        ("[stt]\ngrammar = 'yes'\n", "stt.grammar: must be a list of strings"),
        ("[stt]\nfirst_pass = 'whisper'\n", "stt.first_pass: must be one of '', 'moonshine'"),
        ("[mqtt]\nport = 70000\n", "mqtt.port: must be between 1 and 65535"),
        ("[audio]\ninput_device = true\n", "audio.input_device: must be a device name or index"),
        ("[audio]\nframe_ms = 15\n", "audio.frame_ms: must be one of 10, 20, 30"),
    ],
)
def test_bad_values_name_the_key(tmp_path, text, message):
    with pytest.raises(ConfigError) as error:
        load_text(tmp_path, text)
    assert message in str(error.value)


def test_toml_syntax_error_names_the_line(tmp_path):
    with pytest.raises(ConfigError) as error:
        load_text(tmp_path, "[llm]\nn_ctx = 2048\nmodel = \n")
    assert "TOML syntax error" in str(error.value) and "line 3" in str(error.value)


def test_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        config_module.load(tmp_path / "nope.toml")


def test_environment_overrides_file(tmp_path):
    environ = {
        "EDGE_ASSISTANT_MQTT_HOST": "broker.lan",
        "EDGE_ASSISTANT_LLM_N_THREADS": "4",
        "EDGE_ASSISTANT_MQTT_TLS": "yes",
        "EDGE_ASSISTANT_LLM_STOP": "###, User:",
        "EDGE_ASSISTANT_AUDIO_INPUT_DEVICE": "2",
        "EDGE_ASSISTANT_VAD_SILENCE_S": "1.5",
    }
    config = load_text(tmp_path, "[mqtt]\nhost = 'localhost'\n", environ)
    assert config.mqtt.host == "broker.lan"
    assert config.llm.n_threads == 4
    assert config.mqtt.tls is True
    assert config.llm.stop == ("###", "User:")
    assert config.audio.input_device == 2
    assert config.vad.silence_s == 1.5


@pytest.mark.parametrize(
    "variable, value, message",
    [
        ("EDGE_ASSISTANT_LLM_N_THREADS", "four", "llm.n_threads: environment variable"),
        ("EDGE_ASSISTANT_MQTT_TLS", "maybe", "mqtt.tls: environment variable"),
        ("EDGE_ASSISTANT_LLM_N_CTX", "64", "llm.n_ctx: must be between"),
    ],
)
def test_bad_environment_values_name_the_key(tmp_path, variable, value, message):
    with pytest.raises(ConfigError, match=message):
        load_text(tmp_path, "", {variable: value})


def test_device_id_is_sanitized_hostname():
    assert config_module.sanitize_device_id("kitchen-pi.local") == "kitchen-pi_local"
    assert config_module.sanitize_device_id("...") == "edge-assistant"
    assert Config(mqtt=config_module.MqttConfig(device_id="hall")).device_id() == "hall"


def run_cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "edge_assistant.cli", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )


def test_config_check_cli_accepts_the_documented_file(tmp_path):
    result = run_cli("config", "check", str(DEFAULT_FILE))
    assert result.returncode == 0, result.stderr
    assert "OK" in result.stdout


@pytest.mark.parametrize(
    "text, message",
    [
        ("[llm]\nmodel = '/nowhere/model.gguf'\n", "llm.model: '/nowhere/model.gguf' is neither a file nor a known model"),
        ("[llm]\nmodel = 'tinyllama-1.1b-chat-q4'\n", "llm.model: model 'tinyllama-1.1b-chat-q4' is not pulled yet"),
        ("[tts]\nvoice = '/nowhere/voice.onnx'\n", "tts.voice:"),
        ("[llm]\nn_ctx = 1\n", "llm.n_ctx: must be between"),
        ("[llm\n", "TOML syntax error"),
    ],
)
def test_config_check_cli_fails_with_one_line(tmp_path, text, message):
    path = tmp_path / "bad.toml"
    path.write_text(text + f"[service]\nstate_dir = '{tmp_path / 'state'}'\n" if "[llm\n" != text else text)
    result = run_cli("config", "check", str(path))
    assert result.returncode == 1
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_state_dir_of_the_system_config_is_the_services(tmp_path, monkeypatch):
    load = config_module.load
    system = tmp_path / "etc" / "edge-assistant.toml"
    system.parent.mkdir()
    system.write_text("[mqtt]\nenabled = false\n")
    monkeypatch.setattr(config_module, "SYSTEM_CONFIG", system)
    monkeypatch.setattr(config_module, "SYSTEM_STATE_DIR", tmp_path / "var-lib")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("STATE_DIRECTORY", raising=False)
    assert load(system, environ={}).state_dir() == tmp_path / "var-lib"
    # The same file through a link is the same config.
    (tmp_path / "link.toml").symlink_to(system)
    assert load(tmp_path / "link.toml", environ={}).state_dir() == tmp_path / "var-lib"
    # Another file, or none, is a person's: their home.
    copy = tmp_path / "copy.toml"
    copy.write_text(system.read_text())
    assert load(copy, environ={}).state_dir() == tmp_path / "home" / ".local" / "share" / "edge-assistant"
    assert Config().state_dir() == tmp_path / "home" / ".local" / "share" / "edge-assistant"
    # The service's own $STATE_DIRECTORY, and service.state_dir above all, still win.
    monkeypatch.setenv("STATE_DIRECTORY", str(tmp_path / "systemd-state"))
    assert load(system, environ={}).state_dir() == tmp_path / "systemd-state"
    explicit = load(system, environ={"EDGE_ASSISTANT_SERVICE_STATE_DIR": str(tmp_path / "mine")})
    assert explicit.state_dir() == tmp_path / "mine"
