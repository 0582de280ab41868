"""The models a listener holds: the recognizer, the end-of-turn model, the stop word's reader
and the first pass's recognizer, loaded together and let go of together."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from .. import models
from ..config import Config
from .moonshine import MoonshineModelError
from .stt import MOONSHINE_THREADS, MoonshineTranscriber, Transcriber, create_transcriber
from .turn_end import TurnEndModel, load_configured

log = logging.getLogger(__name__)


def load_stop_word_reader(config: Config, stt_model_path: Path | None) -> Transcriber:
    """Moonshine, whose text for a second of audio is ready in tens of milliseconds; where its
    files are missing, the configured recognizer (Whisper: half a second more to stop)."""
    try:
        # One thread: a read-back is rare and short, and two would take both cores of a Pi
        # from the echo canceller and the wake word for its tens of milliseconds.
        return MoonshineTranscriber(models.embedded_moonshine_path(), threads=1)
    except (models.ModelError, MoonshineModelError) as error:
        log.warning("wake.stop_word: %s; the configured recognizer confirms each \"stop\" meanwhile "
                    "(slower to stop)", error)
    return create_transcriber(config.stt, model_path=stt_model_path)


def load_first_pass_reader(config: Config) -> Transcriber | None:
    """Moonshine for stt.first_pass, or None (off, or its model cannot load: then Whisper's
    text alone, as without it)."""
    if config.stt.first_pass != "moonshine":
        return None
    try:
        return MoonshineTranscriber(models.embedded_moonshine_path(),
                                    threads=config.stt.n_threads or MOONSHINE_THREADS)
    except (models.ModelError, MoonshineModelError) as error:
        log.warning("stt.first_pass: %s; Whisper's text alone meanwhile", error)
        return None


@dataclass
class ListenerModels:
    transcriber: Transcriber
    turn_end: TurnEndModel | None
    # Reads each stop word detection back (None: no stop word).
    stop_word_reader: Transcriber | None
    # stt.first_pass: a faster recognizer whose text goes out before the final one.
    first_pass: Transcriber | None

    @classmethod
    def load(cls, config: Config, *, stop_word: bool, stt_model_path: Path | None = None,
             transcriber: Transcriber | None = None, turn_end: TurnEndModel | None = None,
             stop_word_reader: Transcriber | None = None,
             first_pass: Transcriber | None = None) -> ListenerModels:
        """The models not handed in (those handed in are then owned too). `stt_model_path`:
        stt.model as resolved by the caller (registry names), or None; `turn_end`: None loads
        vad.smart_turn_model if vad.smart_turn; `stop_word_reader`: None loads Moonshine (the
        configured recognizer where its files are missing) if `stop_word`; `first_pass`: None
        loads Moonshine when stt.first_pass asks for it."""
        if stop_word and stop_word_reader is None:
            stop_word_reader = load_stop_word_reader(config, stt_model_path)
        loaded = cls(transcriber, turn_end if turn_end is not None else load_configured(config),
                     stop_word_reader, None)
        try:
            loaded.transcriber = transcriber or create_transcriber(config.stt, model_path=stt_model_path)
            loaded.first_pass = first_pass or (
                load_first_pass_reader(config) if loaded.transcriber.decodes_at_end
                and loaded.transcriber.engine != "moonshine" else None)
        except BaseException:
            loaded.close()
            raise
        return loaded

    def close(self) -> None:
        for model in (self.transcriber, self.first_pass, self.stop_word_reader, self.turn_end):
            if model is not None:
                model.close()
