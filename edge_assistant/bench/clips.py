"""Audio made for the measurements: a spoken question as a microphone in a quiet room hears it."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from ..audio import pcm
from ..config import Config
from .options import BenchError

# A quiet room through a real microphone (about -60 dBFS), not digital zeros.
ROOM_NOISE_RMS = 30.0
# Samples louder than this (about -36 dBFS) count as speech when finding where the speech ends.
SPEECH_LEVEL = 500
# piper's sampling noise (noise_scale, noise_w_scale) comes from onnxruntime's random operators,
# which a process seeds from the clock: without a fixed seed, a clip spoken with that noise
# differs from run to run, and an accuracy over such clips moves by a clip between two runs of
# the same code (wake_accuracy's recall at 0 dB SNR did: 0.31 and 0.36).
SPEECH_NOISE_SEED = 0


def fix_speech_noise(seed: int = SPEECH_NOISE_SEED) -> None:
    """Make piper's sampling noise the same in every run: call before any voice is loaded."""
    import onnxruntime

    onnxruntime.set_seed(seed)


@dataclass(frozen=True)
class Clip:
    """Speech at 16 kHz, with where its speech starts and ends."""

    samples: np.ndarray
    speech_start: int
    speech_end: int


def room_noise(samples: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.clip(rng.normal(0.0, ROOM_NOISE_RMS, samples), -32768, 32767).astype(np.int16)


def spoken_clip(config: Config, voice_path: Path, text: str, lead_s: float = 0.5,
                tail_s: float = 0.3, pause_after: str = "", pause_s: float = 0.0) -> Clip:
    """`text` spoken by the configured voice, as a microphone in a quiet room would hear it;
    with `pause_s` of silence after its first words `pause_after` (see `insert_pause`)."""
    from ..tts import Synthesizer, spoken_samples

    # Without piper's noise the clip is the same every run, so transcripts are comparable.
    synthesizer = Synthesizer(replace(config.tts, noise_scale=0.0, noise_w_scale=0.0), voice_path)
    speech = spoken_samples(synthesizer, text, pcm.SAMPLE_RATE)
    if not speech.size:
        raise BenchError(f"the voice produced no audio for {text!r}")
    if pause_after:
        alone = spoken_samples(synthesizer, pause_after, pcm.SAMPLE_RATE)
        speech = insert_pause(speech, alone.size, pause_s)
    return in_room(speech, lead_s, tail_s)


def in_room(speech: np.ndarray, lead_s: float = 0.5, tail_s: float = 0.3) -> Clip:
    """`speech` (16 kHz int16) as a microphone in a quiet room hears it, with silence around."""
    loud = np.flatnonzero(np.abs(speech.astype(np.int32)) > SPEECH_LEVEL)
    first, last = (int(loud[0]), int(loud[-1]) + 1) if loud.size else (0, speech.size)
    lead = int(lead_s * pcm.SAMPLE_RATE)
    samples = np.concatenate([
        np.zeros(lead, dtype=np.int16), speech, np.zeros(int(tail_s * pcm.SAMPLE_RATE), dtype=np.int16),
    ])
    mixed = samples.astype(np.int32) + room_noise(samples.size)
    return Clip(np.clip(mixed, -32768, 32767).astype(np.int16), lead + first, lead + last)


def insert_pause(speech: np.ndarray, prefix_alone_samples: int, pause_s: float) -> np.ndarray:
    """A person stopping to think mid-sentence: `pause_s` of silence where the first words
    end. The sentence is spoken whole, so its voice carries on over the pause, and cut at the
    quietest 20 ms where those words, `prefix_alone_samples` long when said alone, should end."""
    frame = pcm.SAMPLE_RATE // 50
    levels = np.abs(speech[: speech.size // frame * frame].astype(np.int32)).reshape(-1, frame).mean(axis=1)
    # Said alone, words end slowly (final lengthening): inside the sentence they take 0.80 to
    # 0.86 of that time with the embedded voice.
    low = int(0.65 * prefix_alone_samples) // frame
    high = min(prefix_alone_samples // frame + 1, levels.size)
    if low >= high:
        raise BenchError("the words before the pause are not shorter than the sentence")
    cut = (low + int(np.argmin(levels[low:high]))) * frame + frame // 2
    silence = np.zeros(int(pause_s * pcm.SAMPLE_RATE), dtype=np.int16)
    return np.concatenate([speech[:cut], silence, speech[cut:]])


def espeak_speech(text: str, voice: str = "en-us", speed: int = 160, pitch: int = 50) -> np.ndarray:
    """`text` spoken by espeak-ng (a formant voice, far from piper's), as 16 kHz int16."""
    import subprocess
    import tempfile

    from ..audio.wav import read_wav

    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "speech.wav"
        try:
            subprocess.run(["espeak-ng", "-v", voice, "-s", str(speed), "-p", str(pitch),
                            "-w", str(path), text], check=True, capture_output=True)
        except (OSError, subprocess.CalledProcessError) as error:
            raise BenchError(f"espeak-ng cannot speak (sudo apt-get install espeak-ng): {error}") from None
        return read_wav(path)
