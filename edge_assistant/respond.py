"""One request answered: the home's templates and the timers first, then the LLM, which may
act on the home through its tools.

    responder = Responder(session, home=home_control, timers=timer_intents)
    async for sentence in responder.sentences(text, cancel, response, emit):
        ...   # speak it

A template match runs with no LLM call (fast on a Pi); only what no template matched reaches
the model, and then, when devices are exposed, under a grammar (llama.cpp) or as OpenAI tools
(a server) that can name nothing but an exposed device and an action it supports. What a
device did is said as it happened (done, did not answer, offline), never as the model guessed.
The daemon's pipeline and `edge-assistant ask` both answer through this.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from dataclasses import dataclass, field, replace
from typing import Any, AsyncIterator, Callable, Protocol

from .chat import ChatSession, Generation, Reply
from .concurrency import iterate_in_thread
from .sentences import SentenceSplitter

log = logging.getLogger(__name__)

NOT_UNDERSTOOD = "Sorry, I did not understand that."
# Appended to the system prompt, before the device list, when the model may act.
TOOL_INSTRUCTIONS = (
    "You can control the devices listed below, only those the request names or clearly means "
    "(by name, area, floor or kind of device). To act, reply with only a JSON object such as "
    '{"tool": "turn_off", "entity_id": ["light.kitchen", "light.hall"]}. If it is not clear '
    'which device is meant, ask, e.g. {"answer": "Which light do you mean?"}. To answer without '
    'acting, reply {"answer": ...} with what you would say.\n'
    "Devices (id; name; area (floor); type; actions):\n"
)

Emit = Callable[[str, dict[str, Any]], None]


class HomeResultLike(Protocol):
    speech: str
    intent: dict[str, Any] | None
    actions: list[dict[str, Any]]
    awaiting_confirmation: bool
    handled: bool
    outcome: str
    match: Any


class Home(Protocol):
    """What answering needs of the home (home.assistant.HomeControl)."""

    awaiting_confirmation: bool

    async def handle(self, text: str, *, dry_run: bool = False) -> HomeResultLike | None: ...

    async def confirm(self, answer: str) -> HomeResultLike: ...

    async def run_tool_call(self, call: Any, *, dry_run: bool = False) -> HomeResultLike: ...

    def toolbox(self) -> Any: ...


class TimerReplyLike(Protocol):
    text: str
    ok: bool
    code: str | None
    follow_up: bool


class Timers(Protocol):
    """What answering needs of the timers (timers.TimerIntentHandler)."""

    def handle_intent(self, intent_name: str, slots: dict[str, Any]) -> TimerReplyLike: ...


@dataclass
class Response:
    """What answering one request did, filled in as it goes."""

    # "home", "timers" or "llm".
    source: str = ""
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
        return self.source == "llm"


class Responder:
    def __init__(self, session: ChatSession, *, home: Home | None = None, timers: Timers | None = None,
                 recognize_timers: Callable[[str], tuple[str, dict[str, Any]] | None] | None = None) -> None:
        self.session = session
        self.home = home
        self.timers = timers
        # Timer intents on their own, when there is no home to recognize them with.
        self.recognize_timers = recognize_timers

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
                        *, dry_run: bool = False) -> AsyncIterator[str]:
        """The answer to `text`, sentence by sentence, as soon as each is known."""
        if self.home is not None and self.home.awaiting_confirmation:
            result = await self.home.confirm(text)
            if result.outcome != "nothing_pending":
                for sentence in self._home_result(result, response, emit):
                    yield sentence
                return
        if self.home is not None:
            result = await self.home.handle(text, dry_run=dry_run)
            if result is not None and result.handled:
                for sentence in self._home_result(result, response, emit):
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
                name, slots = recognized
                intent = {"name": name, "slots": _plain(slots), "entities": [], "source": "template",
                          "match_ms": None}
                for sentence in self._timer_intent(name, slots, intent, response, emit):
                    yield sentence
                return
        async for sentence in self._llm(text, cancel, response, emit, dry_run):
            yield sentence

    # -- the home and the timers --------------------------------------------------------------

    def _home_result(self, result: HomeResultLike, response: Response, emit: Emit) -> list[str]:
        response.source = "home"
        response.intent = result.intent
        response.actions = list(result.actions)
        response.listen_for_answer = result.awaiting_confirmation
        if result.intent is not None:
            emit("intent", result.intent)
        for action in result.actions:
            emit("action", action)
        if result.outcome == "not_found":
            # A command for a device or area the home does not have.
            emit("error", {"code": "not_understood", "message": result.speech})
        return self._said(result.speech, response)

    def _timer_intent(self, name: str, slots: dict[str, Any], intent: dict[str, Any] | None,
                      response: Response, emit: Emit) -> list[str]:
        assert self.timers is not None
        response.source = "timers"
        response.intent = intent
        if intent is not None:
            emit("intent", intent)
        reply = self.timers.handle_intent(name, slots)
        if not reply.ok and reply.code:
            emit("error", {"code": reply.code, "message": reply.text})
        response.listen_for_answer = reply.follow_up
        return self._said(reply.text, response)

    # -- the LLM ------------------------------------------------------------------------------

    async def _llm(self, text: str, cancel: threading.Event, response: Response, emit: Emit,
                   dry_run: bool) -> AsyncIterator[str]:
        response.source = "llm"
        context, toolbox = self.tool_context()
        prompt = await asyncio.to_thread(self.session.prepare, text, context)
        if prompt.dropped_turns or prompt.trimmed_chars:
            emit("prompt_trimmed", {"dropped_turns": prompt.dropped_turns, "trimmed_chars": prompt.trimmed_chars})
        if toolbox is not None:
            prompt = replace(prompt, grammar=toolbox.gbnf(), tools=tuple(toolbox.openai_tools()))
        reply = Reply(prompt, Generation())
        response.reply = reply
        sentences = self.session.sentences(prompt, cancel, reply)
        # Closed on every way out, so the worker has stopped writing `reply` before it is read.
        async with contextlib.aclosing(iterate_in_thread(sentences, cancel)) as stream:
            async for sentence in stream:
                if cancel.is_set():
                    break
                yield sentence
        response.text = " ".join(reply.sentences)
        if cancel.is_set() or not reply.tool_call:
            if not cancel.is_set() and not reply.sentences and toolbox is not None:
                emit("error", {"code": "not_understood", "message": "the model gave no answer"})
            return
        for sentence in await self._tool_call(reply.tool_call, toolbox, response, emit, dry_run):
            yield sentence

    async def _tool_call(self, output: str, toolbox: Any, response: Response, emit: Emit,
                         dry_run: bool) -> list[str]:
        from .home.tools import Answer, ToolError

        try:
            call = toolbox.parse(output)
        except ToolError as error:
            log.warning("the model's tool call was refused: %s", error)
            emit("error", {"code": "not_understood", "message": f"invalid tool call: {error}"})
            return self._said(NOT_UNDERSTOOD, response)
        if isinstance(call, Answer):
            return self._said(call.text, response)
        assert self.home is not None
        result = await self.home.run_tool_call(call, dry_run=dry_run)
        said = self._home_result(result, response, emit)
        response.source = "llm"
        return said

    def _said(self, text: str, response: Response) -> list[str]:
        splitter = SentenceSplitter()
        sentences = [*splitter.feed(text), *splitter.flush()]
        response.text = " ".join(part for part in (response.text, *sentences) if part)
        return sentences


def _plain(slots: dict[str, Any]) -> dict[str, Any]:
    return {k: getattr(v, "value", v) for k, v in slots.items()
            if isinstance(getattr(v, "value", v), (str, int, float, bool))}
