"""MQTT bridge: events out, commands in, Home Assistant discovery and Hermes compatibility.

paho runs the network on its own thread. Its callbacks never block: they validate a message
cheaply and hand a `Command` to the asyncio core with ``loop.call_soon_threadsafe`` into the
bounded queue `MqttBridge.commands`. Publishing is thread-safe and never blocks either: while the
broker is away, QoS >= 1 events wait in a bounded queue (oldest dropped and counted) and the
latest value of every retained topic is re-sent at each connect. Topics and payloads:
docs/mqtt.md.
"""

from __future__ import annotations

import asyncio
import collections
import json
import logging
import math
import re
import ssl
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode

from . import __version__
from .config import ConfigError, MqttConfig, sanitize_device_id
from .events import COMMANDS, EVENT_TYPES, STATES, Command, Event, new_id

log = logging.getLogger(__name__)

ONLINE = "online"
OFFLINE = "offline"
# Device id level of the opt-in topic that addresses every device at once.
BROADCAST_ID = "all"

HERMES_SAY = "hermes/tts/say"
HERMES_SAY_FINISHED = "hermes/tts/sayFinished"
HERMES_START_LISTENING = "hermes/asr/startListening"
HERMES_TEXT_CAPTURED = "hermes/asr/textCaptured"

# `code` of the error events sent for rejected input (see docs/mqtt.md).
ERROR_CODES = (
    "too_large",
    "bad_encoding",
    "bad_json",
    "bad_request",
    "unknown_command",
    "empty_text",
    "text_too_long",
    "busy",
)

STAT_KEYS = (
    "published",  # messages handed to the broker connection
    "dropped",  # messages lost: offline queue overflow, QoS 0 while offline, client queue full
    "commands",  # commands put on the queue
    "commands_refused",  # valid commands refused because the queue was full
    "malformed",  # rejected input
    "errors_suppressed",  # error replies not sent because of the reply rate limit
    "connects",
    "reconnects",  # connects after the first one
    "connect_failures",
)

_MAX_ID_CHARS = 128
# A flood of bad or excess commands must not crowd real events out of the client's queue.
_ERROR_REPLY_RATE = 20.0
_ERROR_REPLY_BURST = 50
_LOG_INTERVAL_S = 60.0
# Hermes requests remembered to answer sayFinished / textCaptured with their ids.
_HERMES_PENDING = 64
# paho's own queue holds in-flight messages too; above the offline queue, so a full flush fits.
_CLIENT_QUEUE_HEADROOM = 1000
# Home Assistant refuses entity states longer than this.
_HA_STATE_CHARS = 255


class MqttError(RuntimeError):
    """The broker could not be reached or refused us (for one-shot operations like unregister)."""


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


@dataclass(frozen=True)
class Topics:
    """Every topic of one device, derived from the prefixes and the device id."""

    prefix: str
    device_id: str
    discovery_prefix: str = "homeassistant"

    @classmethod
    def for_config(cls, cfg: MqttConfig, device_id: str) -> Topics:
        return cls(cfg.topic_prefix, device_id, cfg.discovery_prefix)

    @property
    def base(self) -> str:
        return f"{self.prefix}/{self.device_id}"

    @property
    def availability(self) -> str:
        return f"{self.base}/availability"

    @property
    def state(self) -> str:
        return f"{self.base}/state"

    @property
    def transcript(self) -> str:
        return f"{self.base}/transcript"

    @property
    def reply(self) -> str:
        return f"{self.base}/reply"

    @property
    def mute(self) -> str:
        return f"{self.base}/mute"

    @property
    def volume(self) -> str:
        return f"{self.base}/volume"

    @property
    def retained_states(self) -> tuple[str, ...]:
        return (self.state, self.transcript, self.reply, self.mute, self.volume)

    def event(self, event_type: str) -> str:
        return f"{self.base}/event/{event_type}"

    def command(self, name: str) -> str:
        return f"{self.base}/cmd/{name}"

    @property
    def command_filter(self) -> str:
        return f"{self.base}/cmd/+"

    @property
    def broadcast_filter(self) -> str:
        return f"{self.prefix}/{BROADCAST_ID}/cmd/+"

    @property
    def ha_status(self) -> str:
        return f"{self.discovery_prefix}/status"

    def discovery(self, component: str, object_id: str) -> str:
        # Home Assistant only accepts [a-zA-Z0-9_-] as node id.
        node_id = sanitize_device_id(self.device_id)
        return f"{self.discovery_prefix}/{component}/{node_id}/{object_id}/config"


# ---------------------------------------------------------------------------------------------
# Commands


