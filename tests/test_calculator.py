"""Sums and unit conversions said in words: computed by a safe evaluator, said as people say them."""

import math

import pytest

from edge_assistant.calculator import CalculationError, answer, evaluate
from edge_assistant.number_words import spoken_result, words_to_numbers


@pytest.mark.parametrize("question, said", [
    ("What is 15 times 12?", "15 times 12 is 180."),
    ("what's 3 plus 4 point 5", "3 plus 4.5 is 7.5."),
    ("What is twenty one divided by three?", "21 divided by 3 is 7."),
    ("what is 100 minus 7", "100 minus 7 is 93."),
    ("How much is 7 x 8?", "7 times 8 is 56."),
    ("what is 2 to the power of 10", "2 to the power of 10 is 1024."),
    ("What is the square root of 144?", "The square root of 144 is 12."),
    ("what is 20 percent of 80", "20 percent of 80 is 16."),
    ("What is one hundred and five plus five?", "105 plus 5 is 110."),
    ("what's 1,000 times 1,000", "1000 times 1000 is 1,000,000."),
    ("what is (2 + 3) * 4", "(2 plus 3) times 4 is 20."),
    ("what is five minus eight", "5 minus 8 is -3."),
    ("what is 10 divided by 3", "10 divided by 3 is 3.33."),
    ("convert 5 miles to kilometers", "5 miles is 8.05 kilometers."),
    ("How many ounces in a pound?", "1 pound is 16 ounces."),
    ("20 degrees celsius in fahrenheit", "20 degrees Celsius is 68 degrees Fahrenheit."),
    ("What is 100 degrees Fahrenheit in Celsius?", "100 degrees Fahrenheit is 37.78 degrees Celsius."),
    ("How many feet are in a mile?", "1 mile is 5280 feet."),
    ("Convert 2 kilograms to pounds.", "2 kilograms is 4.41 pounds."),
    ("how many centimeters are in an inch", "1 inch is 2.54 centimeters."),
    ("How many minutes are in a day?", "1 day is 1440 minutes."),
    ("what is 1 mile in meters", "1 mile is 1609.34 meters."),
])
def test_sums_and_conversions_are_computed_and_said_as_people_say_them(question, said):
    assert answer(question).text == said


@pytest.mark.parametrize("question", [
    "What is the capital of France?", "what time is it", "what is 2", "what is the meaning of life",
    "set a timer for 5 minutes", "turn on the kitchen light", "how many legs does a spider have",
    "what is 5 plus the moon", "",
])
def test_what_is_no_sum_is_left_alone(question):
    assert answer(question) is None


def test_impossible_sums_are_said_to_be_so():
    assert answer("what is 10 divided by 0").text == "You can't divide by zero."
    assert answer("what is 9 to the power of 999").text == "That number is too large for me."
    assert answer("what is 5 miles in kilograms").text == "I can't convert miles to kilograms."
    assert math.isnan(answer("what is 10 divided by 0").value)


@pytest.mark.parametrize("expression, value", [
    ("1 + 2 * 3", 7), ("(1 + 2) * 3", 9), ("2 ** 10", 1024), ("7 % 3", 1), ("-4 + 1", -3), ("10 / 4", 2.5),
])
def test_the_evaluator_computes_arithmetic(expression, value):
    assert evaluate(expression) == value


@pytest.mark.parametrize("expression", [
    "__import__('os').system('true')", "open('/etc/passwd')", "(1).real", "[1, 2]", "x + 1", "'a' * 3",
    "lambda: 1", "2 ** 1000", "9 ** 9 ** 9", "1e400", "1 if 1 else 2", "1 < 2", "True + 1", "1 / 0",
    "1" * 300,
])
def test_the_evaluator_refuses_everything_but_numbers_and_operators(expression):
    with pytest.raises(CalculationError):
        evaluate(expression)


def test_numbers_are_said_as_people_say_them():
    assert [spoken_result(v) for v in (180, 180.0, 8.04672, 0.33333, -4.0, 1_000_000, 2.5)] == \
        ["180", "180", "8.05", "0.333", "-4", "1,000,000", "2.5"]
    assert words_to_numbers("twenty one point five and three hundred") == "21.5 and 300"
