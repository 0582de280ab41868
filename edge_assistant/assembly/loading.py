"""The slow part of building the assistant: where the configured models are (`model_paths`,
each resolved once) and loading them (`load_models`), once per start or reload of the daemon,
once for a whole `bench` run."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, Callable

from .. import models
from ..audio.earcons import earcon
from ..config import Config
from ..events import Event

log = logging.getLogger(__name__)


class ModelPaths:
    """Where the configured models are on disk: each resolved on first use, then kept."""

    def __init__(self, config: Config) -> None:
        self.config = config

    @cached_property
    def llm(self) -> Path:
        return models.resolve_llm(self.config.llm.model, self.config.state_dir())

    @cached_property
    def voice(self) -> Path:
        return models.resolve_voice(self.config.tts.voice, self.config.state_dir())

    @cached_property
    def stt(self) -> Path | None:
        """None: the engine's embedded default."""
        return models.resolve_stt(self.config.stt.model, self.config.state_dir(), self.config.stt.engine)

    @property
    def uses_local_llm(self) -> bool:
        return self.config.llm.backend == "local" or self.config.llm.fallback_local


def model_paths(config: Config) -> ModelPaths:
    """The one place model settings become paths (llm.model, tts.voice, stt.model)."""
    return ModelPaths(config)


def load_session(config: Config, paths: ModelPaths, on_event: Callable[[Event], None] | None = None):
    """The chat session (`thinking.llm.load_session`) on the resolved model."""
    from ..thinking.llm import load_session as load

    return load(config, model_path=paths.llm if paths.uses_local_llm else None, on_event=on_event)


def load_synthesizer(config: Config, paths: ModelPaths):
    from ..tts import Synthesizer

    return Synthesizer(config.tts, paths.voice)


def load_listener(config: Config, paths: ModelPaths):
    from ..hearing.listener import Listener

    return Listener(config, stt_model_path=paths.stt)


def load_earcons(config: Config) -> dict[str, Any]:
    return {
        "wake": earcon("wake", config.service.wake_sound),
        "error": earcon("error", config.service.error_sound),
        "announce": earcon("announce"),
        "ring": earcon("ring"),
    }


@dataclass
class LoadedModels:
    """Everything slow that one run of the daemon (or of `bench`) loads, and lets go of when
    it ends."""

    session: Any
    synthesizer: Any
    listener: Any
    earcons: dict[str, Any]
    paths: ModelPaths

    def close(self) -> None:
        """Free every model (blocking: the LLM waits for its generation to end)."""
        self.session.engine.close()
        self.synthesizer.close()
        if self.listener is not None:
            self.listener.close()


def load_models(config: Config, with_listener: bool = True, *, paths: ModelPaths | None = None,
                on_llm_event: Callable[[Event], None] | None = None) -> LoadedModels:
    """Everything slow, off the event loop; `on_llm_event` as `load_session`'s."""
    paths = paths if paths is not None else model_paths(config)
    session = load_session(config, paths, on_llm_event)
    try:
        synthesizer = load_synthesizer(config, paths)
        try:
            listener = load_listener(config, paths) if with_listener else None
            earcons = load_earcons(config)
        except BaseException:
            synthesizer.close()
            raise
    except BaseException:
        session.engine.close()
        raise
    warmed = session.warm()
    if warmed:
        log.info("prompt prefix of %d tokens evaluated ahead of the first question", warmed)
    return LoadedModels(session, synthesizer, listener, earcons, paths)
