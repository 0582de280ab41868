"""Incoming command payloads: validated into `events.Command` or rejected with an error code.

Runs on paho's network thread, so it is cheap: no I/O, payloads over the size limit unread.
"""

from __future__ import annotations

import json
import math
from typing import Any, Callable

from ..config import MqttConfig
from ..events import COMMANDS, Command, new_id
from ..timers.commands import TimerCommandError, parse_timer_command

# `code` of the error events sent for rejected input, and `not_understood`: a command the
# assistant could not make sense of (see docs/mqtt.md; a Home Assistant device trigger).
ERROR_CODES = (
    "too_large",
    "bad_encoding",
    "bad_json",
    "bad_request",
    "unknown_command",
    "empty_text",
    "text_too_long",
    "busy",
    "not_understood",
)

MAX_ID_CHARS = 128


class CommandRejected(ValueError):
    """An incoming command is unusable; becomes an `error` event with this code."""

    def __init__(
        self, code: str, message: str, request_id: str | None = None, command: str | None = None
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.request_id = request_id
        self.command = command


def parse_command(name: str, payload: bytes, cfg: MqttConfig, origin: str = "mqtt") -> Command:
    """Validate one payload of ``<prefix>/<device_id>/cmd/<name>``. Raises `CommandRejected`.

    A payload whose first non-blank character is ``{`` is a JSON object; otherwise it is the
    text for ask/say, a number for volume, and ignored by commands without parameters (so a
    Home Assistant button's ``PRESS`` works).
    """
    text = decode_payload(payload, cfg, name)
    if name not in COMMANDS:
        raise CommandRejected(
            "unknown_command",
            f"unknown command {name!r}; known: {', '.join(COMMANDS)}",
            _request_id_if_any(text, name),
            name,
        )
    body = _command_body(name, text)
    request_id = _request_id(body, name)
    try:
        data = _COMMAND_FIELDS[name](body, cfg)
    except CommandRejected as error:
        error.request_id, error.command = request_id, name
        raise
    if name == "mute" and not data.pop("mute"):
        # {"mute": false} lets one Home Assistant switch topic drive both directions.
        name = "unmute"
    return Command(name, data, request_id or new_id(), origin)


def decode_payload(payload: bytes, cfg: MqttConfig, name: str) -> str:
    """The payload as text, refusing oversize payloads before reading them."""
    if len(payload) > cfg.max_payload_bytes:
        raise CommandRejected(
            "too_large",
            f"payload of {len(payload)} bytes exceeds {cfg.max_payload_bytes} (mqtt.max_payload_bytes)",
            command=name,
        )
    try:
        return payload.decode("utf-8")
    except UnicodeDecodeError:
        raise CommandRejected("bad_encoding", "payload is not valid UTF-8", command=name) from None


def json_object(text: str, name: str | None) -> dict[str, Any]:
    try:
        body = json.loads(text)
    except (ValueError, RecursionError) as error:
        # RecursionError: deeply nested input is malformed for our purposes, not a crash.
        reason = error.msg if isinstance(error, json.JSONDecodeError) else "nested too deeply"
        raise CommandRejected("bad_json", f"invalid JSON: {reason}", command=name) from None
    if not isinstance(body, dict):
        raise CommandRejected("bad_json", "payload must be a JSON object", command=name)
    return body


def text_field(body: dict[str, Any], cfg: MqttConfig) -> str:
    text = body.get("text")
    if not isinstance(text, str):
        raise CommandRejected("bad_request", "'text' must be a string")
    text = text.strip()
    if not text:
        raise CommandRejected("empty_text", "'text' is empty")
    if len(text) > cfg.max_text_chars:
        raise CommandRejected(
            "text_too_long",
            f"'text' has {len(text)} characters, more than {cfg.max_text_chars} (mqtt.max_text_chars)",
        )
    return text


def _command_body(name: str, text: str) -> dict[str, Any]:
    stripped = text.strip()
    if stripped.startswith("{"):
        return json_object(stripped, name)
    if name in ("ask", "say", "announce"):
        return {"text": stripped}
    if name == "volume":
        try:
            return {"volume": float(stripped)}
        except ValueError:
            raise CommandRejected(
                "bad_request", "volume must be a number from 0 to 100", command=name
            ) from None
    return {}


def _request_id(body: dict[str, Any], name: str) -> str | None:
    value = body.get("id")
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if isinstance(value, str) and 0 < len(value.strip()) <= MAX_ID_CHARS:
        return value.strip()
    raise CommandRejected(
        "bad_request", f"'id' must be a string of 1 to {MAX_ID_CHARS} characters", command=name
    )


def _request_id_if_any(text: str, name: str) -> str | None:
    """The request id of a payload that is rejected anyway, if it has a usable one."""
    if not text.lstrip().startswith("{"):
        return None
    try:
        return _request_id(json_object(text, name), name)
    except CommandRejected:
        return None


def _bool_field(body: dict[str, Any], key: str, default: bool) -> bool:
    value = body.get(key, default)
    if not isinstance(value, bool):
        raise CommandRejected("bad_request", f"'{key}' must be true or false")
    return value


def _choice_field(body: dict[str, Any], key: str, choices: tuple[str, ...]) -> str:
    value = body.get(key, choices[0])
    if value not in choices:
        raise CommandRejected("bad_request", f"'{key}' must be one of {', '.join(choices)}")
    return value


def _timer_field(body: dict[str, Any]) -> Any:
    try:
        return parse_timer_command({k: v for k, v in body.items() if k != "id"})
    except TimerCommandError as error:
        raise CommandRejected("bad_request", str(error)) from None


def _volume_field(body: dict[str, Any]) -> float:
    value = body.get("volume")
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not math.isfinite(value)
        or not 0 <= value <= 100
    ):
        raise CommandRejected("bad_request", "'volume' must be a number from 0 to 100 (percent)")
    return value / 100.0


_COMMAND_FIELDS: dict[str, Callable[[dict[str, Any], MqttConfig], dict[str, Any]]] = {
    "ask": lambda body, cfg: {"text": text_field(body, cfg), "speak": _bool_field(body, "speak", True)},
    "say": lambda body, cfg: {"text": text_field(body, cfg)},
    "listen": lambda body, cfg: {},
    "cancel": lambda body, cfg: {},
    "mute": lambda body, cfg: {"mute": _bool_field(body, "mute", True)},
    "unmute": lambda body, cfg: {},
    "volume": lambda body, cfg: {"volume": _volume_field(body)},
    "reset": lambda body, cfg: {},
    "announce": lambda body, cfg: {
        "text": text_field(body, cfg),
        "chime": _bool_field(body, "chime", True),
        "priority": _choice_field(body, "priority", ("normal", "high")),
        "then_listen": _bool_field(body, "then_listen", False),
    },
    # Ends a ringing timer or an announcement; a reply too, like `cancel`.
    "stop": lambda body, cfg: {},
    # {"action": "start" | "cancel" | "add" | "alarm" | "pause" | "resume" | "stop", ...}.
    "timer": lambda body, cfg: {"command": _timer_field(body)},
}
assert set(_COMMAND_FIELDS) == set(COMMANDS)
