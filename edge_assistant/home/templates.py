"""The few Home Assistant templates the assistant evaluates, by its own tiny parser.

Discovery configs come from the network, so their Jinja is never executed. Understood:

- value templates that only read the payload: ``{{ value }}``, ``{{ value_json.key }}``,
  ``{{ value_json['key'] }}``, nested keys and list indexes (``value_json.color.r``,
  ``value_json["a"][0]``);
- command templates that only insert the value: ``{{ value }}`` anywhere in a literal text
  (``{"volume": {{ value }}}``).

Anything else raises `UnsupportedTemplate`, and the entity is made read-only with its message.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

# Longest template text looked at; longer ones are unsupported, not parsed.
MAX_TEMPLATE_CHARS = 256
MAX_PATH_DEPTH = 8

_EXPRESSION = re.compile(r"\{\{-?\s*(.*?)\s*-?\}\}", re.S)
_STEP = re.compile(
    r"\.(?P<attr>[A-Za-z_][A-Za-z0-9_]*)"
    r"|\[\s*'(?P<single>[^'\\]*)'\s*\]"
    r'|\[\s*"(?P<double>[^"\\]*)"\s*\]'
    r"|\[\s*(?P<index>\d+)\s*\]"
)


class UnsupportedTemplate(ValueError):
    """A template the assistant will not evaluate; the message says which and why."""


@dataclass(frozen=True)
class ValueTemplate:
    """``{{ value }}`` (empty path, not JSON) or ``{{ value_json<path> }}``."""

    path: tuple[str | int, ...] = ()
    json: bool = False

    def evaluate(self, payload: str) -> str | None:
        """The rendered text, or None when the payload lacks what the template reads."""
        if not self.json:
            return payload
        try:
            value: Any = json.loads(payload)
        except ValueError:
            return None
        for step in self.path:
            if isinstance(step, int) and isinstance(value, list) and step < len(value):
                value = value[step]
            elif isinstance(step, str) and isinstance(value, dict) and step in value:
                value = value[step]
            else:
                return None
        return render(value)

    def text(self) -> str:
        if not self.json:
            return "{{ value }}"
        steps = "".join(f".{s}" if isinstance(s, str) and s.isidentifier() else f"[{s!r}]" for s in self.path)
        return "{{ value_json%s }}" % steps


def render(value: Any) -> str:
    """A JSON value as Jinja prints it (what Home Assistant compares payloads with)."""
    if isinstance(value, bool):
        return "True" if value else "False"
    if value is None:
        return "None"
    if isinstance(value, (dict, list)):
        return json.dumps(value, separators=(",", ":"))
    return str(value)


def parse_value_template(text: str) -> ValueTemplate:
    if not isinstance(text, str):
        raise UnsupportedTemplate(f"template is not text: {str(text)[:40]!r}")
    if len(text) > MAX_TEMPLATE_CHARS:
        raise UnsupportedTemplate("template longer than %d characters" % MAX_TEMPLATE_CHARS)
    stripped = text.strip()
    match = _EXPRESSION.fullmatch(stripped)
    if match is None or "{%" in stripped or "{#" in stripped:
        raise UnsupportedTemplate(f"cannot evaluate {stripped[:60]!r} safely")
    expression = match.group(1).strip()
    if expression == "value":
        return ValueTemplate()
    if not expression.startswith("value_json"):
        raise UnsupportedTemplate(f"cannot evaluate {stripped[:60]!r} safely")
    rest = expression[len("value_json"):]
    path: list[str | int] = []
    position = 0
    while position < len(rest):
        step = _STEP.match(rest, position)
        if step is None:
            raise UnsupportedTemplate(f"cannot evaluate {stripped[:60]!r} safely")
        if step.group("index") is not None:
            path.append(int(step.group("index")))
        else:
            path.append(step.group("attr") or step.group("single") or step.group("double") or "")
        position = step.end()
    if not path or len(path) > MAX_PATH_DEPTH:
        raise UnsupportedTemplate(f"cannot evaluate {stripped[:60]!r} safely")
    return ValueTemplate(tuple(path), json=True)


@dataclass(frozen=True)
class CommandTemplate:
    """A literal text with ``{{ value }}`` placeholders."""

    parts: tuple[str, ...]

    def render(self, value: Any) -> str:
        return render(value).join(self.parts)


def parse_command_template(text: str) -> CommandTemplate:
    if not isinstance(text, str):
        raise UnsupportedTemplate(f"command template is not text: {str(text)[:40]!r}")
    if len(text) > MAX_TEMPLATE_CHARS:
        raise UnsupportedTemplate("command template longer than %d characters" % MAX_TEMPLATE_CHARS)
    parts: list[str] = []
    position = 0
    for match in _EXPRESSION.finditer(text):
        if match.group(1).strip() != "value":
            raise UnsupportedTemplate(f"cannot render command template {text[:60]!r} safely")
        parts.append(text[position:match.start()])
        position = match.end()
    parts.append(text[position:])
    if any(marker in part for part in parts for marker in ("{{", "}}", "{%", "{#")):
        raise UnsupportedTemplate(f"cannot render command template {text[:60]!r} safely")
    return CommandTemplate(tuple(parts))
