"""Wake word detection on a stream of 16 kHz frames: microWakeWord or openWakeWord.

`WakeDetector.process(frame)` returns a `Detection` at most once per `refractory_s`. While the
assistant speaks (and for a short tail after, since the room still echoes and the output device
still holds buffered audio), detections are dropped so that the assistant never wakes itself;
with barge-in on, a detection that clears the barge-in cutoff still gets through: the normal
cutoff when the microphone's frames have the assistant's voice cancelled (`audio.own_sound`
says so), a stricter one when they do not, or `barge_in_threshold` when it is set. With echo
cancellation the detector also knows when the assistant itself said the wake word
(`OwnSound.said_wake_word`: an `OwnVoiceDetector` fed what the speaker played) and drops what
it hears then; a barge-in there waits `OWN_VOICE_WAIT_S` of audio before it counts, for the
canceller to have heard that far.

Times are positions in the audio stream (seconds of audio processed since `reset()`), not
wall-clock times, so behaviour does not depend on how fast frames are processed. The one
exception is `OwnVoiceDetector`, which relates the canceller's work to the listener's.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Protocol

import numpy as np

from ..audio.own_sound import AssistantSound, OwnSound
from ..audio.pcm import SAMPLE_RATE, SAMPLE_WIDTH
from ..config import ConfigError, WakeConfig

log = logging.getLogger(__name__)

BYTES_PER_SECOND = SAMPLE_RATE * SAMPLE_WIDTH

MICRO_MODELS = ("hey_jarvis", "okay_nabu", "alexa", "hey_mycroft")
OPENWAKEWORD_MODELS = ("hey_jarvis", "okay_nabu", "alexa", "hey_mycroft", "hey_rhasspy")
# openWakeWord models carry no cutoff of their own; 0.5 is the one openWakeWord recommends.
OPENWAKEWORD_DEFAULT_CUTOFF = 0.5
# openWakeWord computes a mel window per 80 ms; feeding it less only costs array shifts.
_OPENWAKEWORD_CHUNK_BYTES = 1280 * SAMPLE_WIDTH
DEFAULT_SPEAKING_TAIL_S = 0.5
# Where the wake phrase ended: a detection comes 0.05 to 0.5 s after it (piper and espeak-ng
# voices, openWakeWord), but the score first rises past _RISE_SCORE within about a step of the
# end, even when the words go on without a pause. It is looked for _RISE_WINDOW_S back from
# the detection (a wake phrase is about as long). The end is taken _RISE_STEPS steps before
# the rise: Whisper makes nothing of the wake word's last sound, while a request whose first
# word is cut short loses it ("turn on the light" heard as "on the light").
_RISE_SCORE = 0.05
_RISE_WINDOW_S = 0.5
_RISE_STEPS = 2
# A detection that may be the assistant's own voice waits this much more audio before it counts:
# the echo canceller is at most a batch ahead of the listener, and the reference's detector
# may cross its cutoff a few hundredths of a second after the microphone's does.
OWN_VOICE_WAIT_S = 0.25
# openWakeWord rests after this much audio quieter than about -55 dBFS (a quiet room through a
# microphone is about -60), and is fed this much of it again when sound comes back.
_QUIET_RMS = 60.0
_QUIET_AFTER_BYTES = int(2.0 * BYTES_PER_SECOND)
_QUIET_PRE_ROLL_BYTES = int(2.0 * BYTES_PER_SECOND)


@dataclass(frozen=True)
class Detection:
    model: str
    score: float
    # End of the frame that triggered, in seconds of audio since the last reset.
    time_s: float
    # Where the wake phrase ended, as near as the scores tell (at most time_s): what was said
    # after it belongs to the request.
    phrase_end_s: float = 0.0
    # True when it was let through while the assistant was speaking.
    barge_in: bool = False


class _Engine(Protocol):
    name: str
    cutoff: float
    # Audio each score moves on by: a score covers the audio up to its step's end.
    step_s: float

    def scores(self, frame: bytes) -> Iterable[float]: ...

    def reset(self) -> None: ...


class _MicroEngine:
    step_s = 0.03  # microWakeWord's models stride 3 feature windows of 10 ms

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
    step_s = 0.08

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
        # In a quiet room the model rests (it costs some 30 times microWakeWord's CPU); the
        # last `_QUIET_PRE_ROLL_S` are kept, and fed first when sound comes back, so that the
        # model hears a wake word from its start and its context is fresh.
        self._recent = bytearray()
        self._quiet_bytes = 0
        self._resting = False

    def scores(self, frame: bytes) -> Iterable[float]:
        self._recent += frame
        del self._recent[: max(0, len(self._recent) - _QUIET_PRE_ROLL_BYTES)]
        if _rms(frame) >= _QUIET_RMS:
            self._quiet_bytes = 0
            if self._resting:
                self._resting = False
                self._pending = bytearray(self._recent)
                frame = b""
        else:
            self._quiet_bytes += len(frame)
            if self._resting:
                return
            self._resting = self._quiet_bytes >= _QUIET_AFTER_BYTES
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
        self._recent.clear()
        self._quiet_bytes = 0
        self._resting = False
        self._features.reset()
        self._model.reset()


def _rms(frame: bytes) -> float:
    samples = np.frombuffer(frame[: len(frame) - len(frame) % SAMPLE_WIDTH], dtype="<i2")
    return float(np.sqrt(np.mean(samples.astype(np.float32) ** 2))) if samples.size else 0.0


def _model_file(model: str, suffixes: tuple[str, ...]) -> Path:
    path = Path(model).expanduser()
    if not path.is_file():
        raise ConfigError(
            f"wake.model: {model!r} is neither a shipped model "
            f"({', '.join(MICRO_MODELS)}) nor a model file ({' or '.join(suffixes)})"
        )
    return path


def _engine(config: WakeConfig) -> _Engine:
    if config.engine == "micro":
        return _MicroEngine(config.model)
    if config.engine == "openwakeword":
        return _OpenWakeWordEngine(config.model)
    raise ConfigError(f"wake.engine: unknown engine {config.engine!r}")


class OwnVoiceDetector:
    """The wake word in what the assistant itself played, so that hearing it is not a wake.

    The echo canceller (audio/echo/) hands over what the speaker played, aligned with the
    microphone samples it is about to clean (`hear`, on the canceller's thread). The listener
    reads the canceller's output, so it gets the same samples just after, in wall-clock time,
    however far both are behind the microphone (its queue, on a loaded machine): a detection
    of the microphone's detector soon after the assistant said the wake word
    (`said_recently`) is the assistant's own voice; one elsewhere is a person's, even while the
    assistant speaks. Capture times would not do: the listener may be seconds behind them.
    """

    # A tenth of the detector's cutoff: what is left of the assistant's voice after cancelling
    # may score far higher than the clean voice did ("I am Jarvis" scores 0.38 with
    # openWakeWord; its echo 0.96), while speech without the wake word stays near 0.02.
    CUTOFF_SHARE = 0.1
    # The microphone's detector may peak up to a second of audio after this one does (it
    # hears the word fainter), and the listener works a batch or two behind the canceller.
    AFTER_S = 2.0
    # Silence after the last played sample before the engine stops being fed.
    IDLE_S = 2.0

    def __init__(self, config: WakeConfig, *, now: Callable[[], float] = time.monotonic) -> None:
        self._engine = _engine(config)
        self.cutoff = (config.threshold or self._engine.cutoff) * self.CUTOFF_SHARE
        self._now = now
        self._lock = threading.Lock()
        self._said: list[float] = []  # when the wake word was heard in the reference
        self._quiet_bytes: int | None = None  # None: nothing played yet

    def hear(self, samples) -> None:
        """What the speaker played, as the microphone samples about to be cleaned hold it."""
        data = samples.astype("<i2").tobytes() if hasattr(samples, "astype") else bytes(samples)
        if any(data):
            self._quiet_bytes = 0
        elif self._quiet_bytes is None or self._quiet_bytes > self.IDLE_S * BYTES_PER_SECOND:
            return  # nothing played for a while: spare the CPU
        else:
            self._quiet_bytes += len(data)
        if max(self._engine.scores(data), default=0.0) >= self.cutoff:
            now = self._now()
            with self._lock:
                self._said = [t for t in self._said if now - t < 60.0] + [now]

    def said_recently(self) -> bool:
        """Whether what the listener hears now may be the assistant saying the wake word."""
        now = self._now()
        with self._lock:
            return any(t <= now <= t + self.AFTER_S for t in self._said)


def stricter_cutoff(cutoff: float) -> float:
    """The barge-in cutoff without echo cancellation: halfway from `cutoff` to certainty, since
    the microphone also hears the assistant's own voice (0.97 -> 0.985, 0.5 -> 0.75)."""
    return cutoff + (1.0 - cutoff) / 2


class WakeDetector:
    """Streaming wake word detector; one per audio stream (engines keep state between frames)."""

    def __init__(self, config: WakeConfig, *, own_sound: OwnSound | None = None,
                 speaking_tail_s: float = DEFAULT_SPEAKING_TAIL_S):
        self.config = config
        self._engine = _engine(config)
        self.model_name = self._engine.name
        self.cutoff = config.threshold or self._engine.cutoff
        # (position_s, score) of the last _RISE_WINDOW_S, to find where the wake phrase ended.
        self._recent_scores: deque[tuple[float, float]] = deque()
        # Whether the frames have the assistant's own voice removed (none known: they do not);
        # then detections of the assistant saying the wake word itself are dropped.
        self.own_sound: OwnSound = own_sound if own_sound is not None else AssistantSound()
        self.echo_cancelled = self.own_sound.cancels_echo
        self.barge_in_cutoff = self._barge_in_cutoff()
        self.speaking_tail_s = speaking_tail_s
        # set_speaking() is called from the event loop while process() runs in a worker thread.
        self._lock = threading.Lock()
        self._speaking = False
        self._speaking_until_s = 0.0
        self._position_bytes = 0
        self._last_detection_s: float | None = None
        # A detection while the assistant's sound is about, until OWN_VOICE_WAIT_S has passed.
        self._pending: tuple[Detection, float] | None = None

    @property
    def time_s(self) -> float:
        """Seconds of audio processed since the last reset."""
        return self._position_bytes / BYTES_PER_SECOND

    @property
    def phrase_end_margin_s(self) -> float:
        """How far before the wake phrase's true end `Detection.phrase_end_s` may be."""
        return _RISE_STEPS * self._engine.step_s

    @property
    def speaking(self) -> bool:
        return self._speaking

    def _barge_in_cutoff(self) -> float:
        if self.config.barge_in_threshold:
            return self.config.barge_in_threshold
        if self.echo_cancelled:
            return self.cutoff
        return stricter_cutoff(self.cutoff)

    def set_speaking(self, speaking: bool, *, behind_s: float = 0.0) -> None:
        """`behind_s`: how much audio captured before this call is still to be processed."""
        with self._lock:
            if self._speaking and not speaking:
                self._speaking_until_s = self.time_s + behind_s + self.speaking_tail_s
            self._speaking = speaking

    def process(self, frame: bytes) -> Detection | None:
        """Feed one frame of 16 kHz mono int16 audio (any length); a detection or None."""
        scores = list(self._engine.scores(frame))
        best = max(scores, default=None)
        with self._lock:
            self._position_bytes += len(frame)
            now = self.time_s
            self._keep_scores(now, scores)
            confirmed = self._confirm_pending(now)
            # Whatever this frame scores, it is inside the confirmed detection's refractory time.
            if confirmed is not None or best is None or best < self.cutoff:
                return confirmed
            if self._last_detection_s is not None and (
                now - self._last_detection_s < self.config.refractory_s
            ):
                return None
            self_voice = self._speaking or now < self._speaking_until_s
            if self_voice and not (self.config.barge_in and best >= self.barge_in_cutoff):
                log.debug("wake word %s ignored while speaking (score %.3f)", self.model_name, best)
                return None
            if self.echo_cancelled and self.own_sound.said_wake_word():
                log.debug("wake word %s ignored: the assistant said it (score %.3f)",
                          self.model_name, best)
                return None
            self._last_detection_s = now
            detection = Detection(model=self.model_name, score=best, time_s=now,
                                  phrase_end_s=self._phrase_end(now), barge_in=self_voice)
            if self.echo_cancelled and self_voice:
                self._pending = (detection, now + OWN_VOICE_WAIT_S)
                return None
        return detection

    def _keep_scores(self, now: float, scores: list[float]) -> None:
        self._recent_scores.extend((now, score) for score in scores)
        while self._recent_scores and self._recent_scores[0][0] < now - _RISE_WINDOW_S:
            self._recent_scores.popleft()

    def _phrase_end(self, now: float) -> float:
        """Where the wake phrase just detected ended, or a little before: see _RISE_STEPS."""
        risen = next((at for at, score in self._recent_scores if score >= _RISE_SCORE), now)
        return max(0.0, min(now, risen - _RISE_STEPS * self._engine.step_s))

    def _confirm_pending(self, now: float) -> Detection | None:
        if self._pending is None or now < self._pending[1]:
            return None
        detection, self._pending = self._pending[0], None
        if self.own_sound.said_wake_word():
            log.debug("wake word %s ignored: the assistant said it (score %.3f)",
                      self.model_name, detection.score)
            return None
        return detection

    def reset(self) -> None:
        """Forget all audio: call when the stream was interrupted (the engines keep context)."""
        self._engine.reset()
        with self._lock:
            # Positions restart at zero: keep what is left of a speaking tail.
            self._speaking_until_s = max(0.0, self._speaking_until_s - self.time_s)
            self._position_bytes = 0
            self._last_detection_s = None
            self._pending = None
            self._recent_scores.clear()
