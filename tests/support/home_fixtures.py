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


    def announced(self, where: str, config: dict[str, Any], respond: Responder, *,
                  command_topics: list[str], initial: list[tuple[str, str, bool]] = (),
                  state: dict[str, Any] | None = None) -> SimulatedDevice:
        """A device announcing `config` (one of `Z2M_PAYLOADS`, `TASMOTA_PAYLOADS`) at
        ``<prefix>/<where>/config``."""
        return self._make(discovery={f"{PREFIX}/{where}/config": config}, command_topics=command_topics,
                          respond=respond, initial=initial, state=state)

    def zigbee2mqtt(self, where: str) -> SimulatedDevice:
        """A zigbee2mqtt device of `Z2M_PAYLOADS`: commands as JSON on <base>/set or as text on
        <base>/set/<property>; its whole state as JSON on <base>."""
        config = Z2M_PAYLOADS[where]
        base = f"zigbee2mqtt/{config['device']['name']}"

        def respond(device: SimulatedDevice, command: Received) -> list[tuple[str, str, bool]]:
            prop = command.topic[len(base) + len("/set/"):] if command.topic.startswith(base + "/set/") else ""
            try:
                body = json.loads(command.payload)
            except ValueError:
                body = command.text
            if prop:
                device.state[prop] = body
            elif isinstance(body, dict):
                device.state.update(body)
            else:
                device.state["state"] = body
            if device.state.get("state") in ("OPEN", "CLOSE") and not isinstance(body, dict):
                device.state["position"] = 100 if device.state["state"] == "OPEN" else 0
            return [(base, json.dumps(device.state), True)]

        state = dict(Z2M_STATES.get(where, {}))
        return self.announced(where, config, respond, command_topics=[f"{base}/set", f"{base}/set/+"],
                              initial=[(base, json.dumps(state), True)], state=state)

    def tasmota_light(self, where: str = "light/A0B1C2_LI_1") -> SimulatedDevice:
        """A Tasmota light of `TASMOTA_PAYLOADS`: POWER, Dimmer, Color2, CT; tele/STATE back."""
        config = TASMOTA_PAYLOADS[where]
        base = config["~"]

        def respond(device: SimulatedDevice, command: Received) -> list[tuple[str, str, bool]]:
            what = command.topic.rsplit("/", 1)[1]
            if what == "POWER":
                device.state["POWER"] = command.text
            elif what == "Dimmer":
                device.state["Dimmer"] = int(command.text)
                device.state["POWER"] = "ON" if int(command.text) else "OFF"
            elif what == "Color2":
                device.state["Color"] = command.text + ",0,0"
            elif what == "CT":
                device.state["CT"] = int(command.text)
            return [(f"{base}tele/STATE", json.dumps(device.state), False)]

        state = {"POWER": "OFF", "Dimmer": 100, "Color": "255,255,255,0,0", "CT": 153}
        return self.announced(where, config, respond, command_topics=[f"{base}cmnd/+"],
                              initial=[(f"{base}tele/LWT", "Online", True),
                                       (f"{base}tele/STATE", json.dumps(state), True)], state=state)


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
    from edge_assistant.config import from_mapping
    from edge_assistant.home.discovery import parse_discovery
    from edge_assistant.home.registry import Home

    options = {k: list(v) if isinstance(v, tuple) else v for k, v in home_options.items()}
    home = Home(from_mapping({"home": options}).home, PREFIX)
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


# ---------------------------------------------------------------------------------------------
# Discovery payloads shaped as zigbee2mqtt (lib/extension/homeassistant.ts) and Tasmota
# (xdrv_12_home_assistant.ino) publish them: zigbee2mqtt with full keys, `null` names (the
# device's name) and templates over its JSON state; Tasmota abbreviated, over tele/STATE.
# Keys: "<component>/<object id>" as for `home_from_configs`.


