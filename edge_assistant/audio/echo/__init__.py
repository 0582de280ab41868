"""Echo cancellation: the microphone minus what the speaker played.

The assistant knows exactly what it plays, so it can take it out of what it hears: it then
neither wakes itself with its own "Hey Jarvis" nor finds the end of its reply in the next
question. ::

    clock = CaptureClock()
    reference = PlaybackReference(clock)
    sink.taps.append(reference.tap)             # every block, as it is handed to the device
    processor = CaptureProcessor(cfg.audio, reference)
    source = EchoCancellingSource(MicrophoneSource(cfg.audio), processor, clock)
    async for frame in source.frames(): ...     # the room without the assistant's voice

(`with_echo_cancellation()` does all of that.)

One timeline: the microphone's sample count. `CaptureClock` maps `time.monotonic()` onto it
from when frames arrive (the earliest arrival is the closest to capture). The speaker's taps
place each block at the microphone sample current when it was handed to the device, or right
after the previous block if that one is still playing, so a reply is one unbroken run of
samples whatever the writes' jitter. What is left between the two, device buffers and the
way through the air, is measured, not assumed: `EchoDelayEstimator` cross-correlates what was
played with what was heard (GCC-PHAT) and the reference is shifted by that delay before the
canceller, which only has to find the room's reflections.

The canceller itself is WebRTC's AEC3 (the pywebrtc-audio binding) or speexdsp's (Debian's
libspeexdsp through ctypes); noise suppression and automatic gain come from the same library.
"""

from __future__ import annotations

import collections
import ctypes
import ctypes.util
import json
import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, AsyncIterator, Callable, Protocol

import numpy as np

from ..capture_clock import CaptureClock
from ..pcm import SAMPLE_RATE, as_int16, stream_resampler
from ...concurrency import to_thread_joined
from ...config import AudioConfig

log = logging.getLogger(__name__)

# Both libraries work on 10 ms blocks.
BLOCK = SAMPLE_RATE // 100
# Frames are handed to the canceller's thread in batches of this much audio, like the listener's.
BATCH_S = 0.1
# How much of what was played is kept: the canceller may be this far behind the speaker (the
# microphone's queue on a loaded machine); older blocks are dropped even if it never read them
# (a microphone that is gone while the speaker plays on).
REFERENCE_KEEP_S = 60.0
# Sound played after the delay is measured (or changed) before the canceller's filter is taken
# to have learnt the room: until then it leaves much of the echo.
SETTLE_S = 3.0
# How long the room goes on echoing a sound after the speaker stopped playing it.
ECHO_TAIL_S = 0.3
# Played samples at least this loud (about -50 dBFS) are a sound the microphone may hear.
SOUNDING_LEVEL = 100
# The reference starts this much before the measured delay: the cancelling filter only looks
# backwards in time, so an echo that came a little early would be missed.
DELAY_MARGIN_S = 0.008


class EchoCancellerError(RuntimeError):
    """The canceller's library is missing or refuses the settings."""


# --- the timeline -------------------------------------------------------------------------------


