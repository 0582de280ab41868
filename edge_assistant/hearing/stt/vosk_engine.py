"""vosk: streaming recognition, decoding while the person speaks, with partial text and words
with their times; `stt.grammar` restricts it to a list of phrases."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Callable

from ...audio.pcm import SAMPLE_RATE
from ...shared_models import Lease
from .transcriber import BYTES_PER_SECOND, SttError, Transcriber, Transcript, Word, join_text, shared_models

log = logging.getLogger(__name__)

# vosk recomputes its best path for every partial result; five updates a second suffice.
PARTIAL_INTERVAL_S = 0.2


def is_vosk_model(folder: Path) -> bool:
    return (folder / "am" / "final.mdl").is_file() or (folder / "final.mdl").is_file()


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
        text = join_text([s.get("text", "") for s in self._segments] + [current])
        if text == self._partial:
            return None
        self._partial = text
        return text

    def _draft(self) -> Callable[[], Transcript]:
        current = json.loads(self._recognizer.PartialResult()).get("partial", "")
        transcript = Transcript(
            text=join_text([s.get("text", "") for s in self._segments] + [current]),
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
        text = join_text([s.get("text", "") for s in self._segments])
        confidence = sum(w.confidence for w in words) / len(words) if words else 0.0
        return text, confidence, words
