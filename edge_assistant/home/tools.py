"""The LLM's way to act on the home when no template matched: a grammar-bound tool call.

A `Toolbox` is built from the entities the model may use (exposed ones to act on, visible ones
to ask about) and gives, all from the same table of tools:

- `prompt_context()`: a compact device list for the system prompt (id, name, area, component,
  actions); no states, so a cached prompt prefix changes only when the set of devices does;
- `gbnf()` / `grammar()`: a llama.cpp grammar whose every output is exactly
  ``{"tool": "<action>", "entity_id": "<an entity that supports it>" | [several], ...arguments}``
  or ``{"answer": "<text>"}``: no output can name a device that does not exist or an action it
  does not support; `focused` narrows it to the devices a request names or implies
  (`grounding`);
- `json_schema()`: the same as a JSON schema (``response_format`` of a remote server);
- `openai_tools()`: the same as OpenAI ``tools`` definitions;
- `parse(text)` / `parse_openai(name, arguments)`: a `ToolCall` or an `Answer`, validated again
  (a remote model is not grammar-bound), or `ToolError`.
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
# Argument -> (JSON schema, GBNF rule) when the same for every entity.
_PERCENT = ({"type": "integer", "minimum": 0, "maximum": 100}, "percent")
ARGUMENT_SCHEMAS: dict[str, tuple[dict[str, Any], str]] = {
    "brightness": _PERCENT,
    "percentage": _PERCENT,
    "position": _PERCENT,
    "tilt_position": _PERCENT,
    "color": ({"type": "string", "enum": sorted(COLORS)}, "color"),
    "color_temp_kelvin": ({"type": "integer", "minimum": 1000, "maximum": 12000}, "kelvin"),
    "temperature": ({"type": "number", "minimum": 0, "maximum": 99.5}, "degrees"),
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

    # -- grammar -------------------------------------------------------------------------------

    def gbnf(self) -> str:
        calls = []
        rules = []
        for tool, targets in self.offered().items():
            name = tool.replace("_", "-")
            arguments = ACTION_ARGUMENTS.get(tool, ())
            if tool == "set_hvac_mode":
                for index, target in enumerate(targets):
                    modes = " | ".join(_literal(json.dumps(m)) for m in target.modes)
                    rules.append(
                        f'call-{name}-{index} ::= "{{\\"tool\\": \\"{tool}\\", \\"entity_id\\": " '
                        f'{_literal(json.dumps(target.entity_id))} ", \\"hvac_mode\\": " ({modes}) "}}"'
                    )
                    calls.append(f"call-{name}-{index}")
                continue
            ids = " | ".join(_literal(json.dumps(t.entity_id)) for t in targets)
            rules.append(f"id-{name} ::= {ids}")
            # One entity, or several: "entity_id": ["light.a", "light.b"].
            rules.append(f'ids-{name} ::= id-{name} | "[" id-{name} (", " id-{name}){{0,{MAX_CALL_ENTITIES - 1}}} "]"')
            body = f'"{{\\"tool\\": \\"{tool}\\", \\"entity_id\\": " ids-{name}'
            for argument in arguments:
                body += f' ", \\"{argument}\\": " {ARGUMENT_SCHEMAS[argument][1]}'
            rules.append(f'call-{name} ::= {body} "}}"')
            calls.append(f"call-{name}")
        root = " | ".join(["answer", *calls])
        colors = " | ".join(_literal(json.dumps(c)) for c in sorted(COLORS))
        return "\n".join([
            f"root ::= {root}",
            *rules,
            'answer ::= "{\\"answer\\": \\"" char{1,%d} "\\"}"' % MAX_ANSWER_CHARS,
            r'char ::= [^"\\\x00-\x1f\x7f<>{}|] | "\\" ["\\/nt]',
            'percent ::= "100" | [1-9] [0-9] | [0-9]',
            'kelvin ::= [1-9] [0-9] [0-9] [0-9] | "1" [01] [0-9] [0-9] [0-9] | "12000"',
            'degrees ::= [1-9]? [0-9] ("." [05])?',
            f"color ::= {colors}",
        ]) + "\n"

    def grammar(self) -> Any:
        """The GBNF as a `llama_cpp.LlamaGrammar`."""
        from ..thinking.llama_engine import compiled_grammar

        return compiled_grammar(self.gbnf())

    # -- schemas -------------------------------------------------------------------------------

    def json_schema(self) -> dict[str, Any]:
        variants: list[dict[str, Any]] = [{
            "type": "object",
            "properties": {"answer": {"type": "string", "minLength": 1, "maxLength": MAX_ANSWER_CHARS}},
            "required": ["answer"], "additionalProperties": False,
        }]
        for tool, targets in self.offered().items():
            if tool == "set_hvac_mode":
                for target in targets:
                    variants.append(_object({"tool": {"const": tool}, "entity_id": {"const": target.entity_id},
                                             "hvac_mode": {"type": "string", "enum": list(target.modes)}}))
                continue
            one = {"type": "string", "enum": [t.entity_id for t in targets]}
            properties: dict[str, Any] = {"tool": {"const": tool}, "entity_id": {"anyOf": [
                one, {"type": "array", "items": one, "minItems": 1, "maxItems": MAX_CALL_ENTITIES}]}}
            for argument in ACTION_ARGUMENTS.get(tool, ()):
                properties[argument] = ARGUMENT_SCHEMAS[argument][0]
            variants.append(_object(properties))
        return {"oneOf": variants}

    def openai_tools(self) -> list[dict[str, Any]]:
        tools = []
        for tool, targets in self.offered().items():
            one = {"type": "string", "enum": [t.entity_id for t in targets]}
            properties: dict[str, Any] = {"entity_id": {"anyOf": [
                one, {"type": "array", "items": one, "minItems": 1, "maxItems": MAX_CALL_ENTITIES}]}}
            if tool == "set_hvac_mode":
                properties["hvac_mode"] = {"type": "string", "enum": sorted({m for t in targets for m in t.modes})}
            for argument in ACTION_ARGUMENTS.get(tool, ()):
                if argument in ARGUMENT_SCHEMAS:
                    properties[argument] = ARGUMENT_SCHEMAS[argument][0]
            tools.append({"type": "function", "function": {
                "name": tool, "description": DESCRIPTIONS.get(tool, tool),
                "parameters": {"type": "object", "properties": properties, "required": list(properties),
                               "additionalProperties": False},
            }})
        return tools

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

    def parse_openai(self, name: str, arguments: str | dict[str, Any]) -> ToolCall:
        """A tool call of an OpenAI-compatible server (``function.name``, ``function.arguments``)."""
        if isinstance(arguments, str):
            try:
                arguments = json.loads(arguments or "{}")
            except ValueError as error:
                raise ToolError(f"arguments are not JSON: {str(error)[:80]}") from None
        if not isinstance(arguments, dict):
            raise ToolError("arguments are not a JSON object")
        args = {k: v for k, v in arguments.items() if k != "entity_id"}
        return self._validated(name, arguments.get("entity_id"), args)

    def _validated(self, tool: Any, entity_id: Any, args: dict[str, Any]) -> ToolCall:
        offered = self.offered()
        if not isinstance(tool, str) or tool not in offered:
            raise ToolError(f"unknown tool {str(tool)[:40]!r}")
        wanted_ids = entity_id if isinstance(entity_id, list) else [entity_id]
        if not wanted_ids or len(wanted_ids) > MAX_CALL_ENTITIES:
            raise ToolError(f"a call names 1 to {MAX_CALL_ENTITIES} entities")
        chosen: list[_Target] = []
        for wanted in wanted_ids:
            target = next((t for t in offered[tool] if t.entity_id == wanted), None)
            if target is None:
                raise ToolError(f"{tool} cannot be used on {str(wanted)[:60]!r}")
            if target not in chosen:
                chosen.append(target)
        if tool == "set_hvac_mode" and len(chosen) > 1:
            raise ToolError("set_hvac_mode names one entity")
        target = chosen[0]
        wanted = ("hvac_mode",) if tool == "set_hvac_mode" else ACTION_ARGUMENTS.get(tool, ())
        if set(args) != set(wanted):
            raise ToolError(f"{tool} takes {', '.join(wanted) or 'no arguments'}, got {', '.join(sorted(args)) or 'none'}")
        for name, value in args.items():
            if name == "hvac_mode":
                if value not in target.modes:
                    raise ToolError(f"hvac_mode must be one of {', '.join(target.modes)}")
                continue
            schema = ARGUMENT_SCHEMAS[name][0]
            if not _fits(value, schema):
                raise ToolError(f"{name} out of range: {str(value)[:20]!r}")
        several = tuple(t.entity_id for t in chosen) if len(chosen) > 1 else ()
        return ToolCall(tool, target.entity_id, dict(args), several)


_SAFE_MODE = re.compile(r"[a-z_]{1,24}")


def _object(properties: dict[str, Any]) -> dict[str, Any]:
    return {"type": "object", "properties": properties, "required": list(properties), "additionalProperties": False}


def _fits(value: Any, schema: dict[str, Any]) -> bool:
    if isinstance(value, bool):
        return False
    if "enum" in schema:
        return value in schema["enum"]
    if schema["type"] == "integer" and not isinstance(value, int):
        return False
    if not isinstance(value, (int, float)):
        return False
    return schema["minimum"] <= value <= schema["maximum"]


def _literal(text: str) -> str:
    """A GBNF string literal matching `text` exactly."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _context_text(text: str) -> str:
    return clean_text(text, MAX_CONTEXT_NAME_CHARS).replace(";", ",")
