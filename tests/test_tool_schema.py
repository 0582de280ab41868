"""One schema of the home's tools, rendered as the grammar a local model writes under and as the
OpenAI tools a server's model is offered."""

import re

import pytest

from edge_assistant.home.tools import ToolCall, ToolError
from edge_assistant.thinking.llama_engine import compiled_grammar
from edge_assistant.thinking.tool_schema import gbnf, openai_tools
from tests.test_home_tools import toolbox

PUMP = {"switch/cellar_pump": {"name": "Cellar Pump", "cmd_t": "cellar/pump/set", "uniq_id": "cellar_pump"}}


def offered_in_grammar(grammar: str, tool: str) -> set[str]:
    rule = next(line for line in grammar.splitlines() if line.startswith(f"id-{tool.replace('_', '-')} ::= "))
    return set(re.findall(r'"\\"([^"\\]+)\\""', rule))


def offered_in_tools(tools: list[dict], tool: str) -> set[str]:
    (function,) = [t["function"] for t in tools if t["function"]["name"] == tool]
    one = function["parameters"]["properties"]["entity_id"]["anyOf"][0]
    return set(one["enum"])


def test_a_device_added_to_the_schema_appears_in_the_grammar_and_in_the_tools():
    before, _ = toolbox()
    after, _ = toolbox(extra=PUMP)
    (pump,) = set(after.entities) - set(before.entities)
    for box, present in ((before, False), (after, True)):
        schema = box.schema()
        grammar, tools = gbnf(schema), openai_tools(schema)
        for tool in ("turn_on", "turn_off", "toggle", "get_state"):
            assert (pump in offered_in_grammar(grammar, tool)) is present, tool
            assert offered_in_grammar(grammar, tool) == offered_in_tools(tools, tool), tool
        assert {t["function"]["name"] for t in tools} == {t["name"] for t in schema["tools"]}
        assert compiled_grammar(grammar) is not None
    # What both offer is what a reply may name.
    assert after.parse(f'{{"tool": "turn_on", "entity_id": "{pump}"}}') == ToolCall("turn_on", pump)
    with pytest.raises(ToolError):
        before.parse(f'{{"tool": "turn_on", "entity_id": "{pump}"}}')


THERMOSTATS = {"answer_max_chars": 20, "tools": [{
    "name": "set_hvac_mode", "description": "Set a thermostat's mode",
    "calls": [
        {"entity_ids": ["climate.hall"], "max_entities": 1,
         "arguments": {"hvac_mode": {"type": "string", "enum": ["heat", "off"]}}},
        {"entity_ids": ["climate.den"], "max_entities": 1,
         "arguments": {"hvac_mode": {"type": "string", "enum": ["cool", "off"]}}},
    ],
}]}


def test_each_thermostat_has_its_own_modes_in_the_grammar_and_the_tools_offer_them_all():
    grammar = gbnf(THERMOSTATS)
    assert "root ::= answer | call-set-hvac-mode-0 | call-set-hvac-mode-1\n" in grammar
    hall, den = (line for line in grammar.splitlines() if line.startswith("value-hvac-mode"))
    assert '"\\"heat\\""' in hall and "cool" not in hall and '"\\"cool\\""' in den and "heat" not in den
    assert 'char{1,20}' in grammar
    assert compiled_grammar(grammar) is not None
    (tool,) = openai_tools(THERMOSTATS)
    parameters = tool["function"]["parameters"]
    assert parameters["properties"] == {
        "entity_id": {"type": "string", "enum": ["climate.hall", "climate.den"]},
        "hvac_mode": {"type": "string", "enum": ["heat", "off", "cool"]},
    }
    assert parameters["required"] == ["entity_id", "hvac_mode"] and parameters["additionalProperties"] is False


def as_regex(expression: str) -> re.Pattern:
    """The GBNF subset the value rules use (literals, classes, groups, ?) as a Python regex."""
    parts = re.findall(r'"(?:[^"\\]|\\.)*"|\[[^\]]*\]|[()|?]', expression)
    assert "".join(parts) == expression.replace(" ", ""), expression
    pattern = "".join(re.escape(part[1:-1].replace('\\"', '"')) if part.startswith('"') else part for part in parts)
    return re.compile(pattern)


@pytest.mark.parametrize("low, high", [(0, 100), (1000, 12000), (0, 9), (5, 5), (7, 130), (19, 2021), (0, 1)])
def test_integer_ranges_match_exactly_their_numbers(low, high):
    grammar = gbnf({"answer_max_chars": 1, "tools": [{"name": "t", "description": "", "calls": [{
        "entity_ids": ["x.y"], "max_entities": 1,
        "arguments": {"n": {"type": "integer", "minimum": low, "maximum": high}}}]}]})
    (rule,) = [line for line in grammar.splitlines() if line.startswith("integer-")]
    matches = as_regex(rule.split(" ::= ", 1)[1])
    for number in range(0, high * 2 + 20):
        assert bool(matches.fullmatch(str(number))) == (low <= number <= high), number
    assert not matches.fullmatch("0" + str(high)) and not matches.fullmatch("-1")


@pytest.mark.parametrize("low, high", [(0, 99.5), (16, 30), (4.5, 8)])
def test_half_steps_match_exactly_their_numbers(low, high):
    grammar = gbnf({"answer_max_chars": 1, "tools": [{"name": "t", "description": "", "calls": [{
        "entity_ids": ["x.y"], "max_entities": 1,
        "arguments": {"n": {"type": "number", "minimum": low, "maximum": high, "multipleOf": 0.5}}}]}]})
    (rule,) = [line for line in grammar.splitlines() if line.startswith("number-")]
    matches = as_regex(rule.split(" ::= ", 1)[1])
    for tenths in range(0, int(high * 10) + 30):
        text = f"{tenths / 10:.1f}"
        fits = low <= tenths / 10 <= high and tenths % 5 == 0
        assert bool(matches.fullmatch(text)) == fits, text
        if tenths % 10 == 0:
            assert bool(matches.fullmatch(str(tenths // 10))) == fits, tenths // 10


def test_the_home_refuses_what_the_grammar_cannot_write():
    box, _ = toolbox()
    assert box.parse('{"tool": "set_temperature", "entity_id": "climate.thermostat", "temperature": 21.5}').args == {
        "temperature": 21.5}
    for value in ("21.3", "100", "-1", '"21"', "true"):
        with pytest.raises(ToolError):
            box.parse(f'{{"tool": "set_temperature", "entity_id": "climate.thermostat", "temperature": {value}}}')


def test_an_argument_no_grammar_can_say_is_refused_when_rendered():
    schema = {"answer_max_chars": 1, "tools": [{"name": "t", "description": "", "calls": [{
        "entity_ids": ["x.y"], "max_entities": 1, "arguments": {"text": {"type": "string"}}}]}]}
    with pytest.raises(ValueError, match="no grammar"):
        gbnf(schema)
