"""Audio in and out: microphones, speakers, WAV and raw PCM files, and the conversions between them.

Everything past this module speaks one format: ``SAMPLE_RATE`` (16 kHz) mono signed 16-bit
little-endian PCM, cut into fixed frames of ``frame_ms`` (10, 20 or 30 ms) delivered as ``bytes``.

Sources share one interface::

    source = MicrophoneSource(cfg.audio, on_error=report)   # or WavSource(path) / RawSource(file)
    async for frame in source.frames():                     # bytes, frame_bytes(frame_ms) long
        ...
    source.close()                                          # ends frames() from anywhere

``frames()`` ends when a file is exhausted (its last partial frame is padded with silence) or
after ``close()``; a microphone never ends on its own: when its device fails or disappears the
error goes to ``on_error`` and the device is reopened with exponential backoff.

Sinks share one interface::

    finished = await sink.play(samples, sample_rate)   # int16 array or s16le bytes, any rate
    sink.stop()                                        # barge-in: the current play returns False
    sink.set_volume(0.5)
    sink.close()

Speaker I/O goes through PortAudio (sounddevice), which enumerates devices only when it starts;
``rescan_devices()`` restarts it (when no stream is open) so a device plugged in later is found.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import logging
import math
import struct
import sys
import threading
import time
import wave
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, AsyncIterator, BinaryIO, Callable, Iterator

import numpy as np
import soxr

from .config import AudioConfig

if TYPE_CHECKING:
    import sounddevice

log = logging.getLogger(__name__)

SAMPLE_RATE = 16000
SAMPLE_WIDTH = 2
FRAME_MS_CHOICES = (10, 20, 30)

ErrorHandler = Callable[[Exception], None]


class AudioFormatError(ValueError):
    """An audio file cannot be used; the message names the file and the reason."""


class AudioDeviceError(RuntimeError):
    """A sound device is missing, cannot be opened, or failed while running."""


def frame_samples(frame_ms: int) -> int:
    if frame_ms not in FRAME_MS_CHOICES:
        raise ValueError(f"frame_ms must be one of {FRAME_MS_CHOICES}, got {frame_ms!r}")
    return SAMPLE_RATE * frame_ms // 1000


def frame_bytes(frame_ms: int) -> int:
    return frame_samples(frame_ms) * SAMPLE_WIDTH


# ---------------------------------------------------------------------------------------------
# Sample conversions


def as_int16(samples: np.ndarray | bytes | bytearray | memoryview) -> np.ndarray:
    """Mono int16 samples from int16 arrays, s16le bytes or float arrays in [-1, 1]."""
    if isinstance(samples, (bytes, bytearray, memoryview)):
        data = bytes(samples)
        if len(data) % SAMPLE_WIDTH:
            raise ValueError("s16le audio must have an even number of bytes")
        return np.frombuffer(data, dtype="<i2").astype(np.int16)
    array = np.asarray(samples)
    if array.ndim != 1:
        raise ValueError(f"expected mono samples (1-D), got shape {array.shape}")
    if array.dtype == np.int16:
        return array
    if np.issubdtype(array.dtype, np.floating):
        return _float_to_int16(array * 32768.0)
    raise ValueError(f"expected int16 or float samples, got {array.dtype}")


def _float_to_int16(scaled: np.ndarray) -> np.ndarray:
    """Float samples already on the int16 scale -> int16, rounded and clipped."""
    return np.clip(np.rint(scaled), -32768, 32767).astype(np.int16)


def resample(samples: np.ndarray, from_rate: int, to_rate: int) -> np.ndarray:
    """Resample a whole int16 signal (high quality); returned unchanged when the rates match."""
    samples = as_int16(samples)
    if from_rate == to_rate or samples.size == 0:
        return samples
    converted = soxr.resample(samples.astype(np.float32), from_rate, to_rate, quality="HQ")
    return _float_to_int16(converted)


def _apply_volume(samples: np.ndarray, volume: float) -> np.ndarray:
    if volume == 1.0:
        return samples
    return _float_to_int16(samples.astype(np.float32) * volume)


def _check_volume(volume: float) -> float:
    volume = float(volume)
    if not (math.isfinite(volume) and 0.0 <= volume <= 2.0):
        raise ValueError(f"volume must be between 0.0 and 2.0, got {volume!r}")
    return volume


# ---------------------------------------------------------------------------------------------
# WAV files

_WAVE_FORMAT_PCM = 0x0001
_WAVE_FORMAT_FLOAT = 0x0003
_WAVE_FORMAT_EXTENSIBLE = 0xFFFE
_COMPRESSED_NAMES = {
    0x0002: "Microsoft ADPCM",
    0x0006: "A-law",
    0x0007: "mu-law",
    0x0011: "IMA ADPCM",
    0x0031: "GSM 6.10",
    0x0050: "MPEG",
    0x0055: "MP3",
}
# Streaming writers that cannot seek back leave this in the size fields.
_UNKNOWN_SIZE = 0xFFFFFFFF


class _WavReader:
    """Reads a PCM or float WAV block by block as float32 samples on the int16 scale."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        try:
            self._file: BinaryIO = open(self.path, "rb")
        except OSError as error:
            raise AudioFormatError(f"{self.path}: cannot open: {error.strerror}") from None
        try:
            self._parse_header()
        except BaseException:
            self._file.close()
            raise
        self._warned_truncated = False

    def _fail(self, reason: str) -> AudioFormatError:
        return AudioFormatError(f"{self.path}: {reason}")

    def _parse_header(self) -> None:
        header = self._file.read(12)
        if (
            len(header) < 12
            or header[8:12] != b"WAVE"
            or header[:4] not in (b"RIFF", b"RIFX", b"RF64")
        ):
            raise self._fail("not a WAV file (no RIFF/WAVE header)")
        if header[:4] != b"RIFF":
            raise self._fail(
                f"{header[:4].decode()} WAV files are not supported; use a plain RIFF WAV"
            )
        fmt = None
        while True:
            chunk = self._file.read(8)
            if len(chunk) < 8:
                raise self._fail(
                    "no audio data (missing 'data' chunk)" if fmt else "missing 'fmt ' chunk"
                )
            chunk_id, size = chunk[:4], struct.unpack("<I", chunk[4:])[0]
            if chunk_id == b"fmt ":
                fmt = self._file.read(size + (size & 1))
                if len(fmt) < 16:
                    raise self._fail("'fmt ' chunk is too short")
            elif chunk_id == b"data":
                if fmt is None:
                    raise self._fail("'data' chunk comes before the 'fmt ' chunk")
                self._data_left: int | None = None if size == _UNKNOWN_SIZE else size
                self._declared_size = size
                break
            else:
                self._file.seek(size + (size & 1), 1)
        self._parse_fmt(fmt)

    def _parse_fmt(self, fmt: bytes) -> None:
        tag, channels, rate, _byte_rate, block_align, bits = struct.unpack("<HHIIHH", fmt[:16])
        if tag == _WAVE_FORMAT_EXTENSIBLE:
            if len(fmt) < 40:
                raise self._fail("extensible 'fmt ' chunk is too short")
            tag = struct.unpack("<H", fmt[24:26])[0]
        if tag not in (_WAVE_FORMAT_PCM, _WAVE_FORMAT_FLOAT):
            name = _COMPRESSED_NAMES.get(tag, f"format tag 0x{tag:04x}")
            raise self._fail(
                f"compressed WAV ({name}) is not supported; convert it to PCM, "
                "e.g. sox IN.wav -e signed-integer -b 16 OUT.wav"
            )
        if channels < 1 or rate < 1:
            raise self._fail(f"invalid format: {channels} channels at {rate} Hz")
        # The container width decides the layout; bits may say less (e.g. 20 valid of 24).
        width = block_align // channels if block_align else (bits + 7) // 8
        if block_align != width * channels:
            raise self._fail(f"invalid block alignment {block_align} for {channels} channels")
        supported = {1, 2, 3, 4} if tag == _WAVE_FORMAT_PCM else {4, 8}
        if width not in supported:
            kind = "integer" if tag == _WAVE_FORMAT_PCM else "float"
            raise self._fail(f"{width * 8}-bit {kind} samples are not supported")
        self.is_float = tag == _WAVE_FORMAT_FLOAT
        self.channels = channels
        self.sample_rate = rate
        self.sample_width = width
        self.block_align = block_align

    @property
    def is_native(self) -> bool:
        """Already 16 kHz mono s16le: samples can pass through untouched."""
        return (
            not self.is_float
            and self.sample_width == 2
            and self.channels == 1
            and self.sample_rate == SAMPLE_RATE
        )

    def read_bytes(self, max_frames: int) -> bytes:
        """Raw sample frames (whole frames only); b"" at the end."""
        want = max_frames * self.block_align
        if self._data_left is not None:
            want = min(want, self._data_left)
        data = self._file.read(want) if want else b""
        if self._data_left is not None:
            self._data_left -= len(data)
            if len(data) < want and not self._warned_truncated:
                self._warned_truncated = True
                log.warning(
                    "%s: WAV data is truncated (header says %d bytes); using what is there",
                    self.path,
                    self._declared_size,
                )
                self._data_left = 0
        usable = len(data) - len(data) % self.block_align
        if usable < len(data) and not self._warned_truncated:
            self._warned_truncated = True
            log.warning(
                "%s: WAV data ends inside a sample; the partial sample is dropped", self.path
            )
        return data[:usable]

    def decode(self, data: bytes) -> np.ndarray:
        """Raw frames -> float32 mono on the int16 scale (channels averaged)."""
        width = self.sample_width
        if self.is_float:
            values = (
                np.frombuffer(data, dtype="<f4" if width == 4 else "<f8").astype(np.float32)
                * 32768.0
            )
        elif width == 1:
            values = (np.frombuffer(data, dtype=np.uint8).astype(np.float32) - 128.0) * 256.0
        elif width == 2:
            values = np.frombuffer(data, dtype="<i2").astype(np.float32)
        elif width == 3:
            raw = np.frombuffer(data, dtype=np.uint8).reshape(-1, 3).astype(np.int32)
            packed = raw[:, 0] | (raw[:, 1] << 8) | (raw[:, 2] << 16)
            values = (np.where(packed >= 1 << 23, packed - (1 << 24), packed)).astype(
                np.float32
            ) / 256.0
        else:
            values = np.frombuffer(data, dtype="<i4").astype(np.float32) / 65536.0
        if self.channels > 1:
            values = values.reshape(-1, self.channels).mean(axis=1, dtype=np.float32)
        return values

    def close(self) -> None:
        self._file.close()


