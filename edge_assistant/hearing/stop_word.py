"""The word "stop" on a stream of 16 kHz frames, heard within a fraction of a second.

No package ships a "stop" model for microWakeWord or openWakeWord, and Whisper needs the end of
the utterance and half a second more. So this is a small model of our own on openWakeWord's
speech embeddings (96 numbers per 80 ms, from its shipped melspectrogram and embedding models):
the last `frames` embeddings, standardised, through one hidden layer to a probability, which
must reach the cutoff at `consecutive` steps in a row. The weights (`data/stop_word.npz`,
94 KiB) are made by `scripts/train-stop-word.py` from piper and espeak-ng voices saying "stop"
and many other words, in noise and under other speech; `bench --only stop` measures it on
voices it was not trained on.

It only runs while the assistant speaks or rings (the listener turns it on), where a word that
ends what is playing is wanted, and where a false "stop" costs only the end of a reply. While
the assistant says a word like "stop" itself, its own sound holds it (`OwnSound.hold_stop_word`,
from the text it speaks; `stop_listener` runs it in the listener).

What the echo canceller leaves of the assistant's own voice can still score high: the model hears
sounds, and a leftover that sounds like "stop" for a moment looks like one to it. So each
detection is read back (`CheckedStopWord`): a fast recognizer (Moonshine) transcribes the last
`CHECK_S` of audio, and only a "stop" in its words stops the assistant. A leftover is read as the
assistant's own words, or as nothing; a person's "stop" is read as "stop".
"""

from __future__ import annotations

import logging
import re
import threading
from importlib import resources
from pathlib import Path
from typing import Callable, Iterable

import numpy as np

from ..audio.pcm import SAMPLE_RATE, SAMPLE_WIDTH

log = logging.getLogger(__name__)

MODEL_FILE = "stop_word.npz"
# openWakeWord's feature models take 80 ms at a time.
CHUNK_BYTES = 1280 * SAMPLE_WIDTH
# Its mel windows (1760 samples, one per 1280) end 800 samples short of the audio fed so far.
_MEL_LAG_BYTES = 800 * SAMPLE_WIDTH
_MAX_PIECE_BYTES = 50 * CHUNK_BYTES
EMBEDDING_SIZE = 96


# What the assistant may say that the model takes for "stop" ("stop", "stopped", "stops"; and
# "stock" or "stuff" ending a sentence, in its voice).
_STOP_LIKE = re.compile(r"\b(stop|stock|stuff)", re.IGNORECASE)
# What the recognizer must read in the audio of a detection: "stop", "stopped", "stop it".
_READ_AS_STOP = re.compile(r"\bstop", re.IGNORECASE)
# The audio read back: the word ends at most 0.3 s before a detection, and lasts about half a
# second; more audio only gives the recognizer more of the leftovers to read.
CHECK_S = 1.2


def says_stop(text: str) -> bool:
    """Whether speaking `text` would sound like "stop" to the model."""
    return bool(_STOP_LIKE.search(text))


def model_path() -> Path:
    return Path(str(resources.files("edge_assistant") / "data" / MODEL_FILE))


class StopWordModel:
    """The classifier: a window of embeddings in, the probability that "stop" just ended out."""

    def __init__(self, path: Path | None = None) -> None:
        with np.load(path or model_path()) as weights:
            self.frames = int(weights["frames"])
            self.cutoff = float(weights["cutoff"])
            # Steps in a row at or above the cutoff that make a detection.
            self.consecutive = int(weights["consecutive"]) if "consecutive" in weights else 1
            self.mean, self.scale = weights["mean"], weights["scale"]
            self.hidden, self.hidden_bias = weights["hidden"], weights["hidden_bias"]
            self.output, self.output_bias = weights["output"], float(weights["output_bias"])

    def probabilities(self, windows: np.ndarray) -> np.ndarray:
        """`windows`: (n, frames * 96) embeddings, oldest first; (n,) probabilities."""
        hidden = np.maximum(0.0, ((windows - self.mean) / self.scale) @ self.hidden + self.hidden_bias)
        logits = hidden @ self.output + self.output_bias
        return np.exp(-np.logaddexp(0.0, -logits))  # the logistic function, without overflow