def _z2m(device: str, area: str, **config: Any) -> dict[str, Any]:
    ieee = f"0x{zlib.crc32(device.encode()):016x}"
    base = f"zigbee2mqtt/{device}"
    payload = {
        "availability": [{"topic": "zigbee2mqtt/bridge/state", "value_template": "{{ value_json.state }}"},
                         {"topic": f"{base}/availability", "value_template": "{{ value_json.state }}"}],
        "availability_mode": "all",
        "device": {"identifiers": [f"zigbee2mqtt_{ieee}"], "name": device, "manufacturer": "Example",
                   "model": "Z", "suggested_area": area, "via_device": "zigbee2mqtt_bridge_0x00124b0000000000"},
        "origin": {"name": "Zigbee2MQTT", "sw": "1.42.0", "url": "https://www.zigbee2mqtt.io"},
        "name": None, "state_topic": base, "command_topic": f"{base}/set",
        "unique_id": f"{ieee}_{config.pop('kind', 'x')}_zigbee2mqtt",
    }
    payload.update({k: v.replace("{base}", base) if isinstance(v, str) else v for k, v in config.items()})
    return payload


def _tasmota(node: str, device: str, area: str, **config: Any) -> dict[str, Any]:
    payload = {"~": f"tasmota_{node}/", "avty_t": "~tele/LWT", "pl_avail": "Online", "pl_not_avail": "Offline",
               "dev": {"ids": [node], "name": device, "mdl": "Generic", "sw": "13.4.0(tasmota)", "mf": "Tasmota",
                       "sa": area}}
    payload.update(config)
    return payload


Z2M_PAYLOADS: dict[str, dict[str, Any]] = {
    # Lights, one per colour mode zigbee2mqtt announces.
    "light/desk_bulb": _z2m("Desk Bulb", "Office", kind="light", schema="json", brightness=True, brightness_scale=254,
                            color_mode=True, supported_color_modes=["xy", "color_temp"], min_mireds=153, max_mireds=500,
                            effect=True, effect_list=["blink", "breathe", "okay"]),
    "light/hue_strip": _z2m("Hue Strip", "Living Room", kind="light", schema="json", brightness=True,
                            brightness_scale=254, color_mode=True, supported_color_modes=["hs", "color_temp"],
                            min_mireds=153, max_mireds=500),
    "light/porch_light": _z2m("Porch Light", "Porch", kind="light", schema="json", brightness=True,
                              brightness_scale=254, color_mode=True, supported_color_modes=["color_temp"],
                              min_mireds=250, max_mireds=454),
    "light/hall_dimmer": _z2m("Hall Dimmer", "Hall", kind="light", schema="json", brightness=True, brightness_scale=254),
    "light/bedroom_lamp": _z2m("Bedroom Lamp", "Bedroom", kind="light", schema="json", brightness=True,
                               brightness_scale=254, color_mode=True, supported_color_modes=["rgb"]),
    "light/kitchen_lights": _z2m("Kitchen Lights", "Kitchen", kind="light", schema="json", brightness=False),
    # Covers: position and tilt; one that says when it moves.
    "cover/living_curtain": _z2m(
        "Living Curtain", "Living Room", kind="cover", value_template="{{ value_json.state }}",
        state_open="OPEN", state_closed="CLOSE", state_stopped="STOP",
        position_template="{{ value_json.position }}", set_position_template='{ "position": {{ position }} }',
        set_position_topic="{base}/set", position_topic="{base}",
        tilt_command_topic="{base}/set/tilt", tilt_status_topic="{base}", tilt_status_template="{{ value_json.tilt }}"),
    "cover/office_blind": _z2m(
        "Office Blind", "Office", kind="cover",
        value_template='{% if "running" in value_json and value_json.running %} {% if value_json.position > 0 %} '
                       "closing {% else %} opening {% endif %} {% else %} stopped {% endif %}",
        position_template="{{ value_json.position }}", set_position_template='{ "position": {{ position }} }',
        set_position_topic="{base}/set", position_topic="{base}"),
    "cover/garage_door": _z2m("Garage Door", "Garage", kind="cover", device_class="garage",
                              value_template="{{ value_json.state }}", state_open="OPEN", state_closed="CLOSE"),
    # A fan with speeds mapped to names, and presets.
    "fan/ceiling_fan": _z2m(
        "Ceiling Fan", "Living Room", kind="fan", state_value_template="{{ value_json.fan_state }}",
        command_topic="{base}/set/fan_state",
        percentage_state_topic="{base}", percentage_command_topic="{base}/set/fan_mode",
        percentage_value_template="{{ {'off':0, 'low':1, 'medium':2, 'high':3}[value_json.fan_mode] | default('None') }}",
        percentage_command_template="{{ {0:'off', 1:'low', 2:'medium', 3:'high'}[value] | default('') }}",
        speed_range_min=1, speed_range_max=3,
        preset_mode_state_topic="{base}", preset_mode_command_topic="{base}/set/fan_mode",
        preset_mode_value_template="{{ value_json.fan_mode if value_json.fan_mode in ['on', 'auto', 'smart'] "
                                   "else 'None' | default('None') }}",
        preset_mode_command_template="{{ value | default('') }}",
        preset_modes=["on", "auto", "smart"]),
    # A thermostatic radiator valve.
    "climate/bedroom_radiator": _z2m(
        "Bedroom Radiator", "Bedroom", kind="climate", state_topic=None, command_topic=None,
        temperature_unit="C", temp_step=0.5, min_temp="5", max_temp="30",
        current_temperature_topic="{base}", current_temperature_template="{{ value_json.local_temperature }}",
        mode_state_topic="{base}", mode_state_template="{{ value_json.system_mode }}", modes=["off", "heat", "auto"],
        mode_command_topic="{base}/set/system_mode",
        action_topic="{base}", action_template="{% set values = {None:None,'idle':'idle','heat':'heating',"
                                               "'cool':'cooling','fan_only':'fan'} %}{{ values[value_json.running_state] }}",
        temperature_command_topic="{base}/set/current_heating_setpoint",
        temperature_state_topic="{base}", temperature_state_template="{{ value_json.current_heating_setpoint }}"),
    "lock/front_door": _z2m("Front Door", "Hall", kind="lock", value_template="{{ value_json.state }}",
                            state_locked="LOCK", state_unlocked="UNLOCK"),
    "valve/main_valve": _z2m("Main Valve", "Utility Room", kind="valve", reports_position=True,
                             value_template="{{ value_json.position }}",
                             command_template='{"position": {{ value }} }'),
    "sensor/bedroom_temperature": _z2m("Bedroom Sensor", "Bedroom", kind="temperature", name="Temperature",
                                       command_topic=None, device_class="temperature", state_class="measurement",
                                       unit_of_measurement="°C", value_template="{{ value_json.temperature }}"),
    "binary_sensor/hall_window": _z2m("Hall Window", "Hall", kind="contact", name="Contact", command_topic=None,
                                      device_class="window", payload_on=False, payload_off=True,
                                      value_template="{{ value_json.contact }}"),
}

