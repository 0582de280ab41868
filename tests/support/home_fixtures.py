"""Simulated home devices: real MQTT clients (paho) outside the assistant, behaving like their
firmware. Each publishes its retained Home Assistant discovery config and answers commands on
its state topics.

Fixture
    home_devices    ``home_devices(broker)`` returns a `Devices` factory for that broker:
                    ``.zigbee_light(name, area)``, ``.tasmota_switch(node, name, area)``,
                    ``.garage_door(name, area)``, ``.door_lock(name, area)``,
                    ``.silent_switch(name, area)`` (takes commands, never confirms). Every device
                    is disconnected at teardown.

A `SimulatedDevice` records the commands it got (`commands`, with their retain flag) and its
`state`; ``wait_command()`` waits for the next one.
"""

from __future__ import annotations

import json
import os
import threading
import time
import zlib
from typing import Any, Callable, Iterator

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from tests.support.mqtt_fixtures import WAIT_S, Broker, Received

PREFIX = "homeassistant"

# A command's payload and the device -> [(topic, payload, retain)] to publish in answer.
Responder = Callable[["SimulatedDevice", Received], list[tuple[str, str, bool]]]


class SimulatedDevice:
    def __init__(
        self,
        broker: Broker,
        *,
        discovery: dict[str, dict[str, Any]],
        command_topics: list[str],
        respond: Responder | None,
        initial: list[tuple[str, str, bool]] = (),
        state: dict[str, Any] | None = None,
    ) -> None:
        self.discovery = discovery
        self.state: dict[str, Any] = dict(state or {})
        self.commands: list[Received] = []
        self._respond = respond
        self._cond = threading.Condition()
        self._ready = threading.Event()
        self._command_topics = command_topics
        self.client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"device-{os.getpid()}-{id(self)}")
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self.client.on_subscribe = lambda *args: self._ready.set()
        self.client.connect(broker.host, broker.port, keepalive=30)
        self.client.loop_start()
        if not self._ready.wait(WAIT_S):
            raise AssertionError("simulated device could not subscribe")
        for topic, config in discovery.items():
            self.publish(topic, json.dumps(config), retain=True)
        for topic, payload, retain in initial:
            self.publish(topic, payload, retain=retain)

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        client.subscribe([(topic, 1) for topic in self._command_topics])

    def _on_message(self, client, userdata, message) -> None:
        received = Received(message.topic, bytes(message.payload), message.retain, message.qos)
        with self._cond:
            self.commands.append(received)
            self._cond.notify_all()
        if self._respond is not None:
            for topic, payload, retain in self._respond(self, received):
                client.publish(topic, payload, qos=1, retain=retain)

    def publish(self, topic: str, payload: str | bytes, retain: bool = False) -> None:
        info = self.client.publish(topic, payload, qos=1, retain=retain)
        info.wait_for_publish(WAIT_S)

    def wait_command(self, count: int = 1, timeout: float = WAIT_S) -> list[Received]:
        deadline = time.monotonic() + timeout
        with self._cond:
            while len(self.commands) < count:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(f"{len(self.commands)} of {count} commands within {timeout} s")
                self._cond.wait(remaining)
            return list(self.commands)

    def remove(self) -> None:
        """Remove its discovery configs, as a device being deleted does (empty retained)."""
        for topic in self.discovery:
            self.publish(topic, b"", retain=True)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


