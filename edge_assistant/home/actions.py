"""Acting on entities: the device's own command payloads on its command topics, then waiting
(bounded by ``home.confirm_timeout_s``) for its state topic to confirm.

`payloads` turns (entity, action, arguments) into the messages its config asks for: the light
default and json schemas with their brightness scale, colour temperature in mireds or kelvin as
declared, RGB/HS/XY colour; switch, fan percentage, cover and valve open/close/stop/position,
lock/unlock, scene, button, climate temperature and mode, alarm arm/disarm. `expectation` is the
state that confirms it. `Executor.perform` checks each step (known, exposed, writable, supported,
online, not too soon after the previous command), publishes, waits, and says how each went:
a `StepOutcome` (outcomes.py).
"""

from __future__ import annotations

import asyncio
import colorsys
import json
import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from ..config import HomeConfig
from .colors import color_topic, rgb_of, rgb_to_xy
from .entities import ACTION_ARGUMENTS, Entity, supported_actions
from .outcomes import StepOutcome
from .registry import Home
from .templates import CommandTemplate, TemplateFailed

OUTCOMES = tuple(StepOutcome)
# Outcomes in which something was (or would be) published.
PUBLISHED = (StepOutcome.DONE, StepOutcome.SENT, StepOutcome.NO_ANSWER, StepOutcome.DRY_RUN)
# Outcomes in which the action was (or, in a dry run, would have been) done.
WORKED = (StepOutcome.DONE, StepOutcome.SENT, StepOutcome.DRY_RUN)


class Unsupported(ValueError):
    """The entity cannot do this (with these arguments)."""


@dataclass(frozen=True)
class Step:
    """One action on one entity."""

    entity_id: str
    action: str
    args: dict[str, Any] = field(default_factory=dict)


@dataclass
class StepResult:
    entity_id: str
    name: str
    action: str
    # Empty while it is being performed.
    outcome: StepOutcome | str
    messages: list[tuple[str, str]] = field(default_factory=list)
    confirmed: bool | None = None
    latency_ms: float | None = None
    detail: str = ""

    def event_data(self) -> dict[str, Any]:
        topic = self.messages[0][0] if self.messages else None
        payload = self.messages[0][1] if self.messages else None
        data: dict[str, Any] = {
            # A plain string: the journal logs event data as it is.
            "entity": self.entity_id, "action": self.action, "outcome": str(self.outcome),
            "topic": topic, "payload": payload, "confirmed": self.confirmed,
            "latency_ms": None if self.latency_ms is None else round(self.latency_ms, 1),
        }
        if len(self.messages) > 1:
            data["messages"] = [{"topic": t, "payload": p} for t, p in self.messages]
        return data


# ---------------------------------------------------------------------------------------------
# Payloads


def payloads(entity: Entity, action: str, args: dict[str, Any]) -> list[tuple[str, str]]:
    """The (topic, payload) messages for `action` on `entity`. Raises `Unsupported`."""
    if action not in supported_actions(entity):
        raise Unsupported(f"{entity.entity_id} cannot {action.replace('_', ' ')}")
    missing = [a for a in ACTION_ARGUMENTS.get(action, ()) if a not in args]
    if missing:
        raise Unsupported(f"{action} needs {', '.join(missing)}")
    builder = _BUILDERS[entity.domain]
    return builder(entity, action, args)


def _apply(entity: Entity, template_key: str, value: Any, **variables: Any) -> str:
    """`value` through the entity's command template for `template_key`, given the variables
    Home Assistant gives that key; `value` as text when there is none."""
    if template_key in entity.broken_templates:
        raise Unsupported(f"its {template_key} cannot be used: {entity.broken_templates[template_key]}")
    template = entity.templates.get(template_key)
    if isinstance(template, CommandTemplate):
        try:
            return template.render(value, entity_id=entity.entity_id, name=entity.name, **variables)
        except TemplateFailed as error:
            raise Unsupported(f"its {template_key} failed: {error}") from None
    return value if isinstance(value, str) else _text(value)