def parse_command(name: str, payload: bytes, cfg: MqttConfig, origin: str = "mqtt") -> Command:
    """Validate one payload of ``<prefix>/<device_id>/cmd/<name>``. Raises `CommandRejected`.

    A payload whose first non-blank character is ``{`` is a JSON object; otherwise it is the
    text for ask/say, a number for volume, and ignored by commands without parameters (so a
    Home Assistant button's ``PRESS`` works).
    """
    if len(payload) > cfg.max_payload_bytes:
        raise CommandRejected(
            "too_large",
            f"payload of {len(payload)} bytes exceeds {cfg.max_payload_bytes} (mqtt.max_payload_bytes)",
            command=name,
        )
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError:
        raise CommandRejected("bad_encoding", "payload is not valid UTF-8", command=name) from None
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


def _command_body(name: str, text: str) -> dict[str, Any]:
    stripped = text.strip()
    if stripped.startswith("{"):
        return _json_object(stripped, name)
    if name in ("ask", "say"):
        return {"text": stripped}
    if name == "volume":
        try:
            return {"volume": float(stripped)}
        except ValueError:
            raise CommandRejected(
                "bad_request", "volume must be a number from 0 to 100", command=name
            ) from None
    return {}


def _json_object(text: str, name: str | None) -> dict[str, Any]:
    try:
        body = json.loads(text)
    except (ValueError, RecursionError) as error:
        # RecursionError: deeply nested input is malformed for our purposes, not a crash.
        reason = error.msg if isinstance(error, json.JSONDecodeError) else "nested too deeply"
        raise CommandRejected("bad_json", f"invalid JSON: {reason}", command=name) from None
    if not isinstance(body, dict):
        raise CommandRejected("bad_json", "payload must be a JSON object", command=name)
    return body


def _request_id(body: dict[str, Any], name: str) -> str | None:
    value = body.get("id")
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if isinstance(value, str) and 0 < len(value.strip()) <= _MAX_ID_CHARS:
        return value.strip()
    raise CommandRejected(
        "bad_request", f"'id' must be a string of 1 to {_MAX_ID_CHARS} characters", command=name
    )


def _request_id_if_any(text: str, name: str) -> str | None:
    """The request id of a payload that is rejected anyway, if it has a usable one."""
    if not text.lstrip().startswith("{"):
        return None
    try:
        return _request_id(_json_object(text, name), name)
    except CommandRejected:
        return None


def _text_field(body: dict[str, Any], cfg: MqttConfig) -> str:
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


def _bool_field(body: dict[str, Any], key: str, default: bool) -> bool:
    value = body.get(key, default)
    if not isinstance(value, bool):
        raise CommandRejected("bad_request", f"'{key}' must be true or false")
    return value


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
    "ask": lambda body, cfg: {"text": _text_field(body, cfg), "speak": _bool_field(body, "speak", True)},
    "say": lambda body, cfg: {"text": _text_field(body, cfg)},
    "listen": lambda body, cfg: {},
    "cancel": lambda body, cfg: {},
    "mute": lambda body, cfg: {"mute": _bool_field(body, "mute", True)},
    "unmute": lambda body, cfg: {},
    "volume": lambda body, cfg: {"volume": _volume_field(body)},
    "reset": lambda body, cfg: {},
}
assert set(_COMMAND_FIELDS) == set(COMMANDS)


def parse_hermes(
    topic: str, payload: bytes, cfg: MqttConfig, device_id: str
) -> tuple[Command, str | None] | None:
    """Map hermes/tts/say and hermes/asr/startListening to a Command and the Hermes session id.

    Returns None for messages addressed to another site: a siteId equal to the device id is
    required, since Hermes' default site ("default") would otherwise make every satellite act.
    """
    name = "say" if topic == HERMES_SAY else "listen"
    if len(payload) > cfg.max_payload_bytes:
        raise CommandRejected(
            "too_large",
            f"payload of {len(payload)} bytes exceeds {cfg.max_payload_bytes} (mqtt.max_payload_bytes)",
            command=name,
        )
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError:
        raise CommandRejected("bad_encoding", "payload is not valid UTF-8", command=name) from None
    body = _json_object(text, name)
    if body.get("siteId") != device_id:
        return None
    session_id = body.get("sessionId")
    session_id = session_id if isinstance(session_id, str) and session_id else None
    hermes_id = body.get("id")
    request_id = hermes_id if isinstance(hermes_id, str) and hermes_id else None
    if name == "say":
        try:
            data = {"text": _text_field(body, cfg)}
        except CommandRejected as error:
            error.request_id, error.command = request_id, name
            raise
    else:
        data = {}
    return Command(name, data, request_id or new_id(), origin="hermes"), session_id


# ---------------------------------------------------------------------------------------------
# Home Assistant discovery


