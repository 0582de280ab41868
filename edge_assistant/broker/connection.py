"""One connection to the MQTT broker, shared by the asyncio loop, a publisher thread and paho's
network thread, none of which waits for another's I/O:

- The loop (or any thread) only appends to the outbox: `publish`, `retain`, `subscribe` and
  `unsubscribe` take a lock that is never held across a call into paho, and return.
- The publisher thread empties the outbox into paho while connected. paho's ``publish`` may
  wait, on a lock its network thread holds while it re-sends its queue after a reconnect; that
  wait is the publisher's, never the loop's.
- paho's network thread runs the callbacks. A message received is only handed to the loop
  (`inbox.Inbox`), where `on_message` gets it.

paho reconnects with backoff (`client.make_client`). At each connect the subscriptions are
renewed (clean sessions), then the publisher announces the retained values (`retain`) and
whatever the owner's `announce` adds, then sends what waited. Every connect and every failed or
lost connection is told to `on_connection` (`CONNECTED`, `UNREACHABLE`, `REFUSED`), which the
daemon turns into its one `broker` health entry (`health_reporter`).
"""

from __future__ import annotations

import asyncio
import collections
import logging
import sys
import threading
from dataclasses import dataclass
from typing import Callable, Iterable

import paho.mqtt.client as paho
from paho.mqtt.enums import MQTTErrorCode

from ..config import MqttConfig
from ..health import BROKER_DOWN_FIX, BROKER_REFUSED_FIX, Health
from ..limits import LogLimiter
from .client import CLIENT_QUEUE_HEADROOM, LOG_INTERVAL_S, make_client
from .inbox import Inbox

log = logging.getLogger(__name__)

# What `on_connection` is told: the broker took us, cannot be reached, or refused us.
CONNECTED = "connected"
UNREACHABLE = "unreachable"
REFUSED = "refused"

STAT_KEYS = (
    "published",  # messages handed to the broker connection
    "dropped",  # messages lost: outbox overflow, QoS 0 while offline, client queue full
    "connects",
    "reconnects",  # connects after the first one
    "connect_failures",
)

# Topics per SUBSCRIBE or UNSUBSCRIBE packet.
SUBSCRIBE_CHUNK = 200


@dataclass(frozen=True)
class Message:
    topic: str
    payload: bytes
    qos: int
    retain: bool = False
    # Of a retained value (`retain`): its place among all the values set, so that the
    # publisher skips a value an announce has already superseded.
    version: int = 0


@dataclass(frozen=True)
class _Filters:
    """A SUBSCRIBE (or UNSUBSCRIBE) for the publisher to send."""

    topics: tuple[str, ...]
    subscribe: bool


