"""One processing step on microphone samples: the canceller with the reference shifted by the measured delay."""

from __future__ import annotations

import collections
import logging
from typing import Callable

import numpy as np

from ...config import AudioConfig
from ..pcm import SAMPLE_RATE
from .delay import SOUNDING_LEVEL, EchoDelayEstimator
from .engines import BLOCK, DELAY_MARGIN_S, ENGINES, _Engine
from .reference import PlaybackReference
from .status import EchoStatus

log = logging.getLogger(__name__)

# Sound played after the delay is measured (or changed) before the canceller's filter is taken
# to have learnt the room: until then it leaves much of the echo.
SETTLE_S = 3.0
# How long the room goes on echoing a sound after the speaker stopped playing it.
ECHO_TAIL_S = 0.3
# Before a delay is adopted (estimates in a row must agree), the latest confident estimate says
# when the echo comes, give or take this much: without it, everything up to
# `echo_max_delay_ms` and the tail after a reply would count as its echo, and a person
# answering straight after the assistant's first replies would lose their first word.
ESTIMATE_MARGIN_S = 0.05


class CaptureProcessor:
    """The canceller (with noise suppression and gain when asked for) on microphone samples,
    with the reference shifted by the measured delay. Blocking: run it off the event loop."""

    def __init__(self, cfg: AudioConfig, reference: PlaybackReference | None,
                 *, on_delay: Callable[[EchoStatus], None] | None = None,
                 hear_played: Callable[[np.ndarray], None] | None = None) -> None:
        echo = cfg.echo_cancellation and reference is not None
        self.engine: _Engine = ENGINES[cfg.echo_canceller](echo, cfg.noise_suppression, cfg.auto_gain)
        self.reference = reference if echo else None
        self.estimator = EchoDelayEstimator(cfg.echo_max_delay_ms / 1000)
        self.on_delay = on_delay
        # Given what was played, as the microphone samples about to be cleaned hold it
        # (own_sound.WakeWordEar.hear): the assistant's own wake word is then known.
        self._hear_played = hear_played
        # Per 10 ms of reference (not shifted): did the speaker play something audible?
        self._sounding = collections.deque(maxlen=int((cfg.echo_max_delay_ms / 1000 + ECHO_TAIL_S) * 100) + 1)
        # For each block of the last `process()`: could the microphone hear the speaker then?
        self.own_sound: list[bool] = []
        self._settling_blocks = int(SETTLE_S * SAMPLE_RATE / BLOCK)  # sounding blocks still to go

    @property
    def cancels_echo(self) -> bool:
        return self.reference is not None

    @property
    def status(self) -> EchoStatus:
        delay = self.estimator.delay
        last = self.estimator.last
        return EchoStatus(
            active=self.cancels_echo, engine=self.engine.name,
            delay_ms=None if delay is None else round(delay * 1000 / SAMPLE_RATE, 1),
            confidence=None if last is None else round(last.confidence, 1),
        )

    @property
    def settled(self) -> bool:
        """Whether the canceller has learnt the room: the delay measured, and `SETTLE_S` of
        sound played since. Before that, what it leaves of the assistant's voice is loud."""
        return self.cancels_echo and self.estimator.delay is not None and self._settling_blocks <= 0

    @property
    def shift(self) -> int:
        """How many samples before each microphone sample the reference is read."""
        delay = self.estimator.delay
        if delay is None or delay <= self.engine.own_delay_s * SAMPLE_RATE:
            return 0
        return max(0, delay - int(self.engine.residual_delay_s * SAMPLE_RATE))

    def _hears_own_sound(self) -> bool:
        """Whether the block just added to `_sounding` may hold the speaker's sound: anything
        played from the delay up to the room's tail before it. Before a delay is adopted, the
        latest confident estimate stands for it, with a margin; with none, any delay."""
        delay, margin = self.estimator.delay, DELAY_MARGIN_S
        blocks = list(self._sounding)
        if delay is None:
            estimate = self.estimator.last
            if estimate is None or estimate.confidence < self.estimator.MIN_CONFIDENCE:
                return any(blocks)
            delay, margin = int(estimate.delay_s * SAMPLE_RATE), ESTIMATE_MARGIN_S
        latest = max(0, (delay - int(margin * SAMPLE_RATE)) // BLOCK)
        earliest = (delay // BLOCK) + int((ECHO_TAIL_S + margin - DELAY_MARGIN_S) * 100) + 1
        return any(blocks[max(0, len(blocks) - earliest) : max(0, len(blocks) - latest)])

    def process(self, samples: np.ndarray, first_index: int) -> np.ndarray:
        """Microphone samples (int16, any length, `first_index` on the timeline) -> cleaned."""
        out = np.empty_like(samples)
        self.own_sound = []
        for offset in range(0, samples.size, BLOCK):
            near = samples[offset : offset + BLOCK]
            if near.size < BLOCK:  # frames are whole 10 ms blocks; this is only a last resort
                near = np.concatenate([near, np.zeros(BLOCK - near.size, dtype=np.int16)])
            index = first_index + offset
            far = None
            if self.reference is not None:
                played = self.reference.read(index, BLOCK)
                self._sounding.append(bool(np.max(np.abs(played), initial=0) >= SOUNDING_LEVEL))
                self.own_sound.append(self._hears_own_sound())
                if self._sounding[-1]:
                    self._settling_blocks = max(0, self._settling_blocks - 1)
                if self.estimator.add(near.astype(np.float32), played.astype(np.float32)):
                    self._settling_blocks = int(SETTLE_S * SAMPLE_RATE / BLOCK)
                    log.info("echo path delay: %.1f ms", self.estimator.delay * 1000 / SAMPLE_RATE)
                    if self.on_delay is not None:
                        self.on_delay(self.status)
                shift = self.shift
                far = played if shift == 0 else self.reference.read(index - shift, BLOCK)
                if self._hear_played is not None:
                    self._hear_played(self.reference.read(index - (self.estimator.delay or 0), BLOCK))
                # The delay may still grow up to the estimator's longest.
                self.reference.forget_before(index - self.estimator.max_lag - BLOCK)
            cleaned = self.engine.process(near, far)
            out[offset : offset + BLOCK] = cleaned[: min(BLOCK, samples.size - offset)]
        return out
