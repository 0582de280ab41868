"""Real mosquitto brokers for tests (no mocks); usable by any test that needs MQTT.

Fixtures
    mosquitto           a running anonymous broker on 127.0.0.1:<free port>, fresh for each test.
    mosquitto_factory   ``mosquitto_factory(users={"name": "password"}, anonymous=False, tls=True,
                        require_client_cert=False, start=True)`` starts other variants. With
                        ``tls=True`` a CA, a server certificate for 127.0.0.1/localhost and a
                        client certificate are generated (``broker.tls``: a `TlsFiles`).
    mqtt_probe          ``mqtt_probe(broker, **options)`` returns a connected `MqttProbe`, a plain
                        paho client that records what it receives; closed at teardown.
    mqtt_bridges        ``mqtt_bridges(cfg, device_id="dev1", start=True)``, called inside a running
                        event loop, returns an `MqttBridge` on that loop; stopped at teardown.

Async helpers: `run_async` (decorator running an ``async def`` test with `asyncio.run`),
`eventually(predicate)`, `next_command(bridge)`.

A `Broker` has ``host``, ``port``, ``tls``, ``start()``, ``stop()`` (SIGTERM: the broker saves
its persistence, so persistent sessions and their queued messages survive a restart),
``kill()`` (SIGKILL), ``restart()``, ``set_users()`` (rewrites the password file and reloads it),
``log()`` and ``mqtt_config(**overrides)``, an `MqttConfig` pointing at it. Restarts keep the
port. Every broker is killed at teardown. Without mosquitto installed the tests fail (setup installs it).
"""

from __future__ import annotations

import asyncio
import functools
import getpass
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Iterator

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from edge_assistant.config import MqttConfig
from edge_assistant.events import Command
from edge_assistant.mqtt import MqttBridge
from tests.support.timing import slack

MOSQUITTO = "/usr/sbin/mosquitto"
MOSQUITTO_PASSWD = shutil.which("mosquitto_passwd") or "/usr/bin/mosquitto_passwd"
# Scaled for slow machines: EDGE_ASSISTANT_TEST_TIME_SCALE.
START_TIMEOUT_S = slack(15.0)
WAIT_S = slack(15.0)


@dataclass(frozen=True)
class TlsFiles:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    # A second, unrelated CA: a client that trusts only this one must refuse the broker.
    other_ca: Path


def _openssl(*args: str | Path, cwd: Path) -> None:
    subprocess.run(["openssl", *map(str, args)], cwd=cwd, check=True, capture_output=True)


def _self_signed_ca(directory: Path, name: str) -> tuple[Path, Path]:
    cert, key = directory / f"{name}.crt", directory / f"{name}.key"
    _openssl(
        "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-keyout", key, "-out", cert, "-days", "2", "-subj", f"/CN=edge-assistant test {name}",
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign",
        cwd=directory,
    )
    return cert, key


def _signed_cert(directory: Path, name: str, ca: tuple[Path, Path], extensions: str) -> tuple[Path, Path]:
    cert, key, csr, ext = (directory / f"{name}{suffix}" for suffix in (".crt", ".key", ".csr", ".ext"))
    _openssl(
        "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-keyout", key, "-out", csr, "-subj", f"/CN={name}", cwd=directory,
    )
    ext.write_text(extensions)
    _openssl(
        "x509", "-req", "-in", csr, "-CA", ca[0], "-CAkey", ca[1], "-CAcreateserial",
        "-out", cert, "-days", "2", "-extfile", ext, cwd=directory,
    )
    return cert, key