def discovery_configs(cfg: MqttConfig, device_id: str) -> dict[str, dict[str, Any]]:
    """Discovery topic -> config payload for every entity of this device."""
    topics = Topics.for_config(cfg, device_id)
    node_id = sanitize_device_id(device_id)
    common: dict[str, Any] = {
        "device": {
            "identifiers": [f"edge_assistant_{node_id}"],
            "name": device_id,
            "model": "edge-assistant",
            "manufacturer": "edge-assistant",
            "sw_version": __version__,
        },
        "origin": {"name": "edge-assistant", "sw_version": __version__},
        "availability_topic": topics.availability,
        "payload_available": ONLINE,
        "payload_not_available": OFFLINE,
        "qos": cfg.qos,
    }
    # Sensor states are cut to what Home Assistant accepts; the topics carry the full text.
    cut = "{{ value[:%d] }}" % _HA_STATE_CHARS
    entities: list[tuple[str, str, dict[str, Any]]] = [
        ("sensor", "state", {"name": "State", "icon": "mdi:robot", "state_topic": topics.state}),
        (
            "sensor",
            "transcript",
            {
                "name": "Last transcript",
                "icon": "mdi:account-voice",
                "state_topic": topics.transcript,
                "value_template": cut,
            },
        ),
        (
            "sensor",
            "reply",
            {
                "name": "Last reply",
                "icon": "mdi:message-reply-text",
                "state_topic": topics.reply,
                "value_template": cut,
            },
        ),
        (
            "switch",
            "mute",
            {
                "name": "Mute",
                "icon": "mdi:microphone-off",
                "command_topic": topics.command("mute"),
                "payload_on": '{"mute": true}',
                "payload_off": '{"mute": false}',
                "state_topic": topics.mute,
                "state_on": "ON",
                "state_off": "OFF",
            },
        ),
        (
            "button",
            "listen",
            {
                "name": "Listen",
                "icon": "mdi:microphone",
                "command_topic": topics.command("listen"),
                "payload_press": "{}",
            },
        ),
        (
            "text",
            "ask",
            {
                "name": "Ask",
                "icon": "mdi:chat-question",
                "command_topic": topics.command("ask"),
                # JSON, so a question that starts with "{" is not mistaken for a JSON payload.
                "command_template": '{{ {"text": value} | tojson }}',
                "min": 0,
                "max": min(_HA_STATE_CHARS, cfg.max_text_chars),
                "mode": "text",
            },
        ),
        (
            "number",
            "volume",
            {
                "name": "Volume",
                "icon": "mdi:volume-high",
                "command_topic": topics.command("volume"),
                "command_template": '{"volume": {{ value }}}',
                "state_topic": topics.volume,
                "min": 0,
                "max": 100,
                "step": 1,
                "unit_of_measurement": "%",
                "mode": "slider",
            },
        ),
    ]
    return {
        topics.discovery(component, object_id): {
            "unique_id": f"edge_assistant_{node_id}_{object_id}",
            **fields,
            **common,
        }
        for component, object_id, fields in entities
    }


# ---------------------------------------------------------------------------------------------
# The bridge


