"""The `answers` section: does the assistant say what is true, and never make up what the
device knows?

The questions (edge_assistant/data/bench_answers.yaml: the clock, timers, alarms, the home,
the device itself, sums, conversions, general knowledge, and questions where "I don't know" is
right) are asked in order, each with a fresh conversation, of a responder built as the daemon
builds it (`assembly.build_responder`): empty timers in a temporary state directory, and a home
of four devices that answer their commands (an in-process stand-in for the broker and the
devices' firmware). A few are asked with the broker away. Each answer is scored automatically
(`correct`) and checked for invented things (`invented`): a clock time that is not the device's,
talk of a timer by anything but the timers, an action or a device state the model claims, an
action that was not asked for.

- `answers.<category>`: the share of right answers per category;
- `answers.score`: over all of them; `answers.invented`: the invented answers (target 0);
  `answers.not_understood`: the answers that were "Sorry, I did not understand that.";
- `answers.misses`, `answers.invented_answers`: which questions, and what was said.
"""

from __future__ import annotations

import asyncio
import datetime
import json
import re
import tempfile
import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from ..config import Config
from ..home.outcomes import StepOutcome
from ..respond import NOT_UNDERSTOOD, ResponseSource
from .loaded import LoadedModels, llm_settings
from .options import BenchOptions
from .report import Report

QUESTIONS_PATH = Path(__file__).resolve().parent.parent / "data" / "bench_answers.yaml"
# What the device itself knows: 100% is the target.
KNOWN_CATEGORIES = ("time", "date", "timers", "alarms", "devices", "device", "arithmetic", "conversions")
# What the model knows, or should say it does not: reported, not targeted.
MODEL_CATEGORIES = ("knowledge", "unknown")
CATEGORIES = KNOWN_CATEGORIES + MODEL_CATEGORIES
SCORERS = ("time", "date", "weekday", "today", "regex", "number", "keywords", "action", "unknown")
PREFIX = "homeassistant"

# The home: discovery configs of a kitchen light (JSON schema), a living room lamp, a bedroom
# fan and a living room thermometer at 21.5 °C.
DEVICES: dict[str, dict[str, Any]] = {
    "light/kitchen_light": {"name": "Kitchen Light", "cmd_t": "home/kitchen/light/set", "stat_t": "home/kitchen/light",
                            "schema": "json", "brightness": True, "dev": {"name": "", "sa": "Kitchen"}},
    "light/living_room_lamp": {"name": "Living Room Lamp", "cmd_t": "home/living/lamp/set",
                               "stat_t": "home/living/lamp", "dev": {"name": "", "sa": "Living Room"}},
    "fan/bedroom_fan": {"name": "Bedroom Fan", "cmd_t": "home/bedroom/fan/set", "stat_t": "home/bedroom/fan",
                        "dev": {"name": "", "sa": "Bedroom"}},
    "sensor/living_room_temperature": {"name": "Living Room Temperature", "stat_t": "home/living/temperature",
                                       "unit_of_meas": "°C", "dev_cla": "temperature",
                                       "dev": {"name": "", "sa": "Living Room"}},
}
INITIAL_STATES = {"home/kitchen/light": '{"state": "OFF"}', "home/living/lamp": "OFF", "home/bedroom/fan": "OFF",
                  "home/living/temperature": "21.5"}

_UNKNOWN = re.compile(
    r"\b(don't|do not|can't|cannot|can not|unable|not able|no way|not sure|no access|did not understand|"
    r"didn't understand|not understood|no information|i'm not|i am not|unknown|sorry|no idea|don't know)\b")
_CLOCK = re.compile(r"\b(\d{1,2}):(\d{2})\b|\b(\d{1,2})\s*(a\.?\s?m\b|p\.?\s?m\b)")
_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?")
_TIMER_TALK = re.compile(r"\b(timer|alarm)s?\b|\b(minutes?|hours?|seconds?)\b.*\b(left|remaining|to go)\b")
_QUANTITY = re.compile(r"\d|\b(one|two|three|four|five|six|seven|eight|nine|ten|minutes?|hours?|seconds?)\b")
_ACTION_CLAIM = re.compile(
    r"\b(turned|switched) (it |them )?(on|off)\b|\b(is|are) (now |currently )?(on|off|open|closed|locked|unlocked)\b"
    r"|\bi( have|'ve|'ll| will)? (turned|switched|set|started|opened|closed|locked|unlocked)\b"
    r"|\bi (have|found) (a|an|the|\d+) ")


@dataclass(frozen=True)
class Question:
    text: str
    category: str
    expect: dict[str, Any]
    # "unreachable": asked of an assistant whose broker is away.
    home: str = "reachable"


@dataclass
class Answer:
    question: Question
    text: str
    source: ResponseSource
    actions: list[dict[str, Any]] = field(default_factory=list)
    correct: bool = False
    # What was made up ("a time", "a timer", "an action", "a device state"), or "".
    invented: str = ""


