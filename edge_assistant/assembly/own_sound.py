"""The microphone's frames and the assistant's own sound in them, built together
(`own_sound_for`, called once by `build_sources` for a microphone)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..audio.echo import EchoCancellingSource, with_echo_cancellation
from ..audio.microphone import MicrophoneSource
from ..audio.own_sound import AssistantSound
from ..config import Config


def own_sound_for(microphone: Any, sink: Any, config: Config,
                  status_path: Path | None = None) -> tuple[Any, AssistantSound]:
    """The frames the listener reads from `microphone`, which hears what `sink` plays, and the
    assistant's own sound in them (handed to the wake detector, the listener and the core).

    With echo cancellation, what the sink plays is cancelled, the wake word barges in at the
    normal threshold, and the wake word the assistant says itself is known from what it played
    (so it is not taken for a person's). A microphone that hears the speaker whole gets no stop
    word (the listener leaves it off): the assistant's own voice would stop it too often."""
    from ..hearing.wake import OwnVoiceDetector

    wanted = config.audio.echo_cancellation and config.wake.enabled
    own_voice = OwnVoiceDetector(config.wake) if wanted else None
    source = with_echo_cancellation(microphone, sink, config.audio, status_path,
                                    hear_played=own_voice.hear if own_voice is not None else None)
    canceller = source if isinstance(source, EchoCancellingSource) else None
    hears_speaker = isinstance(source, (MicrophoneSource, EchoCancellingSource))
    return source, AssistantSound(capture=source, canceller=canceller, own_voice=own_voice,
                                  hears_speaker=hears_speaker)
