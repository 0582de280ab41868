"""Configuration: one TOML file parsed once into typed, frozen, validated objects.

Every problem is reported as a `ConfigError` whose message names the key (``llm.n_ctx``) or the
TOML line, so a person reading the journal of a headless device knows what to fix.
Environment variables ``EDGE_ASSISTANT_<TABLE>_<KEY>`` override the file, for values that differ
per device (broker host, thread count) while the file stays shared.

The package: `Config` and loading here; the tables of the voice pipeline and the service
(`tables`), of the home (`home`), the checks a value must pass (`rules`) and the conversion of
a table's values, with environment overrides (`parsing`). Every name is imported from here.
"""

from __future__ import annotations

import os
import re
import socket
import tomllib
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from .home import (
    HOME_COMPONENTS, HomeAliasConfig, HomeAreaConfig, HomeConfig, HomeDeviceConfig, HomeFloorConfig,
)
from .parsing import ENV_PREFIX, build_table, environment_overrides
from .rules import ConfigError
from .tables import (
    AudioConfig, LlmConfig, MqttConfig, PromptConfig, ServiceConfig, SttConfig, TimersConfig, TtsConfig,
    VadConfig, WakeConfig,
)

__all__ = [
    "AudioConfig", "Config", "ConfigError", "DEFAULT_CONFIG_PATHS", "ENV_PREFIX", "HOME_COMPONENTS",
    "HomeAliasConfig", "HomeAreaConfig", "HomeConfig", "HomeDeviceConfig", "HomeFloorConfig", "LlmConfig",
    "MqttConfig", "PromptConfig", "SYSTEM_CONFIG", "SYSTEM_STATE_DIR", "ServiceConfig", "SttConfig", "TABLES",
    "TimersConfig", "TtsConfig", "VadConfig", "WakeConfig", "from_mapping", "load", "sanitize_device_id",
    "shared_state_dir",
]

# The service's config (scripts/install.sh, the unit's ExecStart=) and its StateDirectory=.
SYSTEM_CONFIG = Path("/etc/edge-assistant/edge-assistant.toml")
SYSTEM_STATE_DIR = Path("/var/lib/edge-assistant")
DEFAULT_CONFIG_PATHS = (
    SYSTEM_CONFIG,
    Path.home() / ".config" / "edge-assistant" / "edge-assistant.toml",
)


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
        values.update(environment_overrides(table_name, table_type, environ or {}))
        tables[table_name] = build_table(table_name, table_type, values)
    return Config(**tables, source=source)
