"""Configuration: one TOML file parsed once into typed, frozen, validated objects.

Every problem is reported as a `ConfigError` whose message names the key (``llm.n_ctx``) or the
TOML line, so a person reading the journal of a headless device knows what to fix.
Environment variables ``EDGE_ASSISTANT_<TABLE>_<KEY>`` override the file, for values that differ
per device (broker host, thread count) while the file stays shared.
"""

from __future__ import annotations

import dataclasses
import os
import re
import socket
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

ENV_PREFIX = "EDGE_ASSISTANT_"
# The service's config (scripts/install.sh, the unit's ExecStart=) and its StateDirectory=.
SYSTEM_CONFIG = Path("/etc/edge-assistant/edge-assistant.toml")
SYSTEM_STATE_DIR = Path("/var/lib/edge-assistant")
DEFAULT_CONFIG_PATHS = (
    SYSTEM_CONFIG,
    Path.home() / ".config" / "edge-assistant" / "edge-assistant.toml",
)


class ConfigError(ValueError):
    """A configuration value is unusable; the message names the key."""


def _check(predicate: Callable[[Any], bool], requirement: str) -> dict:
    return {"check": (predicate, requirement)}


def _between(low: float, high: float) -> dict:
    return _check(lambda v: low <= v <= high, f"must be between {low} and {high}")


def _at_least(low: float) -> dict:
    return _check(lambda v: v >= low, f"must be >= {low}")


def _one_of(*choices: str) -> dict:
    return _check(lambda v: v in choices, "must be one of " + ", ".join(repr(c) for c in choices))


def _positive() -> dict:
    return _check(lambda v: v > 0, "must be > 0")


@dataclass(frozen=True)
class AudioConfig:
    # Device name substring or PortAudio index; "" means the system default; an input of
    # "none" means no microphone (a device that only speaks, driven over MQTT).
    input_device: str | int = ""
    output_device: str | int = ""
    # 0 means the device's default rate; capture is resampled to 16 kHz either way.
    input_rate: int = field(default=0, metadata=_at_least(0))
    output_rate: int = field(default=0, metadata=_at_least(0))
    frame_ms: int = field(default=10, metadata=_one_of(10, 20, 30))
    queue_frames: int = field(default=500, metadata=_between(10, 100_000))
    volume: float = field(default=1.0, metadata=_between(0.0, 2.0))
    reopen_backoff_max_s: float = field(default=30.0, metadata=_positive())
    # Remove what the speaker plays from what the microphone hears (edge_assistant/audio/echo/):
    # the assistant then neither wakes itself nor hears its own reply in the next question.
    echo_cancellation: bool = True
    # "speex" (libspeexdsp) keeps a person's voice intact over the assistant's, so the wake
    # word still barges in; "webrtc" (AEC3, pip install pywebrtc-audio) removes more echo but
    # also cuts the person's voice while the assistant speaks (docs/performance.md).
    echo_canceller: str = field(default="speex", metadata=_one_of("speex", "webrtc"))
    # Longest speaker-to-microphone delay the estimator looks for (device buffers included).
    echo_max_delay_ms: int = field(default=500, metadata=_between(50, 2000))
    # From the same library as the canceller; off by default, since the wake word and speech
    # models were trained on unprocessed audio.
    noise_suppression: bool = False
    auto_gain: bool = False


@dataclass(frozen=True)
class WakeConfig:
    enabled: bool = True
    # openWakeWord hears "Hey Jarvis" from every voice `bench --only wake_accuracy` has (100%
    # clean), microWakeWord from a third of them, at a thirtieth of the CPU (docs/performance.md).
    engine: str = field(default="openwakeword", metadata=_one_of("micro", "openwakeword"))
    # A shipped model name (hey_jarvis, okay_nabu, alexa, hey_mycroft) or a model file path.
    model: str = "hey_jarvis"
    # 0 keeps the model's own probability cutoff.
    threshold: float = field(default=0.0, metadata=_between(0.0, 1.0))
    refractory_s: float = field(default=2.0, metadata=_at_least(0.0))
    # While the assistant speaks, detections are ignored unless barge-in is on. They must then
    # clear barge_in_threshold; 0 means the normal threshold when echo cancellation is active,
    # and a stricter one otherwise, since the microphone also hears the assistant's own voice.
    barge_in: bool = True
    barge_in_threshold: float = field(default=0.0, metadata=_between(0.0, 1.0))
    # "Stop" ends what the assistant says or rings, heard by a small model of its own
    # (stop_word.py) while it speaks; 0 keeps that model's cutoff. It needs echo cancellation
    # on a microphone (audio.echo_cancellation): the assistant's voice heard whole stops it.
    stop_word: bool = True
    stop_word_threshold: float = field(default=0.0, metadata=_between(0.0, 1.0))


