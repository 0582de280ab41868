"""A simulated room for the echo tests, the stop word's bench and its training: what the speaker
plays comes back into the microphone.

    room = SimulatedRoom(delay_s=0.12)
    sink.taps.append(room.speaker_tap)       # the speaker plays into the room
    room.say(samples)                        # a person speaks (straight into the microphone)
    async for frame in room.microphone().frames(): ...   # real-time frames: echo + voice + noise

The way from speaker to microphone is a delay and a short room impulse response: a direct
path, then a decaying noise tail (reflections), generated from `seed`. Like a sound card, the
speaker plays what it is handed at 16 kHz from the moment it gets it, or right after what it
is still playing; the microphone delivers each frame once it has been captured.

`capture(start, count)` gives the microphone's samples directly, for tests that drive time
themselves (`now` is then their clock). The echo and the voice are also kept apart
(`echo_track`, `voice_track`), to measure what a canceller removed.
"""

from __future__ import annotations

import time
from typing import Callable

import numpy as np

from ..audio.pcm import SAMPLE_RATE, as_int16, frame_bytes, resample
from ..concurrency import Pacer


def room_response(seed: int = 0, length_s: float = 0.15, rt60_s: float = 0.3) -> np.ndarray:
    """A room impulse response: the direct path, then reflections decaying by 60 dB in `rt60_s`."""
    rng = np.random.default_rng(seed)
    count = int(length_s * SAMPLE_RATE)
    t = np.arange(count) / SAMPLE_RATE
    response = rng.standard_normal(count) * np.exp(-6.9 * t / rt60_s) * 0.25
    # Nothing arrives between the direct path and the first reflection (a few ms later).
    response[: int(0.003 * SAMPLE_RATE)] = 0.0
    response[0] = 1.0
    return (response / np.sqrt(np.sum(response**2))).astype(np.float32)


class SimulatedRoom:
    def __init__(self, delay_s: float = 0.1, *, seed: int = 0, echo_gain: float = 0.5,
                 noise_rms: float = 30.0, duration_s: float = 600.0,
                 now: Callable[[], float] = time.monotonic) -> None:
        self.delay = int(round(delay_s * SAMPLE_RATE))
        self.response = room_response(seed) * echo_gain
        self._now = now
        self.origin = now()
        size = int(duration_s * SAMPLE_RATE)
        self.echo_track = np.zeros(size, dtype=np.float32)
        self.voice_track = np.zeros(size, dtype=np.float32)
        self.noise = np.random.default_rng(seed + 1).normal(0.0, noise_rms, size).astype(np.float32)
        self._speaker_end = 0  # where the speaker's next sample plays, on the room's timeline
        self.played: list[tuple[int, np.ndarray]] = []  # (index, samples) as played

    def index_at(self, moment: float) -> int:
        return int(round((moment - self.origin) * SAMPLE_RATE))

    @property
    def now_index(self) -> int:
        return self.index_at(self._now())

    def speaker_tap(self, block: np.ndarray, rate: int) -> None:
        """A sink tap: `block` leaves the speaker now (or after what is still playing)."""
        samples = resample(as_int16(block), rate, SAMPLE_RATE).astype(np.float32)
        start = max(self.now_index, self._speaker_end)
        self._speaker_end = start + samples.size
        self.played.append((start, samples.astype(np.int16)))
        echo = np.convolve(samples, self.response)
        at = start + self.delay
        end = min(at + echo.size, self.echo_track.size)
        if at < end:
            self.echo_track[at:end] += echo[: end - at]

    def say(self, samples: np.ndarray, at_index: int | None = None) -> int:
        """A person speaks `samples` (16 kHz) from `at_index` (default: a frame from now);
        returns where the speech starts."""
        at = self.now_index + SAMPLE_RATE // 100 if at_index is None else at_index
        end = min(at + samples.size, self.voice_track.size)
        self.voice_track[at:end] += samples[: end - at].astype(np.float32)
        return at

    def capture(self, start: int, count: int) -> np.ndarray:
        """What the microphone hears of samples [start, start + count)."""
        window = slice(start, start + count)
        mixed = self.echo_track[window] + self.voice_track[window] + self.noise[window]
        return np.clip(np.rint(mixed), -32768, 32767).astype(np.int16)

    def microphone(self, frame_ms: int = 10) -> "RoomMicrophone":
        return RoomMicrophone(self, frame_ms)


