"""Fixtures for the speech tests: spoken test clips and sound devices that need no hardware.

Spoken clips (piper's embedded en_US "joe" voice, 16 kHz mono int16 WAV, cached per session)::

    def test_transcribe(make_speech_wav):
        path = make_speech_wav("What is the weather like today?", lead_silence_s=0.5, tail_silence_s=1.0)

Outside pytest, `synthesize_speech_wav(text, directory, ...)` does the same.

Sound devices: `alsa_file_devices` (session) writes an ALSA configuration with two real PortAudio
devices backed by files, points ALSA_CONFIG_PATH at it and restarts PortAudio so this process sees
them; `alsa_devices` (per test) hands out the same devices with empty input and output.

- "testmic" captures the raw PCM written with `write_input()`, in whatever format the stream is
  opened with (16 kHz mono s16le for a MicrophoneSource with input_rate 16000). It delivers data as
  fast as it is read (no real-time clock), and after the end of the file it repeats stale data.
- "testspk" records everything played; `output()` returns it as int16 at the rate the stream was
  opened with. Each opening of the device goes to a new file (out.raw, out.raw.0001, ...), which
  `output()` joins in order.
- `remove_device(name)` unplugs one: the configuration is rewritten without it, so ALSA (which
  reads a changed configuration again at the next open) no longer knows it; `restore_devices()`
  plugs everything back. Streams already open go on.

For a subprocess (the daemon end to end), pass ``env={**os.environ, **devices.env}``.
"""

from __future__ import annotations

import difflib
import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import pytest

from edge_assistant.audio.devices import rescan_devices
from edge_assistant.audio.pcm import SAMPLE_RATE
from edge_assistant.audio.wav import read_wav, write_wav
from edge_assistant.config import AudioConfig

ALSA_BASE_CONFIG = "/usr/share/alsa/alsa.conf"
MIC = "testmic"
SPEAKER = "testspk"

_ALSA_MIC = """\
pcm.{mic} {{
    type file
    slave.pcm "null"
    file "/dev/null"
    infile "{infile}"
    format "raw"
    hint.description "edge-assistant test microphone"
}}
"""
_ALSA_SPEAKER = """\
pcm.{speaker} {{
    type file
    slave.pcm "null"
    file "{outfile}"
    format "raw"
    # Keep every opening's recording: later ones go to out.raw.0001, out.raw.0002, ...
    truncate false
    hint.description "edge-assistant test speaker"
}}
"""