@dataclass(frozen=True)
class VadConfig:
    engine: str = field(default="silero", metadata=_one_of("micro", "silero"))
    threshold: float = field(default=0.5, metadata=_between(0.0, 1.0))
    silence_s: float = field(default=0.8, metadata=_between(0.1, 10.0))
    min_speech_s: float = field(default=0.25, metadata=_between(0.0, 10.0))
    max_utterance_s: float = field(default=15.0, metadata=_between(1.0, 300.0))
    pre_roll_s: float = field(default=0.6, metadata=_between(0.0, 5.0))
    no_speech_timeout_s: float = field(default=6.0, metadata=_between(0.5, 120.0))
    # A pause this long is where the end-of-turn model is asked and Whisper transcribes what
    # was said so far; silence_s still ends any turn.
    pause_s: float = field(default=0.2, metadata=_between(0.05, 10.0))
    # Smart Turn v3 decides at each pause whether the turn is over; false: silence_s alone.
    smart_turn: bool = True
    # "" (the embedded default, installed by scripts/setup.sh), a registry name or a .onnx path.
    smart_turn_model: str = ""
    # Probability of "complete" at or above which a pause ends the turn.
    smart_turn_threshold: float = field(default=0.5, metadata=_between(0.0, 1.0))


@dataclass(frozen=True)
class SttConfig:
    # "auto": vosk or Moonshine for such a stt.model folder, else stt.DEFAULT_ENGINE.
    engine: str = field(default="auto", metadata=_one_of("auto", "vosk", "whisper", "moonshine"))
    # A registry name, a model folder, or "" for the default of the engine.
    model: str = ""
    language: str = "en"
    # vosk only: restrict recognition to these phrases (plus "[unk]").
    grammar: tuple[str, ...] = ()
    beam_size: int = field(default=1, metadata=_between(1, 10))
    # 0: Whisper takes the physical cores, Moonshine 2.
    n_threads: int = field(default=0, metadata=_at_least(0))
    # Transcribe the utterance so far at each pause (vad.pause_s), while listening goes on:
    # if no speech follows, that is the final text (Whisper), and a turn whose words end
    # mid-phrase ("... the capital of") is not ended early.
    speculative: bool = True
    # "moonshine": at the end of an utterance Moonshine's text goes out first (a transcript with
    # "pass": "fast") and the LLM starts on it; Whisper's text follows, and the turn starts over
    # on it only where its words differ. Nothing is spoken, acted on or published before then.
    # "": off (one transcript, from stt.engine).
    first_pass: str = field(default="", metadata=_one_of("", "moonshine"))


@dataclass(frozen=True)
class PromptConfig:
    # auto, chatml, zephyr, plain, gguf, or the path of a Jinja chat template file.
    template: str = "auto"
    system_prompt: str = (
        "You are a helpful voice assistant running offline on a small home device. "
        "Answer in one to three short spoken sentences. Do not use markdown, lists, code or emoji."
    )
    # Longest user message, in characters, before it is cut (with an event saying so).
    max_user_chars: int = field(default=2000, metadata=_between(1, 1_000_000))


