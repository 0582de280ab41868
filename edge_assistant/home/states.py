"""Reading an entity's state and availability topics into its `state` and `available`.

States use Home Assistant's words ("on", "off", "open", "closed", "locked", "unlocked", a sensor's
value), attributes beside them: ``brightness_pct``, ``color_temp_kelvin``, ``rgb_color``,
``percentage``, ``position`` (percent open), ``temperature`` (target), ``current_temperature``,
``hvac_mode``. Payloads are data from the network: bounded, cleaned, and read through the device's value
templates in `templates`' sandbox only.
"""

from __future__ import annotations

import json
from typing import Any

from .entities import MAX_STATE_CHARS, Entity, clean_text
from .templates import ValueTemplate

MAX_STATE_BYTES = 16 * 1024

# Topic keys (besides state_topic) that carry state, per component.
STATE_TOPIC_KEYS = (
    "brightness_state_topic", "color_temp_state_topic", "rgb_state_topic",
    "percentage_state_topic", "position_topic", "temperature_state_topic",
    "current_temperature_topic", "mode_state_topic", "tilt_status_topic", "preset_mode_state_topic",
)


def state_topics(entity: Entity) -> set[str]:
    topics = {entity.state_topic} if entity.state_topic else set()
    topics.update(entity.topics[key] for key in STATE_TOPIC_KEYS if key in entity.topics)
    return topics


def availability_topics(entity: Entity) -> set[str]:
    return {item.topic for item in entity.availability}


def apply_state(entity: Entity, topic: str, payload: bytes) -> bool:
    """Update `entity.state` from a message on one of its state topics; True if it changed."""
    if len(payload) > MAX_STATE_BYTES:
        return False
    text = payload.decode("utf-8", errors="replace")
    before = dict(entity.state)
    reader = _READERS.get(entity.domain)
    if reader is not None:
        reader(entity, topic, text)
    return entity.state != before


def apply_availability(entity: Entity, topic: str, payload: bytes) -> bool:
    """Update `entity.available` from one of its availability topics; True if it changed."""
    if len(payload) > MAX_STATE_BYTES:
        return False
    text = payload.decode("utf-8", errors="replace")
    for item in entity.availability:
        if item.topic != topic:
            continue
        value = item.template.evaluate(text) if item.template else text
        if value is None:
            continue
        value = clean_text(value, 256)
        if value == item.payload_available:
            entity.availability_seen[topic] = True
        elif value == item.payload_not_available:
            entity.availability_seen[topic] = False
        else:
            continue
        before = entity.available
        seen = entity.availability_seen
        if entity.availability_mode == "all":
            entity.available = len(seen) == len(entity.availability) and all(seen.values())
        elif entity.availability_mode == "any":
            entity.available = any(seen.values())
        else:
            entity.available = seen[topic]
        return entity.available != before
    return False


# ---------------------------------------------------------------------------------------------


def _value(entity: Entity, text: str, *template_keys: str) -> str | None:
    """The payload through the first of the keys' templates; None when that template cannot
    be used or fails on this payload (what it reads stays as it was)."""
    for key in template_keys:
        if key in entity.broken_templates:
            return None
        template = entity.templates.get(key)
        if isinstance(template, ValueTemplate):
            value = template.evaluate(text, entity_id=entity.entity_id)
            return None if value is None else clean_text(value, MAX_STATE_CHARS)
    return clean_text(text, MAX_STATE_CHARS)


def _number(text: str | None) -> float | None:
    if text is None:
        return None
    try:
        number = float(text)
    except ValueError:
        return None
    return number if number == number and abs(number) != float("inf") else None


def _on_off(entity: Entity, value: str | None, on_key: str = "state_on", off_key: str = "state_off") -> None:
    if value is None:
        return
    on = entity.options.get(on_key) or entity.options.get("payload_on")
    off = entity.options.get(off_key) or entity.options.get("payload_off")
    if value == on:
        entity.state["state"] = "on"
    elif value == off:
        entity.state["state"] = "off"
    elif value in ("None", ""):
        entity.state["state"] = "unknown"


def _percent_of(value: float, low: float, high: float) -> int:
    if high == low:
        return 0
    return max(0, min(100, round((value - low) * 100 / (high - low))))


def _kelvin(entity: Entity, value: float) -> int | None:
    if value <= 0:
        return None
    return round(value) if entity.options.get("color_temp_kelvin") else round(1_000_000 / value)


def _read_light(entity: Entity, topic: str, text: str) -> None:
    if entity.schema == "json":
        if topic == entity.state_topic:
            _read_light_json(entity, text)
        return
    scale = float(entity.options.get("brightness_scale") or 255)
    if topic == entity.state_topic:
        _on_off(entity, _value(entity, text, "state_value_template", "value_template"), "payload_on", "payload_off")
    if topic == entity.topics.get("brightness_state_topic"):
        number = _number(_value(entity, text, "brightness_value_template"))
        if number is not None:
            entity.state["brightness_pct"] = _percent_of(number, 0, scale)
    if topic == entity.topics.get("color_temp_state_topic"):
        number = _number(_value(entity, text, "color_temp_value_template"))
        if number is not None and _kelvin(entity, number):
            entity.state["color_temp_kelvin"] = _kelvin(entity, number)
    if topic == entity.topics.get("rgb_state_topic"):
        value = _value(entity, text, "rgb_value_template") or ""
        parts = [_number(p) for p in value.split(",")]
        if len(parts) == 3 and all(p is not None for p in parts):
            entity.state["rgb_color"] = [int(max(0, min(255, p))) for p in parts]


