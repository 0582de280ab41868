"""WAV files: reading any PCM or float WAV (libsndfile) as 16 kHz mono, writing 16-bit PCM, and
the file as a source (`WavSource`, a microphone stand-in) or a sink (`WavSink`, a speaker's)."""

from __future__ import annotations

import asyncio
import logging
import re
import wave
from pathlib import Path
from typing import AsyncIterator, BinaryIO, Iterator

import numpy as np
import soundfile

from ..concurrency import Pacer
from .pcm import (
    SAMPLE_RATE,
    SAMPLE_WIDTH,
    apply_volume,
    as_int16,
    float_to_int16,
    frame_bytes,
    resample,
    stream_resampler,
)
from .sink import Sink

log = logging.getLogger(__name__)

# What libsndfile calls the WAV containers (RIFF and big-endian RIFX, extensible, 64-bit).
_WAV_FORMATS = {"WAV", "WAVEX", "RF64", "W64"}
# Sample encodings taken as they are; libsndfile decodes some compressed ones too, but the
# assistant's WAVs are PCM, and a compressed one is more likely a mistake (a phone recording).
_PCM_SUBTYPES = {"PCM_U8", "PCM_S8", "PCM_16", "PCM_24", "PCM_32", "FLOAT", "DOUBLE"}
_CODEC_NAMES = {"ULAW": "mu-law", "ALAW": "A-law"}
# Streaming writers that cannot seek back leave this in the size field: not a truncation.
_UNKNOWN_SIZE = 0xFFFFFFFF
# libsndfile's note, in its log of the header, that the data chunk is longer than the file.
_SHORT_DATA = re.compile(r"^data\s*:\s*(\d+)\s*\(should be (\d+)\)", re.MULTILINE)


class AudioFormatError(ValueError):
    """An audio file cannot be used; the message names the file and the reason."""


class _WavFile:
    """A PCM or float WAV opened with libsndfile, checked, for reading in blocks."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        try:
            self._file: BinaryIO = open(self.path, "rb")
        except OSError as error:
            raise AudioFormatError(f"{self.path}: cannot open: {error.strerror}") from None
        try:
            self._sound = self._open_sound()
        except BaseException:
            self._file.close()
            raise
        self.sample_rate = self._sound.samplerate
        self.channels = self._sound.channels

    def _fail(self, reason: str) -> AudioFormatError:
        return AudioFormatError(f"{self.path}: {reason}")

    def _open_sound(self) -> soundfile.SoundFile:
        try:
            sound = soundfile.SoundFile(self._file)
        except soundfile.LibsndfileError as error:
            if error.code == 1:  # SF_ERR_UNRECOGNISED_FORMAT
                raise self._fail("not a WAV file (no format libsndfile knows)") from None
            raise self._fail(f"not a readable WAV file: {error.error_string}") from None
        if sound.format not in _WAV_FORMATS:
            sound.close()
            raise self._fail(f"not a WAV file (a {sound.format_info} file)")
        if sound.subtype not in _PCM_SUBTYPES:
            name = _CODEC_NAMES.get(sound.subtype, sound.subtype_info)
            sound.close()
            raise self._fail(
                f"compressed WAV ({name}) is not supported; convert it to PCM, "
                "e.g. sox IN.wav -e signed-integer -b 16 OUT.wav"
            )
        return sound

    def _warn_if_truncated(self) -> None:
        short = _SHORT_DATA.search(self._sound.extra_info)
        if short is not None and int(short.group(1)) != _UNKNOWN_SIZE:
            log.warning(
                "%s: WAV data is truncated (header says %s bytes, the file has %s); "
                "using what is there",
                self.path,
                short.group(1),
                short.group(2),
            )

    def blocks(self, sample_rate: int, block_frames: int = 8192) -> Iterator[np.ndarray]:
        """int16 mono blocks at `sample_rate`, converted while streaming through the file."""
        self._warn_if_truncated()
        sound = self._sound
        if sound.subtype == "PCM_16" and self.channels == 1 and self.sample_rate == sample_rate:
            # Already the wanted format: the samples pass through untouched.
            while (block := sound.read(block_frames, dtype="int16")).size:
                yield block
            return
        resampler = None
        if self.sample_rate != sample_rate:
            resampler = stream_resampler(self.sample_rate, sample_rate)
        while True:
            block = sound.read(block_frames, dtype="float32", always_2d=True)
            # Channels averaged, on the int16 scale.
            values = block.mean(axis=1, dtype=np.float32) * np.float32(32768.0)
            last = len(block) < block_frames
            if resampler is not None:
                values = resampler.resample_chunk(values, last=last)
            if values.size:
                yield float_to_int16(values)
            if last:
                return

    def close(self) -> None:
        self._sound.close()
        self._file.close()


def _wav_blocks(path: str | Path, sample_rate: int) -> Iterator[np.ndarray]:
    wav = _WavFile(path)
    try:
        yield from wav.blocks(sample_rate)
    finally:
        wav.close()


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


class WavSource:
    """Frames of 16 kHz mono s16le from a WAV file of any PCM/float format, rate and channels.

    `realtime` delivers them no faster than a microphone would; otherwise as fast as they are
    read (still yielding to the event loop after each). ``frames()`` ends at the end of the file
    (the last partial frame padded with silence) or after ``close()``.
    """

    def __init__(self, path: str | Path, frame_ms: int = 10, realtime: bool = False):
        self.path = Path(path)
        self.frame_ms = frame_ms
        self.realtime = realtime
        self._frame_bytes = frame_bytes(frame_ms)
        self._closed = False
        # Fail now, with the file's name, rather than on the first frame.
        _WavFile(self.path).close()

    async def frames(self) -> AsyncIterator[bytes]:
        pending = bytearray()
        pacer = Pacer() if self.realtime else None
        frame_s = self.frame_ms / 1000
        count = 0
        blocks = _wav_blocks(self.path, SAMPLE_RATE)
        try:
            for block in blocks:
                pending += block.astype("<i2").tobytes()
                while len(pending) >= self._frame_bytes and not self._closed:
                    frame = bytes(pending[: self._frame_bytes])
                    del pending[: self._frame_bytes]
                    count += 1
                    yield frame
                    if pacer is not None:
                        await pacer.wait(count * frame_s)
                    else:  # still yield to the loop, so a fast file does not starve other tasks
                        await asyncio.sleep(0)
                if self._closed:
                    return
        finally:
            blocks.close()
        if pending and not self._closed:
            yield bytes(pending) + bytes(self._frame_bytes - len(pending))

    def close(self) -> None:
        """End `frames()`: it delivers no frame after this."""
        self._closed = True

    async def aclose(self) -> None:
        """`close()`, for the same shape as the microphone's: nothing here waits."""
        self.close()


class WavSink(Sink):
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
            data = apply_volume(data, self._volume)
            self._hand_over(data, self.sample_rate)
            self._wav.writeframes(data.astype("<i2").tobytes())
            return True
        block = max(1, int(self.sample_rate * self.BLOCK_S))
        pacer = Pacer()
        for offset in range(0, len(data), block):
            if generation != self._generation:
                return False
            chunk = apply_volume(data[offset : offset + block], self._volume)
            self._hand_over(chunk, self.sample_rate)
            self._wav.writeframes(chunk.astype("<i2").tobytes())
            await pacer.wait((offset + len(chunk)) / self.sample_rate)
        return generation == self._generation

    def close(self) -> None:
        self._wav.close()