def _text(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _is_on(entity: Entity) -> bool:
    return entity.state.get("state") == "on"


def _percent(args: dict[str, Any], key: str) -> float:
    value = args[key]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 100:
        raise Unsupported(f"{key} must be a percentage, got {value!r}")
    return float(value)


def _kelvin_value(entity: Entity, kelvin: Any) -> int:
    if isinstance(kelvin, bool) or not isinstance(kelvin, (int, float)) or not 1000 <= kelvin <= 12000:
        raise Unsupported(f"color temperature must be 1000 to 12000 K, got {kelvin!r}")
    options = entity.options
    if options.get("color_temp_kelvin"):
        return int(min(max(kelvin, options.get("min_kelvin", 2000)), options.get("max_kelvin", 6535)))
    mireds = 1_000_000 / kelvin
    return int(round(min(max(mireds, options.get("min_mireds", 153)), options.get("max_mireds", 500))))


def _rgb(args: dict[str, Any]) -> tuple[int, int, int]:
    try:
        return rgb_of(args["color"])
    except ValueError as error:
        raise Unsupported(str(error)) from None


def _brightness_value(entity: Entity, percent: float) -> int:
    scale = float(entity.options.get("brightness_scale") or 255)
    return max(1, round(percent * scale / 100))


def _light(entity: Entity, action: str, args: dict[str, Any]) -> list[tuple[str, str]]:
    if action == "toggle":
        action = "turn_off" if _is_on(entity) else "turn_on"
    if action == "set_brightness" and _percent(args, "brightness") == 0:
        action = "turn_off"
    if entity.schema == "json":
        return [(entity.command_topic, json.dumps(_light_json(entity, action, args), separators=(",", ":")))]
    options, topics = entity.options, entity.topics
    on = (entity.command_topic, options["payload_on"])
    if action == "turn_on":
        return [on]
    if action == "turn_off":
        return [(entity.command_topic, options["payload_off"])]
    if action == "set_brightness":
        value = _brightness_value(entity, _percent(args, "brightness"))
        extra = (topics["brightness_command_topic"], _apply(entity, "brightness_command_template", value))
    elif action == "set_color_temp":
        value = _kelvin_value(entity, args["color_temp_kelvin"])
        extra = (topics["color_temp_command_topic"], _apply(entity, "color_temp_command_template", value))
    else:  # set_color
        extra = _color_message(entity, _rgb(args))
    order = options.get("on_command_type", "last")
    if order == "brightness" and action == "set_brightness":
        return [extra]
    return [on, extra] if order == "first" else [extra, on]


def _color_message(entity: Entity, rgb: tuple[int, int, int]) -> tuple[str, str]:
    mode = color_topic(entity)
    if mode is None:
        raise Unsupported(f"{entity.entity_id} has no usable colour topic")
    red, green, blue = rgb
    if mode in ("rgb", "rgbw", "rgbww"):
        channels = {"red": red, "green": green, "blue": blue}
        if mode == "rgbw":
            channels["white"] = 0
        elif mode == "rgbww":
            channels.update(cold_white=0, warm_white=0)
        value = ",".join(str(c) for c in channels.values())
    elif mode == "hs":
        h, s, _ = colorsys.rgb_to_hsv(red / 255, green / 255, blue / 255)
        channels = {"hue": round(h * 360, 1), "sat": round(s * 100, 1)}
        value = f"{channels['hue']},{channels['sat']}"
    else:
        x, y = rgb_to_xy(red, green, blue)
        channels = {"x": x, "y": y}
        value = f"{x},{y}"
    return entity.topics[f"{mode}_command_topic"], _apply(entity, f"{mode}_command_template", value, **channels)


def _light_json(entity: Entity, action: str, args: dict[str, Any]) -> dict[str, Any]:
    if action == "turn_off":
        return {"state": "OFF"}
    body: dict[str, Any] = {"state": "ON"}
    if action == "set_brightness":
        body["brightness"] = _brightness_value(entity, _percent(args, "brightness"))
    elif action == "set_color_temp":
        body["color_temp"] = _kelvin_value(entity, args["color_temp_kelvin"])
    elif action == "set_color":
        red, green, blue = _rgb(args)
        modes = entity.options.get("supported_color_modes") or ()
        if any(m in modes for m in ("rgb", "rgbw", "rgbww")) or entity.options.get("rgb"):
            body["color"] = {"r": red, "g": green, "b": blue}
        elif "hs" in modes or entity.options.get("hs"):
            h, s, _ = colorsys.rgb_to_hsv(red / 255, green / 255, blue / 255)
            body["color"] = {"h": round(h * 360, 1), "s": round(s * 100, 1)}
        else:
            x, y = rgb_to_xy(red, green, blue)
            body["color"] = {"x": x, "y": y}
    return body


def _switch(entity: Entity, action: str, args: dict[str, Any]) -> list[tuple[str, str]]:
    if action == "toggle":
        action = "turn_off" if _is_on(entity) else "turn_on"
    key = "payload_on" if action == "turn_on" else "payload_off"
    return [(entity.command_topic, _apply(entity, "command_template", entity.options[key]))]


def _fan(entity: Entity, action: str, args: dict[str, Any]) -> list[tuple[str, str]]:
    if action == "set_percentage":
        percent = _percent(args, "percentage")
        if percent == 0:
            return _switch(entity, "turn_off", args)
        low = float(entity.options.get("speed_range_min", 1))
        high = float(entity.options.get("speed_range_max", 100))
        value = math.ceil(low - 1 + percent * (high - low + 1) / 100)
        return [(entity.topics["percentage_command_topic"], _apply(entity, "percentage_command_template", value))]
    return _switch(entity, action, args)


def _position_value(entity: Entity, percent: float) -> int:
    closed = float(entity.options.get("position_closed", 0))
    opened = float(entity.options.get("position_open", 100))
    return round(closed + percent * (opened - closed) / 100)


def _cover_variables(entity: Entity) -> dict[str, Any]:
    options = entity.options
    return {key: options.get(key) for key in ("position_open", "position_closed", "tilt_min", "tilt_max")}


def _cover(entity: Entity, action: str, args: dict[str, Any]) -> list[tuple[str, str]]:
    options = entity.options
    if action == "set_position":
        percent = _percent(args, "position")
        value = _position_value(entity, percent)
        variables = {**_cover_variables(entity), "position": int(percent) if percent.is_integer() else percent}
        return [(entity.topics["set_position_topic"], _apply(entity, "set_position_template", value, **variables))]
    if action == "set_tilt_position":
        percent = _percent(args, "tilt_position")
        low, high = float(options.get("tilt_min", 0)), float(options.get("tilt_max", 100))
        value = round(low + percent * (high - low) / 100)
        variables = {**_cover_variables(entity), "tilt_position": int(percent) if percent.is_integer() else percent}
        return [(entity.topics["tilt_command_topic"], _apply(entity, "tilt_command_template", value, **variables))]
    key = {"open": "payload_open", "close": "payload_close", "stop": "payload_stop"}[action]
    return [(entity.command_topic, options[key])]


def _valve(entity: Entity, action: str, args: dict[str, Any]) -> list[tuple[str, str]]:
    options = entity.options
    if options.get("reports_position") and action in ("open", "close", "set_position"):
        percent = {"open": 100.0, "close": 0.0}.get(action)
        value = _position_value(entity, percent if percent is not None else _percent(args, "position"))
        return [(entity.command_topic, _apply(entity, "command_template", value))]
    if action == "set_position":
        return [(entity.topics["set_position_topic"], _text(_position_value(entity, _percent(args, "position"))))]
    key = {"open": "payload_open", "close": "payload_close", "stop": "payload_stop"}[action]
    return [(entity.command_topic, _apply(entity, "command_template", options[key]))]


def _lock(entity: Entity, action: str, args: dict[str, Any]) -> list[tuple[str, str]]:
    key = {"lock": "payload_lock", "unlock": "payload_unlock", "open": "payload_open"}[action]
    return [(entity.command_topic, _apply(entity, "command_template", entity.options[key], code=None))]


def _scene(entity: Entity, action: str, args: dict[str, Any]) -> list[tuple[str, str]]:
    return [(entity.command_topic, entity.options["payload_on"])]


def _button(entity: Entity, action: str, args: dict[str, Any]) -> list[tuple[str, str]]:
    return [(entity.command_topic, _apply(entity, "command_template", entity.options["payload_press"]))]


def _climate(entity: Entity, action: str, args: dict[str, Any]) -> list[tuple[str, str]]:
    options, topics = entity.options, entity.topics
    if action == "set_temperature":
        value = args["temperature"]
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise Unsupported(f"temperature must be a number, got {value!r}")
        low, high = float(options.get("min_temp", 7)), float(options.get("max_temp", 35))
        if not low <= value <= high:
            raise Unsupported(f"temperature must be between {_text(low)} and {_text(high)}")
        step = float(options.get("temp_step") or 0.5)
        value = round(round(value / step) * step, 2)
        return [(topics["temperature_command_topic"], _apply(entity, "temperature_command_template", float(value)))]
    if action == "set_hvac_mode" or (action == "turn_off" and "power" not in entity.capabilities):
        mode = "off" if action == "turn_off" else str(args["hvac_mode"])
        if mode not in options.get("modes", ()):
            raise Unsupported(f"mode {mode[:20]!r} is not one of {', '.join(options.get('modes', ()))}")
        return [(topics["mode_command_topic"], _apply(entity, "mode_command_template", mode))]
    key = "payload_on" if action == "turn_on" else "payload_off"
    return [(topics["power_command_topic"], _apply(entity, "power_command_template", options[key]))]


def _alarm(entity: Entity, action: str, args: dict[str, Any]) -> list[tuple[str, str]]:
    payload = entity.options[f"payload_{action}"]
    return [(entity.command_topic, _apply(entity, "command_template", payload, action=payload, code=None))]


_BUILDERS: dict[str, Callable[[Entity, str, dict[str, Any]], list[tuple[str, str]]]] = {
    "light": _light, "switch": _switch, "fan": _fan, "cover": _cover, "valve": _valve,
    "lock": _lock, "scene": _scene, "button": _button, "climate": _climate,
    "alarm_control_panel": _alarm,
}


# ---------------------------------------------------------------------------------------------
# Confirmation


def _state(*wanted: str) -> Callable[[Entity], bool]:
    return lambda e: e.state.get("state") in wanted


def _near(key: str, value: float, tolerance: float) -> Callable[[Entity], bool]:
    return lambda e: isinstance(e.state.get(key), (int, float)) and abs(e.state[key] - value) <= tolerance


def expectation(entity: Entity, action: str, args: dict[str, Any]) -> Callable[[Entity], bool] | None:
    """The state that confirms `action`, or None when the entity has no state to show it."""
    topics = entity.topics
    if not entity.state_topic and not any(
        k.endswith("state_topic") or k in ("position_topic", "tilt_status_topic") for k in topics
    ):
        return None
    domain = entity.domain
    if action == "toggle":
        return _state("off") if _is_on(entity) else _state("on")
    if action in ("turn_on", "turn_off") and domain != "climate":
        return _state("on" if action == "turn_on" else "off")
    if action in ("set_brightness", "set_color_temp", "set_color", "set_percentage"):
        return _level_expectation(entity, action, args)
    if domain in ("cover", "valve"):
        return _cover_expectation(entity, action, args)
    if domain == "lock":
        return _state({"lock": "locked", "unlock": "unlocked", "open": "open"}[action],
                      *({"open": ("opening", "unlocked")}.get(action, ())))
    if domain == "climate":
        if action == "set_temperature" and "temperature_state_topic" in topics:
            return _near("temperature", float(args["temperature"]), 0.26)
        if action in ("set_hvac_mode", "turn_off") and "mode_state_topic" in topics:
            mode = "off" if action == "turn_off" else args["hvac_mode"]
            return lambda e: e.state.get("hvac_mode") == mode
        return None
    if domain == "alarm_control_panel":
        return _state({"arm_away": "armed_away", "arm_home": "armed_home", "disarm": "disarmed"}[action])
    return None


def _level_expectation(entity: Entity, action: str, args: dict[str, Any]) -> Callable[[Entity], bool]:
    """A light's brightness, colour temperature or colour, a fan's percentage."""
    topics = entity.topics
    if action == "set_brightness":
        percent = args["brightness"]
        if percent == 0:
            return _state("off")
        if entity.schema == "json" or "brightness_state_topic" in topics:
            return lambda e: e.state.get("state") == "on" and _near("brightness_pct", percent, 2)(e)
        return _state("on")
    if action == "set_color_temp":
        kelvin = args["color_temp_kelvin"]
        if entity.schema == "json" or "color_temp_state_topic" in topics:
            return _near("color_temp_kelvin", kelvin, max(50, kelvin * 0.1))
        return _state("on")
    if action == "set_color":
        return _state("on")
    if args["percentage"] == 0:  # set_percentage
        return _state("off")
    if "percentage_state_topic" in topics:
        return _near("percentage", args["percentage"], 2)
    return _state("on")


def _cover_expectation(entity: Entity, action: str, args: dict[str, Any]) -> Callable[[Entity], bool]:
    topics = entity.topics
    if action == "open":
        return _state("open", "opening")
    if action == "close":
        return _state("closed", "closing")
    if action == "set_tilt_position":
        if "tilt_status_topic" in topics:
            return _near("tilt_position", args["tilt_position"], 2)
        return lambda e: True
    if action == "set_position":
        if "position_topic" in topics or (entity.domain == "valve" and entity.options.get("reports_position")):
            return _near("position", args["position"], 2)
        return _state("open", "opening", "closed", "closing")
    return lambda e: True  # stop: any state report


# ---------------------------------------------------------------------------------------------
# Performing


class Executor:
    """Performs steps on the home through `publish(topic, payload)`, which raises an exception
    when the broker is unreachable."""

    def __init__(self, home: Home, publish: Callable[[str, str], None], cfg: HomeConfig,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.home = home
        self._publish = publish
        self._cfg = cfg
        self._clock = clock
        self._last_command: dict[str, float] = {}

    def check(self, step: Step) -> StepResult | None:
        """Why `step` cannot be performed, as a result; None if it can."""
        entity = self.home.get(step.entity_id)
        if entity is None:
            return StepResult(step.entity_id, step.entity_id, step.action, StepOutcome.NOT_FOUND)
        result = StepResult(entity.entity_id, entity.name, step.action, "")
        if not self.home.exposed(entity):
            result.outcome = StepOutcome.NOT_EXPOSED
        elif entity.read_only_reason:
            result.outcome, result.detail = StepOutcome.READ_ONLY, entity.read_only_reason
        elif step.action not in supported_actions(entity):
            result.outcome = StepOutcome.UNSUPPORTED
        elif entity.available is False:
            result.outcome = StepOutcome.OFFLINE
        else:
            try:
                result.messages = payloads(entity, step.action, step.args)
            except Unsupported as error:
                result.outcome, result.detail = StepOutcome.UNSUPPORTED, str(error)
        return result if result.outcome else None

    async def perform(self, steps: list[Step], *, dry_run: bool = False) -> list[StepResult]:
        """Publish every possible step at once, then wait for all their confirmations."""
        results: list[StepResult] = []
        waits: list[tuple[StepResult, str, asyncio.Future | None, float]] = []
        for step in steps:
            refused = self.check(step)
            if refused is not None:
                results.append(refused)
                continue
            entity = self.home.entities[step.entity_id]
            result = StepResult(entity.entity_id, entity.name, step.action, "", payloads(entity, step.action, step.args))
            results.append(result)
            if dry_run:
                result.outcome = StepOutcome.DRY_RUN
                continue
            now = self._clock()
            last = self._last_command.get(entity.entity_id)
            if last is not None and now - last < self._cfg.min_command_interval_s:
                result.outcome = StepOutcome.RATE_LIMITED
                continue
            predicate = expectation(entity, step.action, step.args)
            future = self.home.expect(entity.entity_id, predicate) if predicate is not None else None
            try:
                for topic, payload in result.messages:
                    self._publish(topic, payload)
            except Exception as error:  # the broker is away: nothing more can be sent
                result.outcome, result.detail = StepOutcome.OFFLINE, str(error)[:200]
                if future is not None:
                    self.home.forget(entity.entity_id, future)
                continue
            self._last_command[entity.entity_id] = now
            waits.append((result, entity.entity_id, future, now))
        if waits:
            await asyncio.gather(*(self._confirm(*wait) for wait in waits))
        return results

    async def _confirm(self, result: StepResult, entity_id: str, future: asyncio.Future | None, sent: float) -> None:
        if future is None:
            result.outcome = StepOutcome.SENT
            return
        try:
            confirmed = await asyncio.wait_for(asyncio.shield(future), self._cfg.confirm_timeout_s)
        except asyncio.TimeoutError:
            confirmed = False
        finally:
            self.home.forget(entity_id, future)
        result.confirmed = bool(confirmed)
        result.outcome = StepOutcome.DONE if confirmed else StepOutcome.NO_ANSWER
        if confirmed:
            result.latency_ms = (self._clock() - sent) * 1000
