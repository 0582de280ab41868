"""The cancellers: WebRTC's AEC3 (pywebrtc-audio) and speexdsp's (libspeexdsp through ctypes)."""

from __future__ import annotations

import ctypes
import ctypes.util
from typing import Protocol

import numpy as np

from ..pcm import SAMPLE_RATE

# Both libraries work on 10 ms blocks.
BLOCK = SAMPLE_RATE // 100
# The reference starts this much before the measured delay: the cancelling filter only looks
# backwards in time, so an echo that came a little early would be missed.
DELAY_MARGIN_S = 0.008


class EchoCancellerError(RuntimeError):
    """The canceller's library is missing or refuses the settings."""



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