@dataclass(frozen=True)
class LlmConfig:
    # A registry name, a GGUF path, or "" for the embedded default model.
    model: str = ""
    n_ctx: int = field(default=2048, metadata=_between(128, 1_048_576))
    # 0 means the number of physical cores.
    n_threads: int = field(default=0, metadata=_at_least(0))
    n_batch: int = field(default=256, metadata=_between(1, 65536))
    # 0 on a Pi (CPU only); -1 offloads every layer on a Jetson.
    n_gpu_layers: int = field(default=0, metadata=_at_least(-1))
    use_mmap: bool = True
    use_mlock: bool = False
    temperature: float = field(default=0.7, metadata=_between(0.0, 5.0))
    top_p: float = field(default=0.95, metadata=_between(0.0, 1.0))
    top_k: int = field(default=40, metadata=_at_least(0))
    min_p: float = field(default=0.05, metadata=_between(0.0, 1.0))
    repeat_penalty: float = field(default=1.1, metadata=_between(0.0, 5.0))
    max_tokens: int = field(default=160, metadata=_between(1, 65536))
    # -1 picks a random seed per reply.
    seed: int = field(default=-1, metadata=_at_least(-1))
    stop: tuple[str, ...] = ()
    # "openai": the reply comes from an OpenAI-compatible server (llama.cpp, Ollama, vLLM);
    # see docs/many-rooms.md.
    backend: str = field(default="local", metadata=_one_of("local", "openai"))
    # Credentials in the URL would end up in logs; the key belongs in api_key_file.
    base_url: str = field(
        default="http://localhost:8080/v1",
        metadata=_check(
            lambda v: re.fullmatch(r"https?://[^/@\s]+(/\S*)?", v) is not None,
            "must be an http:// or https:// URL without user:password@ (use llm.api_key_file)",
        ),
    )
    # "" sends no model name (servers with one model); Ollama and vLLM need it.
    remote_model: str = ""
    api_key_file: str = ""
    connect_timeout_s: float = field(default=3.0, metadata=_between(0.1, 600.0))
    # Longest wait for the first token, and between two tokens.
    timeout_s: float = field(default=30.0, metadata=_between(0.1, 3600.0))
    # Answer with the local model (llm.model) when the server fails before its first token.
    fallback_local: bool = False


@dataclass(frozen=True)
class TtsConfig:
    # A registry name, a .onnx voice path, or "" for the embedded default voice.
    voice: str = ""
    speaker_id: int = field(default=0, metadata=_at_least(0))
    length_scale: float = field(default=1.0, metadata=_between(0.1, 5.0))
    noise_scale: float = field(default=0.667, metadata=_between(0.0, 2.0))
    noise_w_scale: float = field(default=0.8, metadata=_between(0.0, 2.0))
    volume: float = field(default=1.0, metadata=_between(0.0, 2.0))


@dataclass(frozen=True)
class MqttConfig:
    enabled: bool = True
    host: str = "localhost"
    port: int = field(default=1883, metadata=_between(1, 65535))
    # "" means "edge-assistant-<device_id>".
    client_id: str = ""
    username: str = ""
    password: str = ""
    # Read the password from this file instead (systemd credentials, docker secrets).
    password_file: str = ""
    tls: bool = False
    ca_file: str = ""
    certfile: str = ""
    keyfile: str = ""
    tls_verify: bool = True
    qos: int = field(default=1, metadata=_between(0, 2))
    keepalive: int = field(default=60, metadata=_between(5, 3600))
    topic_prefix: str = "edge-assistant"
    # "" means the hostname, reduced to [a-zA-Z0-9_-].
    device_id: str = ""
    discovery: bool = True
    discovery_prefix: str = "homeassistant"
    hermes: bool = False
    # Also obey <topic_prefix>/all/cmd/... (one command for every device on the broker).
    broadcast_commands: bool = False
    # QoS >= 1 events kept while the broker is away; older ones are dropped and counted.
    offline_queue: int = field(default=1000, metadata=_between(0, 1_000_000))
    max_payload_bytes: int = field(default=65536, metadata=_between(64, 268_435_455))
    max_text_chars: int = field(default=2000, metadata=_between(1, 1_000_000))
    command_queue: int = field(default=16, metadata=_between(1, 10_000))
    reconnect_max_s: float = field(default=30.0, metadata=_positive())
    metrics_interval_s: float = field(default=60.0, metadata=_at_least(0.0))


