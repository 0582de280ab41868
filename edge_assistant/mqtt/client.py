"""Setting up a paho client from the config (credentials, TLS, logging), checking the names
that become topic levels, the one-shot `unregister` and `read_retained`, and JSON payloads."""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import ssl
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from ..config import ConfigError, MqttConfig
from .discovery import discovery_configs
from ..limits import LogLimiter
from .topics import BROADCAST_ID, Topics

log = logging.getLogger(__name__)

# How often one recurring problem is logged.
LOG_INTERVAL_S = 60.0
# paho's own queue holds in-flight messages too; above the offline queue, so a full flush fits.
CLIENT_QUEUE_HEADROOM = 1000


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


def make_client(
    cfg: MqttConfig, client_id: str, on_problem: Callable[[str], None] | None = None
) -> paho.Client:
    """A paho client with credentials and TLS from the config. Raises `ConfigError`.

    `on_problem` gets the text of each warning or error paho logs (socket and TLS failures),
    on paho's thread. An exception in a callback is logged, with its traceback, instead of
    ending paho's network thread.
    """
    password = _password(cfg)
    if password and not cfg.username:
        raise ConfigError("mqtt.password: a password needs mqtt.username")
    context = _tls_context(cfg) if cfg.tls else None
    if not cfg.tls and (cfg.ca_file or cfg.certfile or cfg.keyfile):
        log.warning("mqtt.ca_file, certfile and keyfile are ignored because mqtt.tls is false")
    client = paho.Client(
        CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=True, protocol=paho.MQTTv311
    )
    client.enable_logger(PahoLog(on_problem))
    client.suppress_exceptions = True
    if cfg.username:
        client.username_pw_set(cfg.username, password or None)
    if context is not None:
        client.tls_set_context(context)
    client.reconnect_delay_set(min_delay=min(1.0, cfg.reconnect_max_s), max_delay=cfg.reconnect_max_s)
    client.max_queued_messages_set(cfg.offline_queue + CLIENT_QUEUE_HEADROOM)
    return client


@contextlib.contextmanager
def _one_shot_client(cfg: MqttConfig, device_id: str, purpose: str, timeout: float) -> Iterator[paho.Client]:
    """A connected client for one short job, disconnected afterwards. Raises `MqttError`."""
    # Its own client id, so a running assistant with the usual id is not kicked off.
    client = make_client(cfg, f"{cfg.client_id or 'edge-assistant-' + device_id}-{purpose}")
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


class PahoLog(logging.LoggerAdapter):
    """paho's logger: its warnings and errors (socket and TLS failures, repeated at every retry,
    exceptions in callbacks) go to `on_problem` and, rate-limited per kind, to the log with the
    exception being handled; the rest is debug output."""

    def __init__(self, on_problem: Callable[[str], None] | None = None) -> None:
        logger = logging.getLogger(f"{__name__}.paho")
        super().__init__(logger, {})
        self._on_problem = on_problem
        # Keyed by paho's format string, so one recurring failure is one line per interval.
        self._problems = LogLimiter(logger, LOG_INTERVAL_S)

    def log(self, level: int, msg: object, *args: Any, **kwargs: Any) -> None:
        if str(msg).startswith("Client is not connected"):
            # paho's loop between two attempts to reach a broker that is down: the reconnect
            # itself is reported (and retried) elsewhere.
            level = logging.DEBUG
        if level < logging.WARNING:
            super().log(level, msg, *args, **kwargs)
            return
        try:
            text = str(msg) % args if args else str(msg)
        except (TypeError, ValueError):
            text = f"{msg} {args}"
        if self._on_problem is not None:
            self._on_problem(text)
        exc_info = kwargs.get("exc_info")
        if exc_info is None and sys.exc_info()[1] is not None:
            # paho logs its problems inside the `except` that caught them, without exc_info.
            exc_info = sys.exc_info()
        self._problems.log(level, str(msg), "%s", text, exc_info=exc_info)


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
