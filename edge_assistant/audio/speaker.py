"""The speaker: plays on a PortAudio output device from a worker thread."""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
from typing import Any, Callable

import numpy as np

from ..concurrency import Backoff
from ..config import AudioConfig
from .devices import (
    PORTAUDIO_LOCK,
    AudioDeviceError,
    close_stream,
    find_device,
    load_sounddevice,
    open_stream,
    probe_device,
    report_to,
)
from .pcm import apply_volume, as_int16, resample
from .sink import Sink

log = logging.getLogger(__name__)


class SpeakerSink(Sink):
    """Plays on a PortAudio output device from a worker thread, so the event loop never blocks.

    Plays run one after another in that thread, in the order they were asked for. The stream
    stays open while plays follow each other closely (sentences of one reply, an earcon over a
    reply) and is closed ``idle_close_s`` after the last one ended.

    Its health: every failure to open or play is reported to `on_error` (an `AudioDeviceError`),
    every opening of the device to `on_open` (its name), both from the speaker's thread.
    `watch()` checks the device at once and, after a failure, again and again until it opens.
    """

    # Blocks short enough that stop() and volume changes apply within ~20 ms.
    BLOCK_S = 0.02

    def __init__(
        self,
        cfg: AudioConfig,
        *,
        idle_close_s: float = 1.0,
        on_error: Callable[[AudioDeviceError], None] | None = None,
        on_open: Callable[[str], None] | None = None,
        backoff_initial_s: float = 0.5,
    ):
        super().__init__(cfg.volume)
        self.cfg = cfg
        self.idle_close_s = idle_close_s
        self.on_error = on_error
        self.on_open = on_open
        self._backoff_initial_s = backoff_initial_s
        # Set (on the loop) when a play fails, so that watch() starts checking again.
        self._failed: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
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

    async def watch(self) -> None:
        """Check the device now, and after each failure again, with pauses growing up to
        ``audio.reopen_backoff_max_s``, until it opens; the outcome goes to `on_open` or
        `on_error`. A device that is fine is not opened again (opening may click): one removed
        while all is quiet is noticed at the next play. Runs until cancelled."""
        self._loop = asyncio.get_running_loop()
        self._failed = asyncio.Event()
        backoff = Backoff.exponential(self._backoff_initial_s, self.cfg.reopen_backoff_max_s)
        while not self._closed:
            # Cleared before the check: a play failing meanwhile wakes the wait below.
            self._failed.clear()
            if await self._loop.run_in_executor(self._executor, self._check):
                backoff.reset()
                await self._failed.wait()
            else:
                await asyncio.sleep(backoff.next())

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
        report_to(self.on_open, self.device_name)

    def _check(self) -> bool:
        """In the speaker's thread: can the device be opened? (An open stream says it can.)"""
        if self._closed or self._stream is not None:
            return True
        try:
            device = probe_device(self.cfg.output_device, "output", self.cfg.output_rate)
        except Exception as error:
            self._report_failure(error if isinstance(error, AudioDeviceError)
                          else AudioDeviceError(f"cannot open the speaker: {error!r}"))
            return False
        self.device_name = device["name"]
        report_to(self.on_open, self.device_name)
        return True

    def _report_failure(self, error: AudioDeviceError) -> None:
        report_to(self.on_error, error)
        if self._loop is not None and self._failed is not None:
            try:
                self._loop.call_soon_threadsafe(self._failed.set)
            except RuntimeError:  # the loop has closed: nobody watches any more
                pass

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
            failure = AudioDeviceError(f"speaker {self.device_name or self.cfg.output_device!r} failed: {error}")
            self._report_failure(failure)
            raise failure from None
        except AudioDeviceError as error:
            self._report_failure(error)
            raise