def load_questions(path: Path = QUESTIONS_PATH) -> list[Question]:
    """The question set, checked: a known category and exactly one scorer each."""
    document = yaml.safe_load(path.read_text(encoding="utf-8"))
    questions = []
    for item in document["questions"]:
        scorers = [key for key in SCORERS if key in item]
        if item.get("category") not in CATEGORIES or len(scorers) != 1 and set(scorers) != {"regex", "today"}:
            raise ValueError(f"{path}: bad question {item!r}")
        expect = {key: item[key] for key in (*SCORERS, "tolerance") if key in item}
        questions.append(Question(item["q"], item["category"], expect, item.get("home", "reachable")))
    return questions


# -- scoring --------------------------------------------------------------------------------------

def _clock_times(moment: datetime.datetime) -> set[str]:
    """How a time may be written: "7:28", "19:28", "7:28 pm" -> normalized "H:MM" on 24 h."""
    return {f"{moment.hour}:{moment.minute:02d}"}


def _said_times(text: str) -> set[str]:
    """Every clock time in `text`, as "H:MM" on a 24-hour clock (both readings without am/pm)."""
    found = set()
    for match in _CLOCK.finditer(text.casefold()):
        if match.group(1):
            hour, minute = int(match.group(1)), int(match.group(2))
            period = re.match(r"\s*([ap])\.?\s?m\b", text.casefold()[match.end():])
        else:
            hour, minute, period = int(match.group(3)), 0, re.match(r"([ap])", match.group(4))
        letter = period.group(1) if period else ""
        if letter:
            hour = hour % 12 + (12 if letter == "p" else 0)
            found.add(f"{hour}:{minute:02d}")
        else:
            found |= {f"{hour % 24}:{minute:02d}", f"{(hour + 12) % 24}:{minute:02d}"}
    return found


def correct(question: Question, answer: Answer, asked_at: datetime.datetime) -> bool:
    expect, text = question.expect, answer.text.casefold()
    if not text.strip():
        return False
    if "time" in expect:
        moments = (asked_at, asked_at + datetime.timedelta(minutes=1), asked_at - datetime.timedelta(minutes=1))
        return bool(_said_times(text) & set().union(*(_clock_times(m) for m in moments)))
    if "date" in expect:
        return asked_at.strftime("%B").casefold() in text and re.search(rf"\b{asked_at.day}(st|nd|rd|th)?\b", text) is not None
    if "weekday" in expect:
        day = asked_at + datetime.timedelta(days=int(expect["weekday"]))
        return day.strftime("%A").casefold() in text
    if "today" in expect:
        return asked_at.strftime(expect["today"]).casefold() in text
    if "regex" in expect:
        return re.search(expect["regex"], text, re.IGNORECASE) is not None
    if "number" in expect:
        tolerance = float(expect.get("tolerance", 0.01))
        numbers = [float(n.replace(",", "")) for n in _NUMBER.findall(text) if n.replace(",", "").strip("-")]
        return any(abs(n - float(expect["number"])) <= tolerance for n in numbers)
    if "keywords" in expect:
        return all(word.casefold() in text for word in expect["keywords"])
    if "action" in expect:
        return (_actions(answer) == {expect["action"]}
                and all(a.get("outcome") == StepOutcome.DONE for a in answer.actions))
    if "unknown" in expect:
        return not answer.actions and _UNKNOWN.search(text) is not None
    raise ValueError(f"no scorer for {question.text!r}")


def _actions(answer: Answer) -> set[str]:
    return {f"{a.get('entity')}/{a.get('action')}" for a in answer.actions}


def invented(question: Question, answer: Answer, asked_at: datetime.datetime, alarms: list[datetime.datetime]) -> str:
    """What the answer made up, or "": an action not asked for, a clock time that is neither
    the device's nor an alarm's, timer talk not from the timers, a claim of the model's."""
    text = answer.text.casefold()
    if _actions(answer) - ({question.expect["action"]} if "action" in question.expect else set()):
        return "an action"
    moments = [asked_at + datetime.timedelta(minutes=delta) for delta in (-1, 0, 1)] + alarms
    legit = set().union(*(_clock_times(m) for m in moments))
    said = _said_times(text)
    if said and not said & legit:
        return "a time"
    if answer.source in (ResponseSource.TIMERS, ResponseSource.DEVICE, ResponseSource.HOME):
        return ""
    if question.category in ("timers", "alarms") and _QUANTITY.search(text):
        return "a timer"
    if _TIMER_TALK.search(text):
        return "a timer"
    if _ACTION_CLAIM.search(text):
        return "an action or a device"
    if question.category == "devices" and not answer.actions and not _UNKNOWN.search(text):
        return "a device state"
    return ""


# -- the home -------------------------------------------------------------------------------------

class InProcessDevices:
    """The broker and the devices' firmware in one: a command is answered at once on the
    device's state topic, as a real light reports its new state."""

    connected = True
    connects = 1

    def __init__(self, home: Any) -> None:
        self.home = home
        self.commands: list[tuple[str, str]] = []
        self._state_of = {body["cmd_t"]: body["stat_t"] for body in DEVICES.values() if "cmd_t" in body}

    def publish(self, topic: str, payload: str | bytes) -> None:
        text = payload.decode() if isinstance(payload, bytes) else payload
        self.commands.append((topic, text))
        state_topic = self._state_of.get(topic)
        if state_topic is not None:
            self.home.handle_message(state_topic, text.encode())

    async def aclose(self) -> None:
        pass