class PlaybackReference:
    """What the speaker played, at 16 kHz, on the microphone's timeline.

    `tap()` is a sink tap (it runs in the sink's writing thread); `read()` is for the canceller.
    """

    def __init__(self, clock: CaptureClock, now: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._now = now
        self._lock = threading.Lock()
        # (first sample index, samples), in order and never overlapping.
        self._blocks: collections.deque[tuple[int, np.ndarray]] = collections.deque()
        self._end: int | None = None  # where the next contiguous block goes
        self._resampler: Any = None
        self._resampler_rate = 0

    @property
    def end(self) -> int | None:
        """The sample index just after the last block handed to the device."""
        return self._end

    def tap(self, block: np.ndarray, rate: int) -> None:
        handed = self._now()
        index = self.clock.index_at(handed)
        if index is None:
            return  # nobody listens yet
        with self._lock:
            contiguous = self._end is not None and self._end >= index
            samples = self._to_16k(as_int16(block), rate, contiguous)
            # Still playing the previous block: this one follows it without a gap.
            start = self._end if contiguous else index
            if samples.size:  # a resampler may hold back the first few
                self._blocks.append((start, samples))
            self._end = start + samples.size
            oldest = self._end - int(REFERENCE_KEEP_S * SAMPLE_RATE)
            while self._blocks and self._blocks[0][0] + self._blocks[0][1].size <= oldest:
                self._blocks.popleft()

    def restart(self) -> None:
        """The microphone's timeline started again: what was placed on the old one is void."""
        with self._lock:
            self._blocks.clear()
            self._end = None

    def _to_16k(self, block: np.ndarray, rate: int, contiguous: bool) -> np.ndarray:
        if rate == SAMPLE_RATE:
            return block
        if not contiguous or self._resampler is None or self._resampler_rate != rate:
            self._resampler = stream_resampler(rate, SAMPLE_RATE)
            self._resampler_rate = rate
        resampled = self._resampler.resample_chunk(block.astype(np.float32))
        return np.clip(np.rint(resampled), -32768, 32767).astype(np.int16)

    def forget_before(self, index: int) -> None:
        """Drop what played wholly before `index`: the canceller reads forwards only."""
        with self._lock:
            while self._blocks and self._blocks[0][0] + self._blocks[0][1].size <= index:
                self._blocks.popleft()

    def read(self, start: int, count: int) -> np.ndarray:
        """Samples [start, start + count) as played; silence where nothing was."""
        out = np.zeros(count, dtype=np.int16)
        end = start + count
        with self._lock:
            for first, samples in self._blocks:
                if first >= end:
                    break
                lo, hi = max(start, first), min(end, first + samples.size)
                if lo < hi:
                    out[lo - start : hi - start] = samples[lo - first : hi - first]
        return out


# --- measuring the delay --------------------------------------------------------------------


@dataclass(frozen=True)
class DelayEstimate:
    delay_s: float
    # Peak of the correlation over the spread of the rest: above ~8 it is the echo.
    confidence: float


class EchoDelayEstimator:
    """Speaker-to-microphone delay, from what was played and what was heard (GCC-PHAT).

    Feed it both signals on the same timeline (`add`); every `interval_s` of audio in which
    the speaker played, it cross-correlates the last `window_s` and, when the peak stands out,
    reports the lag of the direct path. A new delay is adopted once `AGREEING` estimates in a
    row agree within `tolerance_s` and it differs from the one in use by more than that.
    """

    MIN_CONFIDENCE = 8.0
    # The earliest lag at least this share of the strongest peak is taken for the direct path.
    DIRECT_PATH_SHARE = 0.5
    # Estimates in a row that must agree before a delay is adopted.
    AGREEING = 3

    def __init__(self, max_delay_s: float = 0.5, window_s: float = 2.0, interval_s: float = 1.0,
                 tolerance_s: float = 0.004) -> None:
        self.max_lag = int(max_delay_s * SAMPLE_RATE)
        self.window = int(window_s * SAMPLE_RATE) + self.max_lag
        self.interval = int(interval_s * SAMPLE_RATE)
        self.tolerance = int(tolerance_s * SAMPLE_RATE)
        # Rings of the last `window` samples; `_written` is where the next sample goes.
        self._near = np.zeros(self.window, dtype=np.float32)
        self._far = np.zeros(self.window, dtype=np.float32)
        self._written = 0
        self._playing = 0  # played samples since the last estimate
        self._recent: collections.deque[int] = collections.deque(maxlen=self.AGREEING)
        self.delay: int | None = None  # adopted, in samples
        self.last: DelayEstimate | None = None

    def add(self, near: np.ndarray, far: np.ndarray) -> bool:
        """Both signals for the same samples; True when the adopted delay changed."""
        count = near.size
        positions = (self._written + np.arange(count)) % self.window
        self._near[positions] = near
        self._far[positions] = far
        self._written = (self._written + count) % self.window
        if np.max(np.abs(far), initial=0) >= SOUNDING_LEVEL:
            self._playing += count
        if self._playing < self.interval:
            return False
        self._playing = 0
        estimate = self.estimate()
        if estimate is None:
            return False
        lag = int(round(estimate.delay_s * SAMPLE_RATE))
        self._recent.append(lag)
        recent = list(self._recent)
        agreed = len(recent) == self.AGREEING and max(recent) - min(recent) <= self.tolerance
        if agreed and (self.delay is None or abs(lag - self.delay) > self.tolerance):
            self.delay = int(np.median(recent))
            return True
        return False

    def estimate(self) -> DelayEstimate | None:
        """The delay in the current window, or None when no peak stands out."""
        size = 1 << int(np.ceil(np.log2(2 * self.window)))
        # Oldest first: the ring starts where the next sample would go.
        near = np.fft.rfft(np.roll(self._near, -self._written), size)
        far = np.fft.rfft(np.roll(self._far, -self._written), size)
        cross = near * np.conj(far)
        # PHAT: every frequency counts by its phase alone, so the lag of the direct path stands
        # out instead of a broad hump of the voice's low frequencies. Bands the speaker barely
        # played (below 1/1000 of the strongest) are left out: their phase is noise.
        magnitude = np.abs(cross)
        cross = np.where(magnitude > 1e-3 * magnitude.max(initial=0.0), cross / (magnitude + 1e-12), 0)
        correlation = np.fft.irfft(cross, size)[: self.max_lag + 1]
        strongest = int(np.argmax(correlation))
        spread = float(np.std(correlation))
        if spread <= 0:
            return None
        confidence = float(correlation[strongest]) / spread
        # The direct path arrives first; a reflection may come out stronger, but later.
        peak = int(np.argmax(correlation >= self.DIRECT_PATH_SHARE * correlation[strongest]))
        self.last = DelayEstimate(peak / SAMPLE_RATE, confidence)
        return self.last if confidence >= self.MIN_CONFIDENCE else None


# --- the cancellers -----------------------------------------------------------------------------


class _Engine(Protocol):
    name: str
    # A delay up to `own_delay_s` the canceller finds and follows by itself: the reference is
    # shifted only for a longer one, and then to leave `residual_delay_s` (shifting it anew
    # makes the canceller start over, so that is done as rarely as it can be).
    own_delay_s: float
    residual_delay_s: float

    def process(self, near: np.ndarray, far: np.ndarray | None) -> np.ndarray: ...


class WebRtcEngine:
    """WebRTC's audio processing (AEC3, noise suppression, AGC2), through pywebrtc-audio."""

    name = "webrtc"
    # AEC3's delay estimator covers about half a second.
    own_delay_s = 0.4
    residual_delay_s = 0.1

    def __init__(self, echo: bool, noise: bool, gain: bool) -> None:
        try:
            from pywebrtc_audio import AudioProcessor
        except ImportError as error:
            raise EchoCancellerError(f"pywebrtc-audio is not installed ({error})") from None
        self._echo = echo
        self._processor = AudioProcessor(
            sample_rate=SAMPLE_RATE, echo_cancellation=echo, noise_suppression=noise,
            auto_gain_control=gain,
        )

    def process(self, near: np.ndarray, far: np.ndarray | None) -> np.ndarray:
        return self._processor.process(near, far if self._echo else None)


# speex_preprocess_ctl requests (speex/speex_preprocess.h) and speex_echo_ctl's.
_SPEEX_ECHO_SET_SAMPLING_RATE = 24
_SPEEX_PREPROCESS_SET_DENOISE = 0
_SPEEX_PREPROCESS_SET_AGC = 2
_SPEEX_PREPROCESS_SET_NOISE_SUPPRESS = 18
_SPEEX_PREPROCESS_SET_ECHO_SUPPRESS = 20
_SPEEX_PREPROCESS_SET_ECHO_SUPPRESS_ACTIVE = 22
_SPEEX_PREPROCESS_SET_ECHO_STATE = 24


def _load_speexdsp() -> ctypes.CDLL:
    name = ctypes.util.find_library("speexdsp") or "libspeexdsp.so.1"
    try:
        library = ctypes.CDLL(name)
    except OSError as error:
        raise EchoCancellerError(
            f"libspeexdsp is not installed ({error}); sudo apt-get install libspeexdsp1"
        ) from None
    pointer, integer = ctypes.c_void_p, ctypes.c_int
    signatures = {
        "speex_echo_state_init": ([integer, integer], pointer),
        "speex_echo_state_destroy": ([pointer], None),
        "speex_echo_ctl": ([pointer, integer, pointer], integer),
        "speex_echo_cancellation": ([pointer, pointer, pointer, pointer], None),
        "speex_preprocess_state_init": ([integer, integer], pointer),
        "speex_preprocess_state_destroy": ([pointer], None),
        "speex_preprocess_ctl": ([pointer, integer, pointer], integer),
        "speex_preprocess_run": ([pointer, pointer], integer),
    }
    for function, (arguments, result) in signatures.items():
        getattr(library, function).argtypes = arguments
        getattr(library, function).restype = result
    return library


class SpeexEngine:
    """speexdsp's echo canceller and preprocessor (noise suppression, AGC, and suppression of
    the echo the linear filter leaves), from Debian's libspeexdsp through ctypes."""

    name = "speex"
    # The filter covers the room's reflections after the measured delay: 128 ms.
    FILTER_S = 0.128
    own_delay_s = 0.0
    residual_delay_s = DELAY_MARGIN_S
    # Most the residual echo is taken down, alone and while a person speaks over it (speexdsp's
    # defaults are -40 and -15: the person's voice must stay whole for barge-in).
    ECHO_SUPPRESS_DB = -60
    ECHO_SUPPRESS_ACTIVE_DB = -15

    def __init__(self, echo: bool, noise: bool, gain: bool) -> None:
        self._lib = lib = _load_speexdsp()
        self._echo = None
        if echo:
            self._echo = lib.speex_echo_state_init(BLOCK, int(self.FILTER_S * SAMPLE_RATE))
            rate = ctypes.c_int(SAMPLE_RATE)
            lib.speex_echo_ctl(self._echo, _SPEEX_ECHO_SET_SAMPLING_RATE, ctypes.byref(rate))
        self._preprocess = lib.speex_preprocess_state_init(BLOCK, SAMPLE_RATE)
        # The preprocessor's suppression of the echo the filter left runs in its denoiser: with
        # echo cancellation the denoiser is on, taking off at most 1 dB of noise unless noise
        # suppression was asked for (then its default 15 dB).
        settings = [(_SPEEX_PREPROCESS_SET_DENOISE, int(noise or echo)),
                    (_SPEEX_PREPROCESS_SET_AGC, int(gain))]
        if echo and not noise:
            settings.append((_SPEEX_PREPROCESS_SET_NOISE_SUPPRESS, -1))
        if echo:
            settings += [(_SPEEX_PREPROCESS_SET_ECHO_SUPPRESS, self.ECHO_SUPPRESS_DB),
                         (_SPEEX_PREPROCESS_SET_ECHO_SUPPRESS_ACTIVE, self.ECHO_SUPPRESS_ACTIVE_DB)]
        for request, value in settings:
            number = ctypes.c_int(value)
            lib.speex_preprocess_ctl(self._preprocess, request, ctypes.byref(number))
        if self._echo is not None:
            lib.speex_preprocess_ctl(self._preprocess, _SPEEX_PREPROCESS_SET_ECHO_STATE, self._echo)
        self._out = np.zeros(BLOCK, dtype=np.int16)

    def process(self, near: np.ndarray, far: np.ndarray | None) -> np.ndarray:
        near = np.array(near, dtype=np.int16)  # a copy: the preprocessor works in place
        if self._echo is not None and far is not None:
            far = np.ascontiguousarray(far, dtype=np.int16)
            self._lib.speex_echo_cancellation(self._echo, near.ctypes.data, far.ctypes.data,
                                              self._out.ctypes.data)
            near = self._out.copy()
        self._lib.speex_preprocess_run(self._preprocess, near.ctypes.data)
        return near

    def __del__(self) -> None:
        lib = getattr(self, "_lib", None)
        if lib is None:
            return
        if getattr(self, "_preprocess", None):
            lib.speex_preprocess_state_destroy(self._preprocess)
        if getattr(self, "_echo", None):
            lib.speex_echo_state_destroy(self._echo)


ENGINES = {"webrtc": WebRtcEngine, "speex": SpeexEngine}


# --- the processing step ------------------------------------------------------------------------


@dataclass(frozen=True)
class EchoStatus:
    """What `doctor` and the metrics report."""

    active: bool
    engine: str
    delay_ms: float | None = None
    confidence: float | None = None

    def to_json_dict(self) -> dict[str, Any]:
        return {"active": self.active, "engine": self.engine, "delay_ms": self.delay_ms,
                "confidence": self.confidence}


class CaptureProcessor:
    """The canceller (with noise suppression and gain when asked for) on microphone samples,
    with the reference shifted by the measured delay. Blocking: run it off the event loop."""

    def __init__(self, cfg: AudioConfig, reference: PlaybackReference | None,
                 *, on_delay: Callable[[EchoStatus], None] | None = None) -> None:
        echo = cfg.echo_cancellation and reference is not None
        self.engine: _Engine = ENGINES[cfg.echo_canceller](echo, cfg.noise_suppression, cfg.auto_gain)
        self.reference = reference if echo else None
        self.estimator = EchoDelayEstimator(cfg.echo_max_delay_ms / 1000)
        self.on_delay = on_delay
        # Given what was played, as the microphone samples about to be cleaned hold it
        # (wake.OwnVoiceDetector.hear): the assistant's own wake word is then known.
        self.hear_played: Callable[[np.ndarray], None] | None = None
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
        played from the delay (or, unmeasured, any delay) up to the room's tail before it."""
        delay = self.estimator.delay
        blocks = list(self._sounding)
        if delay is None:
            return any(blocks)
        latest = max(0, (delay - int(DELAY_MARGIN_S * SAMPLE_RATE)) // BLOCK)
        earliest = (delay // BLOCK) + int(ECHO_TAIL_S * 100) + 1
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
                if self.hear_played is not None:
                    self.hear_played(self.reference.read(index - (self.estimator.delay or 0), BLOCK))
                # The delay may still grow up to the estimator's longest.
                self.reference.forget_before(index - self.estimator.max_lag - BLOCK)
            cleaned = self.engine.process(near, far)
            out[offset : offset + BLOCK] = cleaned[: min(BLOCK, samples.size - offset)]
        return out


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


# --- putting it together ------------------------------------------------------------------------


def status_file(state_dir: Path) -> Path:
    """Where the service leaves the echo canceller's state for `doctor`."""
    return Path(state_dir) / "echo.json"


def write_status(path: Path, status: EchoStatus) -> None:
    """Write `status` (from the canceller's thread; a failure is only logged)."""
    data = {**status.to_json_dict(), "measured_at": time.time()}
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(".part")
        partial.write_text(json.dumps(data))
        partial.replace(path)
    except OSError as error:
        log.warning("cannot record the echo canceller's state in %s: %s", path, error)


def read_status(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None


def with_echo_cancellation(source: Any, sink: Any, cfg: AudioConfig,
                           status_path: Path | None = None) -> Any:
    """`source` with echo cancelled against what `sink` plays (and noise suppression and gain
    when configured); `source` itself when none is on or the library cannot load (logged:
    the wake word then barges in only at its stricter threshold)."""
    if not (cfg.echo_cancellation or cfg.noise_suppression or cfg.auto_gain):
        return source
    clock = CaptureClock()
    reference = PlaybackReference(clock) if cfg.echo_cancellation else None
    on_delay = None
    if status_path is not None:
        def on_delay(status: EchoStatus) -> None:
            write_status(status_path, status)
    try:
        processor = CaptureProcessor(cfg, reference, on_delay=on_delay)
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
