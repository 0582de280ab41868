"""Sums and unit conversions said in words, computed (a small language model gets them wrong).

    answer("what is 15 times 12")           # "15 times 12 is 180."
    answer("convert 5 miles to kilometers")  # "5 miles is 8.05 kilometers."
    answer("what is the capital of France")  # None: not a sum

Spoken numbers ("three point five", "twenty one") become digits, operator words ("times",
"divided by") become symbols, and the expression is parsed with `ast` and walked: only numbers,
+ - * / ** % and parentheses are allowed, nothing is ever `eval`ed, and powers are bounded so
"9 to the power of 9 to the power of 9" cannot take the CPU. Results are said as people say
them: "180", "8.05", "0.333".
"""

from __future__ import annotations

import ast
import math
import operator
import re
from dataclasses import dataclass

from .number_words import spoken_result, words_to_numbers

MAX_TEXT_CHARS = 200
# Larger exponents or results are refused rather than computed.
MAX_EXPONENT = 100
MAX_MAGNITUDE = 1e15


# Operator words, longest first, as they are said.
_OPERATORS = (
    ("to the power of", "**"), ("raised to the power of", "**"), ("raised to", "**"),
    ("multiplied by", "*"), ("divided by", "/"), ("plus", "+"),
    ("minus", "-"), ("take away", "-"), ("times", "*"), ("x", "*"),
    ("over", "/"), ("modulo", "%"), ("mod", "%"), ("squared", "**2"), ("cubed", "**3"),
    ("percent of", "/100*"),
)

_BINARY = {
    ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
    ast.Mod: operator.mod, ast.Pow: operator.pow,
}
_UNARY = {ast.UAdd: operator.pos, ast.USub: operator.neg}


class CalculationError(ValueError):
    """Not a sum this evaluator may compute (a name, a call, a huge power, a division by zero)."""


@dataclass(frozen=True)
class Calculation:
    # What to say: "15 times 12 is 180."
    text: str
    value: float


def evaluate(expression: str) -> float:
    """The value of an arithmetic expression: numbers, + - * / ** %, parentheses; nothing else."""
    if len(expression) > MAX_TEXT_CHARS:
        raise CalculationError("too long")
    try:
        tree = ast.parse(expression, mode="eval")
    except SyntaxError as error:
        raise CalculationError(f"not arithmetic: {error.msg}") from None
    return _value(tree.body)


def _value(node: ast.AST) -> float:
    if isinstance(node, ast.Constant) and type(node.value) in (int, float):
        if not math.isfinite(node.value) or abs(node.value) > MAX_MAGNITUDE:
            raise CalculationError("the number is out of range")
        return node.value
    if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
        return _UNARY[type(node.op)](_value(node.operand))
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        left, right = _value(node.left), _value(node.right)
        if isinstance(node.op, ast.Pow) and (abs(right) > MAX_EXPONENT or (abs(left) > 1 and abs(right) * math.log10(abs(left)) > 15)):
            raise CalculationError("that power is too large")
        try:
            result = _BINARY[type(node.op)](left, right)
        except ZeroDivisionError:
            raise CalculationError("division by zero") from None
        except (OverflowError, ValueError) as error:
            raise CalculationError(str(error)) from None
        if isinstance(result, complex) or not math.isfinite(result) or abs(result) > MAX_MAGNITUDE:
            raise CalculationError("the result is out of range")
        return result
    raise CalculationError(f"{type(node).__name__} is not allowed")


# -- sums ---------------------------------------------------------------------------------------

_QUESTION = re.compile(
    r"^(?:(?:hey|ok|okay|so|please|and)\s+)*(?:what(?:'s| is| are)|how much is|how much are|calculate|compute|"
    r"work out|tell me|can you tell me|what do you get for|what does)\s+(?P<body>.+?)"
    r"(?:\s+(?:equal|equals|make|come to|is))?\s*$"
)


def _normalized(text: str) -> str:
    text = text.casefold().strip()
    text = re.sub(r"(?<=\d),(?=\d{3}\b)", "", text)  # 1,000 -> 1000
    text = re.sub(r"[?!]+$|\.$", "", text).strip()
    text = re.sub(r"(?<=\d)\s*([-+*/x×÷^%])\s*(?=\d)", r" \1 ", text)
    text = text.replace("×", " x ").replace("÷", " divided by ").replace("^", " to the power of ")
    text = text.replace("-", " - ") if re.search(r"\d\s*-\s*\d", text) else text.replace("-", " ")
    return " ".join(text.split())


