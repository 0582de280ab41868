"""The home's MQTT connection: discovery and states in, commands out.

Subscribes to ``<discovery_prefix>/#`` and to every state and availability topic the `Home`
needs (kept in step as entities come and go). paho's callbacks run on its network thread and
only hand the message to the event loop (``call_soon_threadsafe``), where `Home` lives; a flood
is bounded by `MAX_PENDING` messages in flight, beyond which messages are dropped and counted.
Commands are published non-retained at ``mqtt.qos``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time

import paho.mqtt.client as paho

from ..config import MqttConfig
from ..mqtt import make_client
from .registry import Home

log = logging.getLogger(__name__)

MAX_PENDING = 50_000
# Topics per SUBSCRIBE packet.
SUBSCRIBE_CHUNK = 200
STOP_TIMEOUT_S = 5.0


class HomeOffline(RuntimeError):
    """The broker cannot be reached: no command can be sent."""


class HomeConnection:
    def __init__(self, cfg: MqttConfig, home: Home, client_id: str, sync_topic: str) -> None:
        self._cfg = cfg
        self._home = home
        self._client_id = client_id
        # A topic only this connection uses, to learn when the broker has sent every retained
        # message of the subscriptions made before (see `settle`).
        self._sync_topic = sync_topic
        self._loop: asyncio.AbstractEventLoop | None = None
        self._client: paho.Client | None = None
        self._connected = threading.Event()
        self._pending = threading.BoundedSemaphore(MAX_PENDING)
        # Topics subscribed beyond the discovery prefix; read by paho's thread at connect.
        self._subscribed: set[str] = set()
        self._lock = threading.Lock()
        self._flush_scheduled = False
        self._markers: dict[str, asyncio.Future] = {}
        self.dropped = 0
        self.connects = 0
        # Set when an attempt to connect failed: nothing is worth waiting for until one works.
        self._unreachable = threading.Event()

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    async def start(self) -> None:
        """Connect in the background; a broker that is down is retried by paho with backoff."""
        self._loop = asyncio.get_running_loop()
        client = make_client(self._cfg, self._client_id)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        client.on_connect_fail = lambda _client, _userdata: self._unreachable.set()
        self._client = client
        client.connect_async(self._cfg.host, self._cfg.port, self._cfg.keepalive)
        client.loop_start()

    async def aclose(self) -> None:
        client, self._client = self._client, None
        if client is None:
            return

        was_connected = self._connected.is_set()
        self._connected.clear()

        def stop() -> None:
            if was_connected:
                client.disconnect()
            client.loop_stop()

        await asyncio.wait_for(asyncio.to_thread(stop), STOP_TIMEOUT_S)
        for future in self._markers.values():
            future.cancel()

    # -- outgoing ------------------------------------------------------------------------------

    def publish(self, topic: str, payload: str | bytes) -> None:
        """A command, non-retained at mqtt.qos. Raises `HomeOffline` when not connected."""
        client = self._client
        if client is None or not self._connected.is_set():
            raise HomeOffline(f"not connected to the broker {self._cfg.host}:{self._cfg.port}")
        info = client.publish(topic, payload, qos=self._cfg.qos, retain=False)
        if info.rc != paho.MQTT_ERR_SUCCESS:
            raise HomeOffline(f"publishing on {topic} failed: {paho.error_string(info.rc)}")

    async def settle(self, timeout: float) -> bool:
        """Wait until the broker has delivered the retained discovery configs and the retained
        states of the entities they declare; False if that took longer than `timeout`.

        The broker sends a new subscription's retained messages before anything published after
        it, so a marker sent to ourselves comes back after them. Discovered entities add state
        subscriptions, so this repeats until a round adds none.
        """
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self._connected.is_set():
                if self._unreachable.is_set():
                    return False  # the broker is down: the devices come when it is back
                await asyncio.sleep(0.05)
                continue
            self._flush_subscriptions()
            before = self._home.version
            try:
                await asyncio.wait_for(self._round_trip(), max(0.01, deadline - time.monotonic()))
            except (asyncio.TimeoutError, HomeOffline):
                continue
            self._flush_subscriptions()
            if self._home.version == before:
                return True
        return False

    async def _round_trip(self) -> None:
        assert self._loop is not None
        marker = os.urandom(8).hex()
        future = self._loop.create_future()
        self._markers[marker] = future
        try:
            self.publish(self._sync_topic, marker)
            await future
        finally:
            self._markers.pop(marker, None)

    # -- subscriptions -------------------------------------------------------------------------

    def _flush_subscriptions(self) -> None:
        """Runs on the loop: subscribe to the topics `Home` gained, drop the ones it lost."""
        self._flush_scheduled = False
        gained, lost = self._home.take_subscription_changes()
        client = self._client
        if client is None:
            return
        covered = self._home.discovery_prefix + "/"
        gained = {t for t in gained if not t.startswith(covered)} - self._subscribed
        lost = {t for t in lost if not t.startswith(covered)} & self._subscribed
        with self._lock:
            self._subscribed |= gained
            self._subscribed -= lost
        if not self._connected.is_set():
            return  # subscribed at the next connect
        self._send_subscriptions(client, sorted(gained))
        for chunk in _chunks(sorted(lost)):
            client.unsubscribe(chunk)

    def _send_subscriptions(self, client: paho.Client, topics: list[str]) -> None:
        qos = self._cfg.qos
        for chunk in _chunks(topics):
            client.subscribe([(topic, qos) for topic in chunk])

    # -- paho callbacks (network thread: never block) ----------------------------------------

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            log.error("home: broker %s:%s refused the connection: %s", self._cfg.host, self._cfg.port, reason_code)
            return
        self.connects += 1
        qos = self._cfg.qos
        # Clean sessions: everything is subscribed again at each connect.
        client.subscribe([(f"{self._home.discovery_prefix}/#", qos), (self._sync_topic, 0)])
        with self._lock:
            topics = sorted(self._subscribed)
        self._send_subscriptions(client, topics)
        self._connected.set()
        log.info("home: connected to %s:%s", self._cfg.host, self._cfg.port)

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        if self._connected.is_set():
            log.warning("home: lost the broker connection (%s); reconnecting", reason_code)
        self._connected.clear()

    def _on_message(self, client, userdata, message: paho.MQTTMessage) -> None:
        if not self._pending.acquire(blocking=False):
            self.dropped += 1
            return
        loop = self._loop
        try:
            assert loop is not None
            loop.call_soon_threadsafe(self._deliver, message.topic, bytes(message.payload))
        except RuntimeError:  # the loop has closed: shutting down
            self._pending.release()

    # -- on the loop ---------------------------------------------------------------------------

    def _deliver(self, topic: str, payload: bytes) -> None:
        self._pending.release()
        if topic == self._sync_topic:
            future = self._markers.get(payload.decode("ascii", errors="replace"))
            if future is not None and not future.done():
                future.set_result(None)
            return
        try:
            self._home.handle_message(topic, payload)
        except Exception:  # one bad message must not stop the home
            log.exception("home: error handling a message on %s", topic[:200])
        if not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush_subscriptions)


def _chunks(items: list[str]) -> list[list[str]]:
    return [items[i:i + SUBSCRIBE_CHUNK] for i in range(0, len(items), SUBSCRIBE_CHUNK)]
