"""The slow part of building the assistant: where the configured models are (`model_paths`,
each resolved once) and loading them (`load_models`), once per start or reload of the daemon,
once for a whole `bench` run."""

from __future__ import annotations

import logging
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


def load_listener_models(config: Config, paths: ModelPaths):
    """The listener's heavy models (recognizer, end of turn, the stop word's reader, the first
    pass), loaded once and shared by every listener built on them (`new_listener`)."""
    from ..hearing.listener_models import ListenerModels

    return ListenerModels.load(config, stop_word=config.wake.stop_word, stt_model_path=paths.stt)


def new_listener(config: Config, models: Any, own_sound: Any = None):
    """A listener on loaded `models`, knowing what its source hears of the assistant itself.
    Closing it lets go of its leases on them; the models stay loaded while others hold them."""
    from ..hearing.listener import Listener

    return Listener(config, own_sound=own_sound, transcriber=models.transcriber, turn_end=models.turn_end,
                    stop_word_reader=models.stop_word_reader, first_pass=models.first_pass)


def load_earcons(config: Config) -> dict[str, Any]:
    return {
        "wake": earcon("wake", config.service.wake_sound),
        "error": earcon("error", config.service.error_sound),
        "announce": earcon("announce"),
        "ring": earcon("ring"),
    }


class LoadedModels:
    """The models of one run of the daemon (or of `bench`): each loaded when first used
    (`load_models` loads them all at once) and freed by `close`."""

    def __init__(self, config: Config, paths: ModelPaths | None = None, *, with_listener: bool = True,
                 on_llm_event: Callable[[Event], None] | None = None) -> None:
        self.config = config
        self.paths = paths if paths is not None else model_paths(config)
        self.with_listener = with_listener
        self._on_llm_event = on_llm_event
        self._loaded: dict[str, Any] = {}
        self._closed = False

    def _once(self, name: str, load: Callable[[], Any]) -> Any:
        if self._closed:
            raise RuntimeError("the models are closed")
        if name not in self._loaded:
            self._loaded[name] = load()
        return self._loaded[name]

    @property
    def session(self) -> Any:
        return self._once("session", lambda: load_session(self.config, self.paths, self._on_llm_event))

    @property
    def loaded_session(self) -> Any:
        """The session if something loaded it, else None (nothing is loaded for asking)."""
        return self._loaded.get("session")

    @property
    def synthesizer(self) -> Any:
        return self._once("synthesizer", lambda: load_synthesizer(self.config, self.paths))

    @property
    def listener_models(self) -> Any:
        """None where the assistant does not hear (`with_listener` false)."""
        if not self.with_listener:
            return None
        return self._once("listener_models", lambda: load_listener_models(self.config, self.paths))

    @property
    def listener(self) -> Any:
        """A listener on the listener's models that hears nothing of the assistant (a bench
        room, a file), kept warm across turns; None where the assistant does not hear."""
        models = self.listener_models
        if models is None:
            return None
        return self._once("listener", lambda: new_listener(self.config, models))

    @property
    def earcons(self) -> dict[str, Any]:
        return self._once("earcons", lambda: load_earcons(self.config))

    def close(self) -> None:
        """Free every model loaded (blocking: the LLM waits for its generation to end)."""
        loaded, self._loaded, self._closed = self._loaded, {}, True
        try:
            if "session" in loaded:
                loaded["session"].engine.close()
        finally:
            try:
                if "synthesizer" in loaded:
                    loaded["synthesizer"].close()
            finally:
                try:
                    if loaded.get("listener") is not None:
                        loaded["listener"].close()
                finally:
                    if loaded.get("listener_models") is not None:
                        loaded["listener_models"].close()


def load_models(config: Config, with_listener: bool = True, *, paths: ModelPaths | None = None,
                on_llm_event: Callable[[Event], None] | None = None) -> LoadedModels:
    """Everything slow, loaded now, off the event loop; `on_llm_event` as `load_session`'s."""
    loaded = LoadedModels(config, paths, with_listener=with_listener, on_llm_event=on_llm_event)
    try:
        session = loaded.session
        loaded.synthesizer, loaded.listener_models, loaded.earcons
    except BaseException:
        loaded.close()
        raise
    warmed = session.warm()
    if warmed:
        log.info("prompt prefix of %d tokens evaluated ahead of the first question", warmed)
    return loaded
