"""The microphone with echo cancelled: frames through the processor in a worker thread, and the one call that wires it all."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any, AsyncIterator, Callable

import numpy as np

from ...concurrency import to_thread_joined
from ...config import AudioConfig
from ..capture_clock import CaptureClock
from ..pcm import SAMPLE_RATE
from .engines import BLOCK, EchoCancellerError
from .processor import CaptureProcessor
from .reference import PlaybackReference
from .status import EchoStatus, write_status

log = logging.getLogger(__name__)

# Frames are handed to the canceller's thread in batches of this much audio, like the listener's.
BATCH_S = 0.1


class EchoCancellingSource:
    """A frame source (the microphone) with `CaptureProcessor` applied to its frames.

    Frames go to a worker thread in batches of `BATCH_S`, as the listener's do, and come back
    with the same sizes in the same order. A cancelled reader waits for the batch in hand: the
    canceller's thread never outlives the run that reads it.
    """

    def __init__(self, source: Any, processor: CaptureProcessor, clock: CaptureClock,
                 now: Callable[[], float] = time.monotonic) -> None:
        self.source = source
        self.processor = processor
        self.clock = clock
        self._now = now
        self.frame_ms = getattr(source, "frame_ms", 10)
        self._own_sound = False
        self._openings: int | None = None

    @property
    def cancels_echo(self) -> bool:
        return self.processor.cancels_echo

    @property
    def status(self) -> EchoStatus:
        return self.processor.status

    @property
    def settled(self) -> bool:
        """Whether the canceller has learnt the room (`CaptureProcessor.settled`)."""
        return self.processor.settled

    def played(self, start: int, count: int) -> np.ndarray:
        """What the speaker played over microphone samples [start, start + count)."""
        reference = self.processor.reference
        return np.zeros(count, dtype=np.int16) if reference is None else reference.read(start, count)

    def captured_at(self, index: int) -> float | None:
        """When microphone sample `index` was captured, on this source's clock."""
        return self.clock.time_at(index)

    @property
    def hears_own_sound(self) -> bool:
        """Whether the frame `frames()` yielded last was captured while the speaker's sound (or
        its echo) could reach the microphone: what remains of it after cancelling is faint, but
        a speech recognizer may still make words of it."""
        return self._own_sound

    @property
    def overflows(self) -> int:
        return getattr(self.source, "overflows", 0)

    @property
    def queued_s(self) -> float:
        """Seconds of captured sound not yet cleaned (the microphone's queue)."""
        return float(getattr(self.source, "queued_s", 0.0))

    def _follow_reopening(self) -> None:
        """A microphone that counts its openings (`MicrophoneSource.openings`) says when its
        samples stopped being one unbroken capture: the clock and the reference start anew."""
        openings = getattr(self.source, "openings", None)
        if openings != self._openings:
            if self._openings is not None:
                log.info("microphone opened again: echo timeline restarted")
                self.clock.restart()
                if self.processor.reference is not None:
                    self.processor.reference.restart()
            self._openings = openings

    def _captured(self, delivered: int) -> int:
        # Frames the microphone dropped were captured too: count them, or the clock would
        # take the frames after them for late ones.
        dropped = getattr(self.source, "dropped_frames", 0)
        return delivered + dropped * self.frame_ms * SAMPLE_RATE // 1000

    async def frames(self) -> AsyncIterator[bytes]:
        batch: list[bytes] = []
        batch_samples = 0
        delivered = 0
        first_index = 0
        limit = int(BATCH_S * SAMPLE_RATE)
        async for frame in self.source.frames():
            self._follow_reopening()
            if not batch:
                first_index = self._captured(delivered)
            delivered += len(frame) // 2
            self.clock.observe(self._captured(delivered), self._now())
            batch.append(frame)
            batch_samples += len(frame) // 2
            if batch_samples < limit:
                continue
            for cleaned, self._own_sound in await to_thread_joined(self._process, batch, first_index):
                yield cleaned
            batch, batch_samples = [], 0
        if batch:
            for cleaned, self._own_sound in await to_thread_joined(self._process, batch, first_index):
                yield cleaned

    def _process(self, batch: list[bytes], first_index: int) -> list[tuple[bytes, bool]]:
        samples = np.frombuffer(b"".join(batch), dtype="<i2").astype(np.int16)
        cleaned = self.processor.process(samples, first_index).astype("<i2").tobytes()
        own_sound = self.processor.own_sound
        frames, offset = [], 0
        for frame in batch:
            blocks = own_sound[offset // (2 * BLOCK) : (offset + len(frame)) // (2 * BLOCK)]
            frames.append((cleaned[offset : offset + len(frame)], any(blocks)))
            offset += len(frame)
        return frames

    async def aclose(self) -> None:
        await self.source.aclose()

    def close(self) -> None:
        self.source.close()


def with_echo_cancellation(source: Any, sink: Any, cfg: AudioConfig, status_path: Path | None = None,
                           *, hear_played: Callable[[np.ndarray], None] | None = None) -> Any:
    """`source` with echo cancelled against what `sink` plays (and noise suppression and gain
    when configured); `source` itself when none is on or the library cannot load (logged:
    the wake word then barges in only at its stricter threshold). `hear_played` is handed
    what was played under each block about to be cleaned (`CaptureProcessor`)."""
    if not (cfg.echo_cancellation or cfg.noise_suppression or cfg.auto_gain):
        return source
    clock = CaptureClock()
    reference = PlaybackReference(clock) if cfg.echo_cancellation else None
    on_delay = None
    if status_path is not None:
        def on_delay(status: EchoStatus) -> None:
            write_status(status_path, status)
    try:
        processor = CaptureProcessor(cfg, reference, on_delay=on_delay, hear_played=hear_played)
    except EchoCancellerError as error:
        log.error("audio.echo_canceller %r cannot run: %s; the microphone is used as it is",
                  cfg.echo_canceller, error)
        return source
    if reference is not None:
        sink.taps.append(reference.tap)
    if on_delay is not None:
        on_delay(processor.status)
    log.info("capture processing: %s (echo cancellation %s, noise suppression %s, gain %s)",
             processor.engine.name, "on" if processor.cancels_echo else "off",
             "on" if cfg.noise_suppression else "off", "on" if cfg.auto_gain else "off")
    return EchoCancellingSource(source, processor, clock)
