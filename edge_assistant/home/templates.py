"""Home Assistant's MQTT templates, rendered as Home Assistant renders them: Jinja in an
immutable sandbox, with the variables Home Assistant gives each key.

- Value templates (``value_template``, ``position_template``, ``rgb_value_template``...) see
  ``value`` (the payload text) and ``value_json`` (the payload parsed, when it is JSON);
- command templates see ``value`` and the key's own variables: ``position`` for
  ``set_position_template``, ``red``/``green``/``blue`` for ``rgb_command_template``, ``hue``/``sat``
  for ``hs_command_template``, ``tilt_position``, ``x``/``y``... (see `actions`).

Discovery configs come from the network, so their templates are untrusted code. Rendering is
bounded: only the filters and methods real payloads use (``default``, ``int``, ``float``,
``round``, ``join``, ``format``, ``tojson``/``to_json``, ``from_json``, ``iif``, ``is_defined``,
string ``split``/``replace``/``lower``, slicing...), no loops, macros or includes, a budget of
operations that can grow text, and every intermediate text, list and the result capped. A
template that is not valid or not allowed raises `UnsupportedTemplate` when parsed; one that
fails on a payload yields None (value) or raises `TemplateFailed` (command). Either way only
what that template serves stops working.
"""

from __future__ import annotations

import functools
import json
import math
import operator
import re
from dataclasses import dataclass
from typing import Any

from jinja2 import StrictUndefined, TemplateError, Undefined, nodes
from jinja2.filters import do_int
from jinja2.sandbox import ImmutableSandboxedEnvironment

MAX_TEMPLATE_CHARS = 2048
# Longest text, list or rendering any step may produce.
MAX_RENDER_CHARS = 16 * 1024
MAX_RANGE = 256
# Nodes that could loop or build text without bound, or reach outside the template.
_FORBIDDEN_NODES = (nodes.For, nodes.Macro, nodes.CallBlock, nodes.FilterBlock, nodes.Import,
                    nodes.FromImport, nodes.Include, nodes.Extends, nodes.Block, nodes.Scope)
# `~` joins text outside the sandbox's operator hooks: a few only.
MAX_CONCATENATIONS = 8
_FORMAT_WIDTH = re.compile(r"%[-+ #0]*(\*|\d{3,})|\{[^}]*(\*|\d{3,})[^}]*\}")

# str methods a template may call (no ljust, center, zfill, expandtabs, format: they grow text).
_STR_METHODS = frozenset({
    "split", "rsplit", "strip", "lstrip", "rstrip", "lower", "upper", "title", "capitalize",
    "startswith", "endswith", "replace", "find", "rfind", "index", "count", "isdigit", "isnumeric",
    "isdecimal", "isalpha", "isalnum", "splitlines", "partition", "rpartition", "casefold", "join",
})
_MAPPING_METHODS = frozenset({"get", "keys", "values", "items"})


class UnsupportedTemplate(ValueError):
    """A template the assistant will not evaluate; the message says which and why."""


class TemplateFailed(ValueError):
    """A template that could not be rendered with these values."""


def _bounded(value: Any) -> Any:
    if isinstance(value, (str, list, tuple, dict)) and len(value) > MAX_RENDER_CHARS:
        raise TemplateFailed("result too long")
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 256:
        raise TemplateFailed("number too large")
    return value


def _checked(function):
    """A filter whose result is bounded."""
    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        return _bounded(function(*args, **kwargs))
    return wrapper


def _int(value: Any, default: Any = Undefined, base: int = 10) -> Any:
    """Home Assistant's int: a value that is no number fails unless a default is given."""
    result = do_int(value, default=None, base=base)
    if result is None:
        if default is Undefined:
            raise TemplateFailed(f"int got invalid input {str(value)[:20]!r}")
        return default
    return result


def _float(value: Any, default: Any = Undefined) -> Any:
    try:
        result = float(value)
    except (TypeError, ValueError):
        if default is Undefined:
            raise TemplateFailed(f"float got invalid input {str(value)[:20]!r}") from None
        return default
    return result


