"""Numbers as the assistant says them, for each place that says one: timer replies, device values, sums."""

import math

import pytest
from jinja2.sandbox import ImmutableSandboxedEnvironment

from edge_assistant.number_words import spoken_number, spoken_result, words_to_numbers

NAN, INF = float("nan"), float("inf")


@pytest.mark.parametrize("value, said", [
    (8.0, "8"), (8, "8"), (90.0, "90"), (1.5, "1.5"), (0.25, "0.25"), (-0.0, "0"), (1e20, str(10**20)),
    ("8", "8"), ("one", "one"), (True, "True"), (NAN, "nan"), (INF, "inf"),
])
def test_timer_slots_lose_only_a_trailing_point_zero(value, said):
    # Home Assistant's timer responses compare hours with "1" and "one": they need text, unrounded.
    assert str(spoken_number(value)) == said


@pytest.mark.parametrize("value, said", [
    (100.0, 100), (100, 100), (22.0, 22), (22.46, 22.5), (22.44, 22.4), (22.5, 22.5), (19.96, 20),
    (-3.04, -3), (-0.04, 0), (0.06, 0.1), (7, 7),
])
def test_device_values_are_rounded_to_one_decimal_and_stay_numbers(value, said):
    spoken = spoken_number(value, 1)
    assert spoken == said
    assert type(spoken) is type(said)


@pytest.mark.parametrize("value", [True, False, "22.46", "on", None, [1.0], {"a": 1.0}])
def test_what_is_not_a_number_passes_through_unchanged(value):
    assert spoken_number(value, 1) is value
    assert spoken_number(value) is value


@pytest.mark.parametrize("value", [NAN, INF, -INF])
def test_numbers_that_cannot_be_said_pass_through_unchanged(value):
    assert spoken_number(value, 1) is value
    assert spoken_number(value) is value


def test_device_values_reach_the_response_templates_as_numbers():
    # Home Assistant's own sentence: it compares the value with 1 and formats it.
    template = ImmutableSandboxedEnvironment().from_string(
        "{{ t }} {{ 'degree' if (t | float) == 1 else 'degrees' }}{% if t == 1 %}!{% endif %}")
    assert template.render(t=spoken_number(1.04, 1)) == "1 degree!"
    assert template.render(t=spoken_number(21.96, 1)) == "22 degrees"
    assert template.render(t=spoken_number(21.46, 1)) == "21.5 degrees"


@pytest.mark.parametrize("value, said", [
    (180, "180"), (180.0, "180"), (8.04672, "8.05"), (2.5, "2.5"), (1 / 3, "0.333"), (0.33333, "0.333"),
    (2 / 3, "0.667"), (0.00042, "0.00042"), (-4.0, "-4"), (-1.25, "-1.25"), (9999, "9999"),
    (10_000, "10,000"), (1_234_567, "1,234,567"), (-1_234_567.0, "-1,234,567"), (1_000_000, "1,000,000"),
    (12_345.678, "12345.68"), (7.0000000001, "7"), (0.1 + 0.2, "0.3"),
])
def test_computed_results_are_said_with_separators_and_few_decimals(value, said):
    assert spoken_result(value) == said


@pytest.mark.parametrize("heard, digits", [
    ("twenty one point five", "21.5"), ("one hundred and five", "105"), ("a thousand", "1000"),
    ("set a timer for ten minutes", "set a timer for 10 minutes"),
])
def test_numbers_heard_in_words_become_digits(heard, digits):
    assert words_to_numbers(heard) == digits