def make_tls_files(directory: Path) -> TlsFiles:
    """A CA, a server certificate for 127.0.0.1 and localhost, and a client certificate."""
    directory.mkdir(parents=True, exist_ok=True)
    ca = _self_signed_ca(directory, "ca")
    server = _signed_cert(
        directory, "server", ca,
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n"
        "keyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n",
    )
    client = _signed_cert(
        directory, "client", ca,
        "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=clientAuth\n",
    )
    other_ca, _ = _self_signed_ca(directory, "other-ca")
    return TlsFiles(ca[0], server[0], server[1], client[0], client[1], other_ca)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Broker:
    """One mosquitto process on a fixed port that can be stopped, killed and started again."""

    def __init__(
        self,
        directory: Path,
        *,
        users: dict[str, str] | None = None,
        anonymous: bool = True,
        tls: bool = False,
        require_client_cert: bool = False,
    ) -> None:
        self.host = "127.0.0.1"
        self.port = free_port()
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        self.tls = make_tls_files(directory / "tls") if tls else None
        self._password_file = directory / "passwords" if users is not None else None
        self._log_path = directory / "mosquitto.log"
        self._process: subprocess.Popen | None = None
        if users is not None:
            self._write_users(users)
        lines = [
            # Running as root, mosquitto would otherwise switch to a user that cannot read the
            # generated keys; as any other user this line has no effect.
            f"user {getpass.getuser()}",
            f"listener {self.port} {self.host}",
            f"allow_anonymous {'true' if anonymous else 'false'}",
            "persistence true",
            f"persistence_location {directory}/",
            # Tests flood and restart brokers; none of their messages may be dropped by a limit.
            "max_queued_messages 0",
            f"log_dest file {self._log_path}",
            "log_type all",
        ]
        if self._password_file is not None:
            lines.append(f"password_file {self._password_file}")
        if self.tls is not None:
            lines += [
                f"cafile {self.tls.ca}",
                f"certfile {self.tls.server_cert}",
                f"keyfile {self.tls.server_key}",
                f"require_certificate {'true' if require_client_cert else 'false'}",
            ]
        self.conf = directory / "mosquitto.conf"
        self.conf.write_text("\n".join(lines) + "\n")

    def _write_users(self, users: dict[str, str]) -> None:
        assert self._password_file is not None
        self._password_file.unlink(missing_ok=True)
        for index, (name, password) in enumerate(users.items()):
            create = ["-c"] if index == 0 else []
            subprocess.run(
                [MOSQUITTO_PASSWD, *create, "-b", str(self._password_file), name, password],
                check=True, capture_output=True,
            )
        if not users:
            self._password_file.write_text("")

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self) -> None:
        assert not self.running, "broker already running"
        with open(self._log_path, "ab") as log:
            self._process = subprocess.Popen(
                [MOSQUITTO, "-c", str(self.conf)], stdout=log, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"mosquitto exited with {self._process.returncode}:\n{self.log()}")
            try:
                socket.create_connection((self.host, self.port), timeout=0.5).close()
                return
            except OSError:
                time.sleep(0.02)
        self.kill()
        raise RuntimeError(f"mosquitto did not accept connections on {self.port}:\n{self.log()}")

    def stop(self) -> None:
        """SIGTERM: a clean shutdown that saves persistent sessions."""
        if self.running:
            assert self._process is not None
            self._process.terminate()
            self._process.wait(slack(10))

    def kill(self) -> None:
        """SIGKILL: the broker vanishes without saving anything."""
        if self.running:
            assert self._process is not None
            self._process.kill()
            self._process.wait(slack(10))

    def restart(self) -> None:
        self.stop()
        self.start()

    def freeze(self) -> None:
        """SIGSTOP: connections stay open, and nothing on them is read or answered."""
        if self.running:
            assert self._process is not None
            self._process.send_signal(signal.SIGSTOP)

    def thaw(self) -> None:
        if self.running:
            assert self._process is not None
            self._process.send_signal(signal.SIGCONT)

    def set_users(self, users: dict[str, str]) -> None:
        """Rewrite the password file and make the running broker reload it."""
        self._write_users(users)
        if self.running:
            assert self._process is not None
            self._process.send_signal(signal.SIGHUP)

    def log(self) -> str:
        try:
            return self._log_path.read_text(errors="replace")[-4000:]
        except FileNotFoundError:
            return ""

    def mqtt_config(self, **overrides: Any) -> MqttConfig:
        """An MqttConfig for this broker; fast reconnects so restarts do not slow tests down."""
        values: dict[str, Any] = {"host": self.host, "port": self.port, "reconnect_max_s": 1.0}
        if self.tls is not None:
            values.update(tls=True, ca_file=str(self.tls.ca))
        values.update(overrides)
        return replace(MqttConfig(), **values)


@dataclass(frozen=True)
class Received:
    topic: str
    payload: bytes
    retain: bool
    qos: int

    @property
    def text(self) -> str:
        return self.payload.decode("utf-8")

    def json(self) -> Any:
        return json.loads(self.payload)


