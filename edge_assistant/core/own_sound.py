"""The assistant's own sound as the microphone hears it: what is silenced while listening,
whether the wake earcon plays, the stop word held while the assistant says "stop" itself, and
how far the listener runs behind the microphone. Kept together: each is a decision about the
sound the assistant makes reaching its own ears."""

from __future__ import annotations

import logging
from typing import Any, AsyncIterable, AsyncIterator, Callable

from ..hearing.stop_word import says_stop
from .parts import FrameSource, SpeechListener

log = logging.getLogger(__name__)


class OwnSound:
    def __init__(self, source: FrameSource | None, listener: SpeechListener | None,
                 listening: Callable[[], bool]) -> None:
        self.source = source
        self.listener = listener
        # Whether the assistant is listening for a person's words (its state, or the listener's).
        self._listening = listening
        # Whether what the microphone hears of the assistant's own sound is silenced while
        # listening (with echo cancellation): not after a wake word that came while nothing
        # played, since then only the wake earcon sounds, over the person's words.
        self.hide = True

    @property
    def cancels_echo(self) -> bool:
        return bool(getattr(self.source, "cancels_echo", False))

    async def gated(self, frames: AsyncIterable[bytes]) -> AsyncIterator[bytes]:
        """While listening for a person's words, what is left of a reply's end and its echo
        after cancelling is silence for the endpointer (a source that cancels echo says when
        that was: `hears_own_sound`). The wake earcon is not: people talk straight on after
        the wake word, and their words over it must be heard. Its echo is cancelled; without a
        canceller it is not played over a person already speaking (`wake_earcon`), and the
        recognizer makes no words of the short tones."""
        async for frame in frames:
            if self.cancels_echo and self.hide:
                if self._listening() and self.source.hears_own_sound:
                    frame = bytes(len(frame))
            yield frame

    def woken(self, reply_cut_short: bool) -> None:
        """The wake word: a reply cut short still echoes; otherwise only the wake earcon will sound."""
        self.hide = reply_cut_short

    def wake_earcon(self, event_data: dict[str, Any]) -> bool:
        """The wake earcon says "I am listening", unless the person is talking already: they
        need no cue then, and a microphone that hears the speaker whole would hear it over
        their words (with echo cancellation it is cancelled, so it plays all the same)."""
        if event_data.get("speaking") and not self.cancels_echo:
            log.debug("wake earcon left out: the person is already speaking")
            return False
        return True

    def playing(self, text: str, samples: Any, sample_rate: int) -> bool:
        """A sentence starts to play: its sound is silenced again, and the stop word is held
        before it starts to listen, for as long as this plays, if the sentence says "stop".
        True when held: call `played` once it has played (the device's buffer and the room's
        echo come after)."""
        self.hide = True
        own_stop = self.listener is not None and says_stop(text)
        if own_stop:
            self.listener.hold_stop_word(len(samples) / sample_rate)
        return own_stop

    def played(self, held: bool) -> None:
        if held:
            self.listener.hold_stop_word(0.0)

    def unheard_s(self) -> float:
        """Seconds of sound captured by now that the listener has yet to hear (the source's
        queue: a listener on a loaded machine falls behind the microphone)."""
        return float(getattr(self.source, "queued_s", 0.0))
