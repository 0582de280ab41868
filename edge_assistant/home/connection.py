"""The home's MQTT connection: discovery and states in, commands out.

Subscribes to ``<discovery_prefix>/#`` and to every state and availability topic the `Home`
needs (kept in step as entities come and go). It is a `broker.BrokerConnection`: paho's thread
only hands each message to the event loop, where `Home` lives (beyond `MAX_PENDING` messages in
flight, messages are dropped and counted); commands (non-retained, at ``mqtt.qos``) and
subscription changes are only queued for the connection's publisher thread, so the loop never
waits for paho.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time

from ..broker import CONNECTED, BrokerConnection
from ..config import MqttConfig
from .registry import Home

log = logging.getLogger(__name__)

MAX_PENDING = 50_000
STOP_TIMEOUT_S = 5.0


class HomeOffline(RuntimeError):
    """The broker cannot be reached: no command can be sent."""


class HomeConnection:
    def __init__(self, cfg: MqttConfig, home: Home, client_id: str, sync_topic: str) -> None:
        self._cfg = cfg
        self._home = home
        self.client_id = client_id
        # A topic only this connection uses, to learn when the broker has sent every retained
        # message of the subscriptions made before (see `settle`).
        self._sync_topic = sync_topic
        self._loop: asyncio.AbstractEventLoop | None = None
        self._connection: BrokerConnection | None = None
        # Topics subscribed beyond the discovery prefix.
        self._subscribed: set[str] = set()
        self._flush_scheduled = False
        self._markers: dict[str, asyncio.Future] = {}
        # Set when an attempt to connect failed: nothing is worth waiting for until one works.
        self._unreachable = threading.Event()
        self._was_connected = False
        self._closed = False

    @property
    def connected(self) -> bool:
        return self._connection is not None and self._connection.connected

    @property
    def connects(self) -> int:
        return self._connection.stats["connects"] if self._connection is not None else 0

    @property
    def dropped(self) -> int:
        """Messages dropped because the loop had `MAX_PENDING` still to handle."""
        return self._connection.stats["received_dropped"] if self._connection is not None else 0

    async def start(self) -> None:
        """Connect in the background; a broker that is down is retried with backoff."""
        self._loop = asyncio.get_running_loop()
        connection = BrokerConnection(
            self._cfg, self.client_id, self._loop, on_message=self._deliver, max_received=MAX_PENDING,
            on_connection=self._connection_changed,
        )
        connection.subscribe([f"{self._home.discovery_prefix}/#"], self._cfg.qos)
        connection.subscribe([self._sync_topic], 0)
        self._connection = connection
        connection.start()

    async def aclose(self) -> None:
        # The connection stays, stopped: what it counted (`connects`) is still read afterwards.
        connection = self._connection
        if connection is None or self._closed:
            return
        self._closed = True
        await asyncio.wait_for(asyncio.to_thread(connection.stop, STOP_TIMEOUT_S), 2 * STOP_TIMEOUT_S)
        for future in self._markers.values():
            future.cancel()

    # -- outgoing ------------------------------------------------------------------------------

    def publish(self, topic: str, payload: str | bytes) -> None:
        """A command, non-retained at mqtt.qos; queued, never waits. Raises `HomeOffline` when
        not connected."""
        connection = self._connection
        if connection is None or not connection.connected or not connection.publish(topic, payload, self._cfg.qos):
            raise HomeOffline(f"not connected to the broker {self._cfg.host}:{self._cfg.port}")

    async def settle(self, timeout: float) -> bool:
        """Wait until the broker has delivered the retained discovery configs and the retained
        states of the entities they declare; False if that took longer than `timeout`.

        The broker sends a new subscription's retained messages before anything published after
        it, so a marker sent to ourselves comes back after them. Discovered entities add state
        subscriptions, so this repeats until a round adds none.
        """
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.connected:
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
        connection = self._connection
        if connection is None:
            return
        covered = self._home.discovery_prefix + "/"
        gained = {t for t in gained if not t.startswith(covered)} - self._subscribed
        lost = {t for t in lost if not t.startswith(covered)} & self._subscribed
        self._subscribed |= gained
        self._subscribed -= lost
        connection.subscribe(gained, self._cfg.qos)
        connection.unsubscribe(lost)

    # -- paho's thread (never block) -----------------------------------------------------------

    def _connection_changed(self, status: str, message: str | None) -> None:
        if status == CONNECTED:
            self._was_connected = True
        elif self._was_connected:
            self._was_connected = False
            log.warning("home: lost the broker connection (%s); reconnecting", message)
        else:  # an attempt to connect failed
            self._unreachable.set()
            log.debug("home: %s", message)

    # -- on the loop ---------------------------------------------------------------------------

    def _deliver(self, topic: str, payload: bytes) -> None:
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