class MqttProbe:
    """A plain paho client for assertions: records every message, waits for conditions."""

    def __init__(
        self,
        broker: Broker,
        *,
        client_id: str = "",
        clean_session: bool = True,
        username: str | None = None,
        password: str | None = None,
    ) -> None:
        self._cond = threading.Condition()
        self.messages: list[Received] = []
        self._subscriptions: list[tuple[str, int]] = []
        self._acked: set[int] = set()
        self._connected = threading.Event()
        self.client = paho.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id or f"probe-{os.getpid()}-{id(self)}",
            clean_session=clean_session,
        )
        if username is not None:
            self.client.username_pw_set(username, password)
        if broker.tls is not None:
            context = ssl.create_default_context(cafile=str(broker.tls.ca))
            self.client.tls_set_context(context)
        self.client.reconnect_delay_set(0.2, 1.0)
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self.client.on_subscribe = self._on_subscribe
        self.client.on_disconnect = lambda *args: self._connected.clear()
        self.client.connect(broker.host, broker.port, keepalive=30)
        self.client.loop_start()
        if not self._connected.wait(WAIT_S):
            raise AssertionError("probe could not connect to the broker")

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            return
        # Also after a broker restart, so a clean-session probe keeps listening.
        for topic, qos in self._subscriptions:
            client.subscribe(topic, qos)
        self._connected.set()

    def _on_message(self, client, userdata, message) -> None:
        with self._cond:
            self.messages.append(Received(message.topic, bytes(message.payload), message.retain, message.qos))
            self._cond.notify_all()

    def subscribe(self, topic: str, qos: int = 1) -> None:
        """Subscribe and wait for the broker's acknowledgement."""
        self._subscriptions.append((topic, qos))
        result, mid = self.client.subscribe(topic, qos)
        deadline = time.monotonic() + WAIT_S
        with self._cond:
            # The acknowledgement may come back before subscribe() even returns its mid.
            while result == paho.MQTT_ERR_SUCCESS and mid not in self._acked:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._cond.wait(remaining)
            if mid not in self._acked:
                raise AssertionError(f"subscribing to {topic} failed")

    def _on_subscribe(self, client, userdata, mid, reason_codes, properties) -> None:
        with self._cond:
            self._acked.add(mid)
            self._cond.notify_all()

    def publish(self, topic: str, payload: bytes | str = b"", qos: int = 1, retain: bool = False) -> None:
        info = self.client.publish(topic, payload, qos=qos, retain=retain)
        info.wait_for_publish(WAIT_S)
        if not info.is_published():
            raise AssertionError(f"publishing on {topic} was not confirmed")

    def on(self, topic: str) -> list[Received]:
        with self._cond:
            return [m for m in self.messages if paho.topic_matches_sub(topic, m.topic)]

    def wait_for(
        self,
        topic: str,
        predicate: Callable[[Received], bool] = lambda m: True,
        timeout: float = WAIT_S,
        since: int = 0,
    ) -> Received:
        """The first message on `topic` (a filter) matching `predicate`, waiting for it.

        `since` skips the messages received before that index (``len(probe.messages)``).
        """
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for message in self.messages[since:]:
                    if paho.topic_matches_sub(topic, message.topic) and predicate(message):
                        return message
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    seen = [(m.topic, m.payload[:80]) for m in self.messages[-20:]]
                    raise AssertionError(f"nothing matching on {topic} within {timeout} s; last seen: {seen}")
                self._cond.wait(remaining)

    def wait_count(self, topic: str, count: int, timeout: float = WAIT_S, since: int = 0) -> list[Received]:
        """At least `count` messages on `topic` (a filter), waiting for them."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                found = [m for m in self.messages[since:] if paho.topic_matches_sub(topic, m.topic)]
                if len(found) >= count:
                    return found
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(f"{len(found)} of {count} messages on {topic} within {timeout} s")
                self._cond.wait(remaining)

    def retained(self, topic: str) -> dict[str, Received]:
        """Retained messages on `topic` (a filter), read deterministically.

        Subscribes and then sends itself a marker; the broker delivers retained messages of a
        new subscription before anything published afterwards, so once the marker is back
        every retained message has arrived.
        """
        marker_topic = f"probe-marker/{id(self)}"
        marker = os.urandom(8).hex()
        self.subscribe(marker_topic)
        start = len(self.messages)
        self.subscribe(topic)
        self.publish(marker_topic, marker)
        self.wait_for(marker_topic, lambda m: m.text == marker)
        with self._cond:
            found = [m for m in self.messages[start:] if m.retain and paho.topic_matches_sub(topic, m.topic)]
        return {m.topic: m for m in found}

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def mosquitto_factory(tmp_path: Path) -> Iterator[Callable[..., Broker]]:
    if not os.path.exists(MOSQUITTO):
        pytest.fail(f"{MOSQUITTO} is not installed (scripts/setup.sh installs it)")
    brokers: list[Broker] = []

    def make(*, start: bool = True, **options: Any) -> Broker:
        broker = Broker(tmp_path / f"broker{len(brokers)}", **options)
        brokers.append(broker)
        if start:
            broker.start()
        return broker

    yield make
    for broker in brokers:
        broker.kill()


@pytest.fixture
def mosquitto(mosquitto_factory: Callable[..., Broker]) -> Broker:
    return mosquitto_factory()


@pytest.fixture
def mqtt_probe() -> Iterator[Callable[..., MqttProbe]]:
    probes: list[MqttProbe] = []

    def make(broker: Broker, **options: Any) -> MqttProbe:
        probe = MqttProbe(broker, **options)
        probes.append(probe)
        return probe

    yield make
    for probe in probes:
        probe.close()


@pytest.fixture
def mqtt_bridges() -> Iterator[Callable[..., MqttBridge]]:
    bridges: list[MqttBridge] = []

    def make(cfg: MqttConfig, device_id: str = "dev1", start: bool = True) -> MqttBridge:
        bridge = MqttBridge(cfg, device_id, asyncio.get_running_loop())
        bridges.append(bridge)
        if start:
            bridge.start()
        return bridge

    yield make
    for bridge in bridges:
        bridge.stop(timeout=2.0)


def run_async(test: Callable[..., Any]) -> Callable[..., Any]:
    """Run an ``async def`` test (fixtures still injected) in a fresh event loop."""

    @functools.wraps(test)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        return asyncio.run(test(*args, **kwargs))

    return wrapper


async def eventually(predicate: Callable[[], Any], timeout: float = WAIT_S, what: str = "condition") -> None:
    """Wait, without blocking the event loop, until `predicate()` is true."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not reached within {timeout} s")
        await asyncio.sleep(0.02)


async def next_command(bridge: MqttBridge, timeout: float = WAIT_S) -> Command:
    return await asyncio.wait_for(bridge.commands.get(), timeout)
