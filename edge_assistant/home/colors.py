"""Colours for lights: a spoken colour as RGB, RGB as CIE xy, and which colour topic a
default-schema light takes (rgb, rgbw, rgbww, hs or xy)."""

from __future__ import annotations

from typing import Any

from .entities import COLORS, Entity


def rgb_of(color: Any) -> tuple[int, int, int]:
    """A colour name the intents know, or [r, g, b], as RGB; ValueError otherwise."""
    if isinstance(color, str) and color.strip().lower() in COLORS:
        return COLORS[color.strip().lower()]
    if isinstance(color, (list, tuple)) and len(color) == 3 and all(
        isinstance(c, int) and not isinstance(c, bool) and 0 <= c <= 255 for c in color
    ):
        return (color[0], color[1], color[2])
    raise ValueError(f"unknown color {str(color)[:30]!r}")


# Colour command topics of a default-schema light, in the order they are preferred.
COLOR_TOPICS = ("rgb", "rgbw", "rgbww", "hs", "xy")


def color_topic(entity: Entity) -> str | None:
    """The colour mode a default-schema light is sent colours in: the first it has a topic
    and a usable template for."""
    for mode in COLOR_TOPICS:
        if f"{mode}_command_topic" in entity.topics and f"{mode}_command_template" not in entity.broken_templates:
            return mode
    return None


def rgb_to_xy(red: int, green: int, blue: int) -> tuple[float, float]:
    """sRGB to CIE 1931 xy (the Philips Hue formula)."""
    def linear(c: float) -> float:
        c /= 255
        return ((c + 0.055) / 1.055) ** 2.4 if c > 0.04045 else c / 12.92

    r, g, b = linear(red), linear(green), linear(blue)
    x = r * 0.4124 + g * 0.3576 + b * 0.1805
    y = r * 0.2126 + g * 0.7152 + b * 0.0722
    z = r * 0.0193 + g * 0.1192 + b * 0.9505
    total = x + y + z
    if total == 0:
        return 0.3127, 0.329  # white point for black
    return round(x / total, 4), round(y / total, 4)
