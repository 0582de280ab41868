"""One entity from an expanded Home Assistant MQTT discovery config: its payloads and options
with the component's defaults, its topics, templates, availability and capabilities, and why it
can only be read where it cannot be controlled. Declared devices (``[[home.devices]]``) are
written as such a config and read the same way.

Pure functions, no I/O; every text and list is bounded. An unusable config raises
`DiscoveryError`, saying why.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Iterable, Mapping

from .entities import DOMAINS, MAX_ENTITY_ID_CHARS, Availability, Entity, clean_text, slugify
from .templates import (
    CommandTemplate,
    UnsupportedTemplate,
    ValueTemplate,
    parse_command_template,
    parse_value_template,
)

MAX_TOPIC_CHARS = 512
MAX_PAYLOAD_CHARS = 256
MAX_LIST_ITEMS = 32

# Keys whose templates read a state payload / build a command payload.
VALUE_TEMPLATE_KEYS = (
    "value_template", "state_value_template", "brightness_value_template",
    "color_temp_value_template", "rgb_value_template", "percentage_value_template",
    "position_template", "temperature_state_template", "current_temperature_template",
    "mode_state_template", "tilt_status_template", "preset_mode_value_template",
    "hs_value_template", "xy_value_template", "rgbw_value_template", "rgbww_value_template",
    "color_mode_value_template", "effect_value_template", "action_template", "state_template",
)
COMMAND_TEMPLATE_KEYS = (
    "command_template", "brightness_command_template", "color_temp_command_template",
    "rgb_command_template", "percentage_command_template", "set_position_template",
    "temperature_command_template", "mode_command_template", "power_command_template",
    "tilt_command_template", "preset_mode_command_template", "hs_command_template",
    "xy_command_template", "rgbw_command_template", "rgbww_command_template", "effect_command_template",
)

# Default payloads and options per component, as Home Assistant has them.
DEFAULTS: dict[str, dict[str, Any]] = {
    "light": {"payload_on": "ON", "payload_off": "OFF", "brightness_scale": 255,
              "on_command_type": "last", "min_mireds": 153, "max_mireds": 500,
              "min_kelvin": 2000, "max_kelvin": 6535},
    "switch": {"payload_on": "ON", "payload_off": "OFF"},
    "fan": {"payload_on": "ON", "payload_off": "OFF", "speed_range_min": 1, "speed_range_max": 100},
    "cover": {"payload_open": "OPEN", "payload_close": "CLOSE", "payload_stop": "STOP",
              "state_open": "open", "state_opening": "opening", "state_closed": "closed",
              "state_closing": "closing", "state_stopped": "stopped",
              "position_open": 100, "position_closed": 0, "tilt_min": 0, "tilt_max": 100,
              "tilt_closed_value": 0, "tilt_opened_value": 100},
    "valve": {"payload_open": "OPEN", "payload_close": "CLOSE", "state_open": "open",
              "state_opening": "opening", "state_closed": "closed", "state_closing": "closing",
              "position_open": 100, "position_closed": 0},
    "lock": {"payload_lock": "LOCK", "payload_unlock": "UNLOCK", "state_locked": "LOCKED",
             "state_unlocked": "UNLOCKED", "state_locking": "LOCKING",
             "state_unlocking": "UNLOCKING", "state_jammed": "JAMMED", "state_open": "OPEN",
             "state_opening": "OPENING"},
    "scene": {"payload_on": "ON"},
    "button": {"payload_press": "PRESS"},
    "climate": {"payload_on": "ON", "payload_off": "OFF", "min_temp": 7.0, "max_temp": 35.0,
                "temp_step": 0.5, "modes": ("auto", "off", "cool", "heat", "dry", "fan_only")},
    "sensor": {},
    "binary_sensor": {"payload_on": "ON", "payload_off": "OFF"},
    "alarm_control_panel": {"payload_arm_away": "ARM_AWAY", "payload_arm_home": "ARM_HOME",
                            "payload_disarm": "DISARM"},
}
NUMERIC_OPTIONS = (
    "brightness_scale", "min_mireds", "max_mireds", "min_kelvin", "max_kelvin",
    "speed_range_min", "speed_range_max", "position_open", "position_closed",
    "min_temp", "max_temp", "temp_step", "precision", "qos",
    "tilt_min", "tilt_max", "tilt_closed_value", "tilt_opened_value",
)
FLAG_OPTIONS = ("brightness", "color_temp", "color_temp_kelvin", "rgb", "hs", "xy",
                "reports_position", "color_mode")
TEXT_OPTIONS = (
    "payload_on", "payload_off", "state_on", "state_off", "payload_press", "payload_open",
    "payload_close", "payload_stop", "payload_lock", "payload_unlock", "payload_arm_away",
    "payload_arm_home", "payload_disarm", "payload_reset_percentage", "state_open",
    "state_opening", "state_closed", "state_closing", "state_stopped", "state_locked",
    "state_unlocked", "state_locking", "state_unlocking", "state_jammed",
    "unit_of_measurement", "on_command_type", "temperature_unit", "entity_category",
)
COLOR_MODES = ("onoff", "brightness", "color_temp", "hs", "xy", "rgb", "rgbw", "rgbww", "white")
RGB_MODES = ("hs", "xy", "rgb", "rgbw", "rgbww")


class DiscoveryError(ValueError):
    """A config that declares no usable entity; the message says why."""



def entity_from_config(domain: str, config: Mapping[str, Any], *, source: str, object_id: str = "") -> Entity:
    """An `Entity` from an expanded discovery config. Raises `DiscoveryError`."""
    if domain not in DOMAINS:
        raise DiscoveryError(f"unknown component {clean_text(domain, 32)!r}")
    device = config.get("device") if isinstance(config.get("device"), dict) else {}
    device_name = clean_text(device.get("name"))
    name = _entity_name(config, device_name, object_id)
    if not name:
        raise DiscoveryError("no name, device name or object id to call it by")
    area = clean_text(config.get("area") or device.get("suggested_area"))
    identifiers = device.get("identifiers")
    if isinstance(identifiers, list):
        identifiers = identifiers[0] if identifiers else ""
    options = _options(domain, config)
    topics = {
        key: _topic(key, value) for key, value in config.items()
        if key.endswith("_topic") and key != "availability_topic" and value is not None
    }
    templates, broken = _templates(config)
    schema, reasons = _schema(domain, config)
    availability = _availability(config, broken)
    mode = config.get("availability_mode", "latest")
    qos = int(options.pop("qos", 0) or 0)
    entity = Entity(
        entity_id=_entity_id(domain, config, name, object_id),
        domain=domain,
        name=name,
        area=area,
        floor=clean_text(config.get("floor")),
        device_class=clean_text(config.get("device_class"), 32),
        device_name=device_name,
        device_id=clean_text(identifiers, 128),
        unique_id=clean_text(config.get("unique_id"), 128),
        source=source,
        schema=schema,
        command_topic=topics.pop("command_topic", ""),
        state_topic=topics.pop("state_topic", ""),
        topics=topics,
        options=options,
        templates=templates,
        broken_templates=broken,
        availability=availability,
        availability_mode=mode if mode in ("latest", "all", "any") else "latest",
        qos=min(max(qos, 0), 2),
    )
    entity.capabilities = _capabilities(entity)
    if domain == "climate" and not entity.command_topic:
        entity.command_topic = next(
            (topics[k] for k in ("temperature_command_topic", "mode_command_topic", "power_command_topic") if k in topics),
            "",
        )
    if not reasons and domain not in ("sensor", "binary_sensor") and not entity.command_topic:
        reasons.append("no command topic")
    entity.read_only_reason = "; ".join(reasons)[:200]
    return entity


def _options(domain: str, config: Mapping[str, Any]) -> dict[str, Any]:
    """The component's defaults with the config's payloads, numbers, flags and modes over them."""
    options = dict(DEFAULTS[domain])
    for key in TEXT_OPTIONS:
        if key in config:
            value = config[key]
            options[key] = None if value is None else clean_text(value, MAX_PAYLOAD_CHARS)
    for key in NUMERIC_OPTIONS:
        if key in config:
            number = _number(config[key])
            if number is None:
                raise DiscoveryError(f"{key} is not a number: {clean_text(config[key], 40)!r}")
            options[key] = number
    for key in FLAG_OPTIONS:
        if key in config:
            options[key] = config[key] is True
    if isinstance(config.get("supported_color_modes"), list):
        options["supported_color_modes"] = tuple(
            m for m in config["supported_color_modes"][:MAX_LIST_ITEMS] if m in COLOR_MODES
        )
    for key in ("modes", "preset_modes"):
        if isinstance(config.get(key), list):
            options[key] = tuple(clean_text(m, 32) for m in config[key][:MAX_LIST_ITEMS] if isinstance(m, str))
    return options


def _schema(domain: str, config: Mapping[str, Any]) -> tuple[str, list[str]]:
    """The light schema ("default" or "json"), and why the entity may only be read so far."""
    reasons: list[str] = []
    schema = clean_text(config.get("schema") or "default", 16)
    if domain == "light" and schema not in ("default", "basic", "json"):
        reasons.append(f"light schema {schema!r} is not supported (only default and json)")
    if domain in ("lock", "alarm_control_panel") and (config.get("code_format") or config.get("code")):
        reasons.append("needs a code, which is not spoken to devices")
    return ("json" if schema == "json" else "default"), reasons


def _templates(config: Mapping[str, Any]) -> tuple[dict[str, ValueTemplate | CommandTemplate], dict[str, str]]:
    """The config's templates by key, and why each unusable one is (it disables only what it
    serves: a state it reads, or the actions that send it)."""
    templates: dict[str, ValueTemplate | CommandTemplate] = {}
    broken: dict[str, str] = {}
    for key in VALUE_TEMPLATE_KEYS + COMMAND_TEMPLATE_KEYS:
        if config.get(key) is None:
            continue
        try:
            if key in VALUE_TEMPLATE_KEYS:
                templates[key] = parse_value_template(config[key])
            else:
                templates[key] = parse_command_template(config[key])
        except UnsupportedTemplate as error:
            broken[key] = str(error)[:120]
    return templates, broken


def _entity_name(config: Mapping[str, Any], device_name: str, object_id: str) -> str:
    if "name" in config and config["name"] is None:
        return device_name  # Home Assistant: a null name means the device's own name
    own = clean_text(config.get("name"))
    if own and device_name and not own.casefold().startswith(device_name.casefold()):
        return clean_text(f"{device_name} {own}")
    return own or device_name or clean_text(object_id.replace("_", " "))


def _entity_id(domain: str, config: Mapping[str, Any], name: str, object_id: str) -> str:
    wanted = config.get("default_entity_id") or config.get("object_id")
    slug = ""
    if isinstance(wanted, str):
        slug = slugify(wanted.split(".", 1)[1] if wanted.startswith(domain + ".") else wanted)
    slug = slug or slugify(name) or slugify(object_id) or "unnamed"
    return f"{domain}.{slug}"[:MAX_ENTITY_ID_CHARS]


def _topic(key: str, value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise DiscoveryError(f"{key} is not a topic")
    if len(value) > MAX_TOPIC_CHARS:
        raise DiscoveryError(f"{key} longer than {MAX_TOPIC_CHARS} characters")
    # Wildcards would subscribe us to (or publish on) topics the device does not own.
    if "+" in value or "#" in value or "\x00" in value:
        raise DiscoveryError(f"{key} {clean_text(value, 60)!r} contains a wildcard")
    return value


def _availability(config: Mapping[str, Any], broken: dict[str, str]) -> tuple[Availability, ...]:
    items: list[Mapping[str, Any]] = []
    if config.get("availability_topic"):
        items.append({
            "topic": config["availability_topic"],
            "payload_available": config.get("payload_available", "online"),
            "payload_not_available": config.get("payload_not_available", "offline"),
            "value_template": config.get("availability_template"),
        })
    for item in config.get("availability") or ():
        if isinstance(item, dict) and item.get("topic"):
            items.append(item)
    result = []
    for item in items[:MAX_LIST_ITEMS]:
        template = None
        if item.get("value_template") is not None:
            try:
                template = parse_value_template(item["value_template"])
            except UnsupportedTemplate as error:
                # Its availability cannot be read: it is taken as available rather than lost.
                broken["availability_template"] = str(error)[:120]
                continue
        result.append(Availability(
            topic=_topic("availability topic", item["topic"]),
            payload_available=clean_text(item.get("payload_available", "online"), MAX_PAYLOAD_CHARS),
            payload_not_available=clean_text(item.get("payload_not_available", "offline"), MAX_PAYLOAD_CHARS),
            template=template,
        ))
    return tuple(result)


_LIGHT_TOPIC_CAPABILITIES = {
    "brightness_command_topic": "brightness", "color_temp_command_topic": "color_temp", "rgb_command_topic": "rgb",
    "rgbw_command_topic": "rgb", "rgbww_command_topic": "rgb", "hs_command_topic": "rgb", "xy_command_topic": "rgb",
}
_CLIMATE_TOPIC_CAPABILITIES = {
    "temperature_command_topic": "temperature", "mode_command_topic": "hvac_mode", "power_command_topic": "power",
}


def _capabilities(entity: Entity) -> frozenset[str]:
    options, topics, domain = entity.options, entity.topics, entity.domain
    caps: set[str] = set()
    if domain == "light":
        caps.add("on_off")
        if entity.schema == "json":
            modes = options.get("supported_color_modes") or ()
            if options.get("brightness") or any(m != "onoff" for m in modes):
                caps.add("brightness")
            if options.get("color_temp") or "color_temp" in modes:
                caps.add("color_temp")
            if any(options.get(flag) for flag in ("rgb", "hs", "xy")) or any(m in RGB_MODES for m in modes):
                caps.add("rgb")
        else:
            caps.update(cap for key, cap in _LIGHT_TOPIC_CAPABILITIES.items() if key in topics)
    elif domain == "fan":
        caps.add("on_off")
        if "percentage_command_topic" in topics:
            caps.add("percentage")
        if "preset_mode_command_topic" in topics and options.get("preset_modes"):
            caps.add("preset")
    elif domain in ("cover", "valve"):
        if options.get("payload_stop") is not None and entity.command_topic:
            caps.add("stop")
        if "set_position_topic" in topics or (domain == "valve" and options.get("reports_position")):
            caps.add("position")
        if domain == "cover" and "tilt_command_topic" in topics:
            caps.add("tilt")
    elif domain == "lock":
        if "payload_open" in options and options["payload_open"] is not None:
            caps.add("open")
    elif domain == "climate":
        caps.update(cap for key, cap in _CLIMATE_TOPIC_CAPABILITIES.items() if key in topics)
    elif domain == "switch":
        caps.add("on_off")
    return frozenset(caps)


def _number(value: Any) -> float | int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value == value and abs(value) != float("inf"):
        return value
    if isinstance(value, str):
        try:
            parsed = float(value)
        except ValueError:
            return None
        return int(parsed) if parsed.is_integer() else parsed
    return None


def declared_config(device: Any) -> tuple[str, dict[str, Any]]:
    """A ``[[home.devices]]`` entry (a `HomeDeviceConfig`) as (component, discovery config)."""
    config: dict[str, Any] = {}
    for key, value in dataclasses.asdict(device).items():
        if key in ("component", "entity_id") or value in ("", None, ()):
            continue
        config[key] = list(value) if isinstance(value, tuple) else value
    if device.entity_id:
        config["default_entity_id"] = device.entity_id
    return device.component, config


def entities_from_declared(devices: Iterable[Any]) -> list[tuple[str, Entity | str]]:
    """Each declared device as (source, entity) or (source, why it is unusable)."""
    result: list[tuple[str, Entity | str]] = []
    for index, device in enumerate(devices):
        source = f"config:{index}"
        component, config = declared_config(device)
        try:
            result.append((source, entity_from_config(component, config, source=source)))
        except DiscoveryError as error:
            result.append((source, f"home.devices[{index}]: {error}"))
    return result