class BrokerConnection:
    """One paho client and its publisher thread.

    `on_message(topic, payload)` runs on `loop`. `announce(at_connect)` runs on the publisher
    thread at each connect (True) and after `request_announce()` (False): the messages it
    returns (availability, discovery) follow the retained values. `on_connection(status, why)`
    runs on paho's thread, before a connect's announce; it must not block. Without it, failed
    connections are logged here, rate-limited.
    """

    def __init__(
        self,
        cfg: MqttConfig,
        client_id: str,
        loop: asyncio.AbstractEventLoop,
        *,
        on_message: Callable[[str, bytes], None] | None = None,
        max_received: int = 50_000,
        on_connection: Callable[[str, str | None], None] | None = None,
        announce: Callable[[bool], list[Message]] | None = None,
        will: Message | None = None,
    ) -> None:
        self._cfg = cfg
        self.client_id = client_id
        self._loop = loop
        self._inbox = Inbox(loop, on_message, max_received, client_id) if on_message is not None else None
        self._on_connection = on_connection
        self._announcer = announce
        self._client = make_client(cfg, client_id, self._on_paho_problem)
        if will is not None:
            self._client.will_set(will.topic, will.payload, qos=will.qos, retain=will.retain)
        self._client.on_connect = self._on_connect
        self._client.on_connect_fail = self._on_connect_fail
        self._client.on_disconnect = self._on_disconnect
        self._client.on_message = self._on_message
        self._client.on_subscribe = self._on_subscribe
        # Guards the state below; held only for a few steps, never while calling paho.
        self._lock = threading.Lock()
        self._wake_publisher = threading.Condition(self._lock)
        self._publisher: threading.Thread | None = None
        self._stopping = False
        # Set when stop() runs out of time: the publisher leaves the rest of the outbox.
        self._abandon = False
        self._connected = False
        # Between a connect and its SUBSCRIBE: the publisher waits, so nothing goes out first.
        self._renewing = False
        self._announce_due = False
        # The announce due is a connect's (not one `request_announce` asked for).
        self._connect_announce = False
        # topic filter -> QoS: renewed at every connect.
        self._filters: dict[str, int] = {}
        # mids of the SUBSCRIBEs sent at the latest connect that the broker has not confirmed.
        self._renewal_mids: set[int] = set()
        self._outbox: collections.deque[Message | _Filters] = collections.deque()
        self._outbox_size = cfg.offline_queue + CLIENT_QUEUE_HEADROOM
        # topic -> (version, payload): the latest value of each retained topic.
        self._retained: dict[str, tuple[int, bytes]] = {}
        self._retained_version = 0
        self._announced_version = 0
        self._stats = dict.fromkeys(STAT_KEYS, 0)
        self._last_error: str | None = None
        # What paho last complained about (a socket or TLS error), to explain a disconnect.
        self._transport_error: str | None = None
        # The broker answered the current attempt with a refusal, already reported.
        self._refused = False
        self._log = LogLimiter(log, LOG_INTERVAL_S)

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        """Connect in the background; a broker that is down is retried with backoff."""
        with self._lock:
            if self._publisher is not None:
                raise RuntimeError(f"{self.client_id}: start() called twice")
            # A daemon only so that a connection never stopped cannot hold the process at exit;
            # stop() joins it.
            self._publisher = threading.Thread(
                target=self._publish_outbox, name=f"mqtt-publisher-{self.client_id}", daemon=True
            )
        self._publisher.start()
        self._client.connect_async(self._cfg.host, self._cfg.port, self._cfg.keepalive)
        self._client.loop_start()

    def stop(self, timeout: float = 5.0, farewell: Message | None = None) -> None:
        """Send what waits in the outbox, then `farewell` (the retained `offline`), disconnect.

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
        if connected and farewell is not None:
            info = self._client.publish(farewell.topic, farewell.payload, qos=farewell.qos, retain=farewell.retain)
            try:
                info.wait_for_publish(timeout)
            except (RuntimeError, ValueError):
                pass  # connection already gone: the broker publishes the will instead
        self._client.disconnect()
        self._client.loop_stop()
        with self._lock:
            self._connected = False

    # -- state -------------------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        return self._connected

    @property
    def ready(self) -> bool:
        """Connected and the broker confirmed the subscriptions renewed at the connect."""
        with self._lock:
            return self._connected and not self._renewing and not self._renewal_mids

    @property
    def last_error(self) -> str | None:
        """Why the last connection attempt failed or the connection dropped; None once connected."""
        return self._last_error

    @property
    def stats(self) -> dict[str, int]:
        with self._lock:
            stats = dict(self._stats)
            stats["offline_queued"] = len(self._outbox)
        stats["received_dropped"] = self._inbox.dropped if self._inbox is not None else 0
        return stats

    # -- outgoing (any thread, never blocks) -------------------------------------------------

    def publish(self, topic: str, payload: bytes | str, qos: int, *, keep_offline: bool = False) -> bool:
        """Queue one message; False if it was dropped instead. While the broker is away, only
        QoS >= 1 messages with `keep_offline` wait for it, at most ``mqtt.offline_queue``."""
        data = payload.encode() if isinstance(payload, str) else payload
        with self._lock:
            if self._connected:
                limit = self._outbox_size
            elif keep_offline and qos > 0 and not self._stopping:
                limit = self._cfg.offline_queue
            else:
                limit = 0
            if limit == 0:
                self._stats["dropped"] += 1
                return False
            overflow = self._append(Message(topic, data, qos), limit)
        self._warn_overflow(overflow)
        return True

    def retain(self, topic: str, payload: bytes) -> None:
        """Set a retained value: published now if connected, and again at every connect (before
        `announce`'s messages), until replaced."""
        with self._lock:
            self._retained_version += 1
            self._retained[topic] = (self._retained_version, payload)
            if not self._connected:
                return  # the next connect announces it
            message = Message(topic, payload, self._cfg.qos, True, self._retained_version)
            overflow = self._append(message, self._outbox_size)
        self._warn_overflow(overflow)

    def request_announce(self) -> None:
        """Announce again (the retained values, then `announce`'s messages) if connected."""
        with self._lock:
            if self._connected:
                self._announce_due = True
                self._wake_publisher.notify()

    def subscribe(self, topics: Iterable[str], qos: int) -> None:
        """Add topic filters, kept across reconnects."""
        self._change_filters(sorted(set(topics)), qos)

    def unsubscribe(self, topics: Iterable[str]) -> None:
        self._change_filters(sorted(set(topics)), None)

    def _change_filters(self, topics: list[str], qos: int | None) -> None:
        with self._lock:
            for topic in topics:
                if qos is None:
                    self._filters.pop(topic, None)
                else:
                    self._filters[topic] = qos
            if not self._connected or not topics:
                return  # the next connect subscribes to what is there then
            for chunk in _chunks(topics):
                self._outbox.append(_Filters(tuple(chunk), qos is not None))
            self._wake_publisher.notify()

    def _append(self, message: Message, limit: int) -> bool:
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
                "%s: %d messages waiting for the broker (mqtt.offline_queue %d): dropping the oldest",
                self.client_id,
                len(self._outbox),
                self._cfg.offline_queue,
            )

    # -- the publisher thread ----------------------------------------------------------------

    def _publish_outbox(self) -> None:
        while True:
            with self._lock:
                while not self._abandon and not (
                    self._connected and not self._renewing and (self._announce_due or self._outbox)
                ):
                    if self._stopping:
                        return  # nothing more can be sent
                    self._wake_publisher.wait()
                if self._abandon:
                    return
                item = None
                at_connect = self._connect_announce
                if self._announce_due:
                    self._announce_due = self._connect_announce = False
                else:
                    item = self._outbox.popleft()
                    if isinstance(item, Message) and item.version and item.version <= self._announced_version:
                        continue  # the announce already sent this value or a newer one
            try:
                if item is None:
                    self._announce(at_connect)
                elif isinstance(item, _Filters):
                    self._send_filters(item)
                else:
                    self._send(item)
            except Exception:  # a bug here must not end the publishing for good
                self._log.log(
                    logging.ERROR, "publisher_crash", "%s: error publishing on MQTT", self.client_id, exc_info=True
                )

    def _announce(self, at_connect: bool) -> None:
        """The retained values before the owner's messages: whoever sees the device `online`
        already has them. The owner's are made first: what they say is no older than the values."""
        extra = self._announcer(at_connect) if self._announcer is not None else []
        with self._lock:
            retained = [(topic, payload) for topic, (_, payload) in self._retained.items()]
            self._announced_version = self._retained_version
        for topic, payload in retained:
            self._send(Message(topic, payload, self._cfg.qos, retain=True))
        for message in extra:
            self._send(message)

    def _send(self, message: Message) -> None:
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

    def _send_filters(self, filters: _Filters) -> None:
        if filters.subscribe:
            with self._lock:
                wanted = [(topic, self._filters[topic]) for topic in filters.topics if topic in self._filters]
            if wanted:
                self._client.subscribe(wanted)
        else:
            self._client.unsubscribe(list(filters.topics))

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
        with self._lock:
            # From here on `subscribe` queues its filters: none is missed by the renewal below.
            self._connected = self._renewing = True
            filters = sorted(self._filters.items())
            self._renewal_mids.clear()
        # Clean sessions: subscriptions are renewed at every connect, before anything is sent.
        mids = [client.subscribe(list(chunk))[1] for chunk in _chunks(filters)]
        with self._lock:
            self._renewal_mids.update(mids)
            self._renewing = False
            self._stats["connects"] += 1
            if self._stats["connects"] > 1:
                self._stats["reconnects"] += 1
            self._last_error = self._transport_error = None
            self._refused = False
            self._announce_due = self._connect_announce = True
            self._wake_publisher.notify()
        log.info("%s: connected to MQTT broker %s:%s", self.client_id, self._cfg.host, self._cfg.port)

    def _on_subscribe(self, client, userdata, mid, reason_codes, properties) -> None:
        refused = [str(code) for code in reason_codes if code.is_failure]
        with self._lock:
            self._renewal_mids.discard(mid)
        if refused:
            # Typically a broker ACL: publishing still works, but these messages cannot arrive.
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
        if self._inbox is not None:
            self._inbox.put(message.topic, bytes(message.payload))


def health_reporter(health: Health, cfg: MqttConfig) -> Callable[[str, str | None], None]:
    """An `on_connection` that keeps the daemon's one `broker` health entry."""

    def report(status: str, message: str | None) -> None:
        if status == CONNECTED:
            health.ok("broker", f"{cfg.host}:{cfg.port}")
        elif status == REFUSED:
            health.failed("broker", "refused the connection, retrying", message or "", BROKER_REFUSED_FIX)
        else:
            health.failed("broker", "unreachable, retrying", message or "", BROKER_DOWN_FIX)

    return report


def _chunks(items: list) -> list[list]:
    return [items[i:i + SUBSCRIBE_CHUNK] for i in range(0, len(items), SUBSCRIBE_CHUNK)]
