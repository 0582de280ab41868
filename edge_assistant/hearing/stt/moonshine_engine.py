"""Moonshine tiny (English) as a transcriber: the model run with onnxruntime (`hearing.moonshine`),
the utterance decoded whole; near-silence gives no text rather than a made-up word."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ... import models
from ...shared_models import Lease
from ..moonshine import MoonshineModel
from .transcriber import BatchTranscriber, Word, shared_models

# Moonshine's threads unless stt.n_threads says: more buys little for one short utterance.
MOONSHINE_THREADS = 2


def _load_moonshine(folder: Path, threads: int) -> Lease:
    return shared_models.acquire(("moonshine", str(folder.resolve()), threads),
                                 lambda: MoonshineModel(folder, threads))


class MoonshineTranscriber(BatchTranscriber):
    engine = "moonshine"
    # Quieter than this throughout (about -40 dBFS) is no speech: Moonshine would still
    # make up a word for it.
    SILENCE_PEAK = 328

    def __init__(self, folder: Path, *, threads: int = MOONSHINE_THREADS) -> None:
        super().__init__()
        self._model = _load_moonshine(folder, threads)

    def _decode(self, utterance: bytes) -> tuple[str, float, tuple[Word, ...]]:
        samples = np.frombuffer(utterance, dtype=np.int16)
        if len(samples) == 0 or int(np.abs(samples.astype(np.int32)).max()) < self.SILENCE_PEAK:
            return "", 0.0, ()
        with self._model.lock:
            text, confidence = self._model.model.transcribe(samples.astype(np.float32) / 32768.0)
        return text, confidence, ()


def moonshine_fallback(error: Exception, folder: Path | None) -> str:
    """One line for a Moonshine model that cannot run: which file, the fix, and that Whisper
    listens meanwhile."""
    if isinstance(error, models.ModelError):
        return f"{error}; Whisper transcribes meanwhile"
    if folder is None:
        fix = models.MOONSHINE_FIX
    else:
        fix = "pull it again (edge-assistant models pull moonshine-tiny-en) or correct stt.model"
    return f"stt.engine moonshine: {error}; {fix}; Whisper transcribes meanwhile"
