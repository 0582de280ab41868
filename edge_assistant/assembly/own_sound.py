"""How the listener hears the assistant's own sound: told whether the microphone cancels it
(`connect_echo_cancellation`, called once by `Assembly` when it builds the assistant)."""

from __future__ import annotations

import logging
from typing import Any

from ..audio.echo import EchoCancellingSource
from ..audio.microphone import MicrophoneSource

log = logging.getLogger(__name__)

# Audio after a wake word in which a person talking straight on is heard (see connect_echo_cancellation).
WAKE_SPEECH_LOOKAHEAD_S = 0.3


def connect_echo_cancellation(source: Any, listener: Any) -> None:
    """Tell the listener whether `source` cancels the assistant's voice. The wake word then
    barges in at the normal threshold, and the wake word the assistant says itself is known
    from what it played (so it is not taken for a person's). A microphone that hears the
    speaker whole gets no stop word: the assistant's own voice would stop it too often."""
    from ..hearing.wake import OwnVoiceDetector

    cancels = bool(getattr(source, "cancels_echo", False))
    wake = listener.wake
    if wake is not None:
        wake.set_echo_cancelled(cancels)
        wake.own_voice = OwnVoiceDetector(wake.config) if cancels else None
        if cancels:
            source.processor.hear_played = wake.own_voice.hear
    listener.echo_settled = (lambda: source.processor.settled) if cancels else None
    # Without a canceller the wake earcon must not sound over a person who talks straight on:
    # the wake event waits a moment to know.
    earcon = listener.config.service.earcons
    listener.wake_speech_lookahead_s = WAKE_SPEECH_LOOKAHEAD_S if earcon and not cancels else 0.0
    hears_the_speaker = isinstance(source, (MicrophoneSource, EchoCancellingSource))
    if listener.stop_word is not None and hears_the_speaker and not cancels:
        log.warning("wake.stop_word is off: the microphone hears the assistant's voice without "
                    "echo cancellation (audio.echo_cancellation), and that voice says \"stop\" "
                    "to the stop word too often")
        listener.stop_word = None
