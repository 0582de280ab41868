"""Checking the names that become topic levels, the one-shot `unregister` and `read_retained`
(paho clients from `broker`), and JSON payloads."""

from __future__ import annotations

import contextlib
import json
import math
import os
import threading
import time
from typing import Any, Iterator

import paho.mqtt.client as paho

from ..broker import client_id, make_client
from ..config import ConfigError, MqttConfig
from .discovery import discovery_configs
from .topics import BROADCAST_ID, Topics


class MqttError(RuntimeError):
    """The broker could not be reached or refused us (for one-shot operations like unregister)."""


def check_names(cfg: MqttConfig, device_id: str) -> None:
    """The device id and prefixes are usable as topic levels. Raises `ConfigError`."""
    if not device_id or any(c in device_id for c in "/+#"):
        raise ConfigError(f"mqtt.device_id: {device_id!r} must be non-empty, without '/', '+' or '#'")
    if device_id == BROADCAST_ID:
        raise ConfigError(f"mqtt.device_id: {BROADCAST_ID!r} is reserved for commands to every device")
    prefixes = (("mqtt.topic_prefix", cfg.topic_prefix), ("mqtt.discovery_prefix", cfg.discovery_prefix))
    for key, value in prefixes:
        if not value or "+" in value or "#" in value or value.startswith("/") or value.endswith("/"):
            raise ConfigError(f"{key}: {value!r} must be a topic without wildcards or outer '/'")


@contextlib.contextmanager
def _one_shot_client(cfg: MqttConfig, device_id: str, purpose: str, timeout: float) -> Iterator[paho.Client]:
    """A connected client for one short job, disconnected afterwards. Raises `MqttError`."""
    # Its own client id, so a running assistant with the usual id is not kicked off.
    client = make_client(cfg, client_id(cfg, device_id, purpose))
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
        yield client
    finally:
        client.disconnect()
        client.loop_stop()


def unregister(cfg: MqttConfig, device_id: str, timeout: float = 10.0) -> list[str]:
    """Remove this device from Home Assistant and clear its retained topics.

    Connects, publishes empty retained payloads to every discovery and retained state topic,
    disconnects. Returns the topics cleared. Raises `MqttError` or `ConfigError`.
    """
    check_names(cfg, device_id)
    topics = Topics.for_config(cfg, device_id)
    with _one_shot_client(cfg, device_id, "unregister", timeout) as client:
        cleared = [*discovery_configs(cfg, device_id), *topics.retained_states, topics.availability]
        infos = [client.publish(topic, b"", qos=1, retain=True) for topic in cleared]
        deadline = time.monotonic() + timeout
        for info in infos:
            info.wait_for_publish(max(0.0, deadline - time.monotonic()))
            if not info.is_published():
                raise MqttError(f"broker {cfg.host}:{cfg.port} did not confirm clearing within {timeout:g} s")
        return cleared


def read_retained(cfg: MqttConfig, device_id: str, wanted: list[str], timeout: float = 10.0) -> dict[str, bytes]:
    """The retained payloads of the `wanted` topics (those that have one), read once: for
    `edge-assistant status` on a machine that asks the broker. Raises `MqttError`."""
    check_names(cfg, device_id)
    received: dict[str, bytes] = {}
    subscribed = threading.Event()
    with _one_shot_client(cfg, device_id, f"status-{os.getpid()}", timeout) as client:
        # Retained messages arrive right after the SUBACK, on paho's thread, in order.
        client.on_message = lambda client, userdata, message: received.setdefault(message.topic, message.payload)
        client.on_subscribe = lambda *args: subscribed.set()
        client.subscribe([(topic, 1) for topic in wanted])
        if not subscribed.wait(timeout):
            raise MqttError(f"broker {cfg.host}:{cfg.port} did not confirm the subscription within {timeout:g} s")
        deadline = time.monotonic() + min(timeout, 1.0)
        while len(received) < len(wanted) and time.monotonic() < deadline:
            time.sleep(0.02)
    return {topic: payload for topic, payload in received.items() if payload}


def dumps(payload: dict[str, Any]) -> bytes:
    """JSON as UTF-8; NaN and infinity become null, numpy values plain numbers."""
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
