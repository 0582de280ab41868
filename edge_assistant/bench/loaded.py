"""What the sections share: the configured models (`assembly.LoadedModels`, each loaded the
first time a section needs it, shared after, freed when the run ends), the assistant of a
measured turn built as the daemon builds it, spoken clips, and LLM settings changed for one
measurement."""

from __future__ import annotations

import contextlib
from dataclasses import replace
from typing import Any, Iterator

from ..assembly import Assembly, LoadedModels
from ..config import Config
from .clips import Clip, spoken_clip

__all__ = ["LoadedModels", "assembly", "voice_clip", "llm_settings"]


def assembly(loaded: LoadedModels, config: Config, **parts: Any) -> Assembly:
    """The daemon's assistant on the run's models, with the parts a section hands in (its
    microphone, its recording sink, no earcons): the device's facts, the timers (read, never
    written, unless the section hands in a store of its own: a daemon on this device owns
    them), and without MQTT, so that no turn waits on a broker or takes a daemon's place on it."""
    offline = replace(config, mqtt=replace(config.mqtt, enabled=False))
    parts.setdefault("read_only_timers", "timers_store" not in parts)
    return Assembly(offline, models=loaded, **parts)


def voice_clip(loaded: LoadedModels, text: str) -> Clip:
    """`text` in the configured voice, as a person would say it into the room."""
    return spoken_clip(loaded.config, loaded.paths.voice, text)


@contextlib.contextmanager
def llm_settings(engine, **changes) -> Iterator[Any]:
    """The engine's settings changed for one measurement (it reads them per generation)."""
    saved = engine.config
    engine.config = replace(saved, **changes)
    try:
        yield engine.config
    finally:
        engine.config = saved