@dataclass(frozen=True)
class ServiceConfig:
    # Models, history, pulled files and timers; "" means $STATE_DIRECTORY (systemd), else the
    # service's /var/lib/edge-assistant with the system config, else ~/.local/share/edge-assistant
    # with each device id's timers in its own <device_id>/ folder.
    state_dir: str = ""
    log_level: str = field(default="info", metadata=_one_of("debug", "info", "warning", "error"))
    # Seconds after a reply during which the user may speak again without the wake word.
    follow_up_s: float = field(default=0.0, metadata=_between(0.0, 120.0))
    # Idle seconds after which the conversation is forgotten.
    conversation_timeout_s: float = field(default=300.0, metadata=_at_least(0.0))
    earcons: bool = True
    # WAV files; "" uses the built-in tones.
    wake_sound: str = ""
    error_sound: str = ""
    # The Unix socket `edge-assistant status` and `reload` ask; "" means status.sock in
    # $RUNTIME_DIRECTORY (systemd's /run/edge-assistant), else in the state directory.
    status_socket: str = ""


# Components a declared home device may be (edge_assistant.home.entities.DOMAINS).
HOME_COMPONENTS = (
    "light", "switch", "fan", "cover", "lock", "valve", "scene", "button", "climate",
    "sensor", "binary_sensor", "alarm_control_panel",
)


def _topic() -> dict:
    # Wildcards would make the assistant listen to, or publish on, topics the device does not own.
    return _check(
        lambda v: "+" not in v and "#" not in v and "\x00" not in v and len(v) <= 512,
        "must be an MQTT topic without wildcards (+, #), at most 512 characters",
    )


@dataclass(frozen=True)
class HomeDeviceConfig:
    """One `[[home.devices]]` entry: a device on a broker without discovery, described with the
    keys of a Home Assistant MQTT discovery config."""

    name: str = field(default="", metadata=_check(lambda v: 0 < len(v.strip()) <= 64, "must be 1 to 64 characters"))
    component: str = field(default="switch", metadata=_one_of(*HOME_COMPONENTS))
    area: str = ""
    floor: str = ""
    # "" = <component>.<name as a slug>.
    entity_id: str = field(
        default="", metadata=_check(lambda v: v == "" or re.fullmatch(r"[a-z_]+\.[a-z0-9_]+", v) is not None,
                                    "must look like light.kitchen")
    )
    device_class: str = ""
    command_topic: str = field(default="", metadata=_topic())
    state_topic: str = field(default="", metadata=_topic())
    value_template: str = ""
    availability_topic: str = field(default="", metadata=_topic())
    payload_available: str = ""
    payload_not_available: str = ""
    payload_on: str = ""
    payload_off: str = ""
    state_on: str = ""
    state_off: str = ""
    payload_press: str = ""
    payload_open: str = ""
    payload_close: str = ""
    payload_stop: str = ""
    payload_lock: str = ""
    payload_unlock: str = ""
    state_open: str = ""
    state_closed: str = ""
    state_locked: str = ""
    state_unlocked: str = ""
    # Lights: "default" or "json" (zigbee2mqtt).
    schema: str = field(default="default", metadata=_one_of("default", "json"))
    brightness_command_topic: str = field(default="", metadata=_topic())
    brightness_state_topic: str = field(default="", metadata=_topic())
    brightness_scale: int = field(default=255, metadata=_between(1, 1_000_000))
    color_temp_command_topic: str = field(default="", metadata=_topic())
    rgb_command_topic: str = field(default="", metadata=_topic())
    percentage_command_topic: str = field(default="", metadata=_topic())
    percentage_state_topic: str = field(default="", metadata=_topic())
    position_topic: str = field(default="", metadata=_topic())
    set_position_topic: str = field(default="", metadata=_topic())
    temperature_command_topic: str = field(default="", metadata=_topic())
    temperature_state_topic: str = field(default="", metadata=_topic())
    current_temperature_topic: str = field(default="", metadata=_topic())
    mode_command_topic: str = field(default="", metadata=_topic())
    mode_state_topic: str = field(default="", metadata=_topic())
    unit_of_measurement: str = ""

    def problem(self) -> tuple[str, str] | None:
        """(key, message) when the entry as a whole is unusable."""
        if not self.name.strip():
            return "name", "a device needs a name"
        topics = [getattr(self, f.name) for f in dataclasses.fields(self) if f.name.endswith("_topic")]
        if not any(topics):
            return "command_topic", "a device needs a command_topic or a state_topic"
        return None


