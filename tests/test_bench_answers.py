"""The `answers` bench section: its question set, its scorers, and a run through the command
line on a scripted model (what the device knows is right whatever the model says)."""

import datetime
import json

import pytest

from edge_assistant.bench.answers import (
    CATEGORIES, KNOWN_CATEGORIES, Answer, Question, correct, invented, load_questions,
)
from tests.test_bench import run_bench, write_config

ASKED_AT = datetime.datetime(2026, 12, 7, 7, 28, 10)


def test_the_question_set_covers_every_category_with_at_least_60_questions():
    questions = load_questions()
    assert len(questions) >= 60
    assert {q.category for q in questions} == set(CATEGORIES)
    assert len({q.text for q in questions if q.category in ("arithmetic", "conversions", "knowledge", "unknown")}) \
        == sum(q.category in ("arithmetic", "conversions", "knowledge", "unknown") for q in questions)


def scored(question: Question, text: str, source: str = "llm", actions=(), alarms=()) -> tuple[bool, str]:
    answer = Answer(question, text, source, list(actions))
    return correct(question, answer, ASKED_AT), invented(question, answer, ASKED_AT, list(alarms))


def test_times_are_right_only_when_they_are_the_devices():
    question = Question("What time is it?", "time", {"time": True})
    assert scored(question, "It is 7:28 AM.", "device") == (True, "")
    assert scored(question, "It is 7:29.", "device") == (True, "")
    # The "12:03 p.m." at 07:28: wrong, and invented.
    assert scored(question, "12:03 p.m.") == (False, "a time")


def test_timer_talk_not_from_the_timers_is_invented():
    question = Question("How much time is left on my timer?", "timers", {"regex": "no timers"})
    assert scored(question, "No timers.", "timers") == (True, "")
    assert scored(question, "Two hours.") == (False, "a timer")


def test_actions_and_device_claims_are_checked():
    question = Question("Turn on the kitchen light.", "devices", {"action": "light.kitchen_light/turn_on"})
    done = [{"entity": "light.kitchen_light", "action": "turn_on", "outcome": "done"}]
    assert scored(question, "Turned on the light.", "home", done) == (True, "")
    other = [{"entity": "light.living_room_lamp", "action": "turn_on", "outcome": "done"}]
    assert scored(question, "Turned on the lamp.", "llm", other) == (False, "an action")
    # The "The kitchen lights are on." with nothing sent.
    assert scored(question, "The kitchen lights are on.") == (False, "an action or a device")
    state = Question("What is the temperature in the living room?", "devices", {"number": 21.5})
    assert scored(state, "20 degrees Celsius") == (False, "a device state")
    unknown = Question("Turn on the garage light.", "devices", {"unknown": True})
    assert scored(unknown, "Sorry, I don't know that device.", "device") == (True, "")


def test_alarm_times_may_be_said():
    question = Question("Cancel my alarm.", "alarms", {"regex": "cancel"})
    seven = datetime.datetime(2026, 12, 8, 7, 0)
    assert scored(question, "Alarm for 7 AM tomorrow cancelled.", "timers", alarms=[seven]) == (True, "")


def test_numbers_keywords_and_dont_knows():
    assert scored(Question("q", "conversions", {"number": 8.05}), "5 miles is 8.05 kilometers.", "device")[0]
    assert not scored(Question("q", "arithmetic", {"number": 180}), "15 times 8 = 120.")[0]
    assert scored(Question("q", "knowledge", {"keywords": ["paris"]}), "Paris.")[0]
    assert scored(Question("q", "unknown", {"unknown": True}), "I don't know your neighbour's name.")[0]
    assert not scored(Question("q", "unknown", {"unknown": True}), "His name is Mr. Smith.")[0]


@pytest.mark.slow
def test_answers_section_scores_every_category_the_device_knows_in_full(tmp_path, scripted_gguf):
    """The scripted model says "It is sunny. Bring a hat!" to everything: the device's own
    answers are all right, nothing is invented, and the model's categories are scored too."""
    out = tmp_path / "bench.json"
    done = run_bench(write_config(tmp_path, scripted_gguf), "--only", "answers", "--json", str(out))
    assert done.returncode == 0, done.stderr
    values = json.loads(out.read_text())
    assert values["answers.questions"] == len(load_questions())
    for category in KNOWN_CATEGORIES:
        assert values[f"answers.{category}"] == 1.0, (category, values["answers.misses"])
        assert values[f"targets.answers.{category}"] == "PASS"
    assert values["answers.invented"] == 0, values["answers.invented_answers"]
    assert values["answers.knowledge"] == 0.0 and values["answers.model"] == "tiny-chat"
    assert "answers.invented" in done.stdout
