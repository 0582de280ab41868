"""`HomeControl`: the home as the pipeline sees it.

    control = HomeControl(config)
    await control.start()                       # connect, learn the devices (bounded wait)
    result = await control.handle("turn on the kitchen light")   # None: no template matched
    if result and result.awaiting_confirmation:  # "Unlock the front door?"
        result = await control.confirm(next_utterance)
    result = await control.run_tool_call(call)   # a `ToolCall` from the LLM (tools.parse)
    await control.aclose()

A `HomeResult` carries the speech, the intent as event data, one event dict per action
({entity, topic, payload, confirmed, latency_ms, ...}) and whether a yes/no is awaited.
Matches of intents the home does not handle (timers) come back with ``handled=False`` for the
caller to route.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping

from ..broker import client_id as mqtt_client_id
from ..config import Config, sanitize_device_id
from .actions import WORKED, Executor, Step, StepResult
from .connection import HomeConnection
from .entities import Entity
from .grounding import Grounding, check_call, ground
from .intents import NO_TARGET_INTENTS, Match, Recognizer
from .outcomes import HomeOutcome, StepOutcome
from .registry import Home
from .responses import (
    OUTCOME_SENTENCES, Speech, TemplateState, bounded, is_no, is_yes, past_tense, question, sentence,
)
from .tools import READ_TOOL, ToolCall, Toolbox

log = logging.getLogger(__name__)

# Said when the model chose a device the request did not name or imply.
NOT_SURE = "Sorry, I'm not sure which device you mean."


@dataclass
class HomeResult:
    speech: str
    # Intent event data: {name, slots, entities, source: "template" | "llm", match_ms}.
    intent: dict[str, Any] | None = None
    # One event dict per step: {entity, action, outcome, topic, payload, confirmed, latency_ms}.
    actions: list[dict[str, Any]] = field(default_factory=list)
    awaiting_confirmation: bool = False
    # False: an intent for the caller (a timer), see `match`.
    handled: bool = True
    # The steps' outcome when they all had the same (done and sent count as done), else
    # partial or failed; or what was done instead of acting.
    outcome: StepOutcome | HomeOutcome = StepOutcome.DONE
    match: Match | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "speech": self.speech, "intent": self.intent, "actions": self.actions,
            "awaiting_confirmation": self.awaiting_confirmation, "handled": self.handled,
            "outcome": str(self.outcome),
        }


@dataclass
class _Pending:
    steps: list[Step]
    deadline: float
    question: str
    intent: dict[str, Any] | None
    match: Match | None
    args: dict[str, Any]


def intent_steps(match: Match, home: Home) -> list[Step]:
    """The actions an intent asks of each of its entities."""
    steps = []
    slots = match.slots
    for entity_id in match.entities:
        entity = home.get(entity_id)
        if entity is None:
            continue
        action, args = _intent_action(match.intent, entity, slots)
        if action:
            steps.append(Step(entity_id, action, args))
    return steps


def _intent_action(intent: str, entity: Entity, slots: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    domain = entity.domain
    if intent in ("HassTurnOn", "HassTurnOff"):
        on = intent == "HassTurnOn"
        by_domain = {
            "cover": ("open", "close"), "valve": ("open", "close"), "lock": ("lock", "unlock"),
            "scene": ("activate", ""), "button": ("press", ""),
        }
        pair = by_domain.get(domain, ("turn_on", "turn_off"))
        return (pair[0] if on else pair[1]), {}
    if intent == "HassToggle":
        return "toggle", {}
    if intent == "HassLightSet":
        if "brightness" in slots:
            return "set_brightness", {"brightness": slots["brightness"]}
        if "color" in slots:
            return "set_color", {"color": slots["color"]}
        if "temperature" in slots:
            return "set_color_temp", {"color_temp_kelvin": slots["temperature"]}
        return "", {}
    if intent == "HassSetPosition":
        return "set_position", {"position": slots.get("position")}
    if intent == "HassFanSetSpeed":
        return "set_percentage", {"percentage": slots.get("percentage")}
    if intent == "HassClimateSetTemperature":
        return "set_temperature", {"temperature": slots.get("temperature")}
    return "", {}


class HomeControl:
    def __init__(
        self,
        config: Config,
        *,
        allow: Iterable[str] = (),
        extra_intents: Iterable[Mapping] = (),
        client_id: str | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config
        cfg = config.home
        device_id = config.device_id()
        prefix = cfg.discovery_prefix or config.mqtt.discovery_prefix
        self.home = Home(cfg, prefix, own_node_id=sanitize_device_id(device_id),
                         own_topic_prefix=config.mqtt.topic_prefix)
        self.connection = HomeConnection(
            config.mqtt, self.home, client_id or mqtt_client_id(config.mqtt, device_id, "home"),
            f"{config.mqtt.topic_prefix}/{device_id}/home/sync",
        )
        self.executor = Executor(self.home, self.connection.publish, cfg, clock)
        self._allow = tuple(allow)
        self._extra = list(extra_intents)
        self._clock = clock
        self.recognizer: Recognizer | None = None
        self.speech: Speech | None = None
        self._pending: _Pending | None = None
        self._lock = asyncio.Lock()
        self._toolbox: Toolbox | None = None
        self._toolbox_version = -1
        self._request = ""

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self, *, intents: bool = True, settle_s: float | None = None) -> bool:
        """Load the language's templates (unless `intents` is false: listing only), connect,
        and wait at most `settle_s` (default home.settle_s) for the retained discovery configs
        and states. False if they were not all in by then (or the broker is unreachable)."""
        loading = None
        if intents:
            # The templates load while the broker sends the devices.
            loading = asyncio.ensure_future(asyncio.to_thread(
                Recognizer, self.config.stt.language, self.home, allow=self._allow, extra_intents=self._extra
            ))
        try:
            settled = False
            if self.config.mqtt.enabled:
                await self.connection.start()
                wait = self.config.home.settle_s if settle_s is None else settle_s
                settled = await self.connection.settle(wait)
        finally:
            if loading is not None:
                self.recognizer = await loading
                self.speech = Speech(self.recognizer.language)
        if not self.config.mqtt.enabled:
            return False
        if not settled and self.connection.connected:
            log.warning("home: devices still arriving after %.1f s (home.settle_s)", wait)
        log.info("home: %d entities, %d exposed", len(self.home.entities), len(self.home.exposed_entities()))
        return settled

    async def aclose(self) -> None:
        await self.connection.aclose()

    def add_intents(self, intents: Mapping, allow: Iterable[str] = ()) -> None:
        """More intents for the caller (hassil's format); their matches come back unhandled."""
        self._recognizer().add_intents(intents, allow)

    # -- the pipeline's calls ----------------------------------------------------------------

    @property
    def awaiting_confirmation(self) -> bool:
        return self._pending is not None and self._clock() < self._pending.deadline

    async def handle(self, text: str, *, dry_run: bool = False) -> HomeResult | None:
        """Act on `text` if a template matches; None if none does (ask the LLM)."""
        recognizer = self._recognizer()
        started = time.perf_counter()
        # The request an LLM fallback answers next: its tools are limited to what this names.
        self._request = text
        # Slot lists and the choice read the registry, on the loop; the matching itself runs
        # in a worker thread, so a large home does not hold the loop up.
        slot_lists = recognizer.slot_lists()
        results = await asyncio.to_thread(recognizer.candidates, text, slot_lists)
        match = recognizer.choose(results, started)
        if match is None:
            return None
        self._pending = None  # a new request replaces an unanswered question
        intent = match.event_data("template")
        speech = self._speech()
        if not match.handled_here:
            return HomeResult("", intent, handled=False, outcome=HomeOutcome.ROUTED, match=match)
        if match.error.endswith("exposed"):
            return HomeResult(speech.error(match.error, match.error_slots), intent, outcome=StepOutcome.NOT_EXPOSED,
                              match=match)
        if match.error and self._llm_may_act(text):
            # A template fitted but found no such device ("close the garage door" said of a
            # cover of class garage), yet the words imply one: the LLM may try, limited to it.
            log.info("home: %s matched %s but found no device (%s); trying the LLM",
                     text[:60], match.intent, match.error)
            return None
        if match.error:
            return HomeResult(speech.error(match.error, match.error_slots), intent, outcome=StepOutcome.NOT_FOUND,
                              match=match)
        if match.intent in NO_TARGET_INTENTS:
            text = "" if match.intent == "HassNevermind" else speech.time_or_date(match, datetime.datetime.now())
            return HomeResult(text, intent, outcome=HomeOutcome.ANSWERED, match=match)
        if match.intent == "HassGetState":
            return HomeResult(self._state_answer(match), intent, outcome=HomeOutcome.ANSWERED, match=match)
        steps = intent_steps(match, self.home)
        return await self._act(steps, intent, match, {}, dry_run)

    async def run_tool_call(self, call: ToolCall, *, dry_run: bool = False, request: str | None = None) -> HomeResult:
        """Perform a tool call the LLM made (already validated by `tools.parse`) for `request`
        (default: the text `handle` saw last, the one the LLM is answering), if that request
        names or clearly implies every device of the call (`grounding.check_call`); otherwise
        nothing is done and the speech asks which device is meant."""
        self._pending = None
        targets = call.targets
        intent = {"name": call.tool, "slots": dict(call.args), "entities": list(targets),
                  "source": "llm", "match_ms": None}
        request = self._request if request is None else request
        toolbox = self._full_toolbox()
        able = [t.entity_id for t in toolbox.targets.get(call.tool, ())]
        # What is not exposed is refused as such by the executor, whatever was said.
        exposed = [i for i in targets if i in able]
        refused = check_call(call.tool, exposed, self._ground(request, toolbox), able) if exposed else None
        if refused is not None:
            log.warning("home: the model's %s on %s refused: %s", call.tool, ", ".join(targets), refused)
            return HomeResult(NOT_SURE, intent, outcome=StepOutcome.NOT_FOUND)
        if call.tool == "get_state":
            entities = [self.home.get(i) for i in targets]
            if any(e is None or not self.home.visible(e) for e in entities):
                return HomeResult("Sorry, I don't know that device.", intent, outcome=StepOutcome.NOT_FOUND)
            text = " ".join(sentence(f"{e.name} is {TemplateState.of(e).state_with_unit}") for e in entities)
            return HomeResult(bounded(text), intent, outcome=HomeOutcome.ANSWERED)
        steps = [Step(entity_id, call.tool, dict(call.args)) for entity_id in targets]
        return await self._act(steps, intent, None, call.args, dry_run)

    async def confirm(self, answer: str) -> HomeResult:
        """The answer to the last question: a yes performs it, a no cancels it. Anything else
        is a new request: the question is dropped unanswered (nothing done) and the result
        says ``nothing_pending``, for the caller to handle the request on its own."""
        pending, self._pending = self._pending, None
        if pending is None:
            return HomeResult("", outcome=HomeOutcome.NOTHING_PENDING, handled=False)
        if self._clock() >= pending.deadline:
            return HomeResult("No answer in time; I did nothing.", pending.intent,
                              outcome=HomeOutcome.EXPIRED)
        if is_yes(answer):
            return await self._perform(pending.steps, pending.intent, pending.match, pending.args, dry_run=False)
        if is_no(answer):
            return HomeResult("Okay, I won't.", pending.intent, outcome=HomeOutcome.CANCELLED)
        return HomeResult("", outcome=HomeOutcome.NOTHING_PENDING, handled=False)

    def toolbox(self, request: str | None = None) -> Toolbox:
        """The LLM's tools for `request` (default: the text `handle` saw last): every device in
        the prompt's list (which stays the same, and cached, until the devices change), but the
        grammar and the parsing offer each action only on the devices the request names or
        implies."""
        toolbox = self._full_toolbox()
        grounding = self._ground(self._request if request is None else request, toolbox)
        return toolbox.focused({tool: grounding.allowed(tool, [t.entity_id for t in targets])
                                for tool, targets in toolbox.targets.items()})

    def _llm_may_act(self, request: str) -> bool:
        """Whether the request names or implies a device the LLM could act on."""
        return any(tool != READ_TOOL for tool in self.toolbox(request).offered())

    def _full_toolbox(self) -> Toolbox:
        if self._toolbox is None or self._toolbox_version != self.home.version:
            visible = [e for e in self.home.entities.values() if self.home.visible(e)]
            self._toolbox = Toolbox(self.home.exposed_entities(), visible, self.home.places)
            self._toolbox_version = self.home.version
        return self._toolbox

    def _ground(self, request: str, toolbox: Toolbox) -> Grounding:
        return ground(request, toolbox.entities.values(), self.home.places, self.config.home.area)

    def snapshot(self) -> list[dict[str, Any]]:
        """Every known entity with area, component, exposure, state and availability."""
        return self.home.snapshot()

    # -- internals ---------------------------------------------------------------------------

    async def _act(self, steps: list[Step], intent: dict[str, Any], match: Match | None,
                   args: dict[str, Any], dry_run: bool) -> HomeResult:
        possible = [s for s in steps if self.executor.check(s) is None]
        sensitive = [s for s in possible if self.home.entities[s.entity_id].sensitive]
        if sensitive:
            names = {s.entity_id: self.home.entities[s.entity_id].name for s in steps}
            asked = question(sensitive, names)
            if dry_run:
                result = await self._perform(steps, intent, match, args, dry_run=True)
                result.speech, result.outcome = asked, HomeOutcome.NEEDS_CONFIRMATION
                return result
            self._pending = _Pending(steps, self._clock() + self.config.home.confirmation_s, asked, intent, match, args)
            return HomeResult(asked, intent, awaiting_confirmation=True, outcome=HomeOutcome.NEEDS_CONFIRMATION,
                              match=match)
        return await self._perform(steps, intent, match, args, dry_run)

    async def _perform(self, steps: list[Step], intent: dict[str, Any] | None, match: Match | None,
                       args: dict[str, Any], dry_run: bool) -> HomeResult:
        async with self._lock:
            results = await self.executor.perform(steps, dry_run=dry_run)
        states = [self.home.entities[r.entity_id] for r in results if r.entity_id in self.home.entities]
        if match is None:
            speech = self._tool_speech(results, args)
        else:
            speech = self._speech().control(match, results, states)
        return HomeResult(speech, intent, [r.event_data() for r in results], outcome=_summary(results), match=match)

    def _tool_speech(self, results: list[StepResult], args: dict[str, Any]) -> str:
        parts = []
        for result in results:
            if result.outcome in WORKED:
                parts.append(sentence(past_tense(result, None, args)))
            else:
                parts.append(OUTCOME_SENTENCES.get(result.outcome, "{name} failed.").format(name=result.name))
        return " ".join(parts)

    def _state_answer(self, match: Match) -> str:
        entities = [self.home.entities[i] for i in match.entities if i in self.home.entities]
        wanted = match.slots.get("state")
        if wanted is None:
            matched, unmatched = entities, []
        else:
            matched = [e for e in entities if e.state.get("state") == wanted]
            unmatched = [e for e in entities if e not in matched]
        text = self._speech().intent_response(match, entities, matched, unmatched)
        if not text and entities:
            text = f"{entities[0].name} is {TemplateState.of(entities[0]).state_with_unit}"
        return sentence(text or "I don't know")

    def _recognizer(self) -> Recognizer:
        if self.recognizer is None:
            raise RuntimeError("HomeControl.start() was not called")
        return self.recognizer

    def _speech(self) -> Speech:
        assert self.speech is not None
        return self.speech


def _summary(results: list[StepResult]) -> StepOutcome | HomeOutcome:
    outcomes = {r.outcome for r in results}
    done = {StepOutcome.DONE, StepOutcome.SENT}
    if not results:
        return HomeOutcome.FAILED
    if outcomes <= {StepOutcome.DRY_RUN}:
        return StepOutcome.DRY_RUN
    if outcomes <= done:
        return StepOutcome.DONE
    if outcomes & done:
        return HomeOutcome.PARTIAL
    if len(outcomes) == 1:
        return StepOutcome(next(iter(outcomes)))
    return HomeOutcome.FAILED
