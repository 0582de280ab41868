"""The LLM's way to act on the home when no template matched: a tool call the schema allows.

A `Toolbox` is built from the entities the model may use (exposed ones to act on, visible ones
to ask about) and gives, all from the same table of tools:

- `prompt_context()`: a compact device list for the system prompt (id, name, area, component,
  actions); no states, so a cached prompt prefix changes only when the set of devices does;
- `schema()`: the tools as data, each with the entities it may name and the arguments it takes;
  thinking/tool_schema.py renders it as a llama.cpp grammar (no output can name a device that
  does not exist or an action it does not support) and as OpenAI ``tools`` (a server);
  `focused` narrows it to the devices a request names or implies (`grounding`);
- `parse(text)`: a `ToolCall` or an `Answer`, checked against the same schema again (a remote
  model is not grammar-bound), or `ToolError`.
"""

from __future__ import annotations

import copy
import hashlib
import json
import re
from dataclasses import dataclass, field
from typing import Any, Iterable

from .entities import ACTION_ARGUMENTS, COLORS, Entity, clean_text
from .places import Places

MAX_ANSWER_CHARS = 300
# Entities one call may name.
MAX_CALL_ENTITIES = 16
MAX_CONTEXT_NAME_CHARS = 48
READ_TOOL = "get_state"

DESCRIPTIONS = {
    "turn_on": "Turn a device on", "turn_off": "Turn a device off", "toggle": "Toggle a device",
    "set_brightness": "Set a light's brightness in percent (0-100)",
    "set_color": "Set a light's colour", "set_color_temp": "Set a light's colour temperature in kelvin",
    "set_percentage": "Set a fan's speed in percent (0-100)", "open": "Open a cover, valve or lock",
    "close": "Close a cover or valve", "stop": "Stop a moving cover or valve",
    "set_position": "Set a cover's or valve's position in percent open (0-100)",
    "set_tilt_position": "Set a cover's slat tilt in percent open (0-100)",
    "lock": "Lock a lock", "unlock": "Unlock a lock", "press": "Press a button",
    "activate": "Activate a scene", "set_temperature": "Set a thermostat's target temperature in degrees",
    "set_hvac_mode": "Set a thermostat's mode", "arm_away": "Arm an alarm panel (away)",
    "arm_home": "Arm an alarm panel (home)", "disarm": "Disarm an alarm panel",
    READ_TOOL: "Read a device's current state",
}
# Argument -> its JSON schema, the same for every entity.
_PERCENT = {"type": "integer", "minimum": 0, "maximum": 100}
ARGUMENT_SCHEMAS: dict[str, dict[str, Any]] = {
    "brightness": _PERCENT,
    "percentage": _PERCENT,
    "position": _PERCENT,
    "tilt_position": _PERCENT,
    "color": {"type": "string", "enum": sorted(COLORS)},
    "color_temp_kelvin": {"type": "integer", "minimum": 1000, "maximum": 12000},
    "temperature": {"type": "number", "minimum": 0, "maximum": 99.5, "multipleOf": 0.5},
}


class ToolError(ValueError):
    """Model output that is not a valid tool call or answer."""


@dataclass(frozen=True)
class ToolCall:
    tool: str
    entity_id: str
    args: dict[str, Any] = field(default_factory=dict)
    # Every entity the call names, the first being `entity_id` ("entity_id": [...] in the output).
    entity_ids: tuple[str, ...] = ()

    @property
    def targets(self) -> tuple[str, ...]:
        return self.entity_ids or (self.entity_id,)


@dataclass(frozen=True)
class Answer:
    text: str


@dataclass(frozen=True)
class _Target:
    entity_id: str
    modes: tuple[str, ...] = ()


