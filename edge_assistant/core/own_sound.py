"""What the core decides about the assistant's own sound (`audio.own_sound.OwnSound`, which
knows what it played and what the microphone still hears of it): which frames a listener
waiting for words hears as silence, whether the wake earcon plays, the stop word held while
the assistant says "stop" itself, and how far the listener runs behind the microphone. Kept
together: each is a decision about the sound the assistant makes reaching its own ears."""

from __future__ import annotations

import logging
from typing import Any, AsyncIterable, AsyncIterator

from ..audio.own_sound import OwnSound, OwnSoundFrame
from ..hearing.stop_word import says_stop

log = logging.getLogger(__name__)


class OwnSoundDecisions:
    def __init__(self, sound: OwnSound) -> None:
        self.sound = sound

    async def marked(self, frames: AsyncIterable[bytes]) -> AsyncIterator[bytes]:
        """What is left of a reply's end and its echo after cancelling (the own sound says when
        that was: `hears_own_sound`) comes marked as an `OwnSoundFrame`: the listener hears
        silence there while it waits for a person's words. It decides as it hears each frame,
        not here: a follow-up window opens when the reply ends, while frames captured during
        the reply are still on their way to it (a loaded listener runs behind the microphone).
        The wake earcon is not marked: people talk straight on after the wake word, and their
        words over it must be heard. Its echo is cancelled; without a canceller it is not
        played over a person already speaking (`wake_earcon`), and the recognizer makes no
        words of the short tones."""
        async for frame in frames:
            sound = self.sound
            if sound.cancels_echo and not sound.earcon_only and sound.hears_own_sound:
                frame = OwnSoundFrame(frame)
            yield frame

    def woken(self, reply_cut_short: bool) -> None:
        """The wake word: a reply cut short still echoes; otherwise only the wake earcon will sound."""
        self.sound.set_earcon_only(not reply_cut_short)

    def sounding(self) -> None:
        """More than the wake earcon sounds now (a reply, an error notice)."""
        self.sound.set_earcon_only(False)

    def wake_earcon(self, event_data: dict[str, Any]) -> bool:
        """The wake earcon says "I am listening", unless the person is talking already: they
        need no cue then, and a microphone that hears the speaker whole would hear it over
        their words (with echo cancellation it is cancelled, so it plays all the same)."""
        if event_data.get("speaking") and not self.sound.cancels_echo:
            log.debug("wake earcon left out: the person is already speaking")
            return False
        return True

    def playing(self, text: str, samples: Any, sample_rate: int) -> bool:
        """A sentence starts to play: its sound is silenced again, and the stop word is held
        before it starts to listen, for as long as this plays, if the sentence says "stop".
        True when held: call `played` once it has played (the device's buffer and the room's
        echo come after)."""
        self.sounding()
        own_stop = says_stop(text)
        if own_stop:
            self.sound.hold_stop_word(len(samples) / sample_rate)
        return own_stop

    def played(self, held: bool) -> None:
        if held:
            self.sound.hold_stop_word(0.0)

    def unheard_s(self) -> float:
        """Seconds of sound captured by now that the listener has yet to hear (the source's
        queue: a listener on a loaded machine falls behind the microphone)."""
        return self.sound.queued_s
