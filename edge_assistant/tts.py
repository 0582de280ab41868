"""Speech synthesis with piper: text in, mono int16 audio out, one chunk per sentence.

    synthesizer = Synthesizer(cfg.tts, voice_path)       # loads the voice once
    for chunk in synthesizer.synthesize("Hello. How are you?"):
        ...                                              # SpeechChunk(samples, sample_rate)
    async for chunk in synthesizer.stream(text):         # synthesis in a worker thread, one
        await sink.play(chunk.samples, chunk.sample_rate)  # sentence ahead of playback

``speak(synthesizer, sink, text)`` plays a text on any audio sink (the `say` command's way).

Text is cleaned first: control characters and emoji are dropped (piper would read an emoji's name
aloud), pieces without a letter or digit are skipped (piper normalises every sentence to full
scale, so a lone "..." would come out as loud noise), and very long sentences are cut at commas or
spaces so that the first audio is ready early. A text is split into sentences here (with
thinking/sentences.py's splitter) unless it is one already: the assistant hands over a reply
sentence by sentence, split once as the model wrote it (`split=False`).
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import logging
import threading
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Any, AsyncIterator, Iterator

import numpy as np

from . import models
from .concurrency import iterate_in_thread
from .audio.pcm import resample
from .config import TtsConfig
from .thinking.sentences import SentenceSplitter
from .shared_models import Lease, SharedModels

log = logging.getLogger(__name__)

# Longest piece handed to piper at once; longer sentences are cut at a comma or a space.
MAX_PIECE_CHARS = 300


class TtsError(RuntimeError):
    """The voice cannot be found, loaded or used; the message names the setting or file."""


@dataclass(frozen=True)
class SpeechChunk:
    samples: np.ndarray  # int16 mono
    sample_rate: int

    @property
    def duration_s(self) -> float:
        return len(self.samples) / self.sample_rate


# ---------------------------------------------------------------------------------------------
# Text


def _is_emoji(char: str) -> bool:
    code = ord(char)
    return (
        0x1F000 <= code <= 0x1FAFF  # emoticons, pictographs, flags
        or 0x2600 <= code <= 0x27BF  # miscellaneous symbols, dingbats
        or 0x2B00 <= code <= 0x2BFF  # arrows, stars
        or 0xFE00 <= code <= 0xFE0F  # variation selectors
        or 0xE0000 <= code <= 0xE007F  # tag characters
        or code in (0x200D, 0x20E3)  # zero-width joiner, keycap
    )


def clean_text(text: str) -> str:
    """Drop control characters and emoji; collapse whitespace. "" when nothing is speakable."""
    kept = []
    for char in text:
        category = unicodedata.category(char)
        if category == "Cc" or category == "Zl" or category == "Zp":
            kept.append(" ")
        elif not (_is_emoji(char) or category in ("Cf", "Cs", "Co", "Cn")):
            kept.append(char)
    cleaned = " ".join("".join(kept).split())
    return cleaned if any(char.isalnum() for char in cleaned) else ""


def split_text(text: str, max_chars: int = MAX_PIECE_CHARS) -> list[str]:
    """Sentences of cleaned text, each at most `max_chars` long, skipping unspeakable ones."""
    splitter = SentenceSplitter(long_sentence=max_chars)
    pieces = []
    for sentence in [*splitter.feed(text), *splitter.flush()]:
        pieces += cut_long(sentence, max_chars)
    return [piece for piece in pieces if any(char.isalnum() for char in piece)]


def cut_long(sentence: str, max_chars: int = MAX_PIECE_CHARS) -> list[str]:
    """One sentence in pieces of at most `max_chars`, cut at a comma or a space: piper takes a
    long one at once, and its first audio would come late."""
    pieces = []
    while len(sentence) > max_chars:
        cut = max(sentence.rfind(mark, 0, max_chars) for mark in (", ", "; ", ": "))
        if cut > 0:
            cut += 1  # keep the mark with the first part: piper pauses on it
        else:
            cut = sentence.rfind(" ", 0, max_chars)
            if cut <= 0:
                cut = max_chars
        pieces.append(sentence[:cut].strip())
        sentence = sentence[cut:].strip()
    pieces.append(sentence)
    return pieces


def speech_pieces(text: str, *, split: bool = True) -> list[str]:
    """What piper is handed, in order. `split=False`: `text` is one sentence already (a reply's,
    split as it streamed in, thinking/sentences.py): only cleaned and cut if too long."""
    cleaned = clean_text(text)
    if split:
        return split_text(cleaned)
    return [piece for piece in cut_long(cleaned) if any(char.isalnum() for char in piece)]


# ---------------------------------------------------------------------------------------------
# Voices


def resolve_voice_path(voice: str) -> Path:
    """ "" -> the embedded default voice; otherwise the path of a .onnx voice file.

    Registry names (tts.voice = "en_US-lessac-medium") are not known here: the caller resolves
    them with ``models.resolve_voice`` and passes the result as ``voice_path``.
    """
    if not voice:
        return models.embedded_voice_path()
    path = Path(voice).expanduser()
    if not path.is_file():
        raise TtsError(f"tts.voice: {voice!r} is not a voice file")
    return path


class _LoadedVoice:
    def __init__(self, voice: Any):
        self.voice = voice
        # One long-lived synthesis thread per voice: piper's espeak phonemizer is shared and
        # one ONNX run already uses every core, so one synthesis per model at a time.
        self.worker = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="tts")

    def close(self) -> None:
        self.worker.shutdown(wait=True)


# Every synthesizer of one voice shares it; the last one closed frees it and its thread.
shared_voices: SharedModels[_LoadedVoice] = SharedModels("voice", on_evict=_LoadedVoice.close)


def _load_voice(model_path: Path, use_cuda: bool) -> Lease[_LoadedVoice]:
    def load() -> _LoadedVoice:
        from piper import PiperVoice

        config_path = Path(f"{model_path}.json")
        if not config_path.is_file():
            raise TtsError(
                f"tts.voice: {config_path} not found (a piper voice needs its .onnx.json beside it)"
            )
        try:
            voice = PiperVoice.load(model_path, config_path=config_path, use_cuda=use_cuda)
        except Exception as error:  # onnxruntime and json raise many kinds
            raise TtsError(f"tts.voice: cannot load {model_path}: {error}") from error
        log.info("voice %s loaded (%d Hz)", model_path.name, voice.config.sample_rate)
        return _LoadedVoice(voice)

    return shared_voices.acquire((model_path.resolve(), use_cuda), load)


class Synthesizer:
    """One piper voice, loaded once, with the synthesis settings of a `TtsConfig`."""

    def __init__(
        self,
        cfg: TtsConfig = TtsConfig(),
        voice_path: str | Path | None = None,
        *,
        use_cuda: bool = False,
    ):
        from piper import SynthesisConfig

        self.cfg = cfg
        self.model_path = (
            Path(voice_path) if voice_path is not None else resolve_voice_path(cfg.voice)
        )
        self._lease = _load_voice(self.model_path, use_cuda)
        self._loaded = self._lease.model
        speakers = self._loaded.voice.config.num_speakers
        if speakers > 1 and cfg.speaker_id >= speakers:
            raise TtsError(
                f"tts.speaker_id: {cfg.speaker_id} is out of range; {self.model_path.name} has {speakers} speakers"
            )
        self._syn_config = SynthesisConfig(
            speaker_id=cfg.speaker_id if speakers > 1 else None,
            length_scale=cfg.length_scale,
            noise_scale=cfg.noise_scale,
            noise_w_scale=cfg.noise_w_scale,
            volume=cfg.volume,
        )

    @property
    def sample_rate(self) -> int:
        return int(self._loaded.voice.config.sample_rate)

    def synthesize(self, text: str, *, split: bool = True) -> Iterator[SpeechChunk]:
        """Chunks of audio, one per sentence, in order; nothing for empty or unspeakable text.
        `split=False`: `text` is one sentence already (`speech_pieces`)."""
        voice, lock = self._loaded.voice, self._lease.lock
        for piece in speech_pieces(text, split=split):
            chunks = iter(voice.synthesize(piece, syn_config=self._syn_config))
            while True:
                with lock:
                    chunk = next(chunks, None)
                if chunk is None:
                    break
                samples = chunk.audio_int16_array
                if samples.size:
                    yield SpeechChunk(samples, int(chunk.sample_rate))

    async def stream(self, text: str, ahead: int = 1, *, split: bool = True) -> AsyncIterator[SpeechChunk]:
        """`synthesize()` on the voice's synthesis thread, at most `ahead` chunks ahead of the
        consumer. Use it with ``contextlib.aclosing``: closing stops synthesis after the
        sentence in progress and waits for the thread to let go."""
        cancel = threading.Event()
        async with contextlib.aclosing(
            iterate_in_thread(self.synthesize(text, split=split), cancel, ahead=ahead, executor=self._loaded.worker)
        ) as chunks:
            async for chunk in chunks:
                yield chunk

    def close(self) -> None:
        """Let go of the voice (freed, with its thread, once no synthesizer uses it)."""
        self._lease.release()


# ---------------------------------------------------------------------------------------------
# Speaking


def spoken_samples(
    synthesizer: Synthesizer, text: str, sample_rate: int, sentence_gap_s: float = 0.3
) -> np.ndarray:
    """`text` spoken as one int16 array at `sample_rate`, `sentence_gap_s` of silence between
    sentences (empty if there is nothing to say): test and benchmark clips."""
    gap = np.zeros(int(sentence_gap_s * sample_rate), dtype=np.int16)
    parts: list[np.ndarray] = []
    for chunk in synthesizer.synthesize(text):
        if parts:
            parts.append(gap)
        parts.append(resample(chunk.samples, chunk.sample_rate, sample_rate))
    return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int16)


async def speak(synthesizer: Synthesizer, sink: Any, text: str) -> bool:
    """Play `text` on an audio sink sentence by sentence; False if the sink was stopped."""
    async with contextlib.aclosing(synthesizer.stream(text)) as chunks:
        async for chunk in chunks:
            if not await sink.play(chunk.samples, chunk.sample_rate):
                return False
    return True