class MqttBridge:
    """One device's MQTT connection, shared by the asyncio core and paho's network thread.

    The core calls `start()`, consumes `commands`, calls `publish_event()` / `set_state()` /
    `set_muted()` / `set_volume()` from any thread, and `stop()` (or ``await aclose()``) at exit.
    """

    def __init__(self, cfg: MqttConfig, device_id: str, loop: asyncio.AbstractEventLoop) -> None:
        _check_names(cfg, device_id)
        self._cfg = cfg
        self._device_id = device_id
        self._loop = loop
        self.topics = Topics.for_config(cfg, device_id)
        self.commands: asyncio.Queue[Command] = asyncio.Queue(maxsize=cfg.command_queue)
        self._broadcast = cfg.broadcast_commands
        self._client = make_client(cfg, cfg.client_id or f"edge-assistant-{device_id}")
        self._client.enable_logger(_PahoLog(self._on_paho_problem))
        self._client.will_set(self.topics.availability, OFFLINE, qos=cfg.qos, retain=True)
        self._client.on_connect = self._on_connect
        self._client.on_connect_fail = self._on_connect_fail
        self._client.on_disconnect = self._on_disconnect
        self._client.on_message = self._on_message
        self._client.on_subscribe = self._on_subscribe

        # Guards everything below; publishes happen under it so a flush on connect cannot
        # interleave with, or overtake, a concurrent publish_event.
        self._lock = threading.Lock()
        self._started = False
        self._stopping = False
        self._connected = False
        # mid of the SUBSCRIBE sent at the latest connect, None once the broker confirmed it.
        self._subscribe_mid: int | None = None
        self._offline: collections.deque[tuple[str, bytes, int]] = collections.deque()
        self._retained: dict[str, bytes] = {}
        # request id -> (command name, Hermes sessionId) of commands that came in over Hermes.
        self._hermes_requests: collections.OrderedDict[str, tuple[str, str | None]]
        self._hermes_requests = collections.OrderedDict()
        self._stats = dict.fromkeys(STAT_KEYS, 0)
        self._last_error: str | None = None
        # What paho last complained about (a socket or TLS error), to explain a disconnect.
        self._transport_error: str | None = None
        # The broker answered the current attempt with a refusal, already reported.
        self._refused = False
        # Commands handed to the loop but not yet queued: bounds call_soon_threadsafe callbacks
        # when the loop is slow, so a flood cannot pile up there either.
        self._handoff = threading.BoundedSemaphore(cfg.command_queue)
        self._log = _LogLimiter(log, _LOG_INTERVAL_S)
        self._error_replies = _TokenBucket(_ERROR_REPLY_RATE, _ERROR_REPLY_BURST)

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        """Connect in the background; a broker that is down is retried with backoff."""
        with self._lock:
            if self._started:
                raise RuntimeError("MqttBridge.start() called twice")
            self._started = True
        self._client.connect_async(self._cfg.host, self._cfg.port, self._cfg.keepalive)
        self._client.loop_start()

    def stop(self, timeout: float = 5.0) -> None:
        """Publish retained `offline`, disconnect cleanly. Blocks up to about `timeout` seconds."""
        with self._lock:
            if self._stopping:
                return
            self._stopping = True
            connected = self._connected
        if not self._started:
            return
        if connected:
            info = self._client.publish(
                self.topics.availability, OFFLINE, qos=max(1, self._cfg.qos), retain=True
            )
            try:
                info.wait_for_publish(timeout)
            except (RuntimeError, ValueError):
                pass  # connection already gone: the broker publishes the will instead
        self._client.disconnect()
        self._client.loop_stop()
        with self._lock:
            self._connected = False

    async def aclose(self, timeout: float = 5.0) -> None:
        await asyncio.to_thread(self.stop, timeout)

    # -- state for the core ------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        return self._connected

    @property
    def ready(self) -> bool:
        """Connected and the broker confirmed the command subscriptions."""
        with self._lock:
            return self._connected and self._subscribe_mid is None

    @property
    def last_error(self) -> str | None:
        """Why the last connection attempt failed or the connection dropped; None once connected."""
        return self._last_error

    @property
    def stats(self) -> dict[str, int]:
        with self._lock:
            stats = dict(self._stats)
            stats["offline_queued"] = len(self._offline)
        stats["command_queue"] = self.commands.qsize()
        return stats

    # -- outgoing ----------------------------------------------------------------------------

    def publish_event(self, event: Event) -> None:
        """Publish on ``<prefix>/<device_id>/event/<type>``; thread-safe, never blocks."""
        if event.type not in EVENT_TYPES:
            raise ValueError(f"unknown event type {event.type!r}")
        payload = _dumps(event.to_json_dict())
        self._publish(self.topics.event(event.type), payload, self._cfg.qos, offline="queue")
        data = event.data
        if event.type == "state" and isinstance(data.get("state"), str):
            self._publish_retained(self.topics.state, data["state"])
        elif event.type == "transcript" and isinstance(data.get("text"), str):
            self._publish_retained(self.topics.transcript, data["text"])
            if self._cfg.hermes:
                self._hermes_text_captured(event)
        elif event.type == "reply" and isinstance(data.get("text"), str):
            self._publish_retained(self.topics.reply, data["text"])
        elif event.type == "wake" and self._cfg.hermes:
            self._hermes_hotword(event)
        elif event.type == "tts_stop" and self._cfg.hermes:
            self._hermes_say_finished(event)

    def set_state(self, state: str, turn_id: str | None = None) -> None:
        """Retained ``<prefix>/<device_id>/state`` plus a `state` event."""
        if state not in STATES:
            raise ValueError(f"unknown state {state!r}; known: {', '.join(STATES)}")
        self.publish_event(Event("state", {"state": state}, turn_id=turn_id))

    def set_muted(self, muted: bool) -> None:
        """Retained ``<prefix>/<device_id>/mute``: ON or OFF."""
        self._publish_retained(self.topics.mute, "ON" if muted else "OFF")

    def set_volume(self, volume: float) -> None:
        """Retained ``<prefix>/<device_id>/volume`` in percent; `volume` is a gain, 1.0 = 100."""
        percent = min(100, max(0, round(volume * 100)))
        self._publish_retained(self.topics.volume, str(percent))

    def _publish_retained(self, topic: str, value: str) -> None:
        self._publish(topic, value.encode("utf-8"), self._cfg.qos, retain=True, offline="latest")

    def _publish(
        self, topic: str, payload: bytes, qos: int, retain: bool = False, offline: str = "drop"
    ) -> None:
        """offline: "queue" keeps QoS >= 1 messages, "latest" keeps the last value per topic."""
        overflow = False
        with self._lock:
            if offline == "latest":
                self._retained[topic] = payload
            if self._connected:
                self._send(topic, payload, qos, retain)
                return
            if offline == "queue" and qos > 0 and self._cfg.offline_queue > 0 and not self._stopping:
                if len(self._offline) >= self._cfg.offline_queue:
                    self._offline.popleft()
                    self._stats["dropped"] += 1
                    overflow = True
                self._offline.append((topic, payload, qos))
            elif offline != "latest":
                self._stats["dropped"] += 1
        if overflow:
            self._log.log(
                logging.WARNING,
                "offline_overflow",
                "broker unreachable and %d events queued (mqtt.offline_queue): dropping the oldest",
                self._cfg.offline_queue,
            )

    def _send(self, topic: str, payload: bytes | str, qos: int, retain: bool) -> None:
        """Hand one message to paho; caller holds the lock."""
        info = self._client.publish(topic, payload, qos=qos, retain=retain)
        # QoS >= 1 messages that meet a dead socket stay in paho's queue and are re-sent on
        # reconnect; anything else that was not accepted is lost.
        if info.rc == MQTTErrorCode.MQTT_ERR_SUCCESS or (
            info.rc == MQTTErrorCode.MQTT_ERR_NO_CONN and qos > 0
        ):
            self._stats["published"] += 1
        else:
            self._stats["dropped"] += 1
            self._log.log(
                logging.WARNING,
                f"publish_{info.rc}",
                "cannot publish on %s: %s",
                topic,
                paho.error_string(info.rc),
            )

    # -- Hermes out --------------------------------------------------------------------------

    def _hermes_hotword(self, event: Event) -> None:
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
        topic = f"hermes/hotword/{wakeword_id or 'default'}/detected"
        self._publish(topic, _dumps(payload), self._cfg.qos)

    def _hermes_text_captured(self, event: Event) -> None:
        data = event.data
        payload = {
            "text": data["text"],
            "likelihood": _number(data.get("confidence"), 1.0),
            "seconds": _number(data.get("duration_s"), 0.0),
            "siteId": self._device_id,
            "sessionId": self._pop_hermes_session(event.request_id, "listen"),
        }
        self._publish(HERMES_TEXT_CAPTURED, _dumps(payload), self._cfg.qos)

    def _hermes_say_finished(self, event: Event) -> None:
        with self._lock:
            if self._hermes_requests.get(event.request_id or "", ("",))[0] != "say":
                return  # only says that came in over Hermes are answered
        payload = {
            "id": event.request_id,
            "siteId": self._device_id,
            "sessionId": self._pop_hermes_session(event.request_id, "say"),
        }
        self._publish(HERMES_SAY_FINISHED, _dumps(payload), self._cfg.qos)

    def _pop_hermes_session(self, request_id: str | None, name: str) -> str | None:
        """The Hermes sessionId of a `name` command that came in over Hermes, forgetting it."""
        with self._lock:
            if request_id is None or self._hermes_requests.get(request_id, ("",))[0] != name:
                return None
            return self._hermes_requests.pop(request_id)[1]

    # -- paho callbacks (network thread: never block) ----------------------------------------

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            message = f"broker {self._cfg.host}:{self._cfg.port} refused the connection: {reason_code}"
            with self._lock:
                self._stats["connect_failures"] += 1
                self._last_error = message
                self._refused = True
            self._log.log(logging.ERROR, f"refused_{reason_code}", "%s (retrying)", message)
            return
        qos = self._cfg.qos
        # Clean sessions: subscriptions are renewed at every connect.
        filters = [(self.topics.command_filter, qos)]
        if self._broadcast:
            filters.append((self.topics.broadcast_filter, qos))
        if self._cfg.discovery:
            filters.append((self.topics.ha_status, qos))
        if self._cfg.hermes:
            filters += [(HERMES_SAY, qos), (HERMES_START_LISTENING, qos)]
        with self._lock:
            _, self._subscribe_mid = client.subscribe(filters)
            self._stats["connects"] += 1
            if self._stats["connects"] > 1:
                self._stats["reconnects"] += 1
            self._last_error = self._transport_error = None
            self._refused = False
            self._send(self.topics.availability, ONLINE, qos, retain=True)
            self._announce()
            while self._offline:
                self._send(*self._offline.popleft(), retain=False)
            self._connected = True
        log.info("connected to MQTT broker %s:%s", self._cfg.host, self._cfg.port)

    def _on_subscribe(self, client, userdata, mid, reason_codes, properties) -> None:
        refused = [str(code) for code in reason_codes if code.is_failure]
        with self._lock:
            if mid == self._subscribe_mid:
                self._subscribe_mid = None
        if refused:
            # Typically a broker ACL: the bridge still publishes, but commands cannot arrive.
            self._log.log(
                logging.ERROR, "subscribe_refused", "broker refused subscriptions: %s", ", ".join(refused)
            )

    def _announce(self) -> None:
        """Discovery configs and the latest retained states; caller holds the lock."""
        if self._cfg.discovery:
            for topic, config in discovery_configs(self._cfg, self._device_id).items():
                self._send(topic, _dumps(config), self._cfg.qos, retain=True)
        for topic, payload in self._retained.items():
            self._send(topic, payload, self._cfg.qos, retain=True)

    def _on_connect_fail(self, client, userdata) -> None:
        # paho calls this from inside its `except OSError`, so the cause is still at hand.
        error = sys.exc_info()[1]
        where = f"{self._cfg.host}:{self._cfg.port}"
        message = f"cannot connect to broker {where}: {error or 'connection failed'}"
        with self._lock:
            self._stats["connect_failures"] += 1
            self._last_error = message
        self._log.log(logging.ERROR, f"connect_{type(error).__name__}", "%s (retrying)", message)

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        where = f"{self._cfg.host}:{self._cfg.port}"
        with self._lock:
            was_connected, self._connected = self._connected, False
            cause, self._transport_error = self._transport_error or str(reason_code), None
            refused, self._refused = self._refused, False
            if self._stopping or refused:
                return
            if was_connected:
                message = f"lost connection to broker {where}: {cause}"
            else:
                # Closed during the handshake, e.g. a TLS 1.3 broker that wants a client certificate.
                message = f"connection to broker {where} failed: {cause}"
                self._stats["connect_failures"] += 1
            self._last_error = message
        key = "disconnected" if was_connected else "handshake"
        self._log.log(logging.WARNING, key, "%s (retrying)", message)

    def _on_paho_problem(self, text: str) -> None:
        # No lock: paho may log while holding its own locks, which publishers take under ours.
        self._transport_error = text

    def _on_message(self, client, userdata, message: paho.MQTTMessage) -> None:
        try:
            self._handle_message(message)
        except Exception:  # a bad message must never stop paho's network thread
            with self._lock:
                self._stats["malformed"] += 1
            self._log.log(
                logging.ERROR, "handler_crash", "error handling an MQTT message", exc_info=True
            )

    def _handle_message(self, message: paho.MQTTMessage) -> None:
        topic = message.topic
        if topic == self.topics.ha_status:
            if message.payload.strip() == ONLINE.encode() and self._cfg.discovery:
                # Home Assistant restarted: it forgets non-retained state, so announce again.
                with self._lock:
                    if self._connected:
                        self._announce()
            return
        if self._cfg.hermes and topic in (HERMES_SAY, HERMES_START_LISTENING):
            try:
                mapped = parse_hermes(topic, message.payload, self._cfg, self._device_id)
            except CommandRejected as error:
                self._reject(error, "hermes")
                return
            if mapped is not None:
                command, session_id = mapped
                with self._lock:
                    self._hermes_requests[command.request_id] = (command.name, session_id)
                    while len(self._hermes_requests) > _HERMES_PENDING:
                        self._hermes_requests.popitem(last=False)
                self._hand_over(command)
            return
        name = self._command_name(topic)
        if name is None:
            return
        try:
            command = parse_command(name, message.payload, self._cfg)
        except CommandRejected as error:
            self._reject(error, topic)
            return
        self._hand_over(command)

    def _command_name(self, topic: str) -> str | None:
        """The command name if `topic` addresses this device, else None."""
        own = self.topics.command("")
        broadcast = f"{self.topics.prefix}/{BROADCAST_ID}/cmd/"
        if topic.startswith(own):
            name = topic[len(own):]
        elif self._broadcast and topic.startswith(broadcast):
            name = topic[len(broadcast):]
        else:
            return None
        return None if "/" in name else name

    def _hand_over(self, command: Command) -> None:
        if not self._handoff.acquire(blocking=False):
            self._refuse_busy(command)
            return
        try:
            self._loop.call_soon_threadsafe(self._enqueue, command)
        except RuntimeError:  # the loop is closed: the assistant is shutting down
            self._handoff.release()
            self._refuse_busy(command)

    def _enqueue(self, command: Command) -> None:
        """Runs on the asyncio loop."""
        self._handoff.release()
        try:
            self.commands.put_nowait(command)
        except asyncio.QueueFull:
            self._refuse_busy(command)
            return
        with self._lock:
            self._stats["commands"] += 1

    def _refuse_busy(self, command: Command) -> None:
        self._reject(
            CommandRejected(
                "busy",
                f"{self._cfg.command_queue} commands already waiting (mqtt.command_queue); "
                "try again later",
                command.request_id,
                command.name,
            ),
            command.origin,
        )

    def _reject(self, error: CommandRejected, source: str) -> None:
        counter = "commands_refused" if error.code == "busy" else "malformed"
        with self._lock:
            self._stats[counter] += 1
        self._log.log(
            logging.WARNING, f"reject_{error.code}", "rejected command from %s: %s", source, error.message
        )
        if not self._error_replies.take():
            with self._lock:
                self._stats["errors_suppressed"] += 1
            return
        data: dict[str, Any] = {"code": error.code, "message": error.message}
        if error.command is not None:
            data["command"] = error.command
        self.publish_event(Event("error", data, request_id=error.request_id))


