"""The interface every speech recognizer has here: a `Transcriber` is fed one utterance frame by
frame (`start`, `accept`, `finish`) or all at once (`transcribe`), and gives a `Transcript`; a
`BatchTranscriber` keeps the audio and decodes it whole, at a pause (a draft) or at the end.
The engines (vosk, Whisper, Moonshine) are the modules beside this one; their models are
shared through `shared_models`.
"""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import Future
from dataclasses import asdict, dataclass, field
from typing import Any, Callable

import numpy as np

from ...audio.pcm import SAMPLE_RATE, SAMPLE_WIDTH, as_int16
from ...shared_models import SharedModels

log = logging.getLogger(__name__)

BYTES_PER_SECOND = SAMPLE_RATE * SAMPLE_WIDTH
# Whisper and Moonshine keep the whole utterance; the endpointer cuts it long before this.
BATCH_MAX_AUDIO_S = 300.0


class SttError(RuntimeError):
    """Speech recognition could not run (missing model, unreadable file); names the key."""


@dataclass(frozen=True)
class Word:
    word: str
    start_s: float
    end_s: float
    confidence: float


@dataclass(frozen=True)
class Transcript:
    text: str
    # 0..1: vosk's mean word confidence; for Whisper, exp of the mean token log-probability.
    confidence: float
    # Seconds of audio transcribed.
    duration_s: float
    # From the end of speech (the `finish()` call) to the final text.
    latency_s: float
    engine: str
    words: tuple[Word, ...] = field(default=())
    # The text is a draft made at the last pause, before the end of the turn was decided.
    speculative: bool = False

    def to_json_dict(self) -> dict[str, Any]:
        """The fields of a `transcript` event, as `edge-assistant transcribe --json` prints them."""
        payload = {
            "text": self.text,
            "confidence": round(self.confidence, 3),
            "duration_s": round(self.duration_s, 3),
            "latency_s": round(self.latency_s, 3),
            "engine": self.engine,
        }
        if self.words:
            payload["words"] = [
                {k: round(v, 3) if isinstance(v, float) else v for k, v in asdict(w).items()}
                for w in self.words
            ]
        return payload


# Every transcriber of one model shares it; the last one closed frees it.
shared_models: SharedModels[Any] = SharedModels("speech model")


class Transcriber:
    """One utterance at a time: `start()`, `accept(frame)` per frame, then `finish()`."""

    engine = ""
    # The final text needs the whole utterance decoded once it has ended (Whisper), so a draft
    # made at the last pause saves that wait; vosk's final text is ready at once.
    decodes_at_end = False
    # Why this engine runs in place of the configured one ("" when it is the configured one).
    fallback = ""

    def __init__(self) -> None:
        # One stream per transcriber; the lock only guards against overlapping calls.
        self._lock = threading.Lock()
        self._bytes = 0

    def start(self) -> None:
        with self._lock:
            self._bytes = 0
            self._start()

    def accept(self, frame: bytes) -> str | None:
        """Feed 16 kHz mono int16 audio; the new partial text when it changed, else None."""
        with self._lock:
            self._bytes += len(frame)
            return self._accept(frame)

    def draft(self) -> Callable[[], Transcript]:
        """At a pause: a function that gives the text of the utterance so far, leaving the
        utterance open. Call it in another thread if you like: it keeps its own copy of the
        audio, and frames may go on being accepted meanwhile."""
        with self._lock:
            return self._draft()

    def finish(self, draft: Future | None = None) -> Transcript:
        """Speech has ended: the final text. Starts the next utterance afresh.

        `draft`: the future of a `draft()` made after the last speech of this utterance. An
        engine that decodes at the end takes its text (waiting for it if it still runs) instead
        of decoding again; if the draft failed, it decodes as usual.
        """
        with self._lock:
            began = time.monotonic()
            drafted = _result(draft) if draft is not None and self.decodes_at_end else None
            if drafted is not None:
                text, confidence, words = drafted.text, drafted.confidence, drafted.words
            else:
                text, confidence, words = self._finish()
            transcript = Transcript(
                text=text,
                confidence=confidence,
                duration_s=self._bytes / BYTES_PER_SECOND,
                latency_s=time.monotonic() - began,
                engine=self.engine,
                words=words,
                speculative=drafted is not None,
            )
            self._bytes = 0
            self._start()
            return transcript

    def transcribe(self, samples: np.ndarray) -> Transcript:
        """A whole utterance at once (16 kHz mono int16 samples, or floats in [-1, 1])."""
        samples = as_int16(samples)
        self.start()
        step = SAMPLE_RATE // 10
        for offset in range(0, len(samples), step):
            self.accept(samples[offset : offset + step].tobytes())
        return self.finish()

    def close(self) -> None:
        """Let go of the model (freed once no transcriber uses it)."""
        model = getattr(self, "_model", None)
        if model is not None:
            model.release()

    def _start(self) -> None:
        raise NotImplementedError

    def _accept(self, frame: bytes) -> str | None:
        raise NotImplementedError

    def _finish(self) -> tuple[str, float, tuple[Word, ...]]:
        raise NotImplementedError

    def _draft(self) -> Callable[[], Transcript]:
        raise NotImplementedError


def _result(draft: Future) -> Transcript | None:
    try:
        return draft.result()
    except Exception:  # a failed draft only means decoding at the end, as without one
        log.exception("transcribing at the pause failed; transcribing the utterance again")
        return None


class BatchTranscriber(Transcriber):
    """An engine that decodes a whole utterance at once (Whisper, Moonshine): it keeps the
    audio, and `_decode` runs at a pause (a draft) or at the end."""

    decodes_at_end = True

    def __init__(self) -> None:
        super().__init__()
        self._audio = bytearray()

    def _start(self) -> None:
        self._audio = bytearray()

    def _accept(self, frame: bytes) -> str | None:
        room = int(BATCH_MAX_AUDIO_S * BYTES_PER_SECOND) - len(self._audio)
        if room < len(frame):
            log.warning("utterance longer than %.0f s; the rest is not transcribed",
                        BATCH_MAX_AUDIO_S)
        self._audio += frame[: max(0, room)]
        return None

    def _draft(self) -> Callable[[], Transcript]:
        utterance = bytes(self._audio)

        def decode() -> Transcript:
            began = time.monotonic()
            text, confidence, words = self._decode(utterance)
            return Transcript(text, confidence, len(utterance) / BYTES_PER_SECOND,
                              time.monotonic() - began, self.engine, words)

        return decode

    def _finish(self) -> tuple[str, float, tuple[Word, ...]]:
        return self._decode(bytes(self._audio))

    def _decode(self, utterance: bytes) -> tuple[str, float, tuple[Word, ...]]:
        raise NotImplementedError


def join_text(parts: list[str]) -> str:
    return " ".join(p.strip() for p in parts if p and p.strip())
