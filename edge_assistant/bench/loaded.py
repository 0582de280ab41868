"""The configured models, each loaded the first time a section needs it and shared after."""

from __future__ import annotations

import contextlib
from dataclasses import replace
from pathlib import Path
from typing import Any, Iterator

from .. import models
from ..config import Config
from .clips import Clip, spoken_clip


class LoadedModels:
    def __init__(self, config: Config) -> None:
        self.config = config
        self._session = None
        self._synthesizer = None
        self._listener = None

    @property
    def loaded_session(self):
        """The chat session if a section loaded it, else None (nothing is loaded for asking)."""
        return self._session

    @property
    def session(self):
        if self._session is None:
            from ..thinking.llm import load_session

            self._session = load_session(self.config)
        return self._session

    @property
    def voice_path(self) -> Path:
        return models.resolve_voice(self.config.tts.voice, self.config.state_dir())

    @property
    def synthesizer(self):
        if self._synthesizer is None:
            from ..tts import Synthesizer

            self._synthesizer = Synthesizer(self.config.tts, self.voice_path)
        return self._synthesizer

    @property
    def listener(self):
        if self._listener is None:
            from ..hearing.listener import Listener

            self._listener = Listener(self.config, stt_model_path=stt_model_path(self.config))
        return self._listener

    def clip(self, text: str) -> Clip:
        return spoken_clip(self.config, self.voice_path, text)


def stt_model_path(config: Config) -> Path | None:
    """stt.model resolved the way the daemon resolves it."""
    return models.resolve_stt(config.stt.model, config.state_dir(), config.stt.engine)


@contextlib.contextmanager
def llm_settings(engine, **changes) -> Iterator[Any]:
    """The engine's settings changed for one measurement (it reads them per generation)."""
    saved = engine.config
    engine.config = replace(saved, **changes)
    try:
        yield engine.config
    finally:
        engine.config = saved
