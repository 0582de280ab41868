"""Whisper through faster-whisper (CTranslate2, int8 on the CPU): the utterance decoded whole,
one call at a time on a shared model (its lock)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from ...config import SttConfig
from ...shared_models import Lease
from .transcriber import BatchTranscriber, SttError, Word, join_text, shared_models


def is_whisper_model(folder: Path) -> bool:
    return (folder / "model.bin").is_file() and (folder / "config.json").is_file()


def cpu_threads(config: SttConfig) -> int:
    if config.n_threads:
        return config.n_threads
    import psutil

    return psutil.cpu_count(logical=False) or 1


def _load_whisper(folder: Path, threads: int) -> Lease:
    def load():
        from faster_whisper import WhisperModel

        if not is_whisper_model(folder):
            raise SttError(f"stt.model: {str(folder)!r} is not a CTranslate2 Whisper model folder")
        return WhisperModel(str(folder), device="cpu", compute_type="int8", cpu_threads=threads)

    return shared_models.acquire(("whisper", str(folder.resolve()), threads), load)


class WhisperTranscriber(BatchTranscriber):
    engine = "whisper"

    def __init__(self, folder: Path, *, language: str = "en", beam_size: int = 1,
                 threads: int = 1) -> None:
        super().__init__()
        self._model = _load_whisper(folder, threads)
        self.language = language or None
        self.beam_size = beam_size

    def _decode(self, utterance: bytes) -> tuple[str, float, tuple[Word, ...]]:
        samples = np.frombuffer(utterance, dtype=np.int16).astype(np.float32) / 32768.0
        if len(samples) == 0:
            return "", 0.0, ()
        with self._model.lock:
            segments, _info = self._model.model.transcribe(
                samples,
                language=self.language,
                beam_size=self.beam_size,
                # The endpointer has already cut the utterance.
                vad_filter=False,
                without_timestamps=True,
                # Each utterance stands alone: no carried-over context to hallucinate from.
                condition_on_previous_text=False,
            )
            segments = list(segments)
        text = join_text([s.text for s in segments])
        if not segments:
            return text, 0.0, ()
        confidence = math.exp(sum(s.avg_logprob for s in segments) / len(segments))
        return text, confidence, ()
