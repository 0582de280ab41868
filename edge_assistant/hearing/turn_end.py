"""Whether the person has finished their turn, judged from how they sound: Smart Turn v3.

A pause in speech does not always end a turn ("Set a timer for ... ten minutes"). Smart Turn v3,
pipecat's open end-of-turn model (BSD 2-Clause, Copyright (c) 2024-2026 Daily; a Whisper tiny
encoder with a classification head, 8 MB of int8 ONNX), hears the last 8 s of the utterance,
trailing pause included, and gives the probability that the turn is complete, from intonation
and words together. `vad.Endpointer` asks it once per pause.

Its input is what Whisper's feature extractor makes of 8 s of 16 kHz audio (zero-padded at the
start when shorter): the waveform normalized to zero mean and unit variance, a centred
short-time Fourier transform (400-sample periodic Hann window, hop 160), 80 Slaney mel bands
from 0 to 8 kHz, log10, floored 8 below the maximum and scaled as (x + 4) / 4: 80 x 800 values.
This module computes that with numpy, as pipecat's own inference code does.

The model hears the voice, and a voice can sound finished in mid-sentence (synthetic voices
often do). The words say more: `ends_mid_phrase` knows the English words a question cannot
end on ("What is the capital of", "Set a timer for"), which the listener checks in the
transcript of the pause before it lets the model end a turn.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from .. import models
from ..config import Config
from ..shared_models import Lease, SharedModels

SAMPLE_RATE = 16000
WINDOW_S = 8
WINDOW_SAMPLES = WINDOW_S * SAMPLE_RATE
N_FFT = 400
HOP = 160
N_MELS = 80
FRAMES = WINDOW_SAMPLES // HOP  # 800


class TurnEndError(RuntimeError):
    """The end-of-turn model cannot be loaded or run; names the key."""


def _hz_to_mel(hz: np.ndarray) -> np.ndarray:
    # Slaney's scale: linear below 1 kHz, logarithmic above.
    hz = np.asarray(hz, dtype=np.float64)
    linear = 3.0 * hz / 200.0
    logarithmic = 15.0 + np.log(np.maximum(hz, 1e-9) / 1000.0) * (27.0 / np.log(6.4))
    return np.where(hz >= 1000.0, logarithmic, linear)


def _mel_to_hz(mel: np.ndarray) -> np.ndarray:
    mel = np.asarray(mel, dtype=np.float64)
    linear = 200.0 * mel / 3.0
    logarithmic = 1000.0 * np.exp((np.log(6.4) / 27.0) * (mel - 15.0))
    return np.where(mel >= 15.0, logarithmic, linear)


def _mel_filters() -> np.ndarray:
    """(N_MELS, N_FFT // 2 + 1) triangular filters, each scaled to unit area (Slaney)."""
    edges = _mel_to_hz(np.linspace(_hz_to_mel(0.0), _hz_to_mel(SAMPLE_RATE / 2), N_MELS + 2))
    bins = np.linspace(0, SAMPLE_RATE // 2, N_FFT // 2 + 1)
    lower, centre, upper = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    rising = (bins[None, :] - lower) / (centre - lower)
    falling = (upper - bins[None, :]) / (upper - centre)
    triangles = np.maximum(0.0, np.minimum(rising, falling))
    return triangles * (2.0 / (upper - lower))


_FILTERS = _mel_filters()
# Periodic (not symmetric) Hann window, as torch.hann_window and Whisper use.
_WINDOW = np.hanning(N_FFT + 1)[:-1]


def last_window(samples: np.ndarray) -> np.ndarray:
    """The last 8 s of 16 kHz audio as float32 in [-1, 1], zero-padded at the start."""
    samples = np.asarray(samples)
    if samples.dtype == np.int16:
        samples = samples.astype(np.float32) / 32768.0
    samples = samples.astype(np.float32, copy=False)[-WINDOW_SAMPLES:]
    if samples.size < WINDOW_SAMPLES:
        samples = np.concatenate([np.zeros(WINDOW_SAMPLES - samples.size, np.float32), samples])
    return samples


def log_mel(window: np.ndarray) -> np.ndarray:
    """Whisper's log-mel features of an 8 s window (`last_window`): float32 (80, 800)."""
    x = window.astype(np.float32)
    x = (x - x.mean()) / np.sqrt(x.var() + 1e-7)
    padded = np.pad(x.astype(np.float64), N_FFT // 2, mode="reflect")
    frames = sliding_window_view(padded, N_FFT)[::HOP]
    power = np.abs(np.fft.rfft(frames * _WINDOW, axis=-1)) ** 2  # (801, 201)
    mel = np.log10(np.maximum(_FILTERS @ power.T, 1e-10))[:, :-1]  # the last frame is dropped
    mel = np.maximum(mel, mel.max() - 8.0)
    return ((mel + 4.0) / 4.0).astype(np.float32)


# Words a finished English request hardly ever ends on: articles, prepositions that take an
# object, conjunctions, possessives and hesitations. Particles that often end one ("turn it
# on", "switch it off") are left out; a request that does end on a listed word ("What is it
# for?") only waits for vad.silence_s, as it would without the model.
_UNFINISHED_WORDS = frozenset("""
    a an the of to for with from about at by into onto than as
    and or but because if nor
    my your our their its his her
    um uh er erm hmm mm
""".split())
_WORD = re.compile(r"[a-z']+")


def ends_mid_phrase(text: str) -> bool:
    """Whether an English transcript stops where a sentence cannot: on a word such as "of",
    "the", "and", "my" or "um", or on a comma, ellipsis or dash."""
    stripped = text.strip().strip("\"'")
    if not stripped:
        return False
    if stripped.endswith((",", "...", "…", "-", "–", "—", ":")):
        return True
    words = _WORD.findall(stripped.lower())
    return bool(words) and words[-1] in _UNFINISHED_WORDS


# One ONNX session per model file in a process, shared by every listener.
shared_models: SharedModels = SharedModels("end-of-turn model")


def _load(path: Path, threads: int) -> Lease:
    def load():
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
        try:
            return onnxruntime.InferenceSession(
                str(path), sess_options=options, providers=["CPUExecutionProvider"])
        except Exception as error:  # onnxruntime raises its own exception types
            raise TurnEndError(
                f"vad.smart_turn_model: cannot load {str(path)!r}: {error}") from None

    return shared_models.acquire((str(Path(path).resolve()), threads), load)


class TurnEndModel:
    """Smart Turn v3 on onnxruntime: `probability(utterance)` that the turn is complete."""

    def __init__(self, path: str | Path, *, threads: int = 1) -> None:
        self.path = Path(path)
        self._model = _load(self.path, threads)
        # Seconds the last call took (features and inference), for logs and the bench.
        self.last_latency_s = 0.0

    def probability(self, samples: np.ndarray) -> float:
        """0..1 that the speaker has finished, from the utterance so far (16 kHz mono int16, or
        floats in [-1, 1]), its trailing pause included. Blocking (tens of milliseconds)."""
        began = time.perf_counter()
        features = log_mel(last_window(samples))[None]
        with self._model.lock:
            (output,) = self._model.model.run(None, {"input_features": features})
        self.last_latency_s = time.perf_counter() - began
        # The exported model ends in a sigmoid: its "logits" output is already a probability.
        return float(np.asarray(output).reshape(-1)[0])

    def close(self) -> None:
        """Let go of the model (freed once no listener uses it)."""
        self._model.release()


def load_configured(config: Config) -> TurnEndModel | None:
    """The model `vad.smart_turn_model` names, or None when `vad.smart_turn` is off. Raises
    `models.ModelError` (saying how to get it) when it is not there."""
    if not config.vad.smart_turn:
        return None
    return TurnEndModel(models.resolve_turn_end(config.vad.smart_turn_model, config.state_dir()))