async def simulated_home(config: Config):
    """The home of `DEVICES`, learnt from their discovery configs, with `InProcessDevices` for a
    broker (config.mqtt is off: nothing leaves the process)."""
    from ..assembly import new_home
    from ..home.actions import Executor
    from ..home.discovery import parse_discovery

    control = new_home(config)
    await control.start()  # MQTT off: the templates only
    for where, body in DEVICES.items():
        control.home.apply_discovery(parse_discovery(f"{PREFIX}/{where}/config", json.dumps(body).encode(), PREFIX))
    devices = InProcessDevices(control.home)
    for topic, payload in INITIAL_STATES.items():
        control.home.handle_message(topic, payload.encode())
    control.connection = devices
    control.executor = Executor(control.home, devices.publish, config.home, time.monotonic)
    return control


# -- the section ----------------------------------------------------------------------------------

def bench_answers(loaded: LoadedModels, report: Report, options: BenchOptions) -> None:
    # Greedy, so that two runs of the same model score alike.
    with llm_settings(loaded.session.engine, temperature=0.0, seed=1):
        answers = asyncio.run(ask_all(loaded.config, loaded.session, load_questions()))
    report.values.update(summary(answers, loaded.session.engine.info.name))


def bench_config(config: Config, state_dir: Path) -> Config:
    """The config the questions are asked under: its own state directory, no broker, every
    device exposed, the volume at 100 percent."""
    return replace(
        config,
        service=replace(config.service, state_dir=str(state_dir)),
        mqtt=replace(config.mqtt, enabled=False),
        home=replace(config.home, enabled=True, expose=("*",), min_command_interval_s=0.0),
        audio=replace(config.audio, volume=1.0),
    )


async def ask_all(config: Config, session: Any, questions: list[Question]) -> list[Answer]:
    """Every question asked in order, each with a fresh conversation; the answers scored."""
    from ..assembly import build_responder
    from ..timers import TimerScheduler, TimerStore

    with tempfile.TemporaryDirectory(prefix="edge-assistant-answers-") as state_dir:
        config = bench_config(config, Path(state_dir))
        home = await simulated_home(config)
        scheduler = TimerScheduler(TimerStore(Path(state_dir) / "timers.json"), config.timers)
        await scheduler.start()
        try:
            parts = dict(scheduler=scheduler, volume=lambda: config.audio.volume, muted=lambda: False)
            reachable = build_responder(config, session, home=home, **parts)
            # As `ask` with the broker away: MQTT on, no home.
            away = replace(config, mqtt=replace(config.mqtt, enabled=True))
            unreachable = build_responder(away, session, home=None, **parts)
            answers = []
            for question in questions:
                responder = unreachable if question.home == "unreachable" else reachable
                answers.append(await ask_one(responder, session, scheduler, question))
            return answers
        finally:
            await scheduler.close()
            await home.aclose()


async def ask_one(responder: Any, session: Any, scheduler: Any, question: Question) -> Answer:
    from ..respond import Response

    session.reset()
    alarms = _alarm_times(scheduler)
    asked_at = datetime.datetime.now()
    response = Response()
    said = [sentence async for sentence in responder.sentences(question.text, threading.Event(), response,
                                                              lambda *_: None)]
    answer = Answer(question, " ".join(said), response.source, list(response.actions))
    # An alarm's time may be said when it is set, asked about or cancelled.
    alarms += _alarm_times(scheduler)
    answer.correct = correct(question, answer, asked_at)
    answer.invented = invented(question, answer, asked_at, alarms)
    return answer


def _alarm_times(scheduler: Any) -> list[datetime.datetime]:
    return [datetime.datetime.fromtimestamp(t.ends_at) for t in scheduler.timers("alarm") if t.ends_at]


def summary(answers: list[Answer], model: str) -> dict[str, Any]:
    values: dict[str, Any] = {"answers.model": model, "answers.questions": len(answers)}
    for category in CATEGORIES:
        asked = [a for a in answers if a.question.category == category]
        if asked:
            values[f"answers.{category}"] = round(sum(a.correct for a in asked) / len(asked), 3)
    values["answers.score"] = round(sum(a.correct for a in answers) / len(answers), 3) if answers else None
    values["answers.invented"] = sum(bool(a.invented) for a in answers)
    # Replies of the model's that were refused (reply_guard, a tool call on a device not asked
    # about), or requests nothing could answer.
    values["answers.not_understood"] = sum(a.text == NOT_UNDERSTOOD for a in answers)
    values["answers.misses"] = " | ".join(f"{a.question.text} -> {a.text!r}" for a in answers if not a.correct)
    values["answers.invented_answers"] = " | ".join(
        f"{a.question.text} -> {a.text!r} ({a.invented})" for a in answers if a.invented)
    return values