def unregister(cfg: MqttConfig, device_id: str, timeout: float = 10.0) -> list[str]:
    """Remove this device from Home Assistant and clear its retained topics.

    Connects, publishes empty retained payloads to every discovery and retained state topic,
    disconnects. Returns the topics cleared. Raises `MqttError` or `ConfigError`.
    """
    _check_names(cfg, device_id)
    topics = Topics.for_config(cfg, device_id)
    # Its own client id, so a running assistant with the usual id is not kicked off.
    client = make_client(cfg, f"{cfg.client_id or 'edge-assistant-' + device_id}-unregister")
    answered = threading.Event()
    result: dict[str, Any] = {}

    def on_connect(client, userdata, flags, reason_code, properties) -> None:
        result["reason"] = reason_code
        answered.set()

    client.on_connect = on_connect
    where = f"{cfg.host}:{cfg.port}"
    try:
        client.connect(cfg.host, cfg.port, cfg.keepalive)
    except OSError as error:
        raise MqttError(f"cannot connect to broker {where}: {error}") from None
    client.loop_start()
    try:
        if not answered.wait(timeout):
            raise MqttError(f"no answer from broker {where} within {timeout:g} s")
        if result["reason"].is_failure:
            raise MqttError(f"broker {where} refused the connection: {result['reason']}")
        cleared = [*discovery_configs(cfg, device_id), *topics.retained_states, topics.availability]
        infos = [client.publish(topic, b"", qos=1, retain=True) for topic in cleared]
        deadline = time.monotonic() + timeout
        for info in infos:
            info.wait_for_publish(max(0.0, deadline - time.monotonic()))
            if not info.is_published():
                raise MqttError(f"broker {where} did not confirm clearing within {timeout:g} s")
        return cleared
    finally:
        client.disconnect()
        client.loop_stop()