class RoomMicrophone:
    """The room's microphone as a frame source: each frame arrives once it has been captured."""

    def __init__(self, room: SimulatedRoom, frame_ms: int = 10) -> None:
        self.room = room
        self.frame_ms = frame_ms
        self._samples = frame_bytes(frame_ms) // 2
        self._closed = False
        self.first_index = 0  # the room's sample where the first frame starts
        self._pacer: Pacer | None = None
        self._delivered = 0

    @property
    def queued_s(self) -> float:
        """Seconds captured and not yet taken (what a microphone's queue would hold)."""
        if self._pacer is None:
            return 0.0
        return max(0.0, self._pacer.clock() - self._pacer.start - self._delivered * self._samples / SAMPLE_RATE)

    async def frames(self):
        pacer = self._pacer = Pacer()
        index = self.first_index = self.room.now_index
        count = self._delivered = 0
        while not self._closed:
            count += 1
            # A frame is delivered once its last sample has been captured.
            await pacer.wait(count * self._samples / SAMPLE_RATE)
            self._delivered = count
            frame = self.room.capture(index, self._samples)
            index += self._samples
            yield frame.astype("<i2").tobytes()

    def close(self) -> None:
        self._closed = True

    async def aclose(self) -> None:
        self.close()


class ManualClock:
    """A clock the test moves: `now` for a room and an echo canceller driven step by step."""

    def __init__(self, start: float = 1000.0) -> None:
        self.time = start

    def __call__(self) -> float:
        return self.time


def play_through_room(played: np.ndarray, *, delay_s: float, engine: str = "webrtc",
                      voice: np.ndarray | None = None, voice_at_s: float = 0.0,
                      noise_rms: float = 3.0, seed: int = 0, own_sound: list[bool] | None = None):
    """Play `played` (16 kHz) into a room while a person says `voice` from `voice_at_s`, and
    cancel the echo step by step, 10 ms at a time, on a manual clock (no waiting).
    `own_sound`, if given, gets the canceller's verdict on each 10 ms: could it hear the speaker?

    Returns (room, microphone, cleaned, processor): the room's tracks, the microphone's samples
    and the canceller's output cover the same samples, from when the speaker began.
    """
    from ..config import AudioConfig
    from ..audio.echo import BLOCK, CaptureClock, CaptureProcessor, PlaybackReference

    clock = ManualClock()
    room = SimulatedRoom(delay_s, seed=seed, noise_rms=noise_rms,
                         duration_s=played.size / SAMPLE_RATE + 2.0, now=clock)
    capture = CaptureClock()
    reference = PlaybackReference(capture, now=clock)
    processor = CaptureProcessor(AudioConfig(echo_canceller=engine), reference)
    if voice is not None:
        room.say(voice, int(voice_at_s * SAMPLE_RATE))
    steps = played.size // BLOCK
    microphone = np.zeros(steps * BLOCK, dtype=np.int16)
    cleaned = np.zeros(steps * BLOCK, dtype=np.int16)
    for step in range(steps):
        index = step * BLOCK
        clock.time = room.origin + index / SAMPLE_RATE
        block = played[index : index + BLOCK]
        room.speaker_tap(block, SAMPLE_RATE)
        reference.tap(block, SAMPLE_RATE)
        # The frame arrives once captured.
        clock.time = room.origin + (index + BLOCK) / SAMPLE_RATE
        capture.observe(index + BLOCK, clock.time)
        microphone[index : index + BLOCK] = room.capture(index, BLOCK)
        cleaned[index : index + BLOCK] = processor.process(microphone[index : index + BLOCK], index)
        if own_sound is not None:
            own_sound.extend(processor.own_sound)
    return room, microphone, cleaned, processor


def erle_db(echo: np.ndarray, residual: np.ndarray) -> float:
    """Echo return loss enhancement: how much quieter the echo came out than it went in."""
    echo = echo.astype(np.float64)
    residual = residual.astype(np.float64)
    return float(10 * np.log10(np.sum(echo**2) / max(1e-9, np.sum(residual**2))))