class Devices:
    def __init__(self, broker: Broker) -> None:
        self.broker = broker
        self.made: list[SimulatedDevice] = []

    def _make(self, **options: Any) -> SimulatedDevice:
        device = SimulatedDevice(self.broker, **options)
        self.made.append(device)
        return device

    def zigbee_light(self, name: str = "Kitchen Ceiling", area: str = "Kitchen", ieee: str | None = None) -> SimulatedDevice:
        """zigbee2mqtt: device-based discovery, JSON schema, brightness 0-254, colour temp in mireds."""
        ieee = ieee or f"0x{zlib.crc32(name.encode()):012x}"
        base = f"zigbee2mqtt/{name}"
        discovery = {f"{PREFIX}/device/{ieee}/config": {
            "dev": {"ids": [f"zigbee2mqtt_{ieee}"], "name": name, "mf": "IKEA", "mdl": "LED1545G12", "sa": area},
            "o": {"name": "Zigbee2MQTT", "sw": "2.1.0"},
            "avty": [{"t": f"{base}/availability", "val_tpl": "{{ value_json.state }}"}],
            "stat_t": base,
            "cmps": {
                "light": {"p": "light", "name": None, "schema": "json", "cmd_t": f"{base}/set",
                          "bri": True, "bri_scl": 254, "sup_clrm": ["color_temp", "xy"],
                          "min_mirs": 250, "max_mirs": 454, "uniq_id": f"{ieee}_light_zigbee2mqtt"},
                "linkquality": {"p": "sensor", "name": "Linkquality", "val_tpl": "{{ value_json.linkquality }}",
                                "unit_of_meas": "lqi", "ent_cat": "diagnostic", "uniq_id": f"{ieee}_lq_zigbee2mqtt"},
            },
        }}

        def respond(device: SimulatedDevice, command: Received) -> list[tuple[str, str, bool]]:
            try:
                body = json.loads(command.payload)
            except ValueError:
                return []
            state = device.state
            if body.get("state") in ("ON", "OFF"):
                state["state"] = body["state"]
            elif body.get("state") == "TOGGLE":
                state["state"] = "OFF" if state.get("state") == "ON" else "ON"
            for key in ("brightness", "color_temp", "color"):
                if key in body:
                    state[key] = body[key]
            if "brightness" in body and "state" not in body:
                state["state"] = "ON" if body["brightness"] else "OFF"
            return [(base, json.dumps({**state, "linkquality": 120}), True)]

        state = {"state": "OFF", "brightness": 100, "color_temp": 370}
        return self._make(
            discovery=discovery, command_topics=[f"{base}/set"], respond=respond, state=state,
            initial=[(f"{base}/availability", '{"state":"online"}', True),
                     (base, json.dumps({**state, "linkquality": 120}), True)],
        )

    def tasmota_switch(self, node: str = "A1B2C3", name: str = "Garden Pump", area: str = "Garden") -> SimulatedDevice:
        """Tasmota: abbreviated keys, a `~` base, ON/OFF/TOGGLE on cmnd/POWER, JSON on tele/STATE."""
        base = f"tasmota_{node}/"
        discovery = {f"{PREFIX}/switch/{node}_RL_1/config": {
            "name": "Relay", "~": base, "cmd_t": "~cmnd/POWER", "stat_t": "~tele/STATE",
            "val_tpl": "{{value_json.POWER}}", "pl_off": "OFF", "pl_on": "ON", "avty_t": "~tele/LWT",
            "pl_avail": "Online", "pl_not_avail": "Offline", "uniq_id": f"{node}_RL_1",
            "dev": {"ids": [node], "name": name, "mdl": "Sonoff Basic", "sw": "13.2.0", "sa": area},
        }}

        def respond(device: SimulatedDevice, command: Received) -> list[tuple[str, str, bool]]:
            wanted = command.text.strip().upper()
            if wanted == "TOGGLE":
                wanted = "OFF" if device.state["POWER"] == "ON" else "ON"
            if wanted in ("ON", "OFF"):
                device.state["POWER"] = wanted
            return [(f"{base}tele/STATE", json.dumps({"POWER": device.state["POWER"]}), False),
                    (f"{base}stat/POWER", device.state["POWER"], False)]

        return self._make(
            discovery=discovery, command_topics=[f"{base}cmnd/POWER"], respond=respond,
            state={"POWER": "OFF"},
            initial=[(f"{base}tele/LWT", "Online", True), (f"{base}tele/STATE", '{"POWER":"OFF"}', True)],
        )

    def garage_door(self, name: str = "Garage Door", area: str = "Garage", object_id: str = "garage_door") -> SimulatedDevice:
        base = f"garage/{object_id}"
        discovery = {f"{PREFIX}/cover/{object_id}/config": {
            "name": None, "device_class": "garage", "command_topic": f"{base}/set", "state_topic": f"{base}/state",
            "position_topic": f"{base}/position", "set_position_topic": f"{base}/position/set",
            "unique_id": f"cover_{object_id}", "device": {"identifiers": [object_id], "name": name, "suggested_area": area},
        }}

        def respond(device: SimulatedDevice, command: Received) -> list[tuple[str, str, bool]]:
            if command.topic.endswith("/position/set"):
                device.state["position"] = int(float(command.text))
            elif command.text in ("OPEN", "CLOSE"):
                device.state["position"] = 100 if command.text == "OPEN" else 0
            state = "open" if device.state["position"] > 0 else "closed"
            return [(f"{base}/state", state, True), (f"{base}/position", str(device.state["position"]), True)]

        return self._make(
            discovery=discovery, command_topics=[f"{base}/set", f"{base}/position/set"], respond=respond,
            state={"position": 0}, initial=[(f"{base}/state", "closed", True), (f"{base}/position", "0", True)],
        )

    def door_lock(self, name: str = "Front Door", area: str = "Hall", object_id: str = "front_door") -> SimulatedDevice:
        base = f"locks/{object_id}"
        discovery = {f"{PREFIX}/lock/{object_id}/config": {
            "name": None, "command_topic": f"{base}/set", "state_topic": f"{base}/state",
            "unique_id": f"lock_{object_id}", "device": {"identifiers": [f"lock_{object_id}"], "name": name, "suggested_area": area},
        }}

        def respond(device: SimulatedDevice, command: Received) -> list[tuple[str, str, bool]]:
            state = {"LOCK": "LOCKED", "UNLOCK": "UNLOCKED"}.get(command.text)
            if state is None:
                return []
            device.state["state"] = state
            return [(f"{base}/state", state, True)]

        return self._make(
            discovery=discovery, command_topics=[f"{base}/set"], respond=respond,
            state={"state": "LOCKED"}, initial=[(f"{base}/state", "LOCKED", True)],
        )

    def silent_switch(self, name: str = "Attic Fan", area: str = "Attic", object_id: str = "attic_fan") -> SimulatedDevice:
        """Takes commands and never reports a state back (a broken relay, a sleeping device)."""
        base = f"silent/{object_id}"
        discovery = {f"{PREFIX}/switch/{object_id}/config": {
            "name": name, "command_topic": f"{base}/set", "state_topic": f"{base}/state",
            "device": {"identifiers": [object_id], "name": name, "suggested_area": area},
        }}
        return self._make(
            discovery=discovery, command_topics=[f"{base}/set"], respond=None,
            initial=[(f"{base}/state", "OFF", True)],
        )


