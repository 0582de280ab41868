"""A tool schema rendered for a model: a llama.cpp grammar (GBNF) and OpenAI `tools`.

The schema is plain data, so the part that knows the tools (the home:
`home.tools.Toolbox.schema()`) and this one share no code; `respond` joins them:

    {"answer_max_chars": 300,
     "tools": [{"name": "set_brightness", "description": "Set a light's brightness ...",
                "calls": [{"entity_ids": ["light.kitchen", "light.hall"], "max_entities": 16,
                           "arguments": {"brightness": {"type": "integer", "minimum": 0,
                                                        "maximum": 100}}}]}]}

A tool has one or more calls, each the entities it may name (one, or up to `max_entities`
together) and the arguments, as JSON schemas, it takes with them. Arguments are what both
renderings can say exactly: an enum, an integer range, a number range in halves.

- `gbnf(schema)`: every output is exactly ``{"tool": "<name>", "entity_id": "<id>" | [ids],
  "<argument>": <value>}`` or ``{"answer": "<text>"}``, spaced as written here, so that
  tool_output.py reads an answer as it streams;
- `openai_tools(schema)`: one function per tool, its calls merged into one set of parameters
  (a server's model is not grammar-bound; what it writes is checked again by the schema's owner).
"""

from __future__ import annotations

import json
import math
from typing import Any

ANSWER_CHAR = r'char ::= [^"\\\x00-\x1f\x7f<>{}|] | "\\" ["\\/nt]'


def gbnf(schema: dict[str, Any]) -> str:
    rules: list[str] = []
    # A value's expression -> the rule that says it, shared by the arguments that take it.
    values: dict[str, str] = {}
    calls = []
    for tool in schema["tools"]:
        for index, call in enumerate(tool["calls"]):
            name = _rule_name(tool["name"]) + (f"-{index}" if len(tool["calls"]) > 1 else "")
            rules.append(f"id-{name} ::= " + " | ".join(_literal(json.dumps(i)) for i in call["entity_ids"]))
            entities = f"id-{name}"
            if call["max_entities"] > 1:
                # One entity, or several: "entity_id": ["light.a", "light.b"].
                rules.append(f'ids-{name} ::= id-{name} | "[" id-{name} (", " id-{name}){{0,{call["max_entities"] - 1}}} "]"')
                entities = f"ids-{name}"
            body = [_literal(f'{{"tool": {json.dumps(tool["name"])}, "entity_id": '), entities]
            for argument, value in call["arguments"].items():
                body += [_literal(f", {json.dumps(argument)}: "), _value_rule(argument, value, values, rules)]
            rules.append(f"call-{name} ::= {' '.join(body)} " + _literal("}"))
            calls.append(f"call-{name}")
    return "\n".join([
        f"root ::= {' | '.join(['answer', *calls])}",
        *rules,
        'answer ::= "{\\"answer\\": \\"" char{1,%d} "\\"}"' % schema["answer_max_chars"],
        ANSWER_CHAR,
    ]) + "\n"


def openai_tools(schema: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"type": "function", "function": {
        "name": tool["name"], "description": tool["description"], "parameters": _parameters(tool["calls"]),
    }} for tool in schema["tools"]]


def _parameters(calls: list[dict[str, Any]]) -> dict[str, Any]:
    one = {"type": "string", "enum": list(dict.fromkeys(i for call in calls for i in call["entity_ids"]))}
    most = max(call["max_entities"] for call in calls)
    properties: dict[str, Any] = {"entity_id": one if most == 1 else {"anyOf": [
        one, {"type": "array", "items": one, "minItems": 1, "maxItems": most}]}}
    for call in calls:
        for name, value in call["arguments"].items():
            properties[name] = _merged(properties.get(name), value)
    return {"type": "object", "properties": properties, "required": list(properties),
            "additionalProperties": False}


def _merged(known: dict[str, Any] | None, value: dict[str, Any]) -> dict[str, Any]:
    """One argument of several calls (each thermostat's modes): the union of their enums."""
    if known is None or known == value:
        return value
    if "enum" in known and "enum" in value:
        return {**known, "enum": list(dict.fromkeys([*known["enum"], *value["enum"]]))}
    raise ValueError(f"the calls of one tool take different arguments: {known} and {value}")


def _value_rule(argument: str, value: dict[str, Any], values: dict[str, str], rules: list[str]) -> str:
    expression = _value(value)
    if expression not in values:
        # A range is named for itself (several arguments take percents), a list of names for
        # the argument that takes it.
        base = (f"{value['type']}-{value['minimum']:g}-{value['maximum']:g}" if "minimum" in value
                else f"value-{argument}")
        name, count = _rule_name(base), 1
        while name in values.values():
            count += 1
            name = _rule_name(f"{base}-{count}")
        values[expression] = name
        rules.append(f"{name} ::= {expression}")
    return values[expression]


def _value(schema: dict[str, Any]) -> str:
    """GBNF for the JSON values `schema` allows."""
    if schema.get("enum"):
        return " | ".join(_literal(json.dumps(v)) for v in schema["enum"])
    if schema.get("type") == "integer":
        return _integers(schema["minimum"], schema["maximum"])
    if schema.get("type") == "number" and schema.get("multipleOf") == 0.5:
        return _halves(schema["minimum"], schema["maximum"])
    raise ValueError(f"no grammar for the argument schema {schema}")


def _halves(low: float, high: float) -> str:
    """low..high in steps of 0.5: "21", "21.0" or "21.5"."""
    whole = (math.ceil(low), math.floor(high))
    half = (math.ceil(low - 0.5), math.floor(high - 0.5))
    if whole == half:
        return f'({_integers(*whole)}) ("." [05])?'
    parts = []
    if whole[0] <= whole[1]:
        parts.append(f'({_integers(*whole)}) (".0")?')
    if half[0] <= half[1]:
        parts.append(f'({_integers(*half)}) ".5"')
    return " | ".join(parts)


def _integers(low: int, high: int) -> str:
    """GBNF for the decimal integers low..high, without sign or leading zeros."""
    if low < 0 or high < low:
        raise ValueError(f"no grammar for the integers {low}..{high}")
    alternatives = []
    for digits in range(len(str(low)), len(str(high)) + 1):
        start = max(low, 10 ** (digits - 1) if digits > 1 else 0)
        end = min(high, 10 ** digits - 1)
        if start <= end:
            alternatives += _same_length(str(start), str(end))
    return " | ".join(alternatives)


def _same_length(low: str, high: str) -> list[str]:
    """Alternatives that match the numbers low..high, both written with as many digits."""
    if low == high:
        return [_literal(low)]
    if low[0] == high[0]:
        return [f"{_literal(low[0])} ({' | '.join(_same_length(low[1:], high[1:]))})"]
    rest = len(low) - 1
    first, last = int(low[0]), int(high[0])
    head: list[str] = []
    tail: list[str] = []
    if low[1:] != "0" * rest:
        head = _same_length(low, low[0] + "9" * rest)
        first += 1
    if high[1:] != "9" * rest:
        tail = _same_length(high[0] + "0" * rest, high)
        last -= 1
    if first <= last:
        digit = f"[{first}-{last}]" if first < last else _literal(str(first))
        head.append(" ".join([digit, *["[0-9]"] * rest]))
    return head + tail


def _rule_name(text: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in text.lower())


def _literal(text: str) -> str:
    """A GBNF string literal matching `text` exactly."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