# ---------------------------------------------------------------------------------------------
# Helpers


def _check_names(cfg: MqttConfig, device_id: str) -> None:
    if not device_id or any(c in device_id for c in "/+#"):
        raise ConfigError(f"mqtt.device_id: {device_id!r} must be non-empty, without '/', '+' or '#'")
    if device_id == BROADCAST_ID:
        raise ConfigError(f"mqtt.device_id: {BROADCAST_ID!r} is reserved for commands to every device")
    prefixes = (("mqtt.topic_prefix", cfg.topic_prefix), ("mqtt.discovery_prefix", cfg.discovery_prefix))
    for key, value in prefixes:
        if not value or "+" in value or "#" in value or value.startswith("/") or value.endswith("/"):
            raise ConfigError(f"{key}: {value!r} must be a topic without wildcards or outer '/'")


def make_client(cfg: MqttConfig, client_id: str) -> paho.Client:
    """A paho client with credentials and TLS from the config. Raises `ConfigError`."""
    password = _password(cfg)
    if password and not cfg.username:
        raise ConfigError("mqtt.password: a password needs mqtt.username")
    context = _tls_context(cfg) if cfg.tls else None
    if not cfg.tls and (cfg.ca_file or cfg.certfile or cfg.keyfile):
        log.warning("mqtt.ca_file, certfile and keyfile are ignored because mqtt.tls is false")
    client = paho.Client(
        CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=True, protocol=paho.MQTTv311
    )
    client.enable_logger(_PahoLog())
    if cfg.username:
        client.username_pw_set(cfg.username, password or None)
    if context is not None:
        client.tls_set_context(context)
    client.reconnect_delay_set(min_delay=min(1.0, cfg.reconnect_max_s), max_delay=cfg.reconnect_max_s)
    client.max_queued_messages_set(cfg.offline_queue + _CLIENT_QUEUE_HEADROOM)
    return client