def _read_light_json(entity: Entity, text: str) -> None:
    try:
        data = json.loads(text)
    except ValueError:
        return
    if not isinstance(data, dict):
        return
    state = data.get("state")
    if state in ("ON", "OFF"):
        entity.state["state"] = state.lower()
    brightness = data.get("brightness")
    if isinstance(brightness, (int, float)) and not isinstance(brightness, bool):
        entity.state["brightness_pct"] = _percent_of(brightness, 0, float(entity.options.get("brightness_scale") or 255))
    color_temp = data.get("color_temp")
    if isinstance(color_temp, (int, float)) and not isinstance(color_temp, bool) and _kelvin(entity, color_temp):
        entity.state["color_temp_kelvin"] = _kelvin(entity, color_temp)
    color = data.get("color")
    if isinstance(color, dict) and all(isinstance(color.get(c), (int, float)) for c in "rgb"):
        entity.state["rgb_color"] = [int(max(0, min(255, color[c]))) for c in "rgb"]


def _read_switch(entity: Entity, topic: str, text: str) -> None:
    if topic == entity.state_topic:
        _on_off(entity, _value(entity, text, "value_template"))


def _read_binary_sensor(entity: Entity, topic: str, text: str) -> None:
    if topic == entity.state_topic:
        _on_off(entity, _value(entity, text, "value_template"), "payload_on", "payload_off")


def _read_fan(entity: Entity, topic: str, text: str) -> None:
    if topic == entity.topics.get("preset_mode_state_topic"):
        value = _value(entity, text, "preset_mode_value_template")
        if value and value != "None":
            entity.state["preset_mode"] = value
    if topic == entity.state_topic:
        _on_off(entity, _value(entity, text, "state_value_template", "value_template"), "payload_on", "payload_off")
    if topic == entity.topics.get("percentage_state_topic"):
        number = _number(_value(entity, text, "percentage_value_template"))
        if number is not None:
            low = float(entity.options.get("speed_range_min", 1))
            high = float(entity.options.get("speed_range_max", 100))
            entity.state["percentage"] = _percent_of(number, low - 1, high)


def _read_cover(entity: Entity, topic: str, text: str) -> None:
    options = entity.options
    if topic == entity.state_topic:
        value = _value(entity, text, "value_template")
        states = {options.get(f"state_{name}"): name for name in ("open", "opening", "closed", "closing", "stopped")}
        if value in states and value is not None:
            state = states[value]
            entity.state["state"] = "open" if state == "stopped" else state
        elif _number(value) is not None and (
            entity.domain == "valve" and options.get("reports_position") or "position_topic" not in entity.topics
        ):
            _read_position(entity, _number(value), with_state=True)
    if topic == entity.topics.get("position_topic"):
        # As in Home Assistant: the position sets the state only when no state topic does.
        _read_position(entity, _number(_value(entity, text, "position_template")), with_state=not entity.state_topic)
    if topic == entity.topics.get("tilt_status_topic"):
        number = _number(_value(entity, text, "tilt_status_template"))
        if number is not None:
            low, high = float(options.get("tilt_min", 0)), float(options.get("tilt_max", 100))
            entity.state["tilt_position"] = _percent_of(number, low, high)


def _read_position(entity: Entity, number: float | None, with_state: bool) -> None:
    if number is None:
        return
    closed = float(entity.options.get("position_closed", 0))
    opened = float(entity.options.get("position_open", 100))
    position = _percent_of(number, closed, opened)
    entity.state["position"] = position
    if with_state or "state" not in entity.state:
        entity.state["state"] = "open" if position > 0 else "closed"


def _read_lock(entity: Entity, topic: str, text: str) -> None:
    if topic != entity.state_topic:
        return
    value = _value(entity, text, "value_template")
    for name in ("locked", "unlocked", "locking", "unlocking", "jammed", "open", "opening"):
        if value is not None and value == entity.options.get(f"state_{name}"):
            entity.state["state"] = name
            return


def _read_climate(entity: Entity, topic: str, text: str) -> None:
    topics = entity.topics
    if topic == topics.get("temperature_state_topic"):
        number = _number(_value(entity, text, "temperature_state_template"))
        if number is not None:
            entity.state["temperature"] = number
    if topic == topics.get("current_temperature_topic"):
        number = _number(_value(entity, text, "current_temperature_template"))
        if number is not None:
            entity.state["current_temperature"] = number
    if topic == topics.get("mode_state_topic"):
        value = _value(entity, text, "mode_state_template")
        if value:
            entity.state["hvac_mode"] = value
            entity.state["state"] = value


def _read_value(entity: Entity, topic: str, text: str) -> None:
    if topic == entity.state_topic:
        value = _value(entity, text, "value_template")
        if value is not None:
            entity.state["state"] = value


_READERS: dict[str, Any] = {
    "light": _read_light,
    "switch": _read_switch,
    "binary_sensor": _read_binary_sensor,
    "fan": _read_fan,
    "cover": _read_cover,
    "valve": _read_cover,
    "lock": _read_lock,
    "climate": _read_climate,
    "sensor": _read_value,
    "alarm_control_panel": _read_value,
}
