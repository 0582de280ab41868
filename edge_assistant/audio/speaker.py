"""The speaker: plays on a PortAudio output device from a worker thread."""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
from typing import Any

import numpy as np

from ..config import AudioConfig
from .devices import (
    PORTAUDIO_LOCK,
    AudioDeviceError,
    close_stream,
    find_device,
    load_sounddevice,
    open_stream,
)
from .pcm import apply_volume, as_int16, resample
from .sink import Sink

log = logging.getLogger(__name__)


class SpeakerSink(Sink):
    """Plays on a PortAudio output device from a worker thread, so the event loop never blocks.

    Plays run one after another in that thread, in the order they were asked for. The stream
    stays open while plays follow each other closely (sentences of one reply, an earcon over a
    reply) and is closed ``idle_close_s`` after the last one ended.
    """

    # Blocks short enough that stop() and volume changes apply within ~20 ms.
    BLOCK_S = 0.02

    def __init__(self, cfg: AudioConfig, *, idle_close_s: float = 1.0):
        super().__init__(cfg.volume)
        self.cfg = cfg
        self.idle_close_s = idle_close_s
        self._executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="speaker"
        )
        self._stream: Any = None
        self._channels = 1
        self._rate = 0
        # Plays asked for and not yet ended: the idle countdown starts only when none is left.
        self._plays = 0
        self._idle_timer: asyncio.TimerHandle | None = None
        self._closed = False
        self.device_name: str | None = None

    async def play(self, samples: np.ndarray | bytes, sample_rate: int) -> bool:
        """Play to the end (True) or until `stop()` (False). Raises `AudioDeviceError`."""
        data = as_int16(samples)
        loop = asyncio.get_running_loop()
        self._cancel_idle_close()
        future = loop.run_in_executor(
            self._executor, self._play_blocking, data, sample_rate, self._generation
        )
        self._plays += 1
        try:
            return await asyncio.shield(future)
        except asyncio.CancelledError:
            self.stop()
            await asyncio.wait([future])
            raise
        finally:
            self._plays -= 1
            if not self._plays and not self._closed:
                self._idle_timer = loop.call_later(self.idle_close_s, self._close_when_idle)

    async def aclose(self) -> None:
        """Stop playing and close the device; the waiting is done in a worker thread."""
        if self._begin_close():
            await asyncio.to_thread(self._release)

    def close(self) -> None:
        """`aclose()` for callers outside the event loop: blocks until the device is closed."""
        if self._begin_close():
            self._release()

    def _begin_close(self) -> bool:
        if self._closed:
            return False
        self._closed = True
        self.stop()
        self._cancel_idle_close()
        return True

    def _release(self) -> None:
        # After the play being stopped, in the speaker's thread; drained, as a reply ends.
        self._executor.submit(self._close_stream, True)
        self._executor.shutdown(wait=True)

    def _cancel_idle_close(self) -> None:
        if self._idle_timer is not None:
            self._idle_timer.cancel()
            self._idle_timer = None

    def _close_when_idle(self) -> None:
        self._idle_timer = None
        if not self._closed and not self._plays:
            self._executor.submit(self._close_stream, True)

    def _ensure_stream(self) -> None:
        if self._stream is not None:
            return
        sd = load_sounddevice()
        with PORTAUDIO_LOCK:
            device = find_device(self.cfg.output_device, "output")
            rate = self.cfg.output_rate or int(device["default_samplerate"])
            self._stream, self._channels = open_stream(sd.OutputStream, device, rate, "output")
        self._rate = rate
        self.device_name = device["name"]
        log.debug("speaker: %r at %d Hz, %d channel(s)", device["name"], rate, self._channels)

    def _close_stream(self, drain: bool = False) -> None:
        stream, self._stream = self._stream, None
        if stream is not None:
            close_stream(stream, drain)

    def _play_blocking(self, data: np.ndarray, sample_rate: int, generation: int) -> bool:
        if generation != self._generation:
            return False
        sd = load_sounddevice()
        try:
            self._ensure_stream()
            data = resample(data, sample_rate, self._rate)
            block = max(1, int(self._rate * self.BLOCK_S))
            for start in range(0, len(data), block):
                if generation != self._generation:
                    # abort() drops what is buffered, so the voice stops at once.
                    self._close_stream()
                    return False
                chunk = apply_volume(data[start : start + block], self._volume)
                self._hand_over(chunk, self._rate)
                if self._channels > 1:
                    chunk = np.repeat(chunk[:, None], self._channels, axis=1)
                else:
                    chunk = chunk[:, None]
                self._stream.write(np.ascontiguousarray(chunk))
            return True
        except sd.PortAudioError as error:
            self._close_stream()
            raise AudioDeviceError(
                f"speaker {self.device_name or self.cfg.output_device!r} failed: {error}"
            ) from None