def _round(value: Any, precision: int = 0, method: str = "common", default: Any = Undefined) -> Any:
    try:
        number = float(value)
    except (TypeError, ValueError):
        if default is Undefined:
            raise TemplateFailed(f"round got invalid input {str(value)[:20]!r}") from None
        return default
    precision = int(precision)
    if method == "ceil":
        return math.ceil(number * 10 ** precision) / 10 ** precision
    if method == "floor":
        return math.floor(number * 10 ** precision) / 10 ** precision
    if method == "half":
        return round(number * 2) / 2
    return round(number, precision)


def _format(text: Any, *args: Any, **kwargs: Any) -> str:
    text = str(text)
    if _FORMAT_WIDTH.search(text):
        raise TemplateFailed("format width too large")
    return text % (kwargs or args)


def _from_json(text: Any) -> Any:
    text = str(text)
    if len(text) > MAX_RENDER_CHARS:
        raise TemplateFailed("JSON too long")
    try:
        return json.loads(text)
    except (ValueError, RecursionError) as error:
        raise TemplateFailed(f"from_json: {str(error)[:60]}") from None


def _to_json(value: Any, ensure_ascii: bool = False, pretty_print: bool = False, sort_keys: bool = False) -> str:
    return json.dumps(value, ensure_ascii=ensure_ascii, indent=2 if pretty_print else None,
                      separators=None if pretty_print else (",", ":"), sort_keys=sort_keys, default=str)


_NO_IF_NONE = object()


def _iif(value: Any, if_true: Any = True, if_false: Any = False, if_none: Any = _NO_IF_NONE) -> Any:
    if value is None and if_none is not _NO_IF_NONE:
        return if_none
    return if_true if value else if_false


def _is_defined(value: Any) -> Any:
    if isinstance(value, Undefined):
        raise TemplateFailed("a value is not defined")
    return value


