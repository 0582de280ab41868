"""One request answered: what the device knows, the home's templates and the timers first,
then the LLM, which may act on the home through its tools.

    responder = Responder(session, home=home_control, timers=timer_intents, facts=DeviceFacts())
    async for sentence in responder.sentences(text, cancel, response, emit):
        ...   # speak it

The time, the date, sums and conversions, the device's volume (facts.py), a template match and
a timer run with no LLM call (fast on a Pi); a command for the home while the home cannot be
reached is said to be out of reach. Only the rest reaches the model, and then, when devices are
exposed, under a grammar (llama.cpp) or as OpenAI tools (a server) that can name nothing but an
exposed device and an action it supports. What a device did is said as it happened (done, did
not answer, offline), never as the model guessed, and a reply of the model's that claims what
only the device knows, or repeats its prompt, is not spoken (reply_guard.py). The daemon, `ask`
and `bench` build this the same way (assembly.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import threading
import time
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any, AsyncIterator, Awaitable, Callable, Protocol

from .thinking.chat import ChatSession, Generation, Reply
from .concurrency import iterate_in_thread
from .events import EventType
from .facts import DeviceFacts, Fact, is_home_command
from .home.outcomes import HomeOutcome, StepOutcome
from .thinking.reply_guard import ReplyGuard
from .thinking.sentences import SentenceSplitter
from .thinking.tool_schema import gbnf, openai_tools

log = logging.getLogger(__name__)

NOT_UNDERSTOOD = "Sorry, I did not understand that."
# Home Assistant's intent for "what's the temperature in the kitchen", answered here.
TEMPERATURE_INTENT = "HassClimateGetTemperature"
HOME_UNREACHABLE = "Sorry, I can't reach your home's devices right now."
NO_HOME = "Sorry, I have no home devices to control."
NO_SUCH_DEVICE = "Sorry, I don't know that device."
# Appended to the system prompt, before the device list, when the model may act.
TOOL_INSTRUCTIONS = (
    "You can control the devices listed below, only those the request names or clearly means "
    "(by name, area, floor or kind of device). To act, reply with only a JSON object such as "
    '{"tool": "turn_off", "entity_id": ["light.kitchen", "light.hall"]}. If it is not clear '
    'which device is meant, ask, e.g. {"answer": "Which light do you mean?"}. To answer without '
    'acting, reply {"answer": ...} with what you would say.\n'
    "Devices (id; name; area (floor); type; actions):\n"
)

Emit = Callable[[EventType, dict[str, Any]], None]
# Awaited before anything that acts or answers without the LLM, when the text may yet change
# (stt.first_pass): returns once it is known to stand, raises if not.
Hold = Callable[[], Awaitable[None]]


class HomeResultLike(Protocol):
    speech: str
    intent: dict[str, Any] | None
    actions: list[dict[str, Any]]
    awaiting_confirmation: bool
    handled: bool
    outcome: StepOutcome | HomeOutcome
    match: Any


class Home(Protocol):
    """What answering needs of the home (home.assistant.HomeControl)."""

    awaiting_confirmation: bool

    async def handle(self, text: str, *, dry_run: bool = False) -> HomeResultLike | None: ...

    async def confirm(self, answer: str) -> HomeResultLike: ...

    async def run_tool_call(self, call: Any, *, dry_run: bool = False, request: str | None = None) -> HomeResultLike: ...

    def toolbox(self) -> Any: ...


class TimerReplyLike(Protocol):
    text: str
    ok: bool
    code: str | None
    follow_up: bool


class Timers(Protocol):
    """What answering needs of the timers (timers.TimerIntentHandler)."""

    def handle_intent(self, intent_name: str, slots: dict[str, Any]) -> TimerReplyLike: ...


class ResponseSource(StrEnum):
    """Who answered a request (the `reply` event's `source`)."""

    NONE = ""  # nobody yet (cancelled first)
    DEVICE = "device"  # what the device itself knows (facts.py)
    HOME = "home"  # the home: a template matched, a thermometer read
    TIMERS = "timers"
    LLM = "llm"  # the model, with or without a tool call


@dataclass
class Response:
    """What answering one request did, filled in as it goes."""

    source: ResponseSource = ResponseSource.NONE
    # The LLM's reply (counts, timings), when the model answered.
    reply: Reply | None = None
    # What was said, for the history and the `reply` event.
    text: str = ""
    # A question was asked (a yes/no, "which timer?"): the answer needs no wake word.
    listen_for_answer: bool = False
    intent: dict[str, Any] | None = None
    actions: list[dict[str, Any]] = field(default_factory=list)

    @property
    def for_history(self) -> bool:
        """Whether the LLM's history keeps this turn: only what the model answered. A turn of
        the templates (home, timers) would lengthen every later prompt for nothing, so a
        fallback costs the same after a hundred commands as after the first."""
        return self.source == ResponseSource.LLM


class Responder:
    def __init__(self, session: ChatSession, *, home: Home | None = None, timers: Timers | None = None,
                 recognize_timers: Callable[[str], tuple[str, dict[str, Any]] | None] | None = None,
                 facts: DeviceFacts | None = None, home_configured: bool = False) -> None:
        self.session = session
        self.home = home
        self.timers = timers
        # Timer intents on their own, when there is no home to recognize them with.
        self.recognize_timers = recognize_timers
        self.facts = facts
        # The config asks for a home (over MQTT): without `home`, it is out of reach.
        self.home_configured = home_configured
        builder = getattr(session, "builder", None)
        system_prompt = getattr(getattr(builder, "config", None), "system_prompt", "")
        self.guard = ReplyGuard((system_prompt, TOOL_INSTRUCTIONS))

    def tool_context(self) -> tuple[str, Any]:
        """The device list for the system prompt and the toolbox; ("", None) with nothing to
        act on. The text changes only when the set of devices does (no states), so the prompt
        prefix stays in the KV cache."""
        if self.home is None:
            return "", None
        toolbox = self.home.toolbox()
        if not toolbox.targets:
            return "", None
        return TOOL_INSTRUCTIONS + toolbox.prompt_context(), toolbox

    async def sentences(self, text: str, cancel: threading.Event, response: Response, emit: Emit,
                        *, dry_run: bool = False, hold: Hold | None = None) -> AsyncIterator[str]:
        """The answer to `text`, sentence by sentence, as soon as each is known.

        `hold`: `text` is a first guess (stt.first_pass). Only the LLM starts on it; the home,
        the timers and the device's own answers, and the LLM's tool calls, wait for `hold()`.
        The caller holds what is yielded and emitted meanwhile."""
        held = hold is not None
        hold = hold or _nothing_to_wait_for
        if self.home is not None and self.home.awaiting_confirmation:
            await hold()
            result = await self.home.confirm(text)
            if result.outcome != HomeOutcome.NOTHING_PENDING:
                for sentence in self._home_result(result, response, emit):
                    yield sentence
                return
        fact = self.facts.answer(text) if self.facts is not None else None
        if fact is not None:
            await hold()
            for sentence in self._fact(fact, response, emit):
                yield sentence
            return
        if self.home is not None:
            result = await self.home.handle(text, dry_run=dry_run or held)
            if held and result is not None:
                # A template fits: nothing is done until the text stands, then it is done.
                await hold()
                result = await self.home.handle(text, dry_run=dry_run)
            if result is not None and result.handled:
                for sentence in self._home_result(result, response, emit):
                    yield sentence
                return
            if result is not None and result.match.intent == TEMPERATURE_INTENT:
                for sentence in self._temperature(result.match.slots, result.intent, response, emit):
                    yield sentence
                return
            if result is not None and self.timers is not None:
                for sentence in self._timer_intent(result.match.intent, result.match.slots, result.intent,
                                                   response, emit):
                    yield sentence
                return
        elif self.timers is not None and self.recognize_timers is not None:
            recognized = await asyncio.to_thread(self.recognize_timers, text)
            if recognized is not None:
                await hold()
                name, slots = recognized
                intent = {"name": name, "slots": _plain(slots), "entities": [], "source": "template",
                          "match_ms": None}
                for sentence in self._timer_intent(name, slots, intent, response, emit):
                    yield sentence
                return
        refusal = self._out_of_reach(text)
        if refusal is not None:
            await hold()
            for sentence in self._fact(refusal, response, emit):
                yield sentence
            return
        async for sentence in self._llm(text, cancel, response, emit, dry_run, hold):
            yield sentence

    # -- what the device knows ----------------------------------------------------------------

    def _fact(self, fact: Fact, response: Response, emit: Emit) -> list[str]:
        response.source = ResponseSource.DEVICE
        response.intent = {"name": fact.intent, "slots": {}, "entities": [], "source": "device",
                           "match_ms": None}
        emit(EventType.INTENT, response.intent)
        if fact.error:
            emit(EventType.ERROR, {"code": fact.error, "message": fact.text})
        return self._said(fact.text, response)

    def home_reachable(self) -> bool:
        if self.home is None:
            return False
        connection = getattr(self.home, "connection", None)
        return connection is None or bool(getattr(connection, "connected", True))

    def _out_of_reach(self, text: str) -> Fact | None:
        """A command for the home that nothing here can do: said so, never guessed at by the LLM
        (which would claim it done)."""
        if not is_home_command(text):
            return None
        if self.home is None and not self.home_configured:
            return Fact(NO_HOME, "EdgeHomeCommand", "not_understood")
        if not self.home_reachable():
            return Fact(HOME_UNREACHABLE, "EdgeHomeCommand", "home_unreachable")
        if self.home is not None and not _names_a_device(text, self.home.toolbox()):
            # No template matched and no device or area of the home is named: the model would
            # pick some device, or claim one.
            return Fact(NO_SUCH_DEVICE, "EdgeHomeCommand", "not_understood")
        return None

    # -- the home and the timers --------------------------------------------------------------

    def _home_result(self, result: HomeResultLike, response: Response, emit: Emit) -> list[str]:
        response.source = ResponseSource.HOME
        response.intent = result.intent
        response.actions = list(result.actions)
        response.listen_for_answer = result.awaiting_confirmation
        if result.intent is not None:
            emit(EventType.INTENT, result.intent)
        for action in result.actions:
            emit(EventType.ACTION, action)
        if result.outcome == StepOutcome.NOT_FOUND:
            # A command for a device or area the home does not have.
            emit(EventType.ERROR, {"code": "not_understood", "message": result.speech})
        return self._said(result.speech, response)

    def _timer_intent(self, name: str, slots: dict[str, Any], intent: dict[str, Any] | None,
                      response: Response, emit: Emit) -> list[str]:
        assert self.timers is not None
        response.source = ResponseSource.TIMERS
        response.intent = intent
        if intent is not None:
            emit(EventType.INTENT, intent)
        reply = self.timers.handle_intent(name, slots)
        if not reply.ok and reply.code:
            emit(EventType.ERROR, {"code": reply.code, "message": reply.text})
        response.listen_for_answer = reply.follow_up
        return self._said(reply.text, response)

    def _temperature(self, slots: dict[str, Any], intent: dict[str, Any] | None, response: Response,
                     emit: Emit) -> list[str]:
        """"What's the temperature in the living room?": read from the home's thermometers and
        thermostats there, never guessed."""
        assert self.home is not None
        response.source = ResponseSource.HOME
        response.intent = intent
        if intent is not None:
            emit(EventType.INTENT, intent)
        area = _words(str(slots.get("area") or ""))
        for entity in self.home.toolbox().entities.values():
            if area and _words(entity.area) != area:
                continue
            reading = _temperature_of(entity)
            if reading is not None:
                where = f" in the {slots['area']}" if area else ""
                return self._said(f"It is {reading}{where}.", response)
        emit(EventType.ERROR, {"code": "not_understood", "message": "no thermometer there"})
        return self._said("Sorry, I have no thermometer there.", response)

    # -- the LLM ------------------------------------------------------------------------------

    async def _llm(self, text: str, cancel: threading.Event, response: Response, emit: Emit,
                   dry_run: bool, hold: Hold) -> AsyncIterator[str]:
        response.source = ResponseSource.LLM
        context, toolbox = self.tool_context()
        prompt = await asyncio.to_thread(self.session.prepare, text, context)
        if prompt.dropped_turns or prompt.trimmed_chars:
            emit(EventType.PROMPT_TRIMMED,
                 {"dropped_turns": prompt.dropped_turns, "trimmed_chars": prompt.trimmed_chars})
        if toolbox is not None:
            # One schema of the tools, as a grammar for llama.cpp and as tools for a server.
            schema = toolbox.schema()
            prompt = replace(prompt, grammar=gbnf(schema), tools=tuple(openai_tools(schema)))
        reply = Reply(prompt, Generation())
        response.reply = reply
        # Leaving the stream early stops the model through this, not through the turn's `cancel`:
        # a refused reply is not a barge-in.
        stop = _Stop(cancel)
        sentences = self.session.sentences(prompt, stop, reply)
        spoken: list[str] = []
        refused = None
        # A command or question for the home is answered by the home (a tool call), never in
        # the model's own words: those would say a device did what nothing did, or is in a
        # state nothing reported.
        home_request = toolbox is not None and is_home_command(text)
        # Closed on every way out, so the worker has stopped writing `reply` before it is read.
        async with contextlib.aclosing(iterate_in_thread(sentences, stop)) as stream:
            async for sentence in stream:
                if cancel.is_set():
                    break
                refused = self.guard.refusal(sentence) or (
                    "answers a request for the home in its own words" if home_request else None)
                if refused is not None:
                    break  # the rest is not generated: leaving the stream stops the model
                spoken.append(sentence)
                yield sentence
        response.text = " ".join(spoken)
        if refused is not None:
            for sentence in self._refused(refused, spoken, response, emit):
                yield sentence
            return
        if cancel.is_set() or not reply.tool_call:
            if not cancel.is_set() and not reply.sentences and toolbox is not None:
                emit(EventType.ERROR, {"code": "not_understood", "message": "the model gave no answer"})
            return
        await hold()  # a tool call acts: only on a text that stands
        for sentence in await self._tool_call(text, reply.tool_call, toolbox, response, emit, dry_run):
            yield sentence

    async def _tool_call(self, text: str, output: str, toolbox: Any, response: Response, emit: Emit,
                         dry_run: bool) -> list[str]:
        from .home.tools import Answer, ToolError

        try:
            call = toolbox.parse(output)
        except ToolError as error:
            log.warning("the model's tool call was refused: %s", error)
            emit(EventType.ERROR, {"code": "not_understood", "message": f"invalid tool call: {error}"})
            return self._said(NOT_UNDERSTOOD, response)
        if isinstance(call, Answer):
            refused = self.guard.refusal(call.text)
            if refused is None and is_home_command(text):
                refused = "answers a request for the home in its own words"
            if refused is not None:
                return self._refused(refused, [], response, emit)
            return self._said(call.text, response)
        if call.entity_id not in toolbox.entities:
            return self._refused(f"acts on {call.entity_id}, which the request did not mention",
                                 [], response, emit)
        assert self.home is not None
        result = await self.home.run_tool_call(call, dry_run=dry_run, request=text)
        said = self._home_result(result, response, emit)
        response.source = ResponseSource.LLM
        return said

    def _refused(self, reason: str, spoken: list[str], response: Response, emit: Emit) -> list[str]:
        """A reply the model must not give (reply_guard): not understood, said only if nothing of
        the reply was spoken before it."""
        log.info("the model's reply was not spoken: it %s", reason)
        emit(EventType.ERROR, {"code": "not_understood", "message": f"the model's reply {reason}"})
        if spoken:
            return []
        return self._said(NOT_UNDERSTOOD, response)

    def _said(self, text: str, response: Response) -> list[str]:
        splitter = SentenceSplitter()
        sentences = [*splitter.feed(text), *splitter.flush()]
        response.text = " ".join(part for part in (response.text, *sentences) if part)
        return sentences


async def _nothing_to_wait_for() -> None:
    return None


def _words(value: str) -> str:
    """Lower-case words without a plural s: "the Kitchen Lights" -> "the kitchen light"."""
    return " ".join(word.removesuffix("s") for word in re.findall(r"\w+", value.casefold()))


def _names(entity: Any) -> list[str]:
    """How a request may name `entity`: its name, its area, its floor, and a long name without
    its last word ("Front Door Lock": "front door")."""
    name = _words(entity.name or "")
    names = [name, _words(entity.area or ""), _words(getattr(entity, "floor", "") or "")]
    if len(name.split()) >= 3:
        names.append(name.rsplit(" ", 1)[0])
    return [n for n in names if n]


def _said(text: str, phrases: Any) -> bool:
    said = f" {_words(text)} "
    return any(f" {_words(phrase)} " in said for phrase in phrases if _words(phrase))


def _names_a_device(text: str, toolbox: Any) -> bool:
    """Whether `text` names a device or an area of those the model could act on (plurals
    too: "the kitchen lights" names "Kitchen Light")."""
    return any(_said(text, _names(entity)) for entity in getattr(toolbox, "entities", {}).values())


def _temperature_of(entity: Any) -> str | None:
    """A thermometer's or thermostat's reading with its unit ("21.5 °C"), or None."""
    if entity.available is False:
        return None
    unit = entity.options.get("unit_of_measurement", "") or entity.options.get("temperature_unit", "")
    if entity.domain == "sensor" and entity.device_class == "temperature":
        value = entity.state.get("state")
    elif entity.domain == "climate":
        value = entity.state.get("current_temperature")
    else:
        return None
    if value in (None, "", "unknown", "unavailable"):
        return None
    # Said as words: a voice reads "°C" as letters.
    unit = {"°C": "degrees Celsius", "°F": "degrees Fahrenheit", "C": "degrees Celsius",
            "F": "degrees Fahrenheit"}.get(unit, unit)
    return f"{value} {unit}".strip()


class _Stop(threading.Event):
    """Set when the turn is cancelled or when this generation is left early."""

    POLL_S = 0.05

    def __init__(self, turn: threading.Event) -> None:
        super().__init__()
        self.turn = turn

    def is_set(self) -> bool:
        return super().is_set() or self.turn.is_set()

    def wait(self, timeout: float | None = None) -> bool:
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self.is_set():
            left = self.POLL_S if deadline is None else min(self.POLL_S, deadline - time.monotonic())
            if left <= 0:
                return False
            super().wait(left)
        return True


def _plain(slots: dict[str, Any]) -> dict[str, Any]:
    return {k: getattr(v, "value", v) for k, v in slots.items()
            if isinstance(getattr(v, "value", v), (str, int, float, bool))}