def _password(cfg: MqttConfig) -> str:
    if not cfg.password_file:
        return cfg.password
    path = Path(cfg.password_file).expanduser()
    try:
        return path.read_text(encoding="utf-8").rstrip("\r\n")
    except FileNotFoundError:
        raise ConfigError(f"mqtt.password_file: {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"mqtt.password_file: cannot read {path}: {error}") from None


def _tls_context(cfg: MqttConfig) -> ssl.SSLContext:
    try:
        context = ssl.create_default_context(cafile=cfg.ca_file or None)
    except (OSError, ssl.SSLError) as error:
        raise ConfigError(f"mqtt.ca_file: cannot load {cfg.ca_file!r}: {error}") from None
    if cfg.certfile:
        try:
            context.load_cert_chain(cfg.certfile, cfg.keyfile or None)
        except (OSError, ssl.SSLError) as error:
            raise ConfigError(
                f"mqtt.certfile: cannot load {cfg.certfile!r} / {cfg.keyfile!r}: {error}"
            ) from None
    elif cfg.keyfile:
        raise ConfigError("mqtt.keyfile: a key needs mqtt.certfile")
    if not cfg.tls_verify:
        # Explicit opt-out: no certificate or host name checks at all.
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


def _dumps(payload: dict[str, Any]) -> bytes:
    try:
        text = json.dumps(payload, ensure_ascii=False, allow_nan=False, default=_json_default)
    except ValueError:
        # NaN or infinity somewhere (a metric): JSON has no such numbers, send null instead.
        text = json.dumps(_finite(payload), ensure_ascii=False, default=_json_default)
    return text.encode("utf-8")


def _json_default(value: Any) -> Any:
    for method in ("item", "tolist"):  # numpy scalars and arrays
        if callable(getattr(value, method, None)):
            return getattr(value, method)()
    if isinstance(value, (set, frozenset)):
        return sorted(value, key=str)
    return str(value)


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(item) for item in value]
    return value