def _is_number(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    try:
        number = float(value)
    except (TypeError, ValueError):
        return False
    return math.isfinite(number)


def _bool(value: Any, default: Any = Undefined) -> Any:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on", "enable"):
        return True
    if text in ("0", "false", "no", "off", "disable"):
        return False
    if default is Undefined:
        raise TemplateFailed(f"bool got invalid input {str(value)[:20]!r}")
    return default


def _range(*args: int) -> range:
    bounded = range(*args)
    if len(bounded) > MAX_RANGE:
        raise TemplateFailed("range too long")
    return bounded


class _Sandbox(ImmutableSandboxedEnvironment):
    intercepted_binops = frozenset(["+", "*", "**", "%"])

    def is_safe_attribute(self, obj: Any, attr: str, value: Any) -> bool:
        if isinstance(obj, str) and callable(value) and attr not in _STR_METHODS:
            return False
        if isinstance(obj, dict) and callable(value) and attr not in _MAPPING_METHODS:
            return False
        return super().is_safe_attribute(obj, attr, value)

    def call_binop(self, context: Any, operator_name: str, left: Any, right: Any) -> Any:
        if operator_name == "**":
            too_big = isinstance(right, (int, float)) and abs(right) > 64
            if too_big or isinstance(left, (int, float)) and abs(left) > 1e9:
                raise TemplateFailed("power too large")
            return _bounded(left ** right)
        if operator_name == "%":
            if isinstance(left, str):
                return _bounded(_format(left, *(right if isinstance(right, tuple) else (right,))))
            return left % right
        if operator_name == "*" and isinstance(right, int) and isinstance(left, (str, list, tuple)):
            if len(left) * right > MAX_RENDER_CHARS:
                raise TemplateFailed("result too long")
        if operator_name == "*" and isinstance(left, int) and isinstance(right, (str, list, tuple)):
            if len(right) * left > MAX_RENDER_CHARS:
                raise TemplateFailed("result too long")
        function = operator.add if operator_name == "+" else operator.mul
        return _bounded(function(left, right))

    def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:  # noqa: N805
        return _bounded(super().call(__context, __obj, *args, **kwargs))


@functools.lru_cache(maxsize=1)
def environment() -> _Sandbox:
    env = _Sandbox(undefined=StrictUndefined, autoescape=False, keep_trailing_newline=True)
    builtin = env.filters
    env.filters = {name: _checked(builtin[name]) for name in (
        "default", "d", "join", "lower", "upper", "title", "capitalize", "trim", "replace", "length",
        "count", "first", "last", "abs", "string", "list", "min", "max", "sum", "sort", "unique",
        "map", "select", "reject", "selectattr", "rejectattr", "tojson", "reverse", "dictsort",
    )}
    env.filters.update({
        "int": _checked(_int), "float": _float, "round": _round, "format": _checked(_format),
        "from_json": _from_json, "to_json": _checked(_to_json), "iif": _iif, "is_defined": _is_defined,
        "is_number": _is_number, "bool": _bool,
    })
    env.globals = {"range": _range, "int": _int, "float": _float, "bool": _bool, "iif": _iif,
                   "min": min, "max": max, "is_number": _is_number, "dict": dict}
    env.tests["is_number"] = _is_number
    return env


@functools.lru_cache(maxsize=1024)
def _compile(text: str) -> Any:
    if len(text) > MAX_TEMPLATE_CHARS:
        raise UnsupportedTemplate("template longer than %d characters" % MAX_TEMPLATE_CHARS)
    env = environment()
    try:
        tree = env.parse(text)
    except TemplateError as error:
        raise UnsupportedTemplate(f"not a valid template: {str(error)[:80]}") from None
    forbidden = next(iter(tree.find_all(_FORBIDDEN_NODES)), None)
    if forbidden is not None:
        raise UnsupportedTemplate(f"{type(forbidden).__name__.lower()} is not allowed in a device template")
    if sum(1 for _ in tree.find_all(nodes.Concat)) > MAX_CONCATENATIONS:
        raise UnsupportedTemplate("too many ~ joins")
    try:
        return env.from_string(tree)
    except TemplateError as error:  # pragma: no cover - parse errors are caught above
        raise UnsupportedTemplate(f"not a valid template: {str(error)[:80]}") from None


def _render(template: Any, variables: dict[str, Any]) -> str:
    try:
        text = template.render(variables)
    except TemplateFailed:
        raise
    except (TemplateError, TypeError, ValueError, KeyError, IndexError, AttributeError,
            ArithmeticError, RecursionError, MemoryError) as error:
        raise TemplateFailed(f"{type(error).__name__}: {str(error)[:80]}") from None
    if len(text) > MAX_RENDER_CHARS:
        raise TemplateFailed("rendered text too long")
    return text


def _check_text(text: Any) -> str:
    if not isinstance(text, str):
        raise UnsupportedTemplate(f"template is not text: {str(text)[:40]!r}")
    _compile(text)
    return text


@dataclass(frozen=True)
class ValueTemplate:
    """A template that reads a state payload."""

    text: str

    def evaluate(self, payload: str, **variables: Any) -> str | None:
        """The rendered text, stripped as Home Assistant strips it; None when it cannot be
        rendered on this payload (a key it reads is missing, a number is not one)."""
        values: dict[str, Any] = {**variables, "value": payload}
        if len(payload) <= MAX_RENDER_CHARS:
            try:
                values["value_json"] = json.loads(payload)
            except (ValueError, RecursionError):
                pass  # not JSON: value_json stays undefined, as in Home Assistant
        try:
            return _render(_compile(self.text), values).strip()
        except TemplateFailed:
            return None


@dataclass(frozen=True)
class CommandTemplate:
    """A template that builds a command payload from ``value`` and its key's variables."""

    text: str

    def render(self, value: Any = None, **variables: Any) -> str:
        """The payload; raises `TemplateFailed` when it cannot be rendered."""
        return _render(_compile(self.text), {**variables, "value": value})


def parse_value_template(text: Any) -> ValueTemplate:
    return ValueTemplate(_check_text(text))


def parse_command_template(text: Any) -> CommandTemplate:
    return CommandTemplate(_check_text(text))


def render(value: Any) -> str:
    """A value as Jinja prints it (what Home Assistant compares payloads with)."""
    if isinstance(value, bool):
        return "True" if value else "False"
    if value is None:
        return "None"
    if isinstance(value, (dict, list)):
        return json.dumps(value, separators=(",", ":"))
    return str(value)
