"""What the assistant says after acting on the home or reading it.

Intent responses come from the home-assistant-intents package for the language: trusted
templates shipped with the package (never device data), rendered in Jinja's immutable sandbox
with the matched slots, the first targeted entity as ``state`` and ``query.matched`` /
``query.unmatched`` as Home Assistant provides them. Device names and states enter only as
values, already cleaned and bounded. Where no template exists (tool calls from the LLM,
outcomes such as a device that did not answer, confirmation questions) short sentences of our
own are used (English). Every text is bounded by `MAX_SPEECH_CHARS`.
"""

from __future__ import annotations

import datetime
import functools
import logging
import re
from dataclasses import dataclass
from typing import Any, Iterable

from jinja2 import TemplateError
from jinja2.sandbox import ImmutableSandboxedEnvironment

from ..number_words import spoken_number
from .actions import WORKED, StepResult, Step
from .entities import Entity
from .intents import Language, Match
from .outcomes import StepOutcome

log = logging.getLogger(__name__)

MAX_SPEECH_CHARS = 400

# What a failed step sounds like.
OUTCOME_SENTENCES = {
    StepOutcome.NO_ANSWER: "{name} did not answer.",
    StepOutcome.OFFLINE: "{name} is offline.",
    StepOutcome.NOT_EXPOSED: "Sorry, {name} is not exposed.",
    StepOutcome.READ_ONLY: "Sorry, I can only read {name}.",
    StepOutcome.UNSUPPORTED: "{name} cannot do that.",
    StepOutcome.RATE_LIMITED: "{name} just got a command; try again in a moment.",
    StepOutcome.NOT_FOUND: "Sorry, I don't know that device.",
}
PAST = {
    "turn_on": "Turned on the {name}", "turn_off": "Turned off the {name}", "toggle": "Toggled the {name}",
    "set_brightness": "Set the {name} to {brightness} percent", "set_color": "Set the {name} to {color}",
    "set_color_temp": "Set the {name} to {color_temp_kelvin} kelvin",
    "set_percentage": "Set the {name} to {percentage} percent", "open": "Opened the {name}",
    "close": "Closed the {name}", "stop": "Stopped the {name}",
    "set_position": "Set the {name} to {position} percent",
    "set_tilt_position": "Tilted the {name} to {tilt_position} percent", "lock": "Locked the {name}",
    "unlock": "Unlocked the {name}", "press": "Pressed the {name}", "activate": "Activated the {name}",
    "set_temperature": "Set the {name} to {temperature} degrees", "set_hvac_mode": "Set the {name} to {hvac_mode}",
    "arm_away": "Armed the {name}", "arm_home": "Armed the {name} in home mode", "disarm": "Disarmed the {name}",
}
QUESTION = {
    "turn_on": "Turn on the {name}?", "turn_off": "Turn off the {name}?", "toggle": "Toggle the {name}?",
    "open": "Open the {name}?", "close": "Close the {name}?", "stop": "Stop the {name}?",
    "set_position": "Set the {name} to {position} percent?", "lock": "Lock the {name}?",
    "unlock": "Unlock the {name}?", "arm_away": "Arm the {name}?", "arm_home": "Arm the {name} in home mode?",
    "disarm": "Disarm the {name}?",
}
# Home Assistant's English names of binary sensor states, per device class.
_BINARY_STATES = {
    ("door", "garage_door", "opening", "window"): ("open", "closed"),
    ("motion", "occupancy", "presence"): ("detected", "clear"),
    ("moisture",): ("wet", "dry"),
}


@functools.lru_cache(maxsize=1)
def _environment() -> ImmutableSandboxedEnvironment:
    return ImmutableSandboxedEnvironment(autoescape=False)


@functools.lru_cache(maxsize=256)
def _compiled(text: str) -> Any:
    return _environment().from_string(text)


# Device values to one decimal (100, 22, 22.5, never 100.0), still numbers for the templates.
DEVICE_DECIMALS = 1


def _spoken_values(values: dict[str, Any]) -> dict[str, Any]:
    return {k: spoken_number(v, DEVICE_DECIMALS) for k, v in values.items()}


def bounded(text: str) -> str:
    text = " ".join(text.split())
    if len(text) > MAX_SPEECH_CHARS:
        text = text[: MAX_SPEECH_CHARS - 1].rsplit(" ", 1)[0] + "…"
    return text


def sentence(text: str) -> str:
    text = bounded(text)
    if text and text[-1] not in ".!?…":
        text += "."
    return text[:1].upper() + text[1:]


@dataclass(frozen=True)
class TemplateState:
    """An entity as the response templates see it (Home Assistant's `state` objects)."""

    entity_id: str
    domain: str
    name: str
    state: str
    state_with_unit: str
    attributes: dict

    @classmethod
    def of(cls, entity: Entity) -> "TemplateState":
        spoken = spoken_state(entity)
        unit = entity.options.get("unit_of_measurement", "")
        with_unit = f"{spoken} {unit}" if unit and spoken not in ("unknown", "unavailable") else spoken
        attributes = {"device_class": entity.device_class, "friendly_name": entity.name, **entity.state}
        return cls(entity.entity_id, entity.domain, entity.name, spoken, with_unit, attributes)

    def __str__(self) -> str:
        return self.state


