"""The microphone and speaker the assistant runs on (or the WAV files standing in for them),
each reporting to the service's health."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from ..audio.devices import AudioDeviceMissing
from ..audio.echo import status_file as echo_status_file
from ..audio.microphone import MicrophoneSource
from ..audio.own_sound import AssistantSound
from ..audio.speaker import SpeakerSink
from ..audio.wav import WavSink, WavSource
from ..config import Config
from ..health import Health, device_fix
from .own_sound import own_sound_for

NO_DEVICE = "none"


@dataclass
class RunOptions:
    input_wav: Path | None = None
    output_wav: Path | None = None


def has_microphone(config: Config, options: RunOptions) -> bool:
    # audio.input_device = "none": a speaker-only device, driven over MQTT.
    return options.input_wav is not None or config.audio.input_device != NO_DEVICE


def build_sources(config: Config, options: RunOptions, health: Health,
                  on_microphone_fault: Callable[[Exception], None] | None = None
                  ) -> tuple[Any, Any, AssistantSound]:
    """The microphone and speaker (or the WAV files standing in), reporting to `health`, and
    the assistant's own sound in what the microphone hears; `on_microphone_fault` hears of a
    microphone failure when it is news, not at every retry."""

    def microphone_error(error: Exception) -> None:
        if report_device_fault(health, "microphone", "input", error) and on_microphone_fault is not None:
            on_microphone_fault(error)

    source = microphone = None
    if options.input_wav is not None:
        source = WavSource(options.input_wav, frame_ms=config.audio.frame_ms, realtime=True)
        health.ok("microphone", f"file {options.input_wav}")
    elif has_microphone(config, options):
        microphone = MicrophoneSource(
            config.audio,
            on_error=microphone_error,
            on_open=lambda name: health.ok("microphone", name),
        )
    else:
        health.off("microphone", f'audio.input_device = "{NO_DEVICE}"')
    if options.output_wav is not None:
        sink = WavSink(options.output_wav, volume=config.audio.volume, realtime=True)
        health.ok("speaker", f"file {options.output_wav}")
    else:
        sink = SpeakerSink(
            config.audio,
            on_error=lambda error: report_device_fault(health, "speaker", "output", error),
            on_open=lambda name: health.ok("speaker", name),
        )
    if microphone is not None:
        # A microphone hears the speaker: what it plays is cancelled (a WAV input never does).
        source, own_sound = own_sound_for(microphone, sink, config, echo_status_file(config.state_dir()))
        return source, sink, own_sound
    return source, sink, AssistantSound()


def report_device_fault(health: Health, part: str, kind: str, error: Exception) -> bool:
    """A microphone or speaker that failed; True if that is news."""
    summary = "missing, retrying" if isinstance(error, AudioDeviceMissing) else "failed, retrying"
    return health.failed(part, summary, str(error), device_fix(kind))