def _names() -> dict:
    return _check(lambda v: len(v) <= 16 and all(0 < len(a.strip()) <= 64 for a in v),
                  "must be at most 16 names of 1 to 64 characters")


def _unique_names(what: str) -> dict:
    # Two entries for one name would make it mean two things.
    return _check(lambda v: len({" ".join(e.name.split()).casefold() for e in v}) == len(v),
                  f"names the same {what} twice")


@dataclass(frozen=True)
class HomeAreaConfig:
    """One `[[home.areas]]` entry: the floor an area is on and other names people use for it."""

    name: str = field(default="", metadata=_check(lambda v: 0 < len(v.strip()) <= 64, "must be 1 to 64 characters"))
    floor: str = field(default="", metadata=_check(lambda v: len(v) <= 64, "must be at most 64 characters"))
    aliases: tuple[str, ...] = field(default=(), metadata=_names())

    def problem(self) -> tuple[str, str] | None:
        if not self.name.strip():
            return "name", "an area needs a name"
        return None


@dataclass(frozen=True)
class HomeFloorConfig:
    """One `[[home.floors]]` entry: other names for a floor ("downstairs")."""

    name: str = field(default="", metadata=_check(lambda v: 0 < len(v.strip()) <= 64, "must be 1 to 64 characters"))
    aliases: tuple[str, ...] = field(default=(), metadata=_names())

    def problem(self) -> tuple[str, str] | None:
        if not self.name.strip():
            return "name", "a floor needs a name"
        return None


@dataclass(frozen=True)
class HomeAliasConfig:
    """One `[[home.aliases]]` entry: other names for a device, given by entity id or name."""

    name: str = field(default="", metadata=_check(lambda v: 0 < len(v.strip()) <= 96, "must be 1 to 96 characters"))
    aliases: tuple[str, ...] = field(default=(), metadata=_names())

    def problem(self) -> tuple[str, str] | None:
        if not self.name.strip():
            return "name", "an alias entry needs the entity id or name it is for"
        if not self.aliases:
            return "aliases", "an alias entry needs at least one alias"
        return None


@dataclass(frozen=True)
class HomeConfig:
    enabled: bool = True
    # Where devices announce themselves; "" = mqtt.discovery_prefix.
    discovery_prefix: str = field(default="", metadata=_topic())
    # What the assistant may control: area names, components (light), entity ids, or "*".
    # Locks, garage doors and gates, valves and alarm panels only by entity id.
    expose: tuple[str, ...] = ()
    # The area this assistant stands in: "turn on the lights" means the lights here.
    area: str = ""
    # Seconds to wait for a device's state topic to confirm a command.
    confirm_timeout_s: float = field(default=3.0, metadata=_between(0.1, 60.0))
    # Seconds in which a spoken "yes" confirms acting on a lock or a garage door.
    confirmation_s: float = field(default=8.0, metadata=_between(1.0, 120.0))
    # At most one command per entity this often.
    min_command_interval_s: float = field(default=0.5, metadata=_between(0.0, 60.0))
    max_entities: int = field(default=10_000, metadata=_between(1, 100_000))
    # Longest wait at start for the retained discovery configs and states.
    settle_s: float = field(default=3.0, metadata=_between(0.0, 60.0))
    devices: tuple[HomeDeviceConfig, ...] = ()
    # Areas on floors, and other names for areas, floors and devices: "turn off the lights on
    # the first floor", "the cooker light" for light.kitchen_ceiling.
    areas: tuple[HomeAreaConfig, ...] = field(default=(), metadata=_unique_names("area"))
    floors: tuple[HomeFloorConfig, ...] = field(default=(), metadata=_unique_names("floor"))
    aliases: tuple[HomeAliasConfig, ...] = field(default=(), metadata=_unique_names("device"))