@pytest.fixture
def home_devices() -> Iterator[Callable[[Broker], Devices]]:
    factories: list[Devices] = []

    def make(broker: Broker) -> Devices:
        devices = Devices(broker)
        factories.append(devices)
        return devices

    yield make
    for devices in factories:
        for device in devices.made:
            device.close()


def home_from_configs(configs: dict[str, dict[str, Any]], **home_options: Any):
    """A `Home` (no broker) that has seen these discovery configs: {"light/kitchen": {...}}."""
    from edge_assistant.config import HomeConfig
    from edge_assistant.home.discovery import parse_discovery
    from edge_assistant.home.registry import Home

    home = Home(HomeConfig(**home_options), PREFIX)
    for where, config in configs.items():
        topic = f"{PREFIX}/{where}/config"
        home.apply_discovery(parse_discovery(topic, json.dumps(config).encode(), PREFIX))
    return home


# A small realistic home, as discovery configs.
SAMPLE_HOME = {
    "light/kitchen_ceiling": {"name": "Ceiling Light", "cmd_t": "k/ceiling/set", "stat_t": "k/ceiling", "schema": "json",
                              "brightness": True, "dev": {"name": "", "sa": "Kitchen"}},
    "light/kitchen_counter": {"name": "Counter Light", "cmd_t": "k/counter/set", "dev": {"sa": "Kitchen"}},
    "light/living_ceiling": {"name": "Ceiling Light", "cmd_t": "l/ceiling/set", "dev": {"sa": "Living Room"}},
    "switch/garden_pump": {"name": "Garden Pump", "cmd_t": "g/pump/set", "dev": {"sa": "Garden"}},
    "fan/bedroom_fan": {"name": "Bedroom Fan", "cmd_t": "b/fan/set", "pct_cmd_t": "b/fan/pct", "dev": {"sa": "Bedroom"}},
    "climate/thermostat": {"name": "Thermostat", "temp_cmd_t": "t/temp/set", "temp_stat_t": "t/temp",
                           "curr_temp_t": "t/current", "dev": {"sa": "Living Room"}},
    "cover/garage_door": {"name": "Garage Door", "cmd_t": "gd/set", "stat_t": "gd/state", "dev_cla": "garage",
                          "dev": {"sa": "Garage"}},
    "cover/living_blinds": {"name": "Blinds", "cmd_t": "lb/set", "set_pos_t": "lb/pos/set", "dev_cla": "blind",
                            "dev": {"sa": "Living Room"}},
    "lock/front_door": {"name": "Front Door", "cmd_t": "fd/set", "stat_t": "fd/state"},
    "sensor/outside_temperature": {"name": "Outside Temperature", "stat_t": "o/temp", "unit_of_meas": "°C",
                                   "dev_cla": "temperature"},
    "scene/movie_night": {"name": "Movie Night", "cmd_t": "s/movie"},
}
