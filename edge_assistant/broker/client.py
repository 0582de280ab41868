"""A paho client set up from the config (credentials, TLS, reconnect backoff, logging), and the
client id of each connection this device makes."""

from __future__ import annotations

import logging
import ssl
import sys
from pathlib import Path
from typing import Any, Callable

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from ..config import ConfigError, MqttConfig
from ..limits import LogLimiter

log = logging.getLogger(__name__)

# How often one recurring problem is logged.
LOG_INTERVAL_S = 60.0
# paho's own queue holds in-flight messages too; above the offline queue, so a full flush fits.
CLIENT_QUEUE_HEADROOM = 1000


def client_id(cfg: MqttConfig, device_id: str, role: str = "") -> str:
    """The MQTT client id of one of this device's connections: the assistant's own (the bridge,
    whose last will is the device's availability) is ``mqtt.client_id`` or
    ``edge-assistant-<device id>``; every other connection (`role`: the home, a command-line
    run, a one-shot job) adds its role, so the broker never takes one for another and
    disconnects the first."""
    base = cfg.client_id or f"edge-assistant-{device_id}"
    return f"{base}-{role}" if role else base


def make_client(
    cfg: MqttConfig, client_id: str, on_problem: Callable[[str], None] | None = None
) -> paho.Client:
    """A paho client with credentials and TLS from the config. Raises `ConfigError`.

    `on_problem` gets the text of each warning or error paho logs (socket and TLS failures),
    on paho's thread. An exception in a callback is logged, with its traceback, instead of
    ending paho's network thread. A lost connection is retried by paho's thread, waiting from
    1 s up to ``mqtt.reconnect_max_s`` between attempts.
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