TASMOTA_PAYLOADS: dict[str, dict[str, Any]] = {
    "switch/D1E2F3_RL_1": _tasmota("D1E2F3", "Garden Pump", "Garden", name="Relay", cmd_t="~cmnd/POWER",
                                   stat_t="~tele/STATE", val_tpl="{{value_json.POWER}}", pl_off="OFF", pl_on="ON",
                                   uniq_id="D1E2F3_RL_1"),
    # An RGB+CT bulb: Color as "r,g,b,cw,ww" in its state, Color2 to set it.
    "light/A0B1C2_LI_1": _tasmota("A0B1C2", "Desk Lamp", "Office", name=None, cmd_t="~cmnd/POWER",
                                  stat_t="~tele/STATE", val_tpl="{{value_json.POWER}}", pl_off="OFF", pl_on="ON",
                                  uniq_id="A0B1C2_LI_1", bri_cmd_t="~cmnd/Dimmer", bri_stat_t="~tele/STATE",
                                  bri_scl=100, on_cmd_type="brightness", bri_val_tpl="{{value_json.Dimmer}}",
                                  rgb_cmd_t="~cmnd/Color2", rgb_stat_t="~tele/STATE",
                                  rgb_val_tpl="{{value_json.Color.split(',')[0:3]|join(',')}}",
                                  clr_temp_cmd_t="~cmnd/CT", clr_temp_stat_t="~tele/STATE",
                                  clr_temp_val_tpl="{{value_json.CT}}", fx_cmd_t="~cmnd/Scheme",
                                  fx_stat_t="~tele/STATE", fx_val_tpl="{{value_json.Scheme}}",
                                  fx_list=["0", "1", "2", "3", "4"]),
    # A dimmer: brightness only.
    "light/C3D4E5_LI_1": _tasmota("C3D4E5", "Stair Light", "Hall", name=None, cmd_t="~cmnd/POWER",
                                  stat_t="~tele/STATE", val_tpl="{{value_json.POWER}}", pl_off="OFF", pl_on="ON",
                                  uniq_id="C3D4E5_LI_1", bri_cmd_t="~cmnd/Dimmer", bri_stat_t="~tele/STATE",
                                  bri_scl=100, on_cmd_type="brightness", bri_val_tpl="{{value_json.Dimmer}}"),
    # A shutter with tilt, its position in stat/RESULT.
    "cover/F6A7B8_SHT_1": _tasmota("F6A7B8", "Kitchen Shutter", "Kitchen", name=None, cmd_t="~cmnd/Backlog",
                                   pl_open="ShutterOpen1", pl_cls="ShutterClose1", pl_stop="ShutterStop1",
                                   pos_t="~stat/RESULT", pos_tpl="{{value_json.Shutter1.Position}}",
                                   set_pos_t="~cmnd/ShutterPosition1", pos_open=100, pos_clsd=0,
                                   tilt_cmd_t="~cmnd/ShutterTilt1", tilt_status_t="~stat/RESULT",
                                   tilt_status_tpl="{{value_json.Shutter1.Tilt}}", tilt_min=-90, tilt_max=90,
                                   uniq_id="F6A7B8_SHT_1"),
    # A Sonoff iFan: speed 0-3 on FanSpeed.
    "fan/B9C0D1_FAN": _tasmota("B9C0D1", "Bedroom Fan", "Bedroom", name=None, cmd_t="~cmnd/FanSpeed",
                               stat_t="~tele/STATE", val_tpl="{% if value_json.FanSpeed > 0 %}ON{% else %}OFF{% endif %}",
                               cmd_tpl="{% if value == 'ON' %}2{% else %}0{% endif %}",
                               pct_cmd_t="~cmnd/FanSpeed", pct_stat_t="~tele/STATE",
                               pct_val_tpl="{{value_json.FanSpeed}}", spd_rng_min=1, spd_rng_max=3,
                               uniq_id="B9C0D1_FAN"),
    "sensor/E2F3A4_AM2301_Temperature": _tasmota(
        "E2F3A4", "Bathroom", "Bathroom", name="AM2301 Temperature", stat_t="~tele/SENSOR",
        val_tpl="{{value_json['AM2301'].Temperature}}", unit_of_meas="°C", dev_cla="temperature", frc_upd=True,
        uniq_id="E2F3A4_AM2301_Temperature"),
    "sensor/E2F3A4_AM2301_Humidity": _tasmota(
        "E2F3A4", "Bathroom", "Bathroom", name="AM2301 Humidity", stat_t="~tele/SENSOR",
        val_tpl="{{value_json['AM2301'].Humidity|round(1)}}", unit_of_meas="%", dev_cla="humidity",
        uniq_id="E2F3A4_AM2301_Humidity"),
}

# The state each zigbee2mqtt device of `Z2M_PAYLOADS` starts in (its retained JSON state).
Z2M_STATES: dict[str, dict[str, Any]] = {
    "cover/living_curtain": {"state": "CLOSE", "position": 0, "tilt": 0},
    "fan/ceiling_fan": {"fan_state": "OFF", "fan_mode": "off"},
    "light/bedroom_lamp": {"state": "OFF", "brightness": 254},
    "light/kitchen_lights": {"state": "OFF"},
    "lock/front_door": {"state": "LOCK"},
    "valve/main_valve": {"position": 0},
    "climate/bedroom_radiator": {"local_temperature": 19, "system_mode": "heat", "current_heating_setpoint": 20},
}
