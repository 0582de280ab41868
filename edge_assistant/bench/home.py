"""The `home` section: how fast and how well spoken commands act on a home of real shape.

The home of `home_set` (34 devices announced as zigbee2mqtt and Tasmota announce them, ten
areas on two floors, aliases) is learnt from its discovery configs, everything exposed. Then,
with every command dry (no device is touched):

- `home.match_ms`: hassil's template match of a command (median);
- `home.publish_ms`: the end of the transcript to the device's command handed to MQTT, for a
  template match (median; the broker's own delivery is not part of it);
- `home.template_accuracy`: of the sentences a template matched, the share done exactly right;
- `home.llm_accuracy`: of the sentences left to the LLM (the configured model, grammar-bound
  and checked against the sentence), the share done right: a right device and action, or
  nothing where the sentence names nothing clearly;
- `home.wrong_device_actions`: actions, by either path, on a device the sentence did not mean
  (target 0: a wrong device is worse than none);
- `home.fallback_s` and `home.fallback_after_100_s`: one LLM fallback in a fresh conversation
  and after 100 template commands (template turns are kept out of the model's history, so
  they should be the same).
"""

from __future__ import annotations

import asyncio
import json
import statistics
import threading
import time
from dataclasses import replace
from typing import Any

from ..config import Config, from_mapping
from ..home.actions import PUBLISHED
from .home_set import (
    EXPOSE, FREE_SENTENCES, HOME_PLACES, PREFIX, discovery_configs, sentences, template_sentences,
)
from .loaded import LoadedModels
from .options import BenchOptions
from .report import Report


def bench_home(loaded: LoadedModels, report: Report, options: BenchOptions) -> None:
    report.values.update(asyncio.run(_measure(loaded, options)))


async def _measure(loaded: LoadedModels, options: BenchOptions) -> dict[str, Any]:
    from ..home.actions import Executor
    from ..home.assistant import HomeControl
    from ..home.discovery import parse_discovery
    from ..respond import Responder

    config = _bench_config(loaded.config)
    control = HomeControl(config)
    await control.start()  # MQTT off: the templates only
    for where, body in discovery_configs().items():
        control.home.apply_discovery(parse_discovery(f"{PREFIX}/{where}/config", json.dumps(body).encode(), PREFIX))
    published: list[float] = []

    def publish(_topic: str, _payload: str) -> None:
        published.append(time.perf_counter())

    # Commands handed to a recorder instead of a broker; no state comes back, so nothing waits.
    control.executor = Executor(control.home, publish, config.home, time.monotonic)
    values = await _speed(control, published, options)
    values.update(await _accuracy(control, Responder(loaded.session, home=control), options))
    values.update(await _fallback_latency(control, Responder(loaded.session, home=control), loaded.session))
    await control.aclose()
    values.update({"home.entities": len(control.home.entities), "home.llm_model": loaded.session.engine.info.name})
    return values


async def _speed(control: Any, published: list[float], options: BenchOptions) -> dict[str, Any]:
    match_ms, publish_ms = [], []
    commands = [text for text, expected in sentences() if expected and not _sensitive(expected)][:20]
    for _ in range(options.runs):
        for text in commands:
            started = time.perf_counter()
            result = await control.handle(text)
            if result is not None and result.intent is not None and result.intent.get("match_ms") is not None:
                match_ms.append(result.intent["match_ms"])
            if published:
                publish_ms.append((published[-1] - started) * 1000)
                published.clear()
    return {
        "home.match_ms": round(statistics.median(match_ms), 2) if match_ms else None,
        "home.match_ms_max": round(max(match_ms), 2) if match_ms else None,
        "home.publish_ms": round(statistics.median(publish_ms), 2) if publish_ms else None,
    }


async def _accuracy(control: Any, responder: Any, options: BenchOptions) -> dict[str, Any]:
    from ..respond import Response

    said = sentences()
    by_template = right_by_template = wrong = 0
    left: list[tuple[str, frozenset]] = []
    for text, expected in said:
        result = await control.handle(text, dry_run=True)
        control._pending = None  # a question asked (a lock) is not answered here
        if result is None or not result.handled:
            left.append((text, expected))
            continue
        acted = _acted(result.actions)
        by_template += 1
        right_by_template += acted == expected
        wrong += _wrong(acted, expected)
    tried = left[:8] if options.quick else left
    right_by_llm = 0
    for text, expected in tried:
        response = Response()
        async for _sentence in responder.sentences(text, threading.Event(), response, lambda *_: None, dry_run=True):
            pass
        control._pending = None
        acted = _acted(response.actions)
        right_by_llm += (not acted) if not expected else bool(acted) and acted <= expected
        wrong += _wrong(acted, expected)
    return {
        "home.commands": len(said),
        "home.template_sentences": by_template,
        "home.template_accuracy": round(right_by_template / by_template, 3) if by_template else None,
        "home.llm_sentences": len(tried),
        "home.llm_accuracy": round(right_by_llm / len(tried), 3) if tried else None,
        "home.wrong_device_actions": wrong,
    }


async def _fallback_latency(control: Any, responder: Any, session: Any) -> dict[str, Any]:
    """One fallback fresh, then after 100 template commands remembered as the pipeline would."""
    from ..respond import Response

    session.reset()
    context, _ = responder.tool_context()
    await asyncio.to_thread(session.warm, context)
    question = FREE_SENTENCES[0][0]

    async def ask(text: str, remember: bool = True) -> Response:
        response = Response()
        async for _sentence in responder.sentences(text, threading.Event(), response, lambda *_: None, dry_run=True):
            pass
        if remember and response.for_history:
            session.remember(text, response.text)
        return response

    # The timed question itself is not remembered: only the commands between differ. A first
    # one, untimed, compiles its grammar.
    await ask(question, remember=False)
    started = time.perf_counter()
    fresh = await ask(question, remember=False)
    fresh_s = time.perf_counter() - started
    commands = [text for text, expected in template_sentences() if expected and not _sensitive(expected)]
    for index in range(100):
        await ask(commands[index % len(commands)])
    started = time.perf_counter()
    after = await ask(question, remember=False)
    after_s = time.perf_counter() - started
    session.reset()
    return {"home.fallback_s": round(fresh_s, 3), "home.fallback_after_100_s": round(after_s, 3),
            "home.fallback_ratio": round(after_s / fresh_s, 3) if fresh_s else None,
            # The same prompt, token for token, is what makes the two times alike.
            "home.fallback_prompt_tokens": _prompt_tokens(fresh),
            "home.fallback_after_100_prompt_tokens": _prompt_tokens(after)}


def _prompt_tokens(response: Any) -> int | None:
    return response.reply.generation.prompt_tokens if response.reply is not None else None


def _bench_config(config: Config) -> Config:
    places = from_mapping({"home": HOME_PLACES}).home
    return replace(
        config,
        mqtt=replace(config.mqtt, enabled=False),
        home=replace(config.home, expose=EXPOSE, min_command_interval_s=0.0, confirm_timeout_s=0.1, area="",
                     areas=places.areas, floors=places.floors, aliases=places.aliases),
    )


def _acted(actions: list[dict[str, Any]]) -> frozenset:
    return frozenset((a.get("entity"), a.get("action")) for a in actions if a.get("outcome") in PUBLISHED)


def _wrong(acted: frozenset, expected: frozenset) -> int:
    meant = {entity for entity, _action in expected}
    return len({entity for entity, _action in acted} - meant)


def _sensitive(expected: frozenset) -> bool:
    return any(entity.split(".")[0] in ("lock", "valve") or entity == "cover.garage_door" for entity, _ in expected)
