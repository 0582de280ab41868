"""Hermes (Rhasspy, Snips) compatibility: the topics, incoming requests as commands, and the
Hermes messages that answer them or mirror the assistant's events."""

from __future__ import annotations

import collections
import math
import re
import threading
from pathlib import Path
from typing import Any

from ..config import MqttConfig
from ..events import Command, Event, new_id
from .commands import CommandRejected, decode_payload, json_object, text_field

HERMES_SAY = "hermes/tts/say"
HERMES_SAY_FINISHED = "hermes/tts/sayFinished"
HERMES_START_LISTENING = "hermes/asr/startListening"
HERMES_TEXT_CAPTURED = "hermes/asr/textCaptured"
# The topics a device with Hermes switched on subscribes to.
HERMES_REQUESTS = (HERMES_SAY, HERMES_START_LISTENING)

# Hermes requests remembered to answer sayFinished / textCaptured with their ids.
_PENDING = 64


def parse_hermes(
    topic: str, payload: bytes, cfg: MqttConfig, device_id: str
) -> tuple[Command, str | None] | None:
    """Map hermes/tts/say and hermes/asr/startListening to a Command and the Hermes session id.

    Returns None for messages addressed to another site: a siteId equal to the device id is
    required, since Hermes' default site ("default") would otherwise make every satellite act.
    Raises `CommandRejected`.
    """
    name = "say" if topic == HERMES_SAY else "listen"
    body = json_object(decode_payload(payload, cfg, name), name)
    if body.get("siteId") != device_id:
        return None
    session_id = body.get("sessionId")
    session_id = session_id if isinstance(session_id, str) and session_id else None
    hermes_id = body.get("id")
    request_id = hermes_id if isinstance(hermes_id, str) and hermes_id else None
    if name == "say":
        try:
            data = {"text": text_field(body, cfg)}
        except CommandRejected as error:
            error.request_id, error.command = request_id, name
            raise
    else:
        data = {}
    return Command(name, data, request_id or new_id(), origin="hermes"), session_id


class HermesSessions:
    """The Hermes sessionId of each recent command that came in over Hermes, by request id,
    so that the messages answering it carry it. Thread-safe; forgets the oldest beyond a bound."""

    def __init__(self, device_id: str) -> None:
        self._device_id = device_id
        self._lock = threading.Lock()
        # request id -> (command name, Hermes sessionId)
        self._requests: collections.OrderedDict[str, tuple[str, str | None]] = collections.OrderedDict()

    def remember(self, command: Command, session_id: str | None) -> None:
        with self._lock:
            self._requests[command.request_id or ""] = (command.name, session_id)
            while len(self._requests) > _PENDING:
                self._requests.popitem(last=False)

    def _pop(self, request_id: str | None, name: str) -> tuple[bool, str | None]:
        """Whether `request_id` is a `name` command that came in over Hermes, and its sessionId;
        forgets it."""
        with self._lock:
            if request_id is None or self._requests.get(request_id, ("",))[0] != name:
                return False, None
            return True, self._requests.pop(request_id)[1]

    def hotword_detected(self, event: Event) -> tuple[str, dict[str, Any]]:
        """Topic and payload announcing a `wake` event."""
        model = str(event.data.get("model") or "default")
        wakeword_id = re.sub(r"[^A-Za-z0-9_-]", "_", re.sub(r"\.(tflite|onnx)$", "", Path(model).name))
        payload = {
            "modelId": model,
            "modelVersion": "",
            "modelType": "personal",
            "currentSensitivity": 1.0,
            "siteId": self._device_id,
            "sessionId": None,
        }
        return f"hermes/hotword/{wakeword_id or 'default'}/detected", payload

    def text_captured(self, event: Event) -> tuple[str, dict[str, Any]]:
        """Topic and payload mirroring a `transcript` event."""
        data = event.data
        payload = {
            "text": data["text"],
            "likelihood": _number(data.get("confidence"), 1.0),
            "seconds": _number(data.get("duration_s"), 0.0),
            "siteId": self._device_id,
            "sessionId": self._pop(event.request_id, "listen")[1],
        }
        return HERMES_TEXT_CAPTURED, payload

    def say_finished(self, event: Event) -> tuple[str, dict[str, Any]] | None:
        """Topic and payload answering the `tts_stop` of a say that came in over Hermes; None
        for any other."""
        came_over_hermes, session_id = self._pop(event.request_id, "say")
        if not came_over_hermes:
            return None
        payload = {"id": event.request_id, "siteId": self._device_id, "sessionId": session_id}
        return HERMES_SAY_FINISHED, payload


def _number(value: Any, default: float) -> float:
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return default