@dataclass(frozen=True)
class TimersConfig:
    # Timers and alarms set at once; one more is refused with an error.
    max_timers: int = field(default=50, metadata=_between(1, 10_000))
    # A finished timer or alarm rings again every ring_interval_s until it is stopped, and at
    # most ring_max_s after it finished (0 rings once).
    ring_interval_s: float = field(default=10.0, metadata=_between(1.0, 3600.0))
    ring_max_s: float = field(default=300.0, metadata=_between(0.0, 86400.0))


@dataclass(frozen=True)
class Config:
    audio: AudioConfig = AudioConfig()
    wake: WakeConfig = WakeConfig()
    vad: VadConfig = VadConfig()
    stt: SttConfig = SttConfig()
    prompt: PromptConfig = PromptConfig()
    llm: LlmConfig = LlmConfig()
    tts: TtsConfig = TtsConfig()
    mqtt: MqttConfig = MqttConfig()
    service: ServiceConfig = ServiceConfig()
    home: HomeConfig = HomeConfig()
    timers: TimersConfig = TimersConfig()
    source: str = field(default="<defaults>", compare=False)

    def state_dir(self) -> Path:
        return self._set_state_dir() or shared_state_dir()

    def device_state_dir(self) -> Path:
        """What belongs to this device alone (its timers): the state directory when one is set
        (service.state_dir, or systemd's per-service $STATE_DIRECTORY); otherwise a folder per
        device id under the shared one, so that two daemons on one account keep apart."""
        return self._set_state_dir() or shared_state_dir() / self.device_id()

    def _set_state_dir(self) -> Path | None:
        if self.service.state_dir:
            return Path(self.service.state_dir).expanduser()
        systemd_state = os.environ.get("STATE_DIRECTORY")
        if systemd_state:
            return Path(systemd_state.split(":")[0])
        if self.is_system_config():
            # A command run on the service's config (`sudo edge-assistant ...`) finds and keeps
            # models where the service does, not in the home of whoever runs it.
            return SYSTEM_STATE_DIR
        return None

    def is_system_config(self) -> bool:
        return not self.source.startswith("<") and os.path.realpath(self.source) == os.path.realpath(SYSTEM_CONFIG)

    def device_id(self) -> str:
        return self.mqtt.device_id or sanitize_device_id(socket.gethostname())


TABLES: dict[str, type] = {
    name: hint for name, hint in typing.get_type_hints(Config).items() if name != "source"
}


def shared_state_dir() -> Path:
    """Models and pulled files when no state directory is set, shared by every device id."""
    return Path.home() / ".local" / "share" / "edge-assistant"


def sanitize_device_id(name: str) -> str:
    cleaned = re.sub(r"[^a-zA-Z0-9_-]", "_", name).strip("_")
    return cleaned or "edge-assistant"


def load(path: str | Path | None = None, environ: Mapping[str, str] | None = None) -> Config:
    """Read, merge environment overrides and validate. Raises `ConfigError`."""
    environ = os.environ if environ is None else environ
    raw: dict[str, Any] = {}
    source = "<defaults>"
    if path is None:
        path = next((p for p in DEFAULT_CONFIG_PATHS if p.is_file()), None)
    if path is not None:
        path = Path(path)
        source = str(path)
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise ConfigError(f"{path}: config file not found") from None
        except (OSError, UnicodeDecodeError) as error:
            raise ConfigError(f"{path}: cannot read: {error}") from None
        try:
            raw = tomllib.loads(text)
        except tomllib.TOMLDecodeError as error:
            raise ConfigError(f"{path}: TOML syntax error: {error}") from None
    return from_mapping(raw, environ=environ, source=source)