def arithmetic(text: str) -> Calculation | None:
    """The sum asked for in `text` ("what is 15 times 12"), computed; None if it asks none."""
    if len(text) > MAX_TEXT_CHARS:
        return None
    match = _QUESTION.match(_normalized(text))
    if match is None:
        return None
    body = words_to_numbers(match.group("body"))
    expression = re.sub(r"\b(?:the )?square root of (\d+(?:\.\d+)?)", r"(\1) ** 0.5", body)
    expression = " " + expression + " "
    for words, symbol in _OPERATORS:
        expression = re.sub(rf"(?<=\s){re.escape(words)}(?=\s)", f" {symbol} ", expression)
    expression = expression.strip()
    if not re.fullmatch(r"[\d\s.+\-*/%()]+", expression) or not re.search(r"\d\s*(\*\*|[-+*/%])\s*[\d(]|\*\*\s*0\.5", expression):
        return None
    try:
        value = evaluate(expression)
    except CalculationError as error:
        if "division by zero" in str(error):
            return Calculation("You can't divide by zero.", math.nan)
        if "large" in str(error) or "range" in str(error):
            return Calculation("That number is too large for me.", math.nan)
        return None
    return Calculation(f"{_spoken_sum(body)} is {spoken_result(value)}.", value)


def _spoken_sum(body: str) -> str:
    """The sum as asked, with symbols said as words: "7 x 8" -> "7 times 8"."""
    words = {"x": "times", "*": "times", "+": "plus", "-": "minus", "/": "divided by", "%": "modulo",
             "**": "to the power of"}
    text = " ".join(words.get(word, word) for word in body.split())
    return text[:1].upper() + text[1:]


# -- units --------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Unit:
    singular: str
    plural: str
    kind: str
    # In the kind's base unit (metre, kilogram, litre, second).
    factor: float


_UNITS: dict[str, Unit] = {}


def _unit(kind: str, factor: float, singular: str, plural: str, *aliases: str) -> None:
    unit = Unit(singular, plural, kind, factor)
    for name in (singular, plural, *aliases):
        _UNITS[name] = unit


for _args in (
    ("length", 1000.0, "kilometer", "kilometers", "km", "kilometre", "kilometres", "kms"),
    ("length", 1.0, "meter", "meters", "m", "metre", "metres"),
    ("length", 0.01, "centimeter", "centimeters", "cm", "centimetre", "centimetres"),
    ("length", 0.001, "millimeter", "millimeters", "mm", "millimetre", "millimetres"),
    ("length", 1609.344, "mile", "miles", "mi"),
    ("length", 0.9144, "yard", "yards", "yd"),
    ("length", 0.3048, "foot", "feet", "ft"),
    ("length", 0.0254, "inch", "inches", "in"),
    ("mass", 1.0, "kilogram", "kilograms", "kg", "kilo", "kilos"),
    ("mass", 0.001, "gram", "grams", "g"),
    ("mass", 0.45359237, "pound", "pounds", "lb", "lbs"),
    ("mass", 0.028349523125, "ounce", "ounces", "oz"),
    ("mass", 6.35029318, "stone", "stones"),
    ("mass", 1000.0, "tonne", "tonnes", "metric ton", "metric tons"),
    ("volume", 1.0, "liter", "liters", "l", "litre", "litres"),
    ("volume", 0.001, "milliliter", "milliliters", "ml", "millilitre", "millilitres"),
    ("volume", 3.785411784, "gallon", "gallons", "gal"),
    ("volume", 0.946352946, "quart", "quarts"),
    ("volume", 0.473176473, "pint", "pints"),
    ("volume", 0.2365882365, "cup", "cups"),
    ("volume", 0.0295735295625, "fluid ounce", "fluid ounces", "fl oz"),
    ("volume", 0.01478676478125, "tablespoon", "tablespoons", "tbsp"),
    ("volume", 0.00492892159375, "teaspoon", "teaspoons", "tsp"),
    ("time", 1.0, "second", "seconds", "sec", "secs"),
    ("time", 60.0, "minute", "minutes", "min", "mins"),
    ("time", 3600.0, "hour", "hours", "hr", "hrs"),
    ("time", 86400.0, "day", "days"),
    ("time", 604800.0, "week", "weeks"),
    ("speed", 1 / 3.6, "kilometer per hour", "kilometers per hour", "km/h", "kph", "kilometres per hour"),
    ("speed", 0.44704, "mile per hour", "miles per hour", "mph"),
    ("speed", 1.0, "meter per second", "meters per second", "m/s", "metres per second"),
):
    _unit(*_args)

