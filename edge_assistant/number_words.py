"""Numbers between words and digits, both ways.

Heard: "twenty one point five" -> "21.5", used to compute what was said (calculator) and to
compare two recognizers' texts (stt), where one writes "ten" and the other "10".
Said: 8.0 -> 8, 22.46 -> 22.5, 1234567 -> "1,234,567", the one place that decides how the
assistant says a number (timer replies, device values, computed results).
"""

from __future__ import annotations

import math
import re
from typing import Any

_SMALL = {
    "zero": 0, "oh": 0, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7,
    "eight": 8, "nine": 9, "ten": 10, "eleven": 11, "twelve": 12, "thirteen": 13, "fourteen": 14,
    "fifteen": 15, "sixteen": 16, "seventeen": 17, "eighteen": 18, "nineteen": 19, "twenty": 20,
    "thirty": 30, "forty": 40, "fifty": 50, "sixty": 60, "seventy": 70, "eighty": 80, "ninety": 90,
}
_SCALES = {"hundred": 100, "thousand": 1000, "million": 1_000_000, "billion": 1_000_000_000}
_ARTICLES = {"a": 1, "an": 1}


def words_to_numbers(text: str) -> str:
    """"twenty one point five" -> "21.5"; words that are not numbers are kept."""
    words = text.split()
    out: list[str] = []
    index = 0
    while index < len(words):
        number, used = _number_at(words, index)
        if used:
            out.append(number)
            index += used
        else:
            out.append(words[index])
            index += 1
    return " ".join(out)


def _number_at(words: list[str], start: int) -> tuple[str, int]:
    """The number spoken from words[start], and how many words it took (0: none)."""
    total = current = 0
    index = start
    used = False
    while index < len(words):
        word = words[index]
        following = words[index + 1] if index + 1 < len(words) else ""
        if re.fullmatch(r"\d+", word) and not used:
            current = int(word)
        elif re.fullmatch(r"\d+\.\d+", word) and not used:
            return word, 1
        elif word in _SMALL and word != "oh":
            current += _SMALL[word]
        elif word in _ARTICLES and not used and following in _SCALES:
            current = 1
        elif word == "hundred" and used:
            current = (current or 1) * 100
        elif word in _SCALES and used:
            total += (current or 1) * _SCALES[word]
            current = 0
        elif word == "and" and used and words[index - 1] in _SCALES and following in _SMALL:
            pass  # "one hundred and five"
        else:
            break
        used = True
        index += 1
    if not used:
        return "", 0
    value = total + current
    if index + 1 < len(words) and words[index] == "point":
        digits = []
        cursor = index + 1
        while cursor < len(words) and (words[cursor].isdigit() or _SMALL.get(words[cursor], 10) < 10):
            digits.append(words[cursor] if words[cursor].isdigit() else str(_SMALL[words[cursor]]))
            cursor += 1
        if digits:
            return f"{value}.{''.join(digits)}", cursor - start
    return str(value), index - start


def spoken_number(value: Any, decimals: int | None = None) -> Any:
    """A number as people say it, still a number: 8.0 -> 8, and 22.46 -> 22.5 with decimals=1.

    It stays a number because response templates compare and format it. Anything that is not a
    finite int or float (bools, text, None, NaN, inf) comes back as it is.
    """
    if isinstance(value, bool) or not isinstance(value, float):
        return value
    if not math.isfinite(value):
        return value
    if decimals is not None:
        value = round(value, decimals)
    return int(value) if value.is_integer() else value


def spoken_result(value: float) -> str:
    """A computed result as text: 180, 8.05, 0.333, -4, 1,234,567 (separators from 10,000)."""
    if abs(value - round(value)) < 1e-9:
        number = int(round(value))
        return f"{number:,}" if abs(number) >= 10_000 else str(number)
    # Two decimals from one up; below one, decimals would say 0.00042 as 0: three significant digits.
    text = f"{value:.2f}" if abs(value) >= 1 else f"{value:.3g}"
    return text.rstrip("0").rstrip(".") if "." in text and "e" not in text else text
