"""The assistant's own sound: what it played, and what the microphone still hears of it.

Every part that hears the microphone must tell the assistant's own voice from a person's: the
wake word must not wake it when it says "Jarvis" itself, the stop word must not stop it when it
says "stop", the endpointer must not take the end of a reply for the person's next words. One
object knows all of it (`OwnSound`), built once per run from the source and handed to the
echo canceller (its own-voice ear), the wake detector, the listener and the pipeline::

    own_voice = OwnVoiceDetector(config.wake)                # hearing.wake: the wake word in what played
    source = with_echo_cancellation(microphone, sink, config.audio, hear_played=own_voice.hear)
    own = AssistantSound(capture=source, canceller=source, own_voice=own_voice)

The pipeline tells it what it plays (`hold_stop_word`, `set_earcon_only`); the canceller tells
the own-voice ear what played under each block it cleans; the rest is read from the source.
"""

from __future__ import annotations

import threading
import time
from typing import Callable, Protocol

import numpy as np

# After the assistant said "stop": the device's buffer, the room's echo and the stop word's
# own delay.
OWN_STOP_TAIL_S = 1.5


class OwnSoundFrame(bytes):
    """A microphone frame captured while the assistant's own sound (a reply, an error notice,
    their echo) could reach the microphone, with that echo cancelled: what is left is faint,
    but a speech recognizer may still make words of it. The wake word and the stop word hear
    it as it is (a person talks over the assistant); a listener waiting for a person's words
    hears silence (`silenced_own_sound`)."""

    __slots__ = ()


def silenced_own_sound(frame: bytes) -> bytes:
    """Silence in place of an `OwnSoundFrame`; any other frame as it is."""
    return bytes(len(frame)) if isinstance(frame, OwnSoundFrame) else frame


class OwnSound(Protocol):
    """What the parts that hear the microphone know of the assistant's own sound."""

    @property
    def cancels_echo(self) -> bool:
        """Whether the source takes what the speaker played out of the microphone's frames."""

    @property
    def hears_speaker(self) -> bool:
        """Whether the microphone hears the speaker at all (a file never does)."""

    @property
    def settled(self) -> bool:
        """Whether the canceller has learnt the room (True without one: nothing to wait for).
        Before that, what it leaves of the assistant's voice is loud."""

    @property
    def hears_own_sound(self) -> bool:
        """Whether the frame the source yielded last was captured while the speaker's sound (or
        its echo) could reach the microphone."""

    @property
    def queued_s(self) -> float:
        """Seconds of sound captured by now that the listener has yet to hear."""

    @property
    def earcon_only(self) -> bool:
        """Whether what sounds now is only the wake earcon (a wake word while nothing played)."""

    def set_earcon_only(self, only: bool) -> None: ...

    def played(self, start: int, count: int) -> np.ndarray:
        """What the speaker played over microphone samples [start, start + count)."""

    def captured_at(self, index: int) -> float | None:
        """When microphone sample `index` was captured (`time.monotonic()`), if known."""

    def said_wake_word(self) -> bool:
        """Whether what the listener hears now may be the assistant saying the wake word."""

    def hold_stop_word(self, seconds: float) -> None:
        """The assistant is about to say "stop" (or a word like it) for `seconds`."""

    def stop_word_held(self, captured_at: float) -> bool:
        """Whether a stop word in sound captured at `captured_at` is the assistant's own."""


class Capture(Protocol):
    """The microphone's frames as the listener reads them: what still waits in its queue."""

    @property
    def queued_s(self) -> float: ...


class Canceller(Protocol):
    """A source that cancels what the speaker played (audio.echo.EchoCancellingSource)."""

    @property
    def cancels_echo(self) -> bool: ...

    @property
    def settled(self) -> bool: ...

    @property
    def hears_own_sound(self) -> bool: ...

    def played(self, start: int, count: int) -> np.ndarray: ...

    def captured_at(self, index: int) -> float | None: ...


class WakeWordEar(Protocol):
    """The wake word in what the speaker played (hearing.wake.OwnVoiceDetector)."""

    def hear(self, samples) -> None: ...

    def said_recently(self) -> bool: ...


class AssistantSound:
    """The one `OwnSound` of a run.

    `capture`: the source the listener reads (its queue), None for a file or no microphone.
    `canceller`: that source when it cancels echo (or only suppresses noise), else None.
    `own_voice`: fed by the canceller with what played; None without echo cancellation.
    `hears_speaker`: the microphone hears the speaker (a microphone, not a file).
    """

    def __init__(self, *, capture: Capture | None = None, canceller: Canceller | None = None,
                 own_voice: WakeWordEar | None = None, hears_speaker: bool = False,
                 now: Callable[[], float] = time.monotonic) -> None:
        self._capture = capture
        self._canceller = canceller
        self._cancels = canceller is not None and canceller.cancels_echo
        self._own_voice = own_voice if self._cancels else None
        self._hears_speaker = hears_speaker
        self._now = now
        # Set from the event loop, read by the listener's thread.
        self._lock = threading.Lock()
        self._stop_word_held_until = 0.0  # time.monotonic(): the assistant says "stop" itself
        self._earcon_only = False

    @property
    def cancels_echo(self) -> bool:
        return self._cancels

    @property
    def hears_speaker(self) -> bool:
        return self._hears_speaker

    @property
    def settled(self) -> bool:
        return not self._cancels or self._canceller.settled

    @property
    def hears_own_sound(self) -> bool:
        return self._canceller is not None and self._canceller.hears_own_sound

    @property
    def queued_s(self) -> float:
        return 0.0 if self._capture is None else float(self._capture.queued_s)

    @property
    def earcon_only(self) -> bool:
        return self._earcon_only

    def set_earcon_only(self, only: bool) -> None:
        self._earcon_only = only

    def played(self, start: int, count: int) -> np.ndarray:
        if not self._cancels:
            return np.zeros(count, dtype=np.int16)
        return self._canceller.played(start, count)

    def captured_at(self, index: int) -> float | None:
        return None if self._canceller is None else self._canceller.captured_at(index)

    def said_wake_word(self) -> bool:
        return self._own_voice is not None and self._own_voice.said_recently()

    def hold_stop_word(self, seconds: float) -> None:
        with self._lock:
            self._stop_word_held_until = max(self._stop_word_held_until,
                                             self._now() + seconds + OWN_STOP_TAIL_S)

    def stop_word_held(self, captured_at: float) -> bool:
        with self._lock:
            return captured_at < self._stop_word_held_until
