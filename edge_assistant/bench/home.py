"""The `home` section: how fast and how well spoken commands act on a generated home.

A home of lights, switches, fans, blinds and a thermostat in eight rooms is built from discovery
configs as devices publish them, with every device exposed. Then:

- `home.match_ms`: hassil's template match of a command (median);
- `home.publish_ms`: the end of the transcript to the device's command handed to MQTT, for a
  template match (median; the broker's own delivery is not part of it);
- `home.template_accuracy`: the share of commands that would change the right device to the
  right state with the templates alone, and `home.llm_accuracy` with the LLM (the configured
  model, grammar-bound) answering what no template matched. Commands are checked dry, so no
  device is touched; half of them are phrasings no template knows ("it is too dark in the
  kitchen"), which only the LLM can get right.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import threading
import time
from dataclasses import replace
from typing import Any

from ..config import Config
from .loaded import LoadedModels
from .options import BenchOptions
from .report import Report

PREFIX = "homeassistant"
ROOMS = ("Kitchen", "Living Room", "Bedroom", "Office", "Bathroom", "Hallway", "Garage", "Garden")

# (text, entity id, action): the command and what it must do.
TEMPLATE_COMMANDS = (
    ("turn on the kitchen light", "light.kitchen_light", "turn_on"),
    ("turn off the bedroom light", "light.bedroom_light", "turn_off"),
    ("switch on the office light", "light.office_light", "turn_on"),
    ("set the living room light to 40 percent", "light.living_room_light", "set_brightness"),
    ("turn on the garden pump", "switch.garden_pump", "turn_on"),
    ("set the bedroom fan to 30 percent", "fan.bedroom_fan", "set_percentage"),
    ("open the living room blinds", "cover.living_room_blinds", "open"),
    ("close the bedroom blinds", "cover.bedroom_blinds", "close"),
    ("set the thermostat to 21 degrees", "climate.thermostat", "set_temperature"),
    ("turn off the hallway light", "light.hallway_light", "turn_off"),
)
FREE_COMMANDS = (
    ("it is too dark in the kitchen", "light.kitchen_light", "turn_on"),
    ("I am going to sleep, the bedroom light can go off", "light.bedroom_light", "turn_off"),
    ("the plants in the garden need water, start the pump", "switch.garden_pump", "turn_on"),
    ("it is hot in the bedroom, I need the fan", "fan.bedroom_fan", "turn_on"),
    ("let some daylight into the living room", "cover.living_room_blinds", "open"),
    ("warm the house up to 22 degrees", "climate.thermostat", "set_temperature"),
    ("I need light to read in the office", "light.office_light", "turn_on"),
    ("nobody is in the hallway, save power", "light.hallway_light", "turn_off"),
    ("darken the bedroom", "cover.bedroom_blinds", "close"),
    ("make the living room light dimmer, say 20 percent", "light.living_room_light", "set_brightness"),
)


def discovery_configs() -> dict[str, dict[str, Any]]:
    """`<component>/<object_id>` -> config, as the devices of the generated home publish them."""
    configs: dict[str, dict[str, Any]] = {}
    for room in ROOMS:
        key = room.lower().replace(" ", "_")
        base = f"home/{key}"
        configs[f"light/{key}_light"] = {"name": f"{room} Light", "cmd_t": f"{base}/light/set", "stat_t": f"{base}/light",
                                         "schema": "json", "brightness": True, "dev": {"name": "", "sa": room}}
        if room in ("Bedroom", "Living Room"):
            configs[f"cover/{key}_blinds"] = {"name": f"{room} Blinds", "cmd_t": f"{base}/blinds/set",
                                              "set_pos_t": f"{base}/blinds/pos", "dev_cla": "blind",
                                              "dev": {"name": "", "sa": room}}
        if room in ("Bedroom", "Office"):
            configs[f"fan/{key}_fan"] = {"name": f"{room} Fan", "cmd_t": f"{base}/fan/set",
                                         "pct_cmd_t": f"{base}/fan/pct", "dev": {"name": "", "sa": room}}
    configs["switch/garden_pump"] = {"name": "Garden Pump", "cmd_t": "home/garden/pump/set", "dev": {"sa": "Garden"}}
    configs["climate/thermostat"] = {"name": "Thermostat", "temp_cmd_t": "home/thermostat/set",
                                     "temp_stat_t": "home/thermostat", "dev": {"sa": "Living Room"}}
    return configs


def bench_home(loaded: LoadedModels, report: Report, options: BenchOptions) -> None:
    report.values.update(asyncio.run(_measure(loaded, options)))


async def _measure(loaded: LoadedModels, options: BenchOptions) -> dict[str, Any]:
    from ..home.actions import Executor
    from ..home.assistant import HomeControl
    from ..home.discovery import parse_discovery
    from ..respond import Responder, Response

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

    match_ms, publish_ms = [], []
    for _ in range(options.runs):
        for text, _entity, _action in TEMPLATE_COMMANDS:
            started = time.perf_counter()
            result = await control.handle(text)
            if result is not None and result.intent is not None:
                match_ms.append(result.intent["match_ms"])
            if published:
                publish_ms.append((published[-1] - started) * 1000)
                published.clear()

    commands = TEMPLATE_COMMANDS + FREE_COMMANDS
    by_templates = 0
    unmatched = []
    for text, entity, action in commands:
        result = await control.handle(text, dry_run=True)
        if result is not None and _did(result.actions, entity, action):
            by_templates += 1
        elif result is None:
            unmatched.append((text, entity, action))
    by_llm = 0
    responder = Responder(loaded.session, home=control)
    for text, entity, action in unmatched[: 4 if options.quick else None]:
        response = Response()
        async for _sentence in responder.sentences(text, threading.Event(), response, lambda *_: None,
                                                   dry_run=True):
            pass
        by_llm += _did(response.actions, entity, action)
    tried = len(commands) if not options.quick else len(commands) - len(unmatched) + min(4, len(unmatched))
    await control.aclose()
    return {
        "home.entities": len(control.home.entities),
        "home.commands": len(commands),
        "home.match_ms": round(statistics.median(match_ms), 2) if match_ms else None,
        "home.match_ms_max": round(max(match_ms), 2) if match_ms else None,
        "home.publish_ms": round(statistics.median(publish_ms), 2) if publish_ms else None,
        "home.template_accuracy": round(by_templates / len(commands), 3),
        "home.llm_accuracy": round((by_templates + by_llm) / tried, 3),
        "home.llm_model": loaded.session.engine.info.name,
    }


def _bench_config(config: Config) -> Config:
    return replace(
        config,
        mqtt=replace(config.mqtt, enabled=False),
        home=replace(config.home, expose=("*",), min_command_interval_s=0.0, confirm_timeout_s=0.1),
    )


def _did(actions: list[dict[str, Any]], entity: str, action: str) -> bool:
    return any(step.get("entity") == entity and step.get("action") == action for step in actions)