def _wav_blocks(
    path: str | Path, sample_rate: int, block_frames: int = 8192
) -> Iterator[np.ndarray]:
    """int16 mono blocks at `sample_rate`, converted while streaming through the file."""
    reader = _WavReader(path)
    try:
        if reader.is_native and sample_rate == SAMPLE_RATE:
            while data := reader.read_bytes(block_frames):
                yield np.frombuffer(data, dtype="<i2").astype(np.int16)
            return
        resampler = None
        if reader.sample_rate != sample_rate:
            resampler = soxr.ResampleStream(
                reader.sample_rate, sample_rate, 1, dtype="float32", quality="HQ"
            )
        while True:
            data = reader.read_bytes(block_frames)
            values = reader.decode(data)
            if resampler is not None:
                values = resampler.resample_chunk(values, last=not data)
            if values.size:
                yield _float_to_int16(values)
            if not data:
                return
    finally:
        reader.close()


def read_wav(path: str | Path, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Read any PCM/float WAV as mono int16 at `sample_rate` (16 kHz by default).

    Raises `AudioFormatError` (naming the file) for compressed or non-WAV files. A truncated
    file is read up to where it ends, with a warning in the log.
    """
    blocks = list(_wav_blocks(path, sample_rate))
    return np.concatenate(blocks) if blocks else np.zeros(0, dtype=np.int16)


def write_wav(path: str | Path, samples: np.ndarray | bytes, sample_rate: int) -> None:
    """Write mono int16 samples as a 16-bit PCM WAV."""
    data = as_int16(samples)
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(SAMPLE_WIDTH)
        out.setframerate(int(sample_rate))
        out.writeframes(data.astype("<i2").tobytes())


# ---------------------------------------------------------------------------------------------
# File sources


class _FileSource:
    """Framing and optional real-time pacing shared by the file sources."""

    def __init__(self, frame_ms: int, realtime: bool):
        self.frame_ms = frame_ms
        self.realtime = realtime
        self._frame_bytes = frame_bytes(frame_ms)
        self._closed = False

    async def _blocks(self) -> AsyncIterator[bytes]:
        raise NotImplementedError
        yield b""  # pragma: no cover

    async def frames(self) -> AsyncIterator[bytes]:
        """Fixed frames of 16 kHz mono s16le; the last partial frame is padded with silence."""
        pending = bytearray()
        frame_s = self.frame_ms / 1000
        start = time.monotonic()
        count = 0
        async for block in self._blocks():
            pending += block
            while len(pending) >= self._frame_bytes and not self._closed:
                frame = bytes(pending[: self._frame_bytes])
                del pending[: self._frame_bytes]
                count += 1
                yield frame
                # Always yield to the loop so a fast file does not starve other tasks.
                delay = start + count * frame_s - time.monotonic() if self.realtime else 0.0
                await asyncio.sleep(max(0.0, delay))
            if self._closed:
                return
        if pending and not self._closed:
            yield bytes(pending) + bytes(self._frame_bytes - len(pending))

    def close(self) -> None:
        self._closed = True


class WavSource(_FileSource):
    """Frames from a WAV file of any PCM/float format, rate and channel count."""

    def __init__(self, path: str | Path, frame_ms: int = 10, realtime: bool = False):
        super().__init__(frame_ms, realtime)
        self.path = Path(path)
        # Fail now, with the file's name, rather than on the first frame.
        _WavReader(self.path).close()

    async def _blocks(self) -> AsyncIterator[bytes]:
        blocks = _wav_blocks(self.path, SAMPLE_RATE)
        try:
            for block in blocks:
                yield block.astype("<i2").tobytes()
                if self._closed:
                    return
        finally:
            blocks.close()


class RawSource(_FileSource):
    """Frames from raw 16 kHz mono s16le PCM in a binary file object (stdin by default)."""

    def __init__(self, stream: BinaryIO | None = None, frame_ms: int = 10, realtime: bool = False):
        super().__init__(frame_ms, realtime)
        self.stream = stream if stream is not None else sys.stdin.buffer
        self._block_bytes = self._frame_bytes * 10

    async def _blocks(self) -> AsyncIterator[bytes]:
        while not self._closed:
            # A pipe may block: read off the event loop.
            block = await asyncio.to_thread(self.stream.read, self._block_bytes)
            if not block:
                return
            yield block


# ---------------------------------------------------------------------------------------------
# PortAudio devices

# Serialises stream opening/closing with PortAudio restarts, which would kill open streams.
_PA_LOCK = threading.RLock()
_open_streams = 0


def _sd() -> "sounddevice":
    # Imported late: loading it starts PortAudio, and file-only users need no sound stack.
    import sounddevice

    return sounddevice


def rescan_devices() -> bool:
    """Restart PortAudio so it enumerates devices again; skipped (False) while a stream is open."""
    sd = _sd()
    with _PA_LOCK:
        if _open_streams:
            return False
        sd._terminate()
        sd._initialize()
        return True


def _default_index(kind: str) -> int | None:
    try:
        return int(_sd().query_devices(kind=kind)["index"])
    except Exception:  # PortAudio raises when there is no default device
        return None


def list_devices() -> list[dict[str, Any]]:
    """The devices PortAudio sees, as plain dicts (for `edge-assistant devices`)."""
    sd = _sd()
    hostapis = sd.query_hostapis()
    default_in, default_out = _default_index("input"), _default_index("output")
    return [
        {
            "index": int(device["index"]),
            "name": device["name"],
            "hostapi": hostapis[device["hostapi"]]["name"],
            "max_input_channels": int(device["max_input_channels"]),
            "max_output_channels": int(device["max_output_channels"]),
            "default_samplerate": float(device["default_samplerate"]),
            "default_input": int(device["index"]) == default_in,
            "default_output": int(device["index"]) == default_out,
        }
        for device in sd.query_devices()
    ]


def format_devices(devices: list[dict[str, Any]] | None = None) -> str:
    """A table of `list_devices()`: `>` marks the default input, `<` the default output."""
    devices = list_devices() if devices is None else devices
    if not devices:
        return "No audio devices found."
    lines = [f"{'':2} {'#':>3}  {'in':>3} {'out':>3}  {'rate':>6}  name"]
    for device in devices:
        mark = (">" if device["default_input"] else " ") + (
            "<" if device["default_output"] else " "
        )
        lines.append(
            f"{mark} {device['index']:>3}  {device['max_input_channels']:>3} "
            f"{device['max_output_channels']:>3}  {device['default_samplerate']:>6.0f}  "
            f"{device['name']} ({device['hostapi']})"
        )
    lines.append("> default input, < default output")
    return "\n".join(lines)


def _find_device(spec: str | int, kind: str) -> dict[str, Any]:
    """The device for a config value (index, name substring, "" = default) with `kind` channels."""
    channels_key = f"max_{kind}_channels"
    devices = list_devices()
    if isinstance(spec, str) and spec.strip().isdigit():
        spec = int(spec)
    if spec == "":
        index = _default_index(kind)
        if index is None:
            raise AudioDeviceError(f"no default {kind} device")
        candidates = [d for d in devices if d["index"] == index]
    elif isinstance(spec, int):
        candidates = [d for d in devices if d["index"] == spec]
    else:
        wanted = spec.lower()
        exact = [d for d in devices if d["name"].lower() == wanted and d[channels_key] > 0]
        candidates = exact or [
            d for d in devices if wanted in d["name"].lower() and d[channels_key] > 0
        ]
        if len(candidates) > 1:
            log.info(
                "%r matches %d %s devices; using %r",
                spec,
                len(candidates),
                kind,
                candidates[0]["name"],
            )
    candidates = [d for d in candidates if d[channels_key] > 0]
    if not candidates:
        raise AudioDeviceError(f"{kind} device {spec!r} not found (see `edge-assistant devices`)")
    return candidates[0]


def _lookup_device(spec: str | int, kind: str) -> dict[str, Any]:
    try:
        return _find_device(spec, kind)
    except AudioDeviceError:
        # Maybe it was plugged in after PortAudio started: look again after a restart.
        if not rescan_devices():
            raise
        return _find_device(spec, kind)


def find_device(spec: str | int, kind: str) -> dict[str, Any]:
    """The device a config value names ("input" or "output"); raises `AudioDeviceError`."""
    return _lookup_device(spec, kind)


def _open_stream(
    factory: Callable[..., Any], device: dict[str, Any], rate: int, kind: str, **kwargs: Any
) -> tuple[Any, int]:
    """Open and start a mono stream, or a stereo one if the device refuses mono."""
    global _open_streams
    sd = _sd()
    error: Exception | None = None
    for channels in (1, 2):
        if channels > device[f"max_{kind}_channels"]:
            break
        try:
            stream = factory(
                device=device["index"], samplerate=rate, channels=channels, dtype="int16", **kwargs
            )
        except sd.PortAudioError as failure:
            error = failure
            continue
        try:
            stream.start()
        except sd.PortAudioError as failure:
            stream.close(ignore_errors=True)
            error = failure
            continue
        _open_streams += 1
        return stream, channels
    raise AudioDeviceError(f"cannot open {kind} device {device['name']!r} at {rate} Hz: {error}")


def _close_stream(stream: Any, drain: bool = False) -> None:
    """Close a stream; `drain` lets an output stream play what it has buffered first."""
    global _open_streams
    with _PA_LOCK:
        try:
            if drain:
                stream.stop(ignore_errors=True)
            else:
                stream.abort(ignore_errors=True)
            stream.close(ignore_errors=True)
        finally:
            _open_streams -= 1


class MicrophoneSource:
    """Frames from a PortAudio input device, converted to 16 kHz mono.

    PortAudio's callback thread converts and queues frames without blocking; the queue holds at
    most ``queue_frames`` frames and, when it is full, new frames are dropped and counted (the
    oldest are kept so what is delivered stays contiguous). Drops and PortAudio input overflows
    are both logged; ``overflows`` is their sum.
    """

    def __init__(
        self,
        cfg: AudioConfig,
        on_error: ErrorHandler | None = None,
        *,
        backoff_initial_s: float = 0.5,
    ):
        self.cfg = cfg
        self.frame_ms = cfg.frame_ms
        self.on_error = on_error
        self._frame_bytes = frame_bytes(cfg.frame_ms)
        self._backoff_initial_s = min(backoff_initial_s, cfg.reopen_backoff_max_s)
        self._queue: collections.deque[bytes] = collections.deque()
        self._max_frames = cfg.queue_frames
        self._input_overflows = 0
        self._dropped_frames = 0
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
    def overflows(self) -> int:
        return self._input_overflows + self._dropped_frames

    async def frames(self) -> AsyncIterator[bytes]:
        self._loop = asyncio.get_running_loop()
        self._wakeup = asyncio.Event()
        backoff = self._backoff_initial_s
        try:
            while not self._closed:
                if self._stream is None:
                    try:
                        await asyncio.to_thread(self._open)
                    except Exception as error:
                        if not isinstance(error, AudioDeviceError):
                            error = AudioDeviceError(f"cannot open the microphone: {error!r}")
                        self._report(error, backoff)
                        await self._pause(backoff)
                        backoff = min(backoff * 2, self.cfg.reopen_backoff_max_s)
                        continue
                if self._queue:
                    frame = self._queue.popleft()
                    backoff = self._backoff_initial_s
                    yield frame
                    self._log_overflows()
                    continue
                if self._failure is not None:
                    failure, self._failure = self._failure, None
                    await asyncio.to_thread(self._close)
                    self._report(failure, backoff)
                    await self._pause(backoff)
                    backoff = min(backoff * 2, self.cfg.reopen_backoff_max_s)
                    continue
                self._wakeup.clear()
                self._waiting = True
                # Re-check after announcing the wait: the callback may have queued meanwhile.
                if not (self._queue or self._failure is not None or self._closed):
                    await self._wakeup.wait()
                self._waiting = False
        finally:
            self._waiting = False
            self._close()
            self._log_overflows(force=True)

    def close(self) -> None:
        """Stop capturing; a running `frames()` ends."""
        self._closed = True
        self._close()
        self._notify()

    async def _pause(self, seconds: float) -> None:
        assert self._wakeup is not None
        self._wakeup.clear()
        self._waiting = True  # so that close() cuts the pause short
        try:
            if not self._closed:
                await asyncio.wait_for(self._wakeup.wait(), seconds)
        except asyncio.TimeoutError:
            pass
        finally:
            self._waiting = False

    def _report(self, error: Exception, retry_s: float) -> None:
        log.warning("microphone: %s; retrying in %.1f s", error, retry_s)
        if self.on_error is not None:
            try:
                self.on_error(error)
            except Exception:
                log.exception("microphone error handler failed")

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
        sd = _sd()
        with _PA_LOCK:
            if self._closed or self._stream is not None:
                return
            device = _lookup_device(self.cfg.input_device, "input")
            rate = self.cfg.input_rate or int(device["default_samplerate"])
            self._pending = bytearray()
            self._resampler = None
            if rate != SAMPLE_RATE:
                self._resampler = soxr.ResampleStream(
                    rate, SAMPLE_RATE, 1, dtype="float32", quality="HQ"
                )
            self._stopping = False
            self._failure = None
            self._stream, self._channels = _open_stream(
                sd.InputStream,
                device,
                rate,
                "input",
                blocksize=max(1, rate * self.frame_ms // 1000),
                callback=self._callback,
                finished_callback=self._finished,
            )
            self.device_name, self.device_rate = device["name"], rate
            log.info("microphone: %r at %d Hz, %d channel(s)", device["name"], rate, self._channels)

    def _close(self) -> None:
        with _PA_LOCK:
            stream, self._stream = self._stream, None
            if stream is not None:
                self._stopping = True
                _close_stream(stream)

    # The two methods below run on PortAudio's thread: no locks, no I/O, no logging.

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
                data = _float_to_int16(values).astype("<i2").tobytes()
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
            raise _sd().CallbackAbort from error

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


# ---------------------------------------------------------------------------------------------
# Sinks


class _Sink:
    def __init__(self, volume: float = 1.0):
        self._volume = _check_volume(volume)

    @property
    def volume(self) -> float:
        return self._volume

    def set_volume(self, volume: float) -> None:
        """0.0 (silent) to 2.0; takes effect on the next block played."""
        self._volume = _check_volume(volume)

    async def play(self, samples: np.ndarray | bytes, sample_rate: int) -> bool:
        raise NotImplementedError

    def stop(self) -> None:
        """Interrupt the current play (barge-in)."""

    def close(self) -> None:
        """Release the device or file."""


class SpeakerSink(_Sink):
    """Plays on a PortAudio output device from a worker thread, so the event loop never blocks.

    The stream stays open between plays that follow each other closely (sentences of one reply)
    and is closed after ``idle_close_s`` without playing.
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
        self._generation = 0
        self._stream: Any = None
        self._channels = 1
        self._rate = 0
        self._idle_timer: asyncio.TimerHandle | None = None
        self._closed = False
        self.device_name: str | None = None

    async def play(self, samples: np.ndarray | bytes, sample_rate: int) -> bool:
        """Play to the end (True) or until `stop()` (False). Raises `AudioDeviceError`."""
        data = as_int16(samples)
        loop = asyncio.get_running_loop()
        if self._idle_timer is not None:
            self._idle_timer.cancel()
            self._idle_timer = None
        future = loop.run_in_executor(
            self._executor, self._play_blocking, data, sample_rate, self._generation
        )
        try:
            return await asyncio.shield(future)
        except asyncio.CancelledError:
            self.stop()
            await asyncio.wait([future])
            raise
        finally:
            if not self._closed:
                self._idle_timer = loop.call_later(self.idle_close_s, self._close_when_idle)

    def stop(self) -> None:
        self._generation += 1

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self.stop()
        if self._idle_timer is not None:
            self._idle_timer.cancel()
        self._executor.submit(self._close_stream, True)
        self._executor.shutdown(wait=True)

    def _close_when_idle(self) -> None:
        self._idle_timer = None
        if not self._closed:
            self._executor.submit(self._close_stream, True)

    def _ensure_stream(self) -> None:
        if self._stream is not None:
            return
        sd = _sd()
        with _PA_LOCK:
            device = _lookup_device(self.cfg.output_device, "output")
            rate = self.cfg.output_rate or int(device["default_samplerate"])
            self._stream, self._channels = _open_stream(sd.OutputStream, device, rate, "output")
        self._rate = rate
        self.device_name = device["name"]
        log.debug("speaker: %r at %d Hz, %d channel(s)", device["name"], rate, self._channels)

    def _close_stream(self, drain: bool = False) -> None:
        stream, self._stream = self._stream, None
        if stream is not None:
            _close_stream(stream, drain)

    def _play_blocking(self, data: np.ndarray, sample_rate: int, generation: int) -> bool:
        if generation != self._generation:
            return False
        sd = _sd()
        try:
            self._ensure_stream()
            data = resample(data, sample_rate, self._rate)
            block = max(1, int(self._rate * self.BLOCK_S))
            for start in range(0, len(data), block):
                if generation != self._generation:
                    # abort() drops what is buffered, so the voice stops at once.
                    self._close_stream()
                    return False
                chunk = _apply_volume(data[start : start + block], self._volume)
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


class WavSink(_Sink):
    """Appends every play to one WAV file, at `sample_rate` (None: the first play's rate).

    With `realtime`, a play takes as long as the audio lasts, written in short blocks, and
    `stop()` cuts it off there: the file then holds what a listener would have heard, so the
    daemon behaves with `--output FILE.wav` as it does with a speaker (barge-in included).
    """

    BLOCK_S = 0.02

    def __init__(
        self, path: str | Path, sample_rate: int | None = None, volume: float = 1.0,
        realtime: bool = False,
    ):
        super().__init__(volume)
        self.path = Path(path)
        self.sample_rate = sample_rate
        self.realtime = realtime
        self._generation = 0
        self._wav = wave.open(str(self.path), "wb")
        self._wav.setnchannels(1)
        self._wav.setsampwidth(SAMPLE_WIDTH)
        # A file nothing was played into still needs a valid header; the first play may change
        # the rate, as no frames are written before it.
        self._wav.setframerate(sample_rate or SAMPLE_RATE)

    async def play(self, samples: np.ndarray | bytes, sample_rate: int) -> bool:
        if self.sample_rate is None:
            self.sample_rate = sample_rate
            self._wav.setframerate(sample_rate)
        generation = self._generation
        data = resample(as_int16(samples), sample_rate, self.sample_rate)
        if not self.realtime:
            self._wav.writeframes(_apply_volume(data, self._volume).astype("<i2").tobytes())
            return True
        block = max(1, int(self.sample_rate * self.BLOCK_S))
        start = time.monotonic()
        for index, offset in enumerate(range(0, len(data), block)):
            if generation != self._generation:
                return False
            chunk = _apply_volume(data[offset : offset + block], self._volume)
            self._wav.writeframes(chunk.astype("<i2").tobytes())
            await asyncio.sleep(max(0.0, start + (index + 1) * self.BLOCK_S - time.monotonic()))
        return generation == self._generation

    def stop(self) -> None:
        self._generation += 1

    def close(self) -> None:
        self._wav.close()


class RawSink(_Sink):
    """Writes s16le mono at `sample_rate` to a binary file object (stdout by default)."""

    def __init__(
        self, stream: BinaryIO | None = None, sample_rate: int = SAMPLE_RATE, volume: float = 1.0
    ):
        super().__init__(volume)
        self.stream = stream if stream is not None else sys.stdout.buffer
        self.sample_rate = sample_rate

    async def play(self, samples: np.ndarray | bytes, sample_rate: int) -> bool:
        data = _apply_volume(
            resample(as_int16(samples), sample_rate, self.sample_rate), self._volume
        )
        payload = data.astype("<i2").tobytes()

        def write() -> None:
            self.stream.write(payload)
            self.stream.flush()

        # A pipe whose reader is slow would block the loop.
        await asyncio.to_thread(write)
        return True


# ---------------------------------------------------------------------------------------------
# Earcons


@dataclass(frozen=True)
class Sound:
    samples: np.ndarray
    sample_rate: int


def _tone(
    frequencies: list[tuple[float, float]], harmonics: int = 1, amplitude: float = 0.3
) -> np.ndarray:
    parts = []
    for frequency, seconds in frequencies:
        t = np.arange(int(SAMPLE_RATE * seconds)) / SAMPLE_RATE
        wave_ = sum(np.sin(2 * np.pi * frequency * k * t) / k for k in range(1, 2 * harmonics, 2))
        # Short fades: a tone that starts or stops abruptly clicks.
        fade = np.minimum(1.0, np.minimum(t, t[::-1]) / 0.005)
        parts.append(wave_ * fade)
    signal = np.concatenate(parts)
    signal *= amplitude / max(1e-9, float(np.max(np.abs(signal))))
    return _float_to_int16(signal * 32767.0)


def earcon(kind: str, path: str | Path = "") -> Sound:
    """The "wake" (rising two-tone) or "error" (low buzz) sound, or the WAV at `path` instead."""
    if path:
        return Sound(read_wav(path), SAMPLE_RATE)
    if kind == "wake":
        return Sound(_tone([(660.0, 0.08), (880.0, 0.12)]), SAMPLE_RATE)
    if kind == "error":
        return Sound(_tone([(180.0, 0.12), (0.0, 0.06), (180.0, 0.2)], harmonics=4), SAMPLE_RATE)
    raise ValueError(f"unknown earcon {kind!r} (known: wake, error)")
