"""What a config value must be: `ConfigError`, and the checks a field names in its metadata
(``field(default=..., metadata=between(0, 1))``), which the loader applies with the key."""

from __future__ import annotations

from typing import Any, Callable


class ConfigError(ValueError):
    """A configuration value is unusable; the message names the key."""


def check(predicate: Callable[[Any], bool], requirement: str) -> dict:
    return {"check": (predicate, requirement)}


def between(low: float, high: float) -> dict:
    return check(lambda v: low <= v <= high, f"must be between {low} and {high}")


def at_least(low: float) -> dict:
    return check(lambda v: v >= low, f"must be >= {low}")


def one_of(*choices: str) -> dict:
    return check(lambda v: v in choices, "must be one of " + ", ".join(repr(c) for c in choices))


def positive() -> dict:
    return check(lambda v: v > 0, "must be > 0")


def topic() -> dict:
    # Wildcards would make the assistant listen to, or publish on, topics the device does not own.
    return check(
        lambda v: "+" not in v and "#" not in v and "\x00" not in v and len(v) <= 512,
        "must be an MQTT topic without wildcards (+, #), at most 512 characters",
    )


def names() -> dict:
    return check(lambda v: len(v) <= 16 and all(0 < len(a.strip()) <= 64 for a in v),
                 "must be at most 16 names of 1 to 64 characters")


def unique_names(what: str) -> dict:
    # Two entries for one name would make it mean two things.
    return check(lambda v: len({" ".join(e.name.split()).casefold() for e in v}) == len(v),
                 f"names the same {what} twice")
