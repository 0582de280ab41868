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

from .delay import DelayEstimate, EchoDelayEstimator
from .engines import BLOCK, ENGINES, EchoCancellerError, SpeexEngine, WebRtcEngine
from .processor import CaptureProcessor
from .reference import PlaybackReference
from .source import EchoCancellingSource, with_echo_cancellation
from .status import EchoStatus, read_status, status_file, write_status
from ..capture_clock import CaptureClock

__all__ = ["BLOCK", "ENGINES", "CaptureClock", "CaptureProcessor", "DelayEstimate", "EchoCancellerError",
           "EchoCancellingSource", "EchoDelayEstimator", "EchoStatus", "PlaybackReference", "SpeexEngine",
           "WebRtcEngine", "read_status", "status_file", "with_echo_cancellation", "write_status"]