@dataclass
class AlsaFileDevices:
    directory: Path
    config_path: Path
    infile: Path
    outfile: Path
    mic: str = MIC
    speaker: str = SPEAKER

    @property
    def env(self) -> dict[str, str]:
        return {"ALSA_CONFIG_PATH": f"{ALSA_BASE_CONFIG}:{self.config_path}"}

    def audio_config(self, **overrides) -> AudioConfig:
        """An AudioConfig using these devices; keyword arguments override its other keys."""
        values = {"input_device": self.mic, "output_device": self.speaker, **overrides}
        return AudioConfig(**values)

    def write_input(self, samples: np.ndarray | bytes) -> None:
        """What the microphone will capture, as raw PCM in the format the stream is opened with."""
        data = (
            samples if isinstance(samples, bytes) else np.asarray(samples).astype("<i2").tobytes()
        )
        self.infile.write_bytes(data)

    def remove_input(self) -> None:
        """Make the microphone disappear (ALSA cannot open it without its input file)."""
        self.infile.unlink(missing_ok=True)

    def write_config(self, devices: tuple[str, ...] = (MIC, SPEAKER)) -> None:
        """The ALSA configuration with `devices` only. A new file replaces the old one: ALSA
        sees the change by its inode even within the second of its last read."""
        text = (_ALSA_MIC.format(mic=self.mic, infile=self.infile) if self.mic in devices else "") + (
            _ALSA_SPEAKER.format(speaker=self.speaker, outfile=self.outfile) if self.speaker in devices else "")
        partial = self.config_path.with_suffix(".part")
        partial.write_text(text)
        partial.replace(self.config_path)

    def remove_device(self, name: str) -> None:
        """Unplug `name` ("testmic" or "testspk"): ALSA no longer knows it."""
        present = {line.split()[0][len("pcm."):] for line in self.config_path.read_text().splitlines()
                   if line.startswith("pcm.")}
        self.write_config(tuple(present - {name}))

    def restore_devices(self) -> None:
        self.write_config()

    def output_files(self) -> list[Path]:
        numbered = sorted(
            self.directory.glob(self.outfile.name + ".[0-9]*"), key=lambda p: int(p.suffix[1:])
        )
        return ([self.outfile] if self.outfile.exists() else []) + numbered

    def output(self) -> np.ndarray:
        """Everything played since the last reset, as int16 samples."""
        data = b"".join(path.read_bytes() for path in self.output_files())
        return np.frombuffer(data[: len(data) // 2 * 2], dtype="<i2").astype(np.int16)

    def reset(self, input_samples: np.ndarray | bytes = b"\0\0" * SAMPLE_RATE) -> None:
        for path in self.output_files():
            path.unlink()
        self.write_input(input_samples)
        self.restore_devices()
        # The device list may be stale after a test that removed the microphone.
        assert rescan_devices(), "a sound stream was left open by an earlier test"


@pytest.fixture(scope="session")
def alsa_file_devices(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AlsaFileDevices]:
    directory = tmp_path_factory.mktemp("alsa-devices")
    devices = AlsaFileDevices(
        directory=directory,
        config_path=directory / "asound.conf",
        infile=directory / "in.raw",
        outfile=directory / "out.raw",
    )
    devices.write_config()
    previous = os.environ.get("ALSA_CONFIG_PATH")
    os.environ.update(devices.env)
    # PortAudio reads the ALSA configuration when it starts; it may have started already.
    devices.reset()
    yield devices
    if previous is None:
        os.environ.pop("ALSA_CONFIG_PATH", None)
    else:
        os.environ["ALSA_CONFIG_PATH"] = previous
    rescan_devices()


@pytest.fixture
def alsa_devices(alsa_file_devices: AlsaFileDevices) -> AlsaFileDevices:
    alsa_file_devices.reset()
    return alsa_file_devices


# ---------------------------------------------------------------------------------------------
# Spoken clips

_voice = None


def _synthesizer():
    global _voice
    if _voice is None:
        from edge_assistant.tts import Synthesizer

        _voice = Synthesizer()  # the embedded en_US-joe-medium voice, piper's own settings
    return _voice


def synthesize_speech_wav(
    text: str,
    directory: Path,
    lead_silence_s: float = 0.5,
    tail_silence_s: float = 1.0,
    sentence_gap_s: float = 0.3,
) -> Path:
    """Speak `text` into a 16 kHz mono int16 WAV in `directory` (reused if already there).

    Sentences are separated by `sentence_gap_s` of silence; the clip starts with
    `lead_silence_s` and ends with `tail_silence_s` of silence.
    """
    key = f"{text}|{lead_silence_s}|{tail_silence_s}|{sentence_gap_s}"
    slug = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:40] or "speech"
    path = Path(directory) / f"{slug}-{hashlib.sha1(key.encode()).hexdigest()[:8]}.wav"
    if path.exists():
        return path
    from edge_assistant.tts import spoken_samples

    speech = spoken_samples(_synthesizer(), text, SAMPLE_RATE, sentence_gap_s)
    if not speech.size:
        raise ValueError(f"piper produced no audio for {text!r}")
    lead = np.zeros(int(lead_silence_s * SAMPLE_RATE), dtype=np.int16)
    tail = np.zeros(int(tail_silence_s * SAMPLE_RATE), dtype=np.int16)
    partial = path.with_suffix(".part")
    write_wav(partial, np.concatenate([lead, speech, tail]), SAMPLE_RATE)
    partial.replace(path)
    return path


@pytest.fixture(scope="session")
def make_speech_wav(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., Path]:
    """`make_speech_wav(text, lead_silence_s=0.5, tail_silence_s=1.0, sentence_gap_s=0.3) -> Path`."""
    directory = tmp_path_factory.mktemp("speech")

    def speech_wav(
        text: str,
        lead_silence_s: float = 0.5,
        tail_silence_s: float = 1.0,
        sentence_gap_s: float = 0.3,
    ) -> Path:
        return synthesize_speech_wav(
            text, directory, lead_silence_s, tail_silence_s, sentence_gap_s
        )

    return speech_wav


@pytest.fixture(scope="session")
def speech(make_speech_wav: Callable[..., Path]) -> Callable[..., np.ndarray]:
    """`speech(text, lead_s, tail_s)`: the text spoken, as 16 kHz int16 with silence around it."""

    def spoken(text: str, lead_s: float = 1.0, tail_s: float = 1.0, gap_s: float = 0.3) -> np.ndarray:
        path = make_speech_wav(text, lead_silence_s=lead_s, tail_silence_s=tail_s, sentence_gap_s=gap_s)
        return read_wav(path)

    return spoken


def similarity(heard: str, said: str) -> float:
    """0..1: how alike two texts are, ignoring case and punctuation (for "transcribing the
    speaker gives the reply, approximately": Whisper tiny may hear "Paris." as "Harris.")."""

    def words(text: str) -> str:
        return " ".join(re.findall(r"[a-z0-9']+", text.lower()))

    return difflib.SequenceMatcher(None, words(heard), words(said)).ratio()


@pytest.fixture(scope="session")
def smart_turn():
    """The embedded end-of-turn model (Smart Turn v3), loaded once."""
    from edge_assistant import models
    from edge_assistant.hearing.turn_end import TurnEndModel

    model = TurnEndModel(models.embedded_turn_end_path())
    yield model
    model.close()


_NUMBERS = {"1": "one", "2": "two", "3": "three", "4": "four", "5": "five", "6": "six",
            "7": "seven", "8": "eight", "9": "nine", "10": "ten"}


def spoken_words(text: str) -> list[str]:
    """`text`'s words as said: lower case, no punctuation, small numbers as words (Whisper
    writes "ten minutes" as "10 minutes")."""
    return [_NUMBERS.get(word, word) for word in re.findall(r"[a-z0-9']+", text.lower())]


# Voices a request is said in straight after the wake word: piper's at its own pace and faster,
# and espeak-ng's formant voices (en-gb at 165 words a minute lost "set a" before).
VOICES = {
    "piper": ("piper", 1.0),
    "piper-fast": ("piper", 0.8),
    "espeak-en-gb-165": ("espeak", "en-gb", 165),
    "espeak-en-us-175": ("espeak", "en-us", 175),
    "espeak-en-us-m3-140": ("espeak", "en-us+m3", 140),
}


def voice_speech(voice: str, text: str, lead_s: float = 0.5, tail_s: float = 1.5) -> np.ndarray:
    """`text` in one of `VOICES`, as 16 kHz int16 with silence around it."""
    kind, *settings = VOICES[voice]
    if kind == "piper":
        from edge_assistant.config import TtsConfig
        from edge_assistant.tts import Synthesizer, spoken_samples

        synthesizer = Synthesizer(TtsConfig(length_scale=settings[0], noise_scale=0.0, noise_w_scale=0.0))
        speech = spoken_samples(synthesizer, text, SAMPLE_RATE)
    else:
        from edge_assistant.bench.clips import espeak_speech

        speech = espeak_speech(text, settings[0], settings[1])
    return np.concatenate([np.zeros(int(lead_s * SAMPLE_RATE), np.int16), speech,
                           np.zeros(int(tail_s * SAMPLE_RATE), np.int16)])
