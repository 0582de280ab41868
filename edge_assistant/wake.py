"""Wake word detection on a stream of 16 kHz frames: microWakeWord or openWakeWord.

`WakeDetector.process(frame)` returns a `Detection` at most once per `refractory_s`. While the
assistant speaks (and for a short tail after, since the room still echoes and the output device
still holds buffered audio), detections are dropped so that the assistant never wakes itself;
with barge-in on, a detection that clears `barge_in_threshold` still gets through.

All times are positions in the audio stream (seconds of audio processed since `reset()`), not
wall-clock times, so behaviour does not depend on how fast frames are processed.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Protocol

from .audio.pcm import SAMPLE_RATE, SAMPLE_WIDTH
from .config import ConfigError, WakeConfig

log = logging.getLogger(__name__)

BYTES_PER_SECOND = SAMPLE_RATE * SAMPLE_WIDTH

MICRO_MODELS = ("hey_jarvis", "okay_nabu", "alexa", "hey_mycroft")
OPENWAKEWORD_MODELS = ("hey_jarvis", "okay_nabu", "alexa", "hey_mycroft", "hey_rhasspy")
# openWakeWord models carry no cutoff of their own; 0.5 is the one openWakeWord recommends.
OPENWAKEWORD_DEFAULT_CUTOFF = 0.5
# openWakeWord computes a mel window per 80 ms; feeding it less only costs array shifts.
_OPENWAKEWORD_CHUNK_BYTES = 1280 * SAMPLE_WIDTH
DEFAULT_SPEAKING_TAIL_S = 0.5


@dataclass(frozen=True)
class Detection:
    model: str
    score: float
    # End of the frame that triggered, in seconds of audio since the last reset.
    time_s: float
    # True when it was let through while the assistant was speaking.
    barge_in: bool = False


class _Engine(Protocol):
    name: str
    cutoff: float

    def scores(self, frame: bytes) -> Iterable[float]: ...

    def reset(self) -> None: ...


class _MicroEngine:
    def __init__(self, model: str) -> None:
        from pymicro_wakeword import MicroWakeWord, MicroWakeWordFeatures, Model

        if model in MICRO_MODELS:
            self._model = MicroWakeWord.from_builtin(Model(model))
        else:
            config_path = _model_file(model, (".json", ".tflite"))
            if config_path.suffix == ".tflite":
                # microWakeWord needs its JSON (cutoff, window size) next to the .tflite.
                config_path = config_path.with_suffix(".json")
                if not config_path.is_file():
                    raise ConfigError(
                        f"wake.model: {model!r}: a microWakeWord model is loaded from its JSON "
                        f"config file, and {config_path.name} is not next to it"
                    )
            try:
                self._model = MicroWakeWord.from_config(config_path)
            except (OSError, ValueError, KeyError) as error:
                raise ConfigError(f"wake.model: cannot load {model!r}: {error}") from None
        self._features = MicroWakeWordFeatures()
        self.name = model if model in MICRO_MODELS else self._model.id
        self.cutoff = float(self._model.probability_cutoff)

    def scores(self, frame: bytes) -> Iterable[float]:
        for features in self._features.process_streaming(frame):
            score = self._model.process_streaming_prob(features)
            if score is not None:
                yield float(score)

    def reset(self) -> None:
        self._features.reset()
        self._model.reset()


class _OpenWakeWordEngine:
    def __init__(self, model: str) -> None:
        from pyopen_wakeword import Model, OpenWakeWord, OpenWakeWordFeatures

        if model in OPENWAKEWORD_MODELS:
            self._model = OpenWakeWord.from_builtin(Model(model))
            self.name = model
        else:
            path = _model_file(model, (".tflite",))
            try:
                self._model = OpenWakeWord.from_model(path)
            except (OSError, ValueError, RuntimeError) as error:
                raise ConfigError(f"wake.model: cannot load {model!r}: {error}") from None
            self.name = path.stem
        self._features = OpenWakeWordFeatures.from_builtin()
        self._pending = bytearray()
        self.cutoff = OPENWAKEWORD_DEFAULT_CUTOFF

    def scores(self, frame: bytes) -> Iterable[float]:
        self._pending += frame
        if len(self._pending) < _OPENWAKEWORD_CHUNK_BYTES:
            return
        usable = len(self._pending) - len(self._pending) % SAMPLE_WIDTH
        chunk = bytes(self._pending[:usable])
        del self._pending[:usable]
        for embeddings in self._features.process_streaming(chunk):
            yield from (float(score) for score in self._model.process_streaming(embeddings))

    def reset(self) -> None:
        self._pending.clear()
        self._features.reset()
        self._model.reset()


def _model_file(model: str, suffixes: tuple[str, ...]) -> Path:
    path = Path(model).expanduser()
    if not path.is_file():
        raise ConfigError(
            f"wake.model: {model!r} is neither a shipped model "
            f"({', '.join(MICRO_MODELS)}) nor a model file ({' or '.join(suffixes)})"
        )
    return path


class WakeDetector:
    """Streaming wake word detector; one per audio stream (engines keep state between frames)."""

    def __init__(self, config: WakeConfig, *, speaking_tail_s: float = DEFAULT_SPEAKING_TAIL_S):
        self.config = config
        if config.engine == "micro":
            self._engine: _Engine = _MicroEngine(config.model)
        elif config.engine == "openwakeword":
            self._engine = _OpenWakeWordEngine(config.model)
        else:
            raise ConfigError(f"wake.engine: unknown engine {config.engine!r}")
        self.model_name = self._engine.name
        self.cutoff = config.threshold or self._engine.cutoff
        self.barge_in_cutoff = config.barge_in_threshold or self.cutoff
        self.speaking_tail_s = speaking_tail_s
        # set_speaking() is called from the event loop while process() runs in a worker thread.
        self._lock = threading.Lock()
        self._speaking = False
        self._speaking_until_s = 0.0
        self._position_bytes = 0
        self._last_detection_s: float | None = None

    @property
    def time_s(self) -> float:
        """Seconds of audio processed since the last reset."""
        return self._position_bytes / BYTES_PER_SECOND

    @property
    def speaking(self) -> bool:
        return self._speaking

    def set_speaking(self, speaking: bool) -> None:
        with self._lock:
            if self._speaking and not speaking:
                self._speaking_until_s = self.time_s + self.speaking_tail_s
            self._speaking = speaking

    def process(self, frame: bytes) -> Detection | None:
        """Feed one frame of 16 kHz mono int16 audio (any length); a detection or None."""
        best = max(self._engine.scores(frame), default=None)
        with self._lock:
            self._position_bytes += len(frame)
            now = self.time_s
            if best is None or best < self.cutoff:
                return None
            if self._last_detection_s is not None and (
                now - self._last_detection_s < self.config.refractory_s
            ):
                return None
            self_voice = self._speaking or now < self._speaking_until_s
            if self_voice and not (self.config.barge_in and best >= self.barge_in_cutoff):
                log.debug("wake word %s ignored while speaking (score %.3f)", self.model_name, best)
                return None
            self._last_detection_s = now
        return Detection(model=self.model_name, score=best, time_s=now, barge_in=self_voice)

    def reset(self) -> None:
        """Forget all audio: call when the stream was interrupted (the engines keep context)."""
        self._engine.reset()
        with self._lock:
            # Positions restart at zero: keep what is left of a speaking tail.
            self._speaking_until_s = max(0.0, self._speaking_until_s - self.time_s)
            self._position_bytes = 0
            self._last_detection_s = None
