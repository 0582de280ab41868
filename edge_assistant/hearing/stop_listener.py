"""The stop word as the listener runs it: heard only while the assistant speaks, and not when the
assistant says "stop" itself or the echo canceller still leaves much of its voice.

It is off where the microphone hears the speaker whole (no echo cancellation): the assistant's
own voice would say "stop" to it too often.
"""

from __future__ import annotations

import logging
from typing import Callable

import numpy as np

from ..audio.own_sound import OwnSound
from ..config import Config
from .stop_word import CheckedStopWord, StopWordDetector
from .stt import Transcriber

log = logging.getLogger(__name__)


def stop_word_wanted(config: Config, own_sound: OwnSound) -> bool:
    """Whether `wake.stop_word` can run: not where the microphone hears the assistant whole."""
    if not config.wake.stop_word:
        return False
    if own_sound.hears_speaker and not own_sound.cancels_echo:
        log.warning("wake.stop_word is off: the microphone hears the assistant's voice without "
                    "echo cancellation (audio.echo_cancellation), and that voice says \"stop\" "
                    "to the stop word too often")
        return False
    return True


class StopWordListener:
    """`CheckedStopWord` on the listener's frames while the assistant speaks.

    When the assistant starts to speak, the detector is first fed the last second, so that its
    context is fresh and a "stop" is heard whole. `wanted` may be set from any thread.
    """

    def __init__(self, config: Config, reader: Transcriber, own_sound: OwnSound) -> None:
        self.reader = reader
        self.checked = CheckedStopWord(StopWordDetector(cutoff=config.wake.stop_word_threshold),
                                       self._read_back)
        self.own_sound = own_sound
        self.wanted = False  # the assistant speaks
        self._on = False
        self._recent = bytearray()

    def _read_back(self, audio: bytes) -> str:
        return self.reader.transcribe(np.frombuffer(audio, dtype=np.int16)).text

    def reset(self) -> None:
        """A new stream."""
        self._on = False
        self._recent.clear()

    def hear(self, frame: bytes, captured_at: Callable[[], float]) -> float | None:
        """The score of a stop word that counts, heard in `frame` (captured at `captured_at()`)."""
        if not self.wanted:
            self._on = False
            self._recent += frame
            del self._recent[: max(0, len(self._recent) - self.checked.context_bytes)]
            return None
        if not self._on:
            self._on = True
            self.checked.prime(bytes(self._recent))
            self._recent.clear()
        score = self.checked.process(frame)
        if score is None:
            return None
        # A source that drops frames makes the capture time earlier than the truth: held longer.
        if self.own_sound.stop_word_held(captured_at()):
            log.debug("stop word ignored: the assistant says it (score %.3f)", score)
        elif not self.own_sound.settled:
            log.debug("stop word ignored: the echo canceller is still learning the room "
                      "(score %.3f)", score)
        else:
            return score
        return None