_TEMPERATURES = {
    "celsius": "celsius", "centigrade": "celsius", "c": "celsius",
    "fahrenheit": "fahrenheit", "f": "fahrenheit", "kelvin": "kelvin", "k": "kelvin",
}
_UNIT_WORDS = "|".join(sorted(map(re.escape, [*_UNITS, *_TEMPERATURES]), key=len, reverse=True))
_DEGREES = r"(?:(?:degrees?|°)\s*)?"
_NUMBER = r"-?\d+(?:\.\d+)?"
_CONVERSIONS = (
    # "convert 5 miles to kilometers", "what is 5 miles in km", "20 degrees celsius in fahrenheit"
    re.compile(rf"^(?:(?:please|can you|could you)\s+)*(?:convert|change|turn|what(?:'s| is| are)|how much is|how much are|how many|how far is)?\s*"
               rf"(?P<amount>{_NUMBER})\s*{_DEGREES}(?P<source>{_UNIT_WORDS})\s+(?:to|in|into|as)\s+{_DEGREES}(?P<target>{_UNIT_WORDS})$"),
    # "how many ounces (are) in a pound", "how many feet are there in 3 meters"
    re.compile(rf"^how many\s+{_DEGREES}(?P<target>{_UNIT_WORDS})\s+(?:are\s+)?(?:there\s+)?(?:in|to)\s+(?:a|an|one|(?P<amount>{_NUMBER}))\s*{_DEGREES}(?P<source>{_UNIT_WORDS})$"),
)


def conversion(text: str) -> Calculation | None:
    """A unit conversion asked for in `text`, computed; None if it asks none."""
    if len(text) > MAX_TEXT_CHARS:
        return None
    normalized = words_to_numbers(_normalized(text).replace("°", " degrees "))
    normalized = re.sub(r"\bdegrees? (celsius|centigrade|fahrenheit|kelvin)\b", r"\1", normalized)
    normalized = re.sub(r"\b(?:a|one) (?=(?:" + _UNIT_WORDS + r")\b)", "1 ", normalized) if normalized.startswith(("convert", "what")) else normalized
    for pattern in _CONVERSIONS:
        match = pattern.match(normalized)
        if match is None:
            continue
        amount = float(match.group("amount") or 1)
        source, target = match.group("source"), match.group("target")
        if source in _TEMPERATURES and target in _TEMPERATURES:
            value = _temperature(amount, _TEMPERATURES[source], _TEMPERATURES[target])
            return Calculation(f"{spoken_result(amount)} degrees {_TEMPERATURES[source].title()} is "
                               f"{spoken_result(value)} degrees {_TEMPERATURES[target].title()}.", value)
        if source not in _UNITS or target not in _UNITS:
            return None
        source_unit, target_unit = _UNITS[source], _UNITS[target]
        if source_unit.kind != target_unit.kind:
            return Calculation(f"I can't convert {source_unit.plural} to {target_unit.plural}.", math.nan)
        value = amount * source_unit.factor / target_unit.factor
        return Calculation(f"{spoken_result(amount)} {_named(source_unit, amount)} is "
                           f"{spoken_result(value)} {_named(target_unit, value)}.", value)
    return None


def _named(unit: Unit, amount: float) -> str:
    return unit.singular if spoken_result(amount) == "1" else unit.plural


def _temperature(amount: float, source: str, target: str) -> float:
    celsius = {"celsius": amount, "fahrenheit": (amount - 32) * 5 / 9, "kelvin": amount - 273.15}[source]
    return {"celsius": celsius, "fahrenheit": celsius * 9 / 5 + 32, "kelvin": celsius + 273.15}[target]


def answer(text: str) -> Calculation | None:
    """The computed answer to a sum or a conversion in `text`, or None if it asks neither."""
    return conversion(text) or arithmetic(text)
