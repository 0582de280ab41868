"""The [home] table: what the assistant may control, and the devices, areas, floors and other
names declared in the file (``[[home.devices]]``, ``[[home.areas]]``, ...)."""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field

from .rules import between, check, names, one_of, topic, unique_names

# Components a declared home device may be (edge_assistant.home.entities.DOMAINS).
HOME_COMPONENTS = (
    "light", "switch", "fan", "cover", "lock", "valve", "scene", "button", "climate",
    "sensor", "binary_sensor", "alarm_control_panel",
)


@dataclass(frozen=True)
class HomeDeviceConfig:
    """One `[[home.devices]]` entry: a device on a broker without discovery, described with the
    keys of a Home Assistant MQTT discovery config."""

    name: str = field(default="", metadata=check(lambda v: 0 < len(v.strip()) <= 64, "must be 1 to 64 characters"))
    component: str = field(default="switch", metadata=one_of(*HOME_COMPONENTS))
    area: str = ""
    floor: str = ""
    # "" = <component>.<name as a slug>.
    entity_id: str = field(
        default="", metadata=check(lambda v: v == "" or re.fullmatch(r"[a-z_]+\.[a-z0-9_]+", v) is not None,
                                   "must look like light.kitchen")
    )
    device_class: str = ""
    command_topic: str = field(default="", metadata=topic())
    state_topic: str = field(default="", metadata=topic())
    value_template: str = ""
    availability_topic: str = field(default="", metadata=topic())
    payload_available: str = ""
    payload_not_available: str = ""
    payload_on: str = ""
    payload_off: str = ""
    state_on: str = ""
    state_off: str = ""
    payload_press: str = ""
    payload_open: str = ""
    payload_close: str = ""
    payload_stop: str = ""
    payload_lock: str = ""
    payload_unlock: str = ""
    state_open: str = ""
    state_closed: str = ""
    state_locked: str = ""
    state_unlocked: str = ""
    # Lights: "default" or "json" (zigbee2mqtt).
    schema: str = field(default="default", metadata=one_of("default", "json"))
    brightness_command_topic: str = field(default="", metadata=topic())
    brightness_state_topic: str = field(default="", metadata=topic())
    brightness_scale: int = field(default=255, metadata=between(1, 1_000_000))
    color_temp_command_topic: str = field(default="", metadata=topic())
    rgb_command_topic: str = field(default="", metadata=topic())
    percentage_command_topic: str = field(default="", metadata=topic())
    percentage_state_topic: str = field(default="", metadata=topic())
    position_topic: str = field(default="", metadata=topic())
    set_position_topic: str = field(default="", metadata=topic())
    temperature_command_topic: str = field(default="", metadata=topic())
    temperature_state_topic: str = field(default="", metadata=topic())
    current_temperature_topic: str = field(default="", metadata=topic())
    mode_command_topic: str = field(default="", metadata=topic())
    mode_state_topic: str = field(default="", metadata=topic())
    unit_of_measurement: str = ""

    def problem(self) -> tuple[str, str] | None:
        """(key, message) when the entry as a whole is unusable."""
        if not self.name.strip():
            return "name", "a device needs a name"
        topics = [getattr(self, f.name) for f in dataclasses.fields(self) if f.name.endswith("_topic")]
        if not any(topics):
            return "command_topic", "a device needs a command_topic or a state_topic"
        return None


@dataclass(frozen=True)
class HomeAreaConfig:
    """One `[[home.areas]]` entry: the floor an area is on and other names people use for it."""

    name: str = field(default="", metadata=check(lambda v: 0 < len(v.strip()) <= 64, "must be 1 to 64 characters"))
    floor: str = field(default="", metadata=check(lambda v: len(v) <= 64, "must be at most 64 characters"))
    aliases: tuple[str, ...] = field(default=(), metadata=names())

    def problem(self) -> tuple[str, str] | None:
        if not self.name.strip():
            return "name", "an area needs a name"
        return None


@dataclass(frozen=True)
class HomeFloorConfig:
    """One `[[home.floors]]` entry: other names for a floor ("downstairs")."""

    name: str = field(default="", metadata=check(lambda v: 0 < len(v.strip()) <= 64, "must be 1 to 64 characters"))
    aliases: tuple[str, ...] = field(default=(), metadata=names())

    def problem(self) -> tuple[str, str] | None:
        if not self.name.strip():
            return "name", "a floor needs a name"
        return None


@dataclass(frozen=True)
class HomeAliasConfig:
    """One `[[home.aliases]]` entry: other names for a device, given by entity id or name."""

    name: str = field(default="", metadata=check(lambda v: 0 < len(v.strip()) <= 96, "must be 1 to 96 characters"))
    aliases: tuple[str, ...] = field(default=(), metadata=names())

    def problem(self) -> tuple[str, str] | None:
        if not self.name.strip():
            return "name", "an alias entry needs the entity id or name it is for"
        if not self.aliases:
            return "aliases", "an alias entry needs at least one alias"
        return None


@dataclass(frozen=True)
class HomeConfig:
    enabled: bool = True
    # Where devices announce themselves; "" = mqtt.discovery_prefix.
    discovery_prefix: str = field(default="", metadata=topic())
    # What the assistant may control: area names, components (light), entity ids, or "*".
    # Locks, garage doors and gates, valves and alarm panels only by entity id.
    expose: tuple[str, ...] = ()
    # The area this assistant stands in: "turn on the lights" means the lights here.
    area: str = ""
    # Seconds to wait for a device's state topic to confirm a command.
    confirm_timeout_s: float = field(default=3.0, metadata=between(0.1, 60.0))
    # Seconds in which a spoken "yes" confirms acting on a lock or a garage door.
    confirmation_s: float = field(default=8.0, metadata=between(1.0, 120.0))
    # At most one command per entity this often.
    min_command_interval_s: float = field(default=0.5, metadata=between(0.0, 60.0))
    max_entities: int = field(default=10_000, metadata=between(1, 100_000))
    # Longest wait at start for the retained discovery configs and states.
    settle_s: float = field(default=3.0, metadata=between(0.0, 60.0))
    devices: tuple[HomeDeviceConfig, ...] = ()
    # Areas on floors, and other names for areas, floors and devices: "turn off the lights on
    # the first floor", "the cooker light" for light.kitchen_ceiling.
    areas: tuple[HomeAreaConfig, ...] = field(default=(), metadata=unique_names("area"))
    floors: tuple[HomeFloorConfig, ...] = field(default=(), metadata=unique_names("floor"))
    aliases: tuple[HomeAliasConfig, ...] = field(default=(), metadata=unique_names("device"))