def _number(value: Any, default: float) -> float:
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return default


class _PahoLog(logging.LoggerAdapter):
    """paho's logger: its warnings and errors (socket and TLS failures, repeated at every retry)
    go to `on_problem` and, rate-limited, to the log; the rest is debug output."""

    def __init__(self, on_problem: Callable[[str], None] | None = None) -> None:
        super().__init__(logging.getLogger(f"{__name__}.paho"), {})
        self._on_problem = on_problem

    def log(self, level: int, msg: object, *args: Any, **kwargs: Any) -> None:
        if level < logging.WARNING:
            super().log(level, msg, *args, **kwargs)
            return
        try:
            text = str(msg) % args if args else str(msg)
        except (TypeError, ValueError):
            text = f"{msg} {args}"
        if self._on_problem is not None:
            self._on_problem(text)
        _paho_problems.log(level, str(msg), "%s", text)


class _LogLimiter:
    """Logs each kind of problem at most once per interval, then says how many were skipped."""

    def __init__(self, logger: logging.Logger, interval_s: float) -> None:
        self._logger = logger
        self._interval_s = interval_s
        self._lock = threading.Lock()
        self._last: dict[str, float] = {}
        self._skipped: dict[str, int] = {}

    def log(self, level: int, key: str, message: str, *args: Any, exc_info: bool = False) -> None:
        now = time.monotonic()
        with self._lock:
            last = self._last.get(key)
            if last is not None and now - last < self._interval_s:
                self._skipped[key] = self._skipped.get(key, 0) + 1
                return
            self._last[key] = now
            skipped = self._skipped.pop(key, 0)
        if skipped:
            message += " (%d similar messages suppressed)"
            args += (skipped,)
        self._logger.log(level, message, *args, exc_info=exc_info)


# Keyed by paho's format string, so one recurring failure is one line per interval.
_paho_problems = _LogLimiter(logging.getLogger(f"{__name__}.paho"), _LOG_INTERVAL_S)


class _TokenBucket:
    def __init__(self, rate: float, burst: int) -> None:
        self._rate = rate
        self._burst = float(burst)
        self._tokens = float(burst)
        self._stamp = time.monotonic()
        self._lock = threading.Lock()

    def take(self) -> bool:
        with self._lock:
            now = time.monotonic()
            self._tokens = min(self._burst, self._tokens + (now - self._stamp) * self._rate)
            self._stamp = now
            if self._tokens < 1.0:
                return False
            self._tokens -= 1.0
            return True
