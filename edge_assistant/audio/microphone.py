"""The microphone: frames from a PortAudio input device, converted to 16 kHz mono."""

from __future__ import annotations

import asyncio
import collections
import logging
import math
import time
from typing import Any, AsyncIterator, Callable

import numpy as np

from ..concurrency import Backoff
from ..config import AudioConfig
from ..limits import LogLimiter
from .devices import (
    PORTAUDIO_LOCK,
    AudioDeviceError,
    close_stream,
    find_device,
    load_sounddevice,
    open_stream,
    report_to,
)
from .pcm import SAMPLE_RATE, float_to_int16, frame_bytes, stream_resampler

log = logging.getLogger(__name__)

ErrorHandler = Callable[[Exception], None]
OpenHandler = Callable[[str], None]

# The same failure, retried every few seconds, is logged once per this interval.
RETRY_LOG_INTERVAL_S = 600.0


class MicrophoneSource:
    """Frames from a PortAudio input device, converted to 16 kHz mono.

    PortAudio's callback thread converts and queues frames without blocking; the queue holds at
    most ``queue_frames`` frames and, when it is full, new frames are dropped and counted (the
    oldest are kept so what is delivered stays contiguous). Drops and PortAudio input overflows
    are both logged; ``overflows`` is their sum.

    ``frames()`` never ends on its own: a device that fails or disappears is reported to
    `on_error` (with an `AudioDeviceError`) and reopened after a pause that grows up to
    ``reopen_backoff_max_s``; each opening is reported to `on_open` with the device's name. Both
    are called on the loop running ``frames()``. Without `on_error` the failure is logged, each
    message at most once per `RETRY_LOG_INTERVAL_S`. It ends after ``aclose()`` (in the event
    loop) or ``close()`` (from elsewhere).
    """

    def __init__(
        self,
        cfg: AudioConfig,
        on_error: ErrorHandler | None = None,
        *,
        on_open: OpenHandler | None = None,
        backoff_initial_s: float = 0.5,
    ):
        self.cfg = cfg
        self.frame_ms = cfg.frame_ms
        self.on_error = on_error
        self.on_open = on_open
        self._retry_log = LogLimiter(log, RETRY_LOG_INTERVAL_S)
        self._frame_bytes = frame_bytes(cfg.frame_ms)
        self._backoff = Backoff.exponential(backoff_initial_s, cfg.reopen_backoff_max_s)
        self._queue: collections.deque[bytes] = collections.deque()
        self._max_frames = cfg.queue_frames
        self._input_overflows = 0
        self._dropped_frames = 0
        self._openings = 0
        self._reported_overflows = 0
        self._last_overflow_log = -math.inf
        self._stream: Any = None
        self._stopping = False
        self._closed = False
        self._failure: Exception | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wakeup: asyncio.Event | None = None
        self._waiting = False
        self._pending = bytearray()
        self._resampler: Any = None
        self._channels = 1
        self.device_name: str | None = None
        self.device_rate: int | None = None

    @property
    def input_overflows(self) -> int:
        """Times PortAudio reported that the device produced data faster than it was read."""
        return self._input_overflows

    @property
    def dropped_frames(self) -> int:
        """Frames dropped because the queue was full (the consumer fell behind)."""
        return self._dropped_frames

    @property
    def openings(self) -> int:
        """Times the device was opened: frames after a new opening follow a gap in capture."""
        return self._openings

    @property
    def queued_s(self) -> float:
        """Seconds of captured sound waiting for the consumer."""
        return len(self._queue) * self.frame_ms / 1000

    @property
    def overflows(self) -> int:
        return self._input_overflows + self._dropped_frames

    async def frames(self) -> AsyncIterator[bytes]:
        self._loop = asyncio.get_running_loop()
        self._wakeup = asyncio.Event()
        try:
            while not self._closed:
                if self._stream is None:
                    try:
                        await asyncio.to_thread(self._open)
                    except Exception as error:
                        if not isinstance(error, AudioDeviceError):
                            error = AudioDeviceError(f"cannot open the microphone: {error!r}")
                        await self._retry_after(error)
                        continue
                    if self._stream is not None:  # None: closed meanwhile
                        report_to(self.on_open, self.device_name)
                if self._queue:
                    frame = self._queue.popleft()
                    self._backoff.reset()
                    yield frame
                    self._log_overflows()
                    continue
                if self._failure is not None:
                    failure, self._failure = self._failure, None
                    await asyncio.to_thread(self._close)
                    await self._retry_after(failure)
                    continue
                self._wakeup.clear()
                self._waiting = True
                # Re-check after announcing the wait: the callback may have queued meanwhile.
                if not (self._queue or self._failure is not None or self._closed):
                    await self._wakeup.wait()
                self._waiting = False
        finally:
            self._waiting = False
            # The stream's lock may be held behind a device rescan: wait for it off the loop.
            await asyncio.to_thread(self._close)
            self._log_overflows(force=True)

    def _request_stop(self) -> None:
        """Tell a running `frames()` to end; never waits (in particular not on PortAudio)."""
        self._closed = True
        self._notify()

    async def aclose(self) -> None:
        """Stop capturing: a running `frames()` ends, and the device is closed when this returns."""
        self._request_stop()
        await asyncio.to_thread(self._close)

    def close(self) -> None:
        """`aclose()` for callers outside the event loop: blocks until the device is closed."""
        self._request_stop()
        self._close()

    async def _retry_after(self, error: Exception) -> None:
        pause_s = self._backoff.next()
        if self.on_error is None:
            self._retry_log.log(logging.WARNING, str(error), "microphone: %s; retrying", error)
        else:
            log.debug("microphone: %s; retrying in %.1f s", error, pause_s)
            report_to(self.on_error, error)
        assert self._wakeup is not None
        self._wakeup.clear()
        self._waiting = True  # so that closing cuts the pause short
        try:
            if not self._closed:
                await asyncio.wait_for(self._wakeup.wait(), pause_s)
        except asyncio.TimeoutError:
            pass
        finally:
            self._waiting = False

    def _log_overflows(self, force: bool = False) -> None:
        total = self.overflows
        now = time.monotonic()
        if total > self._reported_overflows and (force or now - self._last_overflow_log >= 5.0):
            log.warning(
                "microphone: %d frames dropped (consumer too slow), %d input overflows so far",
                self._dropped_frames,
                self._input_overflows,
            )
            self._reported_overflows = total
            self._last_overflow_log = now

    def _open(self) -> None:
        sd = load_sounddevice()
        with PORTAUDIO_LOCK:
            if self._closed or self._stream is not None:
                return
            device = find_device(self.cfg.input_device, "input")
            rate = self.cfg.input_rate or int(device["default_samplerate"])
            self._pending = bytearray()
            self._resampler = stream_resampler(rate, SAMPLE_RATE) if rate != SAMPLE_RATE else None
            self._stopping = False
            self._failure = None
            self._stream, self._channels = open_stream(
                sd.InputStream,
                device,
                rate,
                "input",
                blocksize=max(1, rate * self.frame_ms // 1000),
                callback=self._callback,
                finished_callback=self._finished,
            )
            self.device_name, self.device_rate = device["name"], rate
            self._openings += 1
            log.info("microphone: %r at %d Hz, %d channel(s)", device["name"], rate, self._channels)

    def _close(self) -> None:
        with PORTAUDIO_LOCK:
            stream, self._stream = self._stream, None
            if stream is not None:
                self._stopping = True
                close_stream(stream)

    # The methods below run on PortAudio's thread (and _notify also in close()): no locks, no
    # I/O, no logging.

    def _callback(self, indata: np.ndarray, frames: int, time_info: Any, status: Any) -> None:
        try:
            if status.input_overflow:
                self._input_overflows += 1
            if self._channels == 1 and self._resampler is None:
                data = indata.tobytes()
            else:
                values = (
                    indata.astype(np.float32).mean(axis=1)
                    if self._channels > 1
                    else indata[:, 0].astype(np.float32)
                )
                if self._resampler is not None:
                    values = self._resampler.resample_chunk(values)
                data = float_to_int16(values).astype("<i2").tobytes()
            pending = self._pending
            pending += data
            size = self._frame_bytes
            count = len(pending) // size
            if not count:
                return
            for start in range(0, count * size, size):
                if len(self._queue) >= self._max_frames:
                    self._dropped_frames += 1
                else:
                    self._queue.append(bytes(pending[start : start + size]))
            del pending[: count * size]
            self._notify()
        except Exception as error:  # reported and reopened instead of printed every block
            self._failure = AudioDeviceError(f"input callback failed: {error!r}")
            self._notify()
            raise load_sounddevice().CallbackAbort from error

    def _finished(self) -> None:
        if not self._stopping and self._failure is None:
            self._failure = AudioDeviceError(
                f"input stream on {self.device_name!r} stopped unexpectedly"
            )
        self._notify()

    def _notify(self) -> None:
        if self._waiting and self._loop is not None and self._wakeup is not None:
            self._waiting = False
            try:
                self._loop.call_soon_threadsafe(self._wakeup.set)
            except RuntimeError:  # the loop is closed: nobody is listening any more
                pass
