"""What the device knows is said from the device: its clock, its calculator, its volume."""

import datetime

import pytest

from edge_assistant.facts import DeviceFacts, is_home_command, normalized

# Monday 7 December 2026, 07:28:40 UTC.
NOW = datetime.datetime(2026, 12, 7, 7, 28, 40, tzinfo=datetime.timezone.utc).timestamp()


def facts(**parts) -> DeviceFacts:
    return DeviceFacts(clock=lambda: NOW, tz=datetime.timezone.utc, **parts)


@pytest.mark.parametrize("question, said", [
    ("What time is it?", "It is 7:28 AM."),
    ("Hey, what's the time?", "It is 7:28 AM."),
    ("Can you tell me the time please?", "It is 7:28 AM."),
    ("Do you know what time it is?", "It is 7:28 AM."),
    ("What is the current time?", "It is 7:28 AM."),
    ("What's the date today?", "Today is Monday, December 7, 2026."),
    ("What is today's date?", "Today is Monday, December 7, 2026."),
    ("What day is it today?", "Today is Monday."),
    ("What day of the week is it?", "Today is Monday."),
    ("What day is tomorrow?", "Tomorrow is Tuesday, December 8, 2026."),
    ("What month is it?", "It is December."),
    ("What year is it?", "It is 2026."),
    ("What is 15 times 12?", "15 times 12 is 180."),
    ("Convert 5 miles to kilometers.", "5 miles is 8.05 kilometers."),
])
def test_the_clock_and_the_calculator_answer(question, said):
    assert facts().answer(question).text == said


def test_an_afternoon_time_is_said_with_pm():
    afternoon = DeviceFacts(clock=lambda: NOW + 12 * 3600 + 5 * 60 - 40, tz=datetime.timezone.utc)
    assert afternoon.answer("what time is it").text == "It is 7:33 PM."


def test_volume_and_mute_come_from_the_device():
    device = facts(volume=lambda: 0.6, muted=lambda: True)
    assert device.answer("What is the volume?").text == "My volume is 60 percent."
    assert device.answer("Are you muted?").text == "Yes, my microphone is muted."
    assert facts(muted=lambda: False).answer("are you muted").text == "No, my microphone is on."
    # Where the device cannot know, it says so rather than guess.
    assert "can't tell" in facts().answer("what's your volume").text
    assert "can't tell" in facts().answer("are you muted").text


@pytest.mark.parametrize("question", [
    "What time is my alarm?", "What is the capital of France?", "How much time is left on my timer?",
    "Turn on the kitchen light", "what time does the shop open", "tell me a joke", "time flies",
    "what is the date of the battle of Hastings", "x" * 500,
])
def test_other_questions_are_not_taken_for_facts(question):
    assert facts().answer(question) is None


@pytest.mark.parametrize("text", [
    "Turn on the kitchen light.", "turn the kitchen lights off", "Switch off the fan", "open the garage door",
    "Is the kitchen light on?", "lock the front door", "set the thermostat to 21 degrees",
    "Please turn off all the lights", "are the blinds closed", "what's the temperature in the kitchen",
])
def test_home_commands_are_recognized(text):
    assert is_home_command(text)


@pytest.mark.parametrize("text", [
    "What is the capital of France?", "set a timer for 5 minutes", "is the timer on", "stop",
    "turn up the music in my heart", "what time is it", "open your mind",
])
def test_other_sentences_are_not_home_commands(text):
    assert not is_home_command(text)


def test_politeness_is_set_aside():
    assert normalized("Hey Jarvis, please, what's the time now?") == "what's the time"