def from_mapping(
    raw: Mapping[str, Any], environ: Mapping[str, str] | None = None, source: str = "<mapping>"
) -> Config:
    for table_name, table in raw.items():
        if table_name not in TABLES:
            raise ConfigError(f"{table_name}: unknown table (known: {', '.join(TABLES)})")
        if not isinstance(table, dict):
            raise ConfigError(f"{table_name}: must be a table like [{table_name}]")
    tables = {}
    for table_name, table_type in TABLES.items():
        values = dict(raw.get(table_name, {}))
        values.update(_environment_overrides(table_name, table_type, environ or {}))
        tables[table_name] = _build_table(table_name, table_type, values)
    return Config(**tables, source=source)


def _environment_overrides(
    table_name: str, table_type: type, environ: Mapping[str, str]
) -> dict[str, Any]:
    overrides = {}
    hints = typing.get_type_hints(table_type)
    for table_field in dataclasses.fields(table_type):
        variable = f"{ENV_PREFIX}{table_name}_{table_field.name}".upper()
        if variable in environ:
            key = f"{table_name}.{table_field.name}"
            overrides[table_field.name] = _parse_env(variable, key, environ[variable], hints[table_field.name])
    return overrides


def _parse_env(variable: str, key: str, text: str, hint: Any) -> Any:
    text = text.strip()
    try:
        if hint is bool:
            lowered = text.lower()
            if lowered in ("1", "true", "yes", "on"):
                return True
            if lowered in ("0", "false", "no", "off"):
                return False
            raise ValueError("expected true or false")
        if hint is int:
            return int(text)
        if hint is float:
            return float(text)
        if hint == (str | int):
            return int(text) if re.fullmatch(r"-?\d+", text) else text
        if typing.get_origin(hint) is tuple:
            return [item.strip() for item in text.split(",") if item.strip()]
        return text
    except ValueError as error:
        raise ConfigError(f"{key}: environment variable {variable}={text!r}: {error}") from None


def _build_table(table_name: str, table_type: type, values: dict[str, Any]) -> Any:
    hints = typing.get_type_hints(table_type)
    fields = {f.name: f for f in dataclasses.fields(table_type)}
    for name in values:
        if name not in fields:
            raise ConfigError(
                f"{table_name}.{name}: unknown key (known: {', '.join(fields)})"
            )
    converted = {}
    for name, value in values.items():
        key = f"{table_name}.{name}"
        value = _coerce(key, value, hints[name])
        check = fields[name].metadata.get("check")
        if check is not None and not check[0](value):
            raise ConfigError(f"{key}: {check[1]}, got {value!r}")
        converted[name] = value
    return table_type(**converted)


def _coerce(key: str, value: Any, hint: Any) -> Any:
    origin = typing.get_origin(hint)
    if hint is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{key}: must be true or false, got {value!r}")
    if hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ConfigError(f"{key}: must be an integer, got {value!r}")
    if hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise ConfigError(f"{key}: must be a number, got {value!r}")
    if hint is str:
        if isinstance(value, str):
            return value
        raise ConfigError(f"{key}: must be a string, got {value!r}")
    if origin in (types.UnionType, typing.Union):
        if isinstance(value, (str, int)) and not isinstance(value, bool):
            return value
        raise ConfigError(f"{key}: must be a device name or index, got {value!r}")
    if origin is tuple and dataclasses.is_dataclass(typing.get_args(hint)[0]):
        return _build_tables(key, typing.get_args(hint)[0], value)
    if origin is tuple:
        if isinstance(value, list) and all(isinstance(item, str) for item in value):
            return tuple(value)
        raise ConfigError(f"{key}: must be a list of strings, got {value!r}")
    raise AssertionError(f"unsupported config type for {key}: {hint}")


def _build_tables(key: str, table_type: type, value: Any) -> tuple:
    """An array of tables (``[[home.devices]]``), each checked like a table of its own."""
    if not isinstance(value, list) or not all(isinstance(item, dict) for item in value):
        raise ConfigError(f"{key}: must be an array of tables like [[{key}]]")
    tables = []
    for index, item in enumerate(value):
        table = _build_table(f"{key}[{index}]", table_type, dict(item))
        problem = table.problem() if hasattr(table, "problem") else None
        if problem is not None:
            raise ConfigError(f"{key}[{index}].{problem[0]}: {problem[1]}")
        tables.append(table)
    return tuple(tables)
