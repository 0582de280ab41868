"""The assistant's own sound for tests: a real echo-cancelling source (over a simulated room's
microphone), and a listener on already loaded models that knows a given own sound."""

from __future__ import annotations

from edge_assistant.audio.echo import with_echo_cancellation
from edge_assistant.audio.own_sound import AssistantSound, WakeWordEar
from edge_assistant.bench.room import SimulatedRoom
from edge_assistant.config import AudioConfig


class _Sink:
    def __init__(self) -> None:
        self.taps: list = []


def cancelling_source():
    """An `EchoCancellingSource` over a simulated room's microphone (never read here)."""
    return with_echo_cancellation(SimulatedRoom(0.05, duration_s=1.0).microphone(), _Sink(), AudioConfig())


def cancelling(own_voice: WakeWordEar | None = None) -> AssistantSound:
    """The own sound of a microphone whose frames have the assistant's voice cancelled."""
    source = cancelling_source()
    assert source.cancels_echo
    return AssistantSound(capture=source, canceller=source, own_voice=own_voice, hears_speaker=True)


def listener_on(loaded, config, own_sound):
    """A listener built with `own_sound`, on the models `loaded` (a Listener) holds: loading
    them again would take seconds per test. Close only one of the two."""
    from edge_assistant.hearing.listener import Listener

    models = loaded.models
    return Listener(config, own_sound=own_sound, transcriber=models.transcriber, turn_end=models.turn_end,
                    stop_word_reader=models.stop_word_reader, first_pass=models.first_pass)