def spoken_state(entity: Entity) -> str:
    if entity.available is False:
        return "unavailable"
    state = str(entity.state.get("state", "unknown"))
    if entity.domain == "binary_sensor" and state in ("on", "off"):
        for classes, words in _BINARY_STATES.items():
            if entity.device_class in classes:
                return words[0] if state == "on" else words[1]
    if entity.domain == "climate" and "current_temperature" in entity.state and state == "unknown":
        return str(spoken_number(entity.state["current_temperature"], DEVICE_DECIMALS))
    return state


class Speech:
    def __init__(self, language: Language) -> None:
        self.language = language

    def render(self, template: str | None, **values: Any) -> str | None:
        if not template:
            return None
        try:
            return bounded(_compiled(template).render(**values))
        except (TemplateError, TypeError, ValueError, KeyError, AttributeError) as error:
            log.warning("home: response template failed: %s", error)
            return None

    def intent_response(self, match: Match, states: list[Entity], matched: list[Entity] | None = None,
                        unmatched: list[Entity] | None = None, **slots: Any) -> str | None:
        template = self.language.responses.get(match.intent, {}).get(match.response_key)
        matched = states if matched is None else matched
        unmatched = unmatched or []
        first = (matched or unmatched or [None])[0]
        return self.render(
            template,
            slots=_spoken_values({**match.slots, **slots}),
            state=TemplateState.of(first) if first is not None else None,
            query={"matched": [TemplateState.of(e) for e in matched],
                   "unmatched": [TemplateState.of(e) for e in unmatched]},
        )

    def error(self, key: str, words: dict[str, str]) -> str:
        template = self.language.errors.get(key) or self.language.errors.get("no_intent")
        return sentence(self.render(template, **words) or "Sorry, I couldn't do that")

    def time_or_date(self, match: Match, now: datetime.datetime) -> str:
        text = self.intent_response(match, [], time=now.time(), date=now.date())
        if text:
            return text
        return now.strftime("%H:%M") if match.intent == "HassGetCurrentTime" else now.strftime("%B %d, %Y")

    def control(self, match: Match | None, results: list[StepResult], states: list[Entity]) -> str:
        """Speech after performing steps: the intent's response for what worked (or our own
        sentence for tool calls), then what did not."""
        worked = [r for r in results if r.outcome in WORKED]
        failed = [r for r in results if r not in worked]
        parts: list[str] = []
        if worked:
            text = None
            if match is not None:
                done = [e for e in states if e.entity_id in {r.entity_id for r in worked}]
                text = self.intent_response(match, done)
            if not text:
                text = "; ".join(past_tense(r, match) for r in worked[:3])
                if len(worked) > 3:
                    text += f" and {len(worked) - 3} more"
            parts.append(sentence(text))
        for result in failed[:3]:
            parts.append(OUTCOME_SENTENCES.get(result.outcome, "{name} failed.").format(name=result.name))
        if len(failed) > 3:
            parts.append(f"{len(failed) - 3} more did not work either.")
        return bounded(" ".join(parts))


def past_tense(result: StepResult, match: Match | None = None, args: dict[str, Any] | None = None) -> str:
    values = {"name": result.name, **(args or {})}
    if match is not None:
        values.update({k: v for k, v in match.slots.items() if k != "name"})
    values = _spoken_values(values)
    try:
        return PAST.get(result.action, "Done: {name}").format(**values)
    except (KeyError, IndexError):
        return f"Done: {result.name}"


def question(steps: Iterable[Step], names: dict[str, str]) -> str:
    """"Unlock the front door?" for the first step needing a yes; more steps are counted."""
    steps = list(steps)
    first = steps[0]
    values = _spoken_values({"name": names.get(first.entity_id, first.entity_id), **first.args})
    try:
        text = QUESTION.get(first.action, "Go ahead with the {name}?").format(**values)
    except (KeyError, IndexError):
        text = f"Go ahead with the {values['name']}?"
    if len(steps) > 1:
        text = text[:-1] + f", and {len(steps) - 1} more?"
    return bounded(text)


_NO = re.compile(r"\b(no|nope|not|don'?t|do not|cancel|stop|wait|never)\b")
_YES = re.compile(
    r"^(yes|yeah|yep|yup|sure|ok|okay|do it|go ahead|confirm|confirmed|please do|affirmative|"
    r"correct|right|of course|absolutely|certainly)\b"
)


_NO_WORDS = ("no", "nope", "nah", "negative")
_NO_PHRASES = ("cancel", "stop", "wait", "don't", "dont", "do not", "never mind", "nevermind", "not now",
               "forget it", "leave it")
_FILLER = frozenset("it that this please thanks thank you do don't no now anything nothing mind never".split())


def _words(answer: str) -> str:
    return " ".join(re.sub(r"[^\w\s']", " ", answer.casefold()).split())


def is_no(answer: str) -> bool:
    """A spoken refusal: "no", "no thanks", "cancel that", "don't"; not a new request that
    happens to start like one ("stop the kitchen blinds")."""
    text = _words(answer)
    if not text:
        return False
    if text.split()[0] in _NO_WORDS:
        return True
    for phrase in _NO_PHRASES:
        if text == phrase or text.startswith(phrase + " ") and set(text[len(phrase):].split()) <= _FILLER:
            return True
    return False


def is_yes(answer: str) -> bool:
    """A spoken confirmation: "yes", "yeah, do it", "okay go ahead"; anything with a no in it
    ("yes, no wait") is not one."""
    text = _words(answer)
    return bool(_YES.match(text)) and not _NO.search(text)
