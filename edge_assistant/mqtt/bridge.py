"""MQTT bridge: events out, commands in, Home Assistant discovery and Hermes compatibility.

The bridge is built on `broker.BrokerConnection`, so no caller waits for paho:

- The caller of `publish_event` / `set_state` / `set_muted` / `set_volume` / `set_health` (the
  asyncio loop, or any thread) only queues; the connection's publisher thread hands the
  messages to paho.
- paho's network thread only hands received messages to the loop, where they are validated
  into `Command`s for the bounded queue `MqttBridge.commands`.

While the broker is away, QoS >= 1 events wait (up to ``mqtt.offline_queue``) and the latest
value of every retained topic is kept aside; at each connect the connection renews the
subscriptions, announces those values, then availability and discovery, then sends what waited.
Availability is `online` only once the core has reported its state (its first `state` event,
after mute and volume): until then a connect announces `offline`, so a restart never shows the
previous process's values as current. Topics and payloads: docs/mqtt.md.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from typing import Any, Callable

from ..broker import BrokerConnection, Message, client_id
from ..broker.client import LOG_INTERVAL_S
from ..config import MqttConfig
from ..events import EVENT_TYPES, STATES, Command, Event, EventType
from .client import check_names, dumps
from .commands import CommandRejected, parse_command
from .discovery import discovery_configs
from .hermes import HERMES_REQUESTS, HermesSessions, parse_hermes
from ..limits import LogLimiter, TokenBucket
from .retained import RetainedStates
from .topics import OFFLINE, ONLINE, Topics

log = logging.getLogger(__name__)

STAT_KEYS = (
    "commands",  # commands put on the queue
    "commands_refused",  # valid commands refused because the queue was full
    "malformed",  # rejected input
    "errors_suppressed",  # error replies not sent because of the reply rate limit
)

# A flood of bad or excess commands must not crowd real events out of the client's queue.
_ERROR_REPLY_RATE = 20.0
_ERROR_REPLY_BURST = 50
# Messages received and not yet handled on the loop, beyond the commands the queue holds: a
# flood is answered `busy` while the loop keeps up, and dropped (and counted) beyond.
RECEIVED_HEADROOM = 1000


class MqttBridge:
    """One device's MQTT connection, shared by the asyncio core and paho's network thread.

    The core calls `start()`, consumes `commands`, calls `publish_event()` / `set_state()` /
    `set_muted()` / `set_volume()` / `set_health()` from any thread (they never block), and
    `stop()` (or ``await aclose()``) at exit.

    `on_connection(status, message)` hears of every connect (`broker.CONNECTED`, None) and every
    failed or lost connection (`broker.UNREACHABLE` or `REFUSED`, why) on paho's thread, before a connect
    announces the retained values: what it sets with `set_health()` then is what the broker gets.
    It must not block.
    """

    def __init__(
        self,
        cfg: MqttConfig,
        device_id: str,
        loop: asyncio.AbstractEventLoop,
        on_connection: Callable[[str, str | None], None] | None = None,
    ) -> None:
        check_names(cfg, device_id)
        self._cfg = cfg
        self._device_id = device_id
        self._loop = loop
        self.topics = Topics.for_config(cfg, device_id)
        self.commands: asyncio.Queue[Command] = asyncio.Queue(maxsize=cfg.command_queue)
        self._broadcast = cfg.broadcast_commands
        self._hermes = HermesSessions(device_id)
        # Guards the state below; held only for a few steps, never while calling paho.
        self._lock = threading.Lock()
        # The core reported its state: availability may say online.
        self._core_reported = False
        # Discovery configs are owed again: Home Assistant restarted.
        self._discovery_due = False
        self._retained_states = RetainedStates(self.topics)
        self._stats = dict.fromkeys(STAT_KEYS, 0)
        self._log = LogLimiter(log, LOG_INTERVAL_S)
        self._error_replies = TokenBucket(_ERROR_REPLY_RATE, _ERROR_REPLY_BURST)
        self._connection = BrokerConnection(
            cfg, client_id(cfg, device_id), loop,
            on_message=self._handle_message,
            max_received=cfg.command_queue + RECEIVED_HEADROOM,
            on_connection=on_connection,
            announce=self._announcement,
            will=Message(self.topics.availability, OFFLINE.encode(), cfg.qos, retain=True),
        )
        self._connection.subscribe(self._filters(), cfg.qos)

    def _filters(self) -> list[str]:
        filters = [self.topics.command_filter]
        if self._broadcast:
            filters.append(self.topics.broadcast_filter)
        if self._cfg.discovery:
            filters.append(self.topics.ha_status)
        if self._cfg.hermes:
            filters += HERMES_REQUESTS
        return filters

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        """Connect in the background; a broker that is down is retried with backoff."""
        self._connection.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Send what waits in the outbox, publish retained `offline`, disconnect cleanly.

        Blocks up to about `timeout` seconds (see `BrokerConnection.stop`)."""
        offline = Message(self.topics.availability, OFFLINE.encode(), max(1, self._cfg.qos), retain=True)
        self._connection.stop(timeout, farewell=offline)

    async def aclose(self, timeout: float = 5.0) -> None:
        await asyncio.to_thread(self.stop, timeout)

    # -- state for the core ------------------------------------------------------------------

    @property
    def client_id(self) -> str:
        return self._connection.client_id

    @property
    def connected(self) -> bool:
        return self._connection.connected

    @property
    def ready(self) -> bool:
        """Connected and the broker confirmed the command subscriptions."""
        return self._connection.ready

    @property
    def last_error(self) -> str | None:
        """Why the last connection attempt failed or the connection dropped; None once connected."""
        return self._connection.last_error

    @property
    def stats(self) -> dict[str, int]:
        stats = self._connection.stats
        with self._lock:
            stats.update(self._stats)
        stats["command_queue"] = self.commands.qsize()
        return stats

    # -- outgoing (any thread) ---------------------------------------------------------------

    def publish_event(self, event: Event) -> None:
        """Publish on ``<prefix>/<device_id>/event/<type>`` and update the retained topics it
        changes; thread-safe, never blocks."""
        if event.type not in EVENT_TYPES:
            raise ValueError(f"unknown event type {event.type!r}")
        qos = self._cfg.qos
        payload = dumps(event.to_json_dict())
        self._connection.publish(self.topics.event(event.type), payload, qos, keep_offline=True)
        with self._lock:
            updates = self._retained_states.updates(event, payload)
            first_state = event.type == EventType.STATE and bool(updates) and not self._core_reported
            if first_state:
                # The timers of a previous process are gone unless the core announces them.
                updates.append(self._retained_states.timers())
            for topic, value in updates:
                self._connection.retain(topic, value)
            # After the values: the announce that says online has them.
            self._core_reported = self._core_reported or first_state
        if first_state:
            self._connection.request_announce()
        self._publish_hermes(event, qos)

    def _publish_hermes(self, event: Event, qos: int) -> None:
        if not self._cfg.hermes:
            return
        message = None
        # A fast first-pass text may yet be wrong: Hermes intent handlers act on what they get.
        if event.type == EventType.TRANSCRIPT and event.data.get("pass") != "fast":
            message = self._hermes.text_captured(event)
        elif event.type == EventType.WAKE:
            message = self._hermes.hotword_detected(event)
        elif event.type == EventType.TTS_STOP:
            message = self._hermes.say_finished(event)
        if message is not None:
            topic, payload = message
            self._connection.publish(topic, dumps(payload), qos)

    def set_state(self, state: str, turn_id: str | None = None) -> None:
        """Retained ``<prefix>/<device_id>/state`` plus a `state` event."""
        if state not in STATES:
            raise ValueError(f"unknown state {state!r}; known: {', '.join(STATES)}")
        self.publish_event(Event(EventType.STATE, {"state": state}, turn_id=turn_id))

    def set_muted(self, muted: bool) -> None:
        """Retained ``<prefix>/<device_id>/mute``: ON or OFF."""
        self._connection.retain(self.topics.mute, b"ON" if muted else b"OFF")

    def set_volume(self, volume: float) -> None:
        """Retained ``<prefix>/<device_id>/volume`` in percent; `volume` is a gain, 1.0 = 100."""
        percent = min(100, max(0, round(volume * 100)))
        self._connection.retain(self.topics.volume, str(percent).encode())

    def set_health(self, health: dict[str, Any]) -> None:
        """Retained ``<prefix>/<device_id>/health``: the `health.Health` payload."""
        self._connection.retain(self.topics.health, dumps(health))

    # -- the connection's calls --------------------------------------------------------------

    def _announcement(self, at_connect: bool) -> list[Message]:
        """After the retained values, at each connect (publisher thread): availability, and
        the discovery configs when they are owed."""
        qos = self._cfg.qos
        availability = ONLINE if self._core_reported else OFFLINE
        messages = [Message(self.topics.availability, availability.encode(), qos, retain=True)]
        with self._lock:
            with_discovery, self._discovery_due = self._discovery_due or at_connect, False
        if with_discovery and self._cfg.discovery:
            messages += [Message(topic, dumps(config), qos, retain=True)
                         for topic, config in discovery_configs(self._cfg, self._device_id).items()]
        return messages

    # -- incoming (on the loop) --------------------------------------------------------------

    def _handle_message(self, topic: str, payload: bytes) -> None:
        if topic == self.topics.ha_status:
            if payload.strip() == ONLINE.encode() and self._cfg.discovery:
                # Home Assistant restarted: it forgets non-retained state, so announce again.
                with self._lock:
                    self._discovery_due = True
                self._connection.request_announce()
            return
        if self._cfg.hermes and topic in HERMES_REQUESTS:
            try:
                mapped = parse_hermes(topic, payload, self._cfg, self._device_id)
            except CommandRejected as error:
                self._reject(error, "hermes")
                return
            if mapped is not None:
                command, session_id = mapped
                self._hermes.remember(command, session_id)
                self._enqueue(command)
            return
        name = self.topics.command_name(topic, self._broadcast)
        if name is None:
            return
        try:
            command = parse_command(name, payload, self._cfg)
        except CommandRejected as error:
            self._reject(error, topic)
            return
        self._enqueue(command)

    def _enqueue(self, command: Command) -> None:
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
        self.publish_event(Event(EventType.ERROR, data, request_id=error.request_id))
