"""MQTT bridge: events out, commands in, Home Assistant discovery and Hermes compatibility.

Three kinds of threads meet here, and none waits for another's I/O:

- paho's network thread runs the callbacks. They validate a message cheaply and hand a
  `Command` to the asyncio core with ``loop.call_soon_threadsafe`` into the bounded queue
  `MqttBridge.commands`.
- The caller of `publish_event` / `set_state` / `set_muted` / `set_volume` (the asyncio loop,
  or any thread) only appends to the outbox, a bounded FIFO whose lock is never held across a
  call into paho; when it is full the oldest message is dropped and counted.
- The publisher thread empties the outbox into paho while connected. paho's ``publish`` may
  wait, on a lock its network thread holds while it re-sends its queue after a reconnect; that
  wait is the publisher's, never the loop's.

While the broker is away, QoS >= 1 events stay in the outbox (up to ``mqtt.offline_queue``) and
the latest value of every retained topic is kept aside; at each connect the publisher first
announces those values, availability and discovery, then sends what waited. Availability is
`online` only once the core has reported its state (its first `state` event, after mute and
volume): until then a connect announces `offline`, so a restart never shows the previous
process's values as current. Topics and payloads: docs/mqtt.md.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import sys
import threading
from dataclasses import dataclass
from typing import Any, Callable

import paho.mqtt.client as paho
from paho.mqtt.enums import MQTTErrorCode

from ..config import MqttConfig
from ..events import EVENT_TYPES, STATES, Command, Event, EventType
from .client import CLIENT_QUEUE_HEADROOM, LOG_INTERVAL_S, check_names, dumps, make_client
from .commands import CommandRejected, parse_command
from .discovery import discovery_configs
from .hermes import HERMES_REQUESTS, HermesSessions, parse_hermes
from ..limits import LogLimiter, TokenBucket
from .retained import RetainedStates
from .topics import OFFLINE, ONLINE, Topics

log = logging.getLogger(__name__)

STAT_KEYS = (
    "published",  # messages handed to the broker connection
    "dropped",  # messages lost: outbox overflow, QoS 0 while offline, client queue full
    "commands",  # commands put on the queue
    "commands_refused",  # valid commands refused because the queue was full
    "malformed",  # rejected input
    "errors_suppressed",  # error replies not sent because of the reply rate limit
    "connects",
    "reconnects",  # connects after the first one
    "connect_failures",
)

# What `on_connection` is told: the broker took us, cannot be reached, or refused us.
CONNECTED = "connected"
UNREACHABLE = "unreachable"
REFUSED = "refused"

# A flood of bad or excess commands must not crowd real events out of the client's queue.
_ERROR_REPLY_RATE = 20.0
_ERROR_REPLY_BURST = 50


@dataclass(frozen=True)
class _Message:
    topic: str
    payload: bytes
    qos: int
    retain: bool = False
    # Of a retained state value: its place among all retained values set, so that the
    # publisher skips a value an announce has already superseded.
    version: int = 0


class MqttBridge:
    """One device's MQTT connection, shared by the asyncio core and paho's network thread.

    The core calls `start()`, consumes `commands`, calls `publish_event()` / `set_state()` /
    `set_muted()` / `set_volume()` / `set_health()` from any thread (they never block), and
    `stop()` (or ``await aclose()``) at exit.

    `on_connection(status, message)` hears of every connect (`CONNECTED`, None) and every failed
    or lost connection (`UNREACHABLE` or `REFUSED`, why) on paho's thread, before a connect
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
        self._client = make_client(
            cfg, cfg.client_id or f"edge-assistant-{device_id}", self._on_paho_problem
        )
        self._client.will_set(self.topics.availability, OFFLINE, qos=cfg.qos, retain=True)
        self._client.on_connect = self._on_connect
        self._client.on_connect_fail = self._on_connect_fail
        self._client.on_disconnect = self._on_disconnect
        self._client.on_message = self._on_message
        self._client.on_subscribe = self._on_subscribe
        self._hermes = HermesSessions(device_id)
        self._on_connection = on_connection

        # Guards the state below; held only for a few steps, never while calling paho.
        self._lock = threading.Lock()
        self._wake_publisher = threading.Condition(self._lock)
        self._publisher: threading.Thread | None = None
        self._stopping = False
        # Set when stop() runs out of time: the publisher leaves the rest of the outbox.
        self._abandon = False
        self._connected = False
        # An announce the publisher owes the broker: retained values and availability, and
        # (after a connect or a Home Assistant restart) the discovery configs too.
        self._announce_due = False
        self._discovery_due = False
        # The core reported its state: availability may say online.
        self._core_reported = False
        # mid of the SUBSCRIBE sent at the latest connect, None once the broker confirmed it.
        self._subscribe_mid: int | None = None
        self._outbox: collections.deque[_Message] = collections.deque()
        self._outbox_size = cfg.offline_queue + CLIENT_QUEUE_HEADROOM
        # topic -> (version, payload): the latest value of each retained state topic.
        self._retained: dict[str, tuple[int, bytes]] = {}
        self._retained_states = RetainedStates(self.topics)
        self._retained_version = 0
        self._announced_version = 0
        self._stats = dict.fromkeys(STAT_KEYS, 0)
        self._last_error: str | None = None
        # What paho last complained about (a socket or TLS error), to explain a disconnect.
        self._transport_error: str | None = None
        # The broker answered the current attempt with a refusal, already reported.
        self._refused = False
        # Commands handed to the loop but not yet queued: bounds call_soon_threadsafe callbacks
        # when the loop is slow, so a flood cannot pile up there either.
        self._handoff = threading.BoundedSemaphore(cfg.command_queue)
        self._log = LogLimiter(log, LOG_INTERVAL_S)
        self._error_replies = TokenBucket(_ERROR_REPLY_RATE, _ERROR_REPLY_BURST)

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        """Connect in the background; a broker that is down is retried with backoff."""
        with self._lock:
            if self._publisher is not None:
                raise RuntimeError("MqttBridge.start() called twice")
            # A daemon only so that a bridge never stopped cannot hold the process at exit;
            # stop() joins it.
            self._publisher = threading.Thread(
                target=self._publish_outbox, name=f"mqtt-publisher-{self._device_id}", daemon=True
            )
        self._publisher.start()
        self._client.connect_async(self._cfg.host, self._cfg.port, self._cfg.keepalive)
        self._client.loop_start()

    def stop(self, timeout: float = 5.0) -> None:
        """Send what waits in the outbox, publish retained `offline`, disconnect cleanly.

        Blocks up to about `timeout` seconds: twice that at worst, plus paho's connect timeout
        (5 s) when a connection attempt is under way. A broker that answers nothing does not
        hold it longer: the DISCONNECT ends paho's thread even behind a full socket."""
        with self._lock:
            if self._stopping:
                return
            self._stopping = True
            self._wake_publisher.notify_all()
        publisher = self._publisher
        if publisher is None:
            return
        publisher.join(timeout)
        if publisher.is_alive():
            with self._lock:
                self._abandon = True
                self._wake_publisher.notify_all()
            publisher.join()  # prompt: it checks `_abandon` before every message
        with self._lock:
            connected = self._connected
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
            stats["offline_queued"] = len(self._outbox)
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
        self._queue(self.topics.event(event.type), payload, qos, keep_offline=True)
        with self._lock:
            updates = self._retained_states.updates(event, payload)
            if event.type == EventType.STATE and updates and not self._core_reported:
                self._core_reported = True
                # The timers of a previous process are gone unless the core announces them.
                updates.append(self._retained_states.timers())
                # Under the same lock as the values: the announce that says online has them.
                self._announce_due = self._announce_due or self._connected
            overflow = False
            for topic, value in updates:
                overflow = self._retain(topic, value) or overflow
        self._warn_overflow(overflow)
        # A fast first-pass text may yet be wrong: Hermes intent handlers act on what they get.
        if event.type == EventType.TRANSCRIPT and self._cfg.hermes and event.data.get("pass") != "fast":
            self._queue(*self._hermes_message(self._hermes.text_captured(event)), qos)
        elif event.type == EventType.WAKE and self._cfg.hermes:
            self._queue(*self._hermes_message(self._hermes.hotword_detected(event)), qos)
        elif event.type == EventType.TTS_STOP and self._cfg.hermes:
            finished = self._hermes.say_finished(event)
            if finished is not None:
                self._queue(*self._hermes_message(finished), qos)

    def set_state(self, state: str, turn_id: str | None = None) -> None:
        """Retained ``<prefix>/<device_id>/state`` plus a `state` event."""
        if state not in STATES:
            raise ValueError(f"unknown state {state!r}; known: {', '.join(STATES)}")
        self.publish_event(Event(EventType.STATE, {"state": state}, turn_id=turn_id))

    def set_muted(self, muted: bool) -> None:
        """Retained ``<prefix>/<device_id>/mute``: ON or OFF."""
        self._queue_retained(self.topics.mute, b"ON" if muted else b"OFF")

    def set_volume(self, volume: float) -> None:
        """Retained ``<prefix>/<device_id>/volume`` in percent; `volume` is a gain, 1.0 = 100."""
        percent = min(100, max(0, round(volume * 100)))
        self._queue_retained(self.topics.volume, str(percent).encode())

    def set_health(self, health: dict[str, Any]) -> None:
        """Retained ``<prefix>/<device_id>/health``: the `health.Health` payload."""
        self._queue_retained(self.topics.health, dumps(health))

    @staticmethod
    def _hermes_message(message: tuple[str, dict[str, Any]]) -> tuple[str, bytes]:
        topic, payload = message
        return topic, dumps(payload)

    def _queue_retained(self, topic: str, payload: bytes) -> None:
        with self._lock:
            overflow = self._retain(topic, payload)
        self._warn_overflow(overflow)

    def _retain(self, topic: str, payload: bytes) -> bool:
        """Remember the value for the next announce; while connected, queue it too. Caller
        holds the lock; True if the outbox overflowed."""
        self._retained_version += 1
        self._retained[topic] = (self._retained_version, payload)
        if not self._connected:
            return False  # the next connect announces it
        message = _Message(topic, payload, self._cfg.qos, True, self._retained_version)
        return self._append(message, self._outbox_size)

    def _queue(self, topic: str, payload: bytes, qos: int, keep_offline: bool = False) -> None:
        """Queue one message for the publisher. While the broker is away, only QoS >= 1
        messages with `keep_offline` wait for it, at most ``mqtt.offline_queue`` of them."""
        with self._lock:
            if self._connected:
                limit = self._outbox_size
            elif keep_offline and qos > 0 and not self._stopping:
                limit = self._cfg.offline_queue
            else:
                limit = 0
            if limit == 0:
                self._stats["dropped"] += 1
                return
            overflow = self._append(_Message(topic, payload, qos), limit)
        self._warn_overflow(overflow)

    def _append(self, message: _Message, limit: int) -> bool:
        """Append, dropping the oldest beyond `limit`; caller holds the lock. True if any was."""
        overflow = False
        while len(self._outbox) >= limit:
            self._outbox.popleft()
            self._stats["dropped"] += 1
            overflow = True
        self._outbox.append(message)
        self._wake_publisher.notify()
        return overflow

    def _warn_overflow(self, overflow: bool) -> None:
        if overflow:
            self._log.log(
                logging.WARNING,
                "outbox_overflow",
                "%d messages waiting for the broker (mqtt.offline_queue %d): dropping the oldest",
                len(self._outbox),
                self._cfg.offline_queue,
            )

    # -- the publisher thread ----------------------------------------------------------------

    def _publish_outbox(self) -> None:
        while True:
            with self._lock:
                while not self._abandon and not (
                    self._connected and (self._announce_due or self._discovery_due or self._outbox)
                ):
                    if self._stopping:
                        return  # nothing more can be sent
                    self._wake_publisher.wait()
                if self._abandon:
                    return
                if self._announce_due or self._discovery_due:
                    with_discovery = self._discovery_due
                    self._announce_due = self._discovery_due = False
                    retained = [(topic, payload) for topic, (_, payload) in self._retained.items()]
                    online = self._core_reported
                    self._announced_version = self._retained_version
                    message = None
                else:
                    message = self._outbox.popleft()
                    if message.version and message.version <= self._announced_version:
                        continue  # the announce already sent this value or a newer one
            try:
                if message is None:
                    self._announce(retained, online, with_discovery)
                else:
                    self._send(message)
            except Exception:  # a bug here must not end the publishing for good
                self._log.log(
                    logging.ERROR, "publisher_crash", "error publishing on MQTT", exc_info=True
                )

    def _announce(self, retained: list[tuple[str, bytes]], online: bool, with_discovery: bool) -> None:
        """The current values before availability: whoever sees `online` already has them."""
        qos = self._cfg.qos
        for topic, payload in retained:
            self._send(_Message(topic, payload, qos, retain=True))
        availability = ONLINE if online else OFFLINE
        self._send(_Message(self.topics.availability, availability.encode(), qos, retain=True))
        if with_discovery and self._cfg.discovery:
            for topic, config in discovery_configs(self._cfg, self._device_id).items():
                self._send(_Message(topic, dumps(config), qos, retain=True))

    def _send(self, message: _Message) -> None:
        """Hand one message to paho (publisher thread only)."""
        info = self._client.publish(message.topic, message.payload, qos=message.qos, retain=message.retain)
        # QoS >= 1 messages that meet a dead socket stay in paho's queue and are re-sent on
        # reconnect; anything else that was not accepted is lost.
        sent = info.rc == MQTTErrorCode.MQTT_ERR_SUCCESS or (
            info.rc == MQTTErrorCode.MQTT_ERR_NO_CONN and message.qos > 0
        )
        with self._lock:
            self._stats["published" if sent else "dropped"] += 1
        if not sent:
            self._log.log(
                logging.WARNING,
                f"publish_{info.rc}",
                "cannot publish on %s: %s",
                message.topic,
                paho.error_string(info.rc),
            )

    # -- paho callbacks (network thread: never block) ----------------------------------------

    def _report_connection(self, status: str, message: str | None) -> None:
        """Tell `on_connection` (paho's thread; never with the lock held)."""
        if self._on_connection is not None and not self._stopping:
            try:
                self._on_connection(status, message)
            except Exception:
                log.exception("MQTT connection handler failed")

    def _connection_problem(self, level: int, key: str, status: str, message: str) -> None:
        """A failed or lost connection: logged here (rate-limited) unless `on_connection`
        takes it, which then reports it (the daemon: once, as the broker's health)."""
        if self._on_connection is None:
            self._log.log(level, key, "%s (retrying)", message)
        else:
            log.debug("%s (retrying)", message)
            self._report_connection(status, message)

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            message = f"broker {self._cfg.host}:{self._cfg.port} refused the connection: {reason_code}"
            with self._lock:
                self._stats["connect_failures"] += 1
                self._last_error = message
                self._refused = True
            self._connection_problem(logging.ERROR, f"refused_{reason_code}", REFUSED, message)
            return
        # Before the announce is due: a health change it causes goes out with the announce.
        self._report_connection(CONNECTED, None)
        qos = self._cfg.qos
        # Clean sessions: subscriptions are renewed at every connect.
        filters = [(self.topics.command_filter, qos)]
        if self._broadcast:
            filters.append((self.topics.broadcast_filter, qos))
        if self._cfg.discovery:
            filters.append((self.topics.ha_status, qos))
        if self._cfg.hermes:
            filters += [(topic, qos) for topic in HERMES_REQUESTS]
        _, subscribe_mid = client.subscribe(filters)
        with self._lock:
            self._subscribe_mid = subscribe_mid
            self._stats["connects"] += 1
            if self._stats["connects"] > 1:
                self._stats["reconnects"] += 1
            self._last_error = self._transport_error = None
            self._refused = False
            self._connected = True
            self._announce_due = self._discovery_due = True
            self._wake_publisher.notify()
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

    def _on_connect_fail(self, client, userdata) -> None:
        # paho calls this from inside its `except OSError`, so the cause is still at hand.
        error = sys.exc_info()[1]
        where = f"{self._cfg.host}:{self._cfg.port}"
        message = f"cannot connect to broker {where}: {error or 'connection failed'}"
        with self._lock:
            self._stats["connect_failures"] += 1
            self._last_error = message
        self._connection_problem(logging.ERROR, f"connect_{type(error).__name__}", UNREACHABLE, message)

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
        self._connection_problem(logging.WARNING, key, UNREACHABLE, message)

    def _on_paho_problem(self, text: str) -> None:
        # No lock: paho may log while holding its own locks.
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
                        self._announce_due = self._discovery_due = True
                        self._wake_publisher.notify()
            return
        if self._cfg.hermes and topic in HERMES_REQUESTS:
            try:
                mapped = parse_hermes(topic, message.payload, self._cfg, self._device_id)
            except CommandRejected as error:
                self._reject(error, "hermes")
                return
            if mapped is not None:
                command, session_id = mapped
                self._hermes.remember(command, session_id)
                self._hand_over(command)
            return
        name = self.topics.command_name(topic, self._broadcast)
        if name is None:
            return
        try:
            command = parse_command(name, message.payload, self._cfg)
        except CommandRejected as error:
            self._reject(error, topic)
            return
        self._hand_over(command)

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
        self.publish_event(Event(EventType.ERROR, data, request_id=error.request_id))
