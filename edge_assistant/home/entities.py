"""The things of the home the assistant knows: one `Entity` per controllable or readable part of
a device (a light, a switch, a lock, a temperature sensor), in Home Assistant's vocabulary.

An entity is learnt from a discovery config or declared in the config file; what it can do
(`actions`) follows from what its config declares. Its live `state` comes from its state topics
in Home Assistant's terms ("on", "open", "locked", a sensor's value), with attributes beside it
(``brightness_pct``, ``position``, ``temperature``...). Text from the network is cleaned here, once:
`clean_text` removes control characters and bounds the length.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field
from typing import Any

from .templates import CommandTemplate, ValueTemplate

# Components understood; anything else on the discovery topic is ignored.
DOMAINS = (
    "light", "switch", "fan", "cover", "lock", "valve", "scene", "button", "climate",
    "sensor", "binary_sensor", "alarm_control_panel",
)
# Only ever controlled when exposed by id, and then after a spoken "yes".
SENSITIVE_DOMAINS = ("lock", "valve", "alarm_control_panel")
SENSITIVE_COVER_CLASSES = ("garage", "gate", "door")

MAX_NAME_CHARS = 64
MAX_ENTITY_ID_CHARS = 96
MAX_STATE_CHARS = 64

# Actions an entity may support: the vocabulary shared by the intents, the LLM tools and the
# executor. Arguments: brightness (percent), color (a name), color_temp_kelvin, percentage,
# position (percent), temperature (degrees), hvac_mode (one of the entity's modes).
ACTIONS = (
    "turn_on", "turn_off", "toggle", "set_brightness", "set_color", "set_color_temp",
    "set_percentage", "open", "close", "stop", "set_position", "lock", "unlock", "press",
    "activate", "set_temperature", "set_hvac_mode", "arm_away", "arm_home", "disarm",
    "set_tilt_position",
)
ACTION_ARGUMENTS: dict[str, tuple[str, ...]] = {
    "set_brightness": ("brightness",),
    "set_color": ("color",),
    "set_color_temp": ("color_temp_kelvin",),
    "set_percentage": ("percentage",),
    "set_position": ("position",),
    "set_temperature": ("temperature",),
    "set_hvac_mode": ("hvac_mode",),
    "set_tilt_position": ("tilt_position",),
}

# Colour names the intents know, as RGB.
COLORS: dict[str, tuple[int, int, int]] = {
    "white": (255, 255, 255), "black": (0, 0, 0), "red": (255, 0, 0), "orange": (255, 165, 0),
    "yellow": (255, 255, 0), "green": (0, 128, 0), "blue": (0, 0, 255), "purple": (128, 0, 128),
    "brown": (165, 42, 42), "pink": (255, 192, 203), "turquoise": (64, 224, 208),
}

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u200b-\u200f\u2028-\u202e\u2060-\u206f\ufeff\ufff9-\ufffb]")
_WHITESPACE = re.compile(r"\s+")


def clean_text(value: Any, limit: int = MAX_NAME_CHARS) -> str:
    """Network text made safe to show, speak and match: NFC, no control or format characters,
    whitespace collapsed, at most `limit` characters. Markup such as ``<|im_end|>`` stays as
    plain characters; the prompt builder keeps it from becoming a control token."""
    if value is None:
        return ""
    text = value if isinstance(value, str) else str(value)
    # Bound the work before normalising: a 100 kB name costs no more than a short one.
    text = unicodedata.normalize("NFC", text[: limit * 4])
    text = _CONTROL.sub(" ", text)
    text = _WHITESPACE.sub(" ", text).strip()
    return text[:limit].rstrip()


def slugify(text: str, limit: int = 48) -> str:
    """``Kitchen Ceiling`` -> ``kitchen_ceiling``; accents dropped, at most `limit` characters."""
    decomposed = unicodedata.normalize("NFKD", text)
    ascii_text = decomposed.encode("ascii", "ignore").decode("ascii").lower()
    slug = re.sub(r"[^a-z0-9]+", "_", ascii_text).strip("_")
    return slug[:limit].strip("_")


def normalize_name(text: str) -> str:
    """The form names are compared in: case-folded, single spaces."""
    return _WHITESPACE.sub(" ", text).strip().casefold()


@dataclass(frozen=True)
class Availability:
    """One availability topic: its payloads and an optional value template."""

    topic: str
    payload_available: str = "online"
    payload_not_available: str = "offline"
    template: ValueTemplate | None = None


@dataclass(eq=False)
class Entity:
    """One entity of the home. Definition fields are set at discovery; `state` and `available`
    change with the messages on its topics (only on the registry's event loop)."""

    entity_id: str
    domain: str
    name: str
    area: str = ""
    floor: str = ""
    device_class: str = ""
    device_name: str = ""
    device_id: str = ""
    unique_id: str = ""
    # Where it came from: the discovery key (topic without /config, "#<component>" for a
    # component of a device config) or "config:<index>" for a declared device.
    source: str = ""
    # Light schema: "default" or "json".
    schema: str = "default"
    command_topic: str = ""
    state_topic: str = ""
    # Further topics by their discovery key (brightness_command_topic, position_topic, ...).
    topics: dict[str, str] = field(default_factory=dict)
    # Payloads and options by their discovery key (payload_on, state_locked, brightness_scale...).
    options: dict[str, Any] = field(default_factory=dict)
    # Templates by the discovery key they came from (value_template, set_position_template...).
    templates: dict[str, ValueTemplate | CommandTemplate] = field(default_factory=dict)
    # Templates that cannot be used, by key, with why: each disables only what it serves.
    broken_templates: dict[str, str] = field(default_factory=dict)
    # Capabilities: on_off, brightness, color_temp, rgb, percentage, position, stop, temperature,
    # hvac_mode, open (a lock that can open its latch).
    capabilities: frozenset[str] = frozenset()
    availability: tuple[Availability, ...] = ()
    availability_mode: str = "latest"
    qos: int = 0
    # Why it can only be read (an unsafe template, no command topic); "" if it can be controlled.
    read_only_reason: str = ""
    state: dict[str, Any] = field(default_factory=dict)
    # None until an availability message says (or when it has no availability topic).
    available: bool | None = None
    # Per availability topic, the latest status, for availability_mode all/any.
    availability_seen: dict[str, bool] = field(default_factory=dict)

    @property
    def sensitive(self) -> bool:
        """Never exposed by a wildcard, area or domain rule, and only acted on after a yes."""
        if self.domain in SENSITIVE_DOMAINS:
            return True
        return self.domain == "cover" and self.device_class in SENSITIVE_COVER_CLASSES

    @property
    def actions(self) -> tuple[str, ...]:
        return supported_actions(self)

    def definition(self) -> tuple:
        """What identifies the entity's behaviour, to tell a changed config from a repeated one."""
        return (
            self.entity_id, self.domain, self.name, self.area, self.floor, self.device_class,
            self.schema, self.command_topic, self.state_topic, tuple(sorted(self.topics.items())),
            repr(sorted(self.options.items())), tuple(sorted((k, t.text) for k, t in self.templates.items())),
            tuple(sorted(self.broken_templates)), self.capabilities,
            self.availability, self.availability_mode, self.qos, self.read_only_reason,
        )

    def state_text(self) -> str:
        """The state as spoken: "on", "21.5 °C", "unknown"."""
        value = str(self.state.get("state", "unknown"))
        unit = self.options.get("unit_of_measurement", "")
        if unit and value not in ("unknown", "unavailable"):
            return f"{value} {unit}"
        return value

    def summary(self) -> dict[str, Any]:
        return {
            "entity_id": self.entity_id,
            "name": self.name,
            "area": self.area,
            "domain": self.domain,
            "device_class": self.device_class,
            "device": self.device_name,
            "actions": list(self.actions),
            "state": dict(self.state),
            "available": self.available,
            "read_only_reason": self.read_only_reason,
            "template_problems": dict(self.broken_templates),
            "source": self.source,
        }


def supported_actions(entity: Entity) -> tuple[str, ...]:
    """The actions this entity's config lets us perform; () when read-only."""
    if entity.read_only_reason:
        return ()
    caps = entity.capabilities
    domain = entity.domain
    actions: list[str] = []
    has_command = bool(entity.command_topic)
    if domain in ("light", "switch", "fan") and has_command:
        actions += ["turn_on", "turn_off", "toggle"]
    if domain == "light" and has_command:
        if "brightness" in caps:
            actions.append("set_brightness")
        if "rgb" in caps:
            actions.append("set_color")
        if "color_temp" in caps:
            actions.append("set_color_temp")
    if domain == "fan" and "percentage" in caps:
        actions.append("set_percentage")
    if domain in ("cover", "valve"):
        if has_command:
            actions += ["open", "close"]
            if "stop" in caps:
                actions.append("stop")
        if "position" in caps:
            actions.append("set_position")
    if domain == "lock" and has_command:
        actions += ["lock", "unlock"]
        if "open" in caps:
            actions.append("open")
    if domain == "scene" and has_command:
        actions.append("activate")
    if domain == "button" and has_command:
        actions.append("press")
    if domain == "climate":
        if "power" in caps:
            actions += ["turn_on", "turn_off"]
        elif "hvac_mode" in caps and "off" in entity.options.get("modes", ()):
            actions.append("turn_off")
        if "temperature" in caps:
            actions.append("set_temperature")
        if "hvac_mode" in caps:
            actions.append("set_hvac_mode")
    if domain == "cover" and "tilt" in caps:
        actions.append("set_tilt_position")
    if domain == "alarm_control_panel" and has_command:
        actions += ["arm_away", "arm_home", "disarm"]
    if entity.broken_templates:
        actions = [a for a in actions if _templates_usable(entity, a)]
    return tuple(actions)


def _templates_usable(entity: Entity, action: str) -> bool:
    broken = entity.broken_templates
    if entity.domain == "light" and action == "set_color" and entity.schema != "json":
        # A colour goes out on whichever colour topic has a usable template.
        return any(f"{mode}_command_topic" in entity.topics and f"{mode}_command_template" not in broken
                   for mode in ("rgb", "rgbw", "rgbww", "hs", "xy"))
    return not set(action_templates(entity, action)) & set(broken)


def action_templates(entity: Entity, action: str) -> tuple[str, ...]:
    """The command template keys an action renders (an unusable one disables the action)."""
    domain = entity.domain
    if domain == "light":
        return {"set_brightness": ("brightness_command_template",),
                "set_color_temp": ("color_temp_command_template",)}.get(action, ())
    if domain == "fan":
        if action == "set_percentage":
            return ("percentage_command_template",)
        return ("command_template",)
    if domain == "cover":
        return {"set_position": ("set_position_template",),
                "set_tilt_position": ("tilt_command_template",)}.get(action, ())
    if domain == "climate":
        if action == "set_temperature":
            return ("temperature_command_template",)
        if action in ("turn_on", "turn_off") and "power" in entity.capabilities:
            return ("power_command_template",)
        return ("mode_command_template",)
    if domain in ("switch", "lock", "valve", "button", "alarm_control_panel"):
        return ("command_template",)
    return ()