class EmbeddingStream:
    """openWakeWord's embeddings of a stream of int16 frames, each with the stream position
    (bytes) at the end of the audio it covers."""

    def __init__(self) -> None:
        from pyopen_wakeword import OpenWakeWordFeatures

        self._features = OpenWakeWordFeatures.from_builtin()
        self._pending = bytearray()
        self._position = 0

    def feed(self, frame: bytes) -> Iterable[tuple[np.ndarray, int]]:
        self._pending += frame
        if len(self._pending) < CHUNK_BYTES:
            return
        usable = len(self._pending) - len(self._pending) % CHUNK_BYTES
        # openWakeWord holds 10 s of audio: longer input goes in pieces.
        for begin in range(0, usable, _MAX_PIECE_BYTES):
            piece = bytes(self._pending[begin : min(usable, begin + _MAX_PIECE_BYTES)])
            self._position += len(piece)
            embeddings = [e[0, 0] for e in self._features.process_streaming(piece)]
            rows = np.concatenate(embeddings) if embeddings else np.zeros((0, EMBEDDING_SIZE), np.float32)
            # One embedding per 80 ms, the last one covering the audio up to the mel lag.
            end = self._position - _MEL_LAG_BYTES
            for index, row in enumerate(rows):
                yield row, end - (len(rows) - 1 - index) * CHUNK_BYTES
        del self._pending[:usable]

    def reset(self) -> None:
        self._features.reset()
        self._pending.clear()
        self._position = 0


class StopWordDetector:
    """Streaming "stop" detector: `process(frame)` gives a score once per word heard."""

    REFRACTORY_S = 1.0

    def __init__(self, model: StopWordModel | None = None, cutoff: float = 0.0) -> None:
        self.model = model or StopWordModel()
        self.cutoff = cutoff or self.model.cutoff
        self._embeddings = EmbeddingStream()
        self._window = np.zeros((self.model.frames, EMBEDDING_SIZE), dtype=np.float32)
        self._filled = 0
        self._last_detection: int | None = None
        self._run = 0  # steps in a row at or above the cutoff
        self._lock = threading.Lock()

    def _scored(self, frame: bytes) -> list[tuple[float, int]]:
        """The probability at each new embedding, with its stream position in bytes."""
        scores = []
        with self._lock:
            for row, position in self._embeddings.feed(frame):
                self._window = np.roll(self._window, -1, axis=0)
                self._window[-1] = row
                self._filled = min(self._filled + 1, self.model.frames)
                if self._filled == self.model.frames:
                    score = float(self.model.probabilities(self._window.reshape(1, -1))[0])
                    scores.append((score, position))
        return scores

    @property
    def context_bytes(self) -> int:
        """The audio one decision hears: its window of embeddings, each over 0.78 s (ten 80 ms
        steps, rounded up)."""
        return (self.model.frames + 10) * CHUNK_BYTES

    def prime(self, audio: bytes) -> None:
        """Hear `audio` from before listening began, for context only: a word in it, or
        ending just after it, is not a detection."""
        for score, position in self._scored(audio):
            if score >= self.cutoff:
                self._last_detection = position  # its refractory second covers what follows
        self._run = 0

    def process(self, frame: bytes) -> float | None:
        """Feed one frame (any length); the score when "stop" was just said, else None."""
        heard = None
        for score, position in self._scored(frame):
            self._run = self._run + 1 if score >= self.cutoff else 0
            recent = (self._last_detection is not None and
                      position - self._last_detection < self.REFRACTORY_S * SAMPLE_RATE * SAMPLE_WIDTH)
            if self._run >= self.model.consecutive and not recent:
                self._last_detection = position
                heard = max(score, heard or 0.0)
        return heard

    def reset(self) -> None:
        """Forget the audio so far (a new stretch of listening starts)."""
        with self._lock:
            self._embeddings.reset()
            self._window[:] = 0.0
            self._filled = 0
            self._last_detection = None
            self._run = 0


def read_as_stop(text: str) -> bool:
    """Whether a recognizer's words for a detection's audio say "stop"."""
    return bool(_READ_AS_STOP.search(text))


class CheckedStopWord:
    """`StopWordDetector` whose detections a recognizer confirms: `process(frame)` gives a score
    only when the last `CHECK_S` of audio is read as "stop".

    `read(audio)`: 16 kHz mono int16 audio in, its words out (blocking, tens of milliseconds
    with Moonshine). None reads nothing back: every detection counts, as the model alone gives.
    """

    def __init__(self, detector: StopWordDetector, read: Callable[[bytes], str] | None) -> None:
        self.detector = detector
        self.read = read
        self.vetoed = 0  # detections the recognizer did not read as "stop"
        self._audio = bytearray()
        self._check_bytes = int(CHECK_S * SAMPLE_RATE) * SAMPLE_WIDTH

    @property
    def context_bytes(self) -> int:
        return self.detector.context_bytes

    def prime(self, audio: bytes) -> None:
        self.detector.prime(audio)
        self._keep(audio)

    def process(self, frame: bytes) -> float | None:
        self._keep(frame)
        score = self.detector.process(frame)
        if score is None or self.read is None:
            return score
        words = self.read(bytes(self._audio))
        if read_as_stop(words):
            return score
        self.vetoed += 1
        log.debug("stop word (score %.3f) not confirmed: the audio reads %r", score, words)
        return None

    def reset(self) -> None:
        self.detector.reset()
        self._audio.clear()

    def _keep(self, audio: bytes) -> None:
        self._audio += audio
        del self._audio[: max(0, len(self._audio) - self._check_bytes)]