class Toolbox:
    def __init__(self, exposed: Iterable[Entity], visible: Iterable[Entity] = (), places: Places | None = None) -> None:
        # Aliases come from the config's [home] names; floors are on the entities already.
        self.places = places
        self.entities: dict[str, Entity] = {}
        # Tool -> the entities it may name, sorted by id.
        self.targets: dict[str, list[_Target]] = {}
        # Entity id -> the tools that may name it.
        self.tools_of: dict[str, list[str]] = {}
        for entity in sorted(exposed, key=lambda e: e.entity_id):
            self.entities[entity.entity_id] = entity
            for action in entity.actions:
                modes = tuple(m for m in entity.options.get("modes", ()) if _SAFE_MODE.fullmatch(m))
                if action == "set_hvac_mode" and not modes:
                    continue
                self.targets.setdefault(action, []).append(_Target(entity.entity_id, modes))
                self.tools_of.setdefault(entity.entity_id, []).append(action)
        readable = sorted({e.entity_id: e for e in [*self.entities.values(), *visible]}.values(), key=lambda e: e.entity_id)
        for entity in readable:
            self.entities.setdefault(entity.entity_id, entity)
        if readable:
            self.targets[READ_TOOL] = [_Target(e.entity_id) for e in readable]
        for entity in readable:
            self.tools_of.setdefault(entity.entity_id, []).append(READ_TOOL)
        # Tool -> the entity ids the grammar and parsing offer for this request (`focused`);
        # None: all of them. The prompt's device list stays whole (and cached) either way.
        self.focus: dict[str, frozenset[str]] | None = None

    def focused(self, allowed: dict[str, set[str]]) -> "Toolbox":
        """The same toolbox offering each tool only on the entities `allowed` for it (those the
        request names or implies); a tool with none is not offered."""
        narrowed = copy.copy(self)
        narrowed.focus = {tool: frozenset(ids) for tool, ids in allowed.items()}
        return narrowed

    def offered(self) -> dict[str, list[_Target]]:
        """The tools the model may call now, each with the entities it may name."""
        if self.focus is None:
            return self.targets
        offered = {}
        for tool, targets in self.targets.items():
            kept = [t for t in targets if t.entity_id in self.focus.get(tool, ())]
            if kept:
                offered[tool] = kept
        return offered

    @property
    def key(self) -> str:
        """Changes exactly when the prompt context, the grammar and the tools change."""
        return hashlib.sha256(self.prompt_context().encode()).hexdigest()[:16]

    # -- prompt --------------------------------------------------------------------------------

    def prompt_context(self) -> str:
        """One line per device: ``id; name (aliases); area (floor); component; actions``.
        Names are network data: cleaned of control characters and cut; the prompt builder keeps
        markup such as ``<|im_end|>`` from becoming control tokens."""
        lines = []
        for entity in self.entities.values():
            name = _context_text(entity.name)
            aliases = self.places.device_aliases(entity) if self.places is not None else ()
            if aliases:
                name += " (also " + ", ".join(_context_text(a) for a in aliases[:4]) + ")"
            area = _context_text(entity.area) or "-"
            if entity.floor:
                area += f" ({_context_text(entity.floor)})"
            fields = (entity.entity_id, name, area, entity.domain,
                      ", ".join(self.tools_of.get(entity.entity_id, ())) or "-")
            lines.append("; ".join(fields))
        return "\n".join(lines)

    # -- the schema ----------------------------------------------------------------------------

    def schema(self) -> dict[str, Any]:
        """What the model may write now, as data (thinking/tool_schema.py renders it as a
        llama.cpp grammar and as OpenAI tools; `parse` checks a reply against it):

        ``{"answer_max_chars": 300, "tools": [{"name", "description", "calls": [{"entity_ids",
        "max_entities", "arguments": {name: JSON schema}}]}]}``. A tool has one call naming any
        of its entities, up to `MAX_CALL_ENTITIES` together; a thermostat's mode has one call per
        thermostat, as each has its own modes."""
        tools = []
        for tool, targets in self.offered().items():
            if tool == "set_hvac_mode":
                calls = [{"entity_ids": [t.entity_id], "max_entities": 1,
                          "arguments": {"hvac_mode": {"type": "string", "enum": list(t.modes)}}}
                         for t in targets]
            else:
                calls = [{"entity_ids": [t.entity_id for t in targets], "max_entities": MAX_CALL_ENTITIES,
                          "arguments": {a: ARGUMENT_SCHEMAS[a] for a in ACTION_ARGUMENTS.get(tool, ())}}]
            tools.append({"name": tool, "description": DESCRIPTIONS.get(tool, tool), "calls": calls})
        return {"answer_max_chars": MAX_ANSWER_CHARS, "tools": tools}

    # -- parsing -------------------------------------------------------------------------------

    def parse(self, text: str) -> ToolCall | Answer:
        try:
            data = json.loads(text.strip())
        except ValueError as error:
            raise ToolError(f"not JSON: {str(error)[:80]}") from None
        if not isinstance(data, dict):
            raise ToolError("not a JSON object")
        if set(data) == {"answer"}:
            answer = clean_text(data["answer"], MAX_ANSWER_CHARS) if isinstance(data["answer"], str) else ""
            if not answer:
                raise ToolError("empty answer")
            return Answer(answer)
        if "tool" not in data:
            raise ToolError("neither a tool call nor an answer")
        args = {k: v for k, v in data.items() if k not in ("tool", "entity_id")}
        return self._validated(data["tool"], data.get("entity_id"), args)

    def _validated(self, tool: Any, entity_id: Any, args: dict[str, Any]) -> ToolCall:
        """A call that the schema allows, or `ToolError` saying what it does not."""
        spec = next((t for t in self.schema()["tools"] if t["name"] == tool), None)
        if spec is None:
            raise ToolError(f"unknown tool {str(tool)[:40]!r}")
        named: list[Any] = []
        for wanted in entity_id if isinstance(entity_id, list) else [entity_id]:
            if wanted not in named:
                named.append(wanted)
        if not named or len(named) > MAX_CALL_ENTITIES:
            raise ToolError(f"a call names 1 to {MAX_CALL_ENTITIES} entities")
        for wanted in named:
            if not any(wanted in call["entity_ids"] for call in spec["calls"]):
                raise ToolError(f"{tool} cannot be used on {str(wanted)[:60]!r}")
        call = next((c for c in spec["calls"] if all(n in c["entity_ids"] for n in named)), None)
        if call is None or len(named) > call["max_entities"]:
            raise ToolError(f"{tool} names one entity")
        arguments = call["arguments"]
        if set(args) != set(arguments):
            raise ToolError(f"{tool} takes {', '.join(arguments) or 'no arguments'}, "
                            f"got {', '.join(sorted(args)) or 'none'}")
        for name, value in args.items():
            if not _fits(value, arguments[name]):
                if "enum" in arguments[name]:
                    raise ToolError(f"{name} must be one of {', '.join(map(str, arguments[name]['enum']))}")
                raise ToolError(f"{name} out of range: {str(value)[:20]!r}")
        return ToolCall(tool, named[0], dict(args), tuple(named) if len(named) > 1 else ())


_SAFE_MODE = re.compile(r"[a-z_]{1,24}")


def _fits(value: Any, schema: dict[str, Any]) -> bool:
    if isinstance(value, bool):
        return False
    if "enum" in schema:
        return value in schema["enum"]
    if not isinstance(value, (int, float)) or (schema["type"] == "integer" and not isinstance(value, int)):
        return False
    if "multipleOf" in schema and (value / schema["multipleOf"]) % 1:
        return False
    return schema["minimum"] <= value <= schema["maximum"]


def _context_text(text: str) -> str:
    return clean_text(text, MAX_CONTEXT_NAME_CHARS).replace(";", ",")
