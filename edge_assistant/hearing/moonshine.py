"""Moonshine tiny, English speech recognition, run with onnxruntime (which piper brings).

Its encoder's work grows with the audio rather than a fixed 30 s window (Whisper), so a short
command is text in tens of milliseconds. The decoder is the "merged" export: one graph with and
without a key/value cache (`use_cache_branch`); decoding is greedy, one token per call after the
first, up to a limit in proportion to the audio (speech runs at about 3 words, 4 to 5 tokens, a
second). A model folder holds `encoder_model.ort|.onnx`, `decoder_model_merged.ort|.onnx` and
`tokenizer.json` (found anywhere below it: a pulled model keeps the hub's folders).

A missing or unloadable file raises `MoonshineModelError` naming it; `stt` turns that into
Whisper taking over. No moonshine package is used at run time.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

SAMPLE_RATE = 16000
ENCODER_NAMES = ("encoder_model.ort", "encoder_model.onnx")
DECODER_NAMES = ("decoder_model_merged.ort", "decoder_model_merged.onnx")
TOKENIZER_NAME = "tokenizer.json"
START_TOKEN, END_TOKEN = 1, 2
# Greedy decoding stops at the end token or at this many tokens per second of audio (plus a
# few), so that a model stuck repeating itself on noise stops soon.
TOKENS_PER_SECOND = 6.5
EXTRA_TOKENS = 4
# The encoder needs about 56 ms of audio before it gives one frame; shorter is padded.
MIN_SAMPLES = SAMPLE_RATE // 4


class MoonshineModelError(RuntimeError):
    """A model file is missing or cannot be loaded; `path` names it."""

    def __init__(self, message: str, path: Path) -> None:
        super().__init__(message)
        self.path = path


@dataclass(frozen=True)
class ModelFiles:
    encoder: Path
    decoder: Path
    tokenizer: Path

    @classmethod
    def in_folder(cls, folder: Path) -> "ModelFiles":
        folder = Path(folder)
        found = []
        for names in (ENCODER_NAMES, DECODER_NAMES, (TOKENIZER_NAME,)):
            matches = [match for name in names for match in sorted(folder.rglob(name))]
            if not matches:
                raise MoonshineModelError(f"no {' or '.join(names)} in {folder}", folder / names[0])
            found.append(matches[0])
        return cls(*found)


def is_model_folder(folder: Path) -> bool:
    try:
        ModelFiles.in_folder(folder)
    except MoonshineModelError:
        return False
    return True


class Tokenizer:
    """Token ids to text, from a Hugging Face `tokenizer.json` (SentencePiece BPE: "▁" is a
    space, `<0xNN>` a byte); only decoding is needed."""

    def __init__(self, path: Path) -> None:
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
            vocab: dict[str, int] = data["model"]["vocab"]
            special = {token["id"] for token in data.get("added_tokens", ()) if token.get("special")}
        except (OSError, ValueError, KeyError, TypeError) as error:
            raise MoonshineModelError(f"{path}: not a readable tokenizer.json ({error})", Path(path)) from None
        self._pieces = {index: piece for piece, index in vocab.items()}
        self._special = special

    def decode(self, ids: list[int]) -> str:
        raw = bytearray()
        for index in ids:
            if index in self._special:
                continue
            piece = self._pieces.get(index, "")
            if len(piece) == 6 and piece.startswith("<0x") and piece.endswith(">"):
                raw.append(int(piece[3:5], 16))
            else:
                raw += piece.replace("\u2581", " ").encode("utf-8")
        return raw.decode("utf-8", errors="replace").strip()


def _is_ort_format(path: Path) -> bool:
    """An ORT-format model (a flatbuffer with the file identifier "ORTM"), not ONNX protobuf."""
    try:
        with open(path, "rb") as handle:
            return handle.read(8)[4:8] == b"ORTM"
    except OSError:
        return False


def _session(path: Path, threads: int):
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    if _is_ort_format(path):
        # onnxruntime goes by the file name otherwise, and a ".onnx" may hold either format.
        options.add_session_config_entry("session.load_model_format", "ORT")
    try:
        return onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as error:  # onnxruntime raises its own types for unreadable models
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise MoonshineModelError(f"{path}: cannot be loaded ({reason})", path) from None


class MoonshineModel:
    """One loaded model; `transcribe()` one utterance at a time (callers serialize)."""

    def __init__(self, folder: Path, threads: int = 2) -> None:
        files = ModelFiles.in_folder(folder)
        self.files = files
        self.tokenizer = Tokenizer(files.tokenizer)
        self._encoder = _session(files.encoder, threads)
        self._decoder = _session(files.decoder, threads)
        self._cache_inputs = [i.name for i in self._decoder.get_inputs() if i.name.startswith("past_key_values.")]
        names = [output.name for output in self._decoder.get_outputs()]
        if not self._cache_inputs or "logits" not in names:
            raise MoonshineModelError(f"{files.decoder}: not a merged Moonshine decoder", files.decoder)
        # present.N.* comes back in place of past_key_values.N.*
        self._present = {name: names.index("present." + name.removeprefix("past_key_values."))
                         for name in self._cache_inputs}
        shape = next(i.shape for i in self._decoder.get_inputs() if i.name == self._cache_inputs[0])
        self._heads, self._head_size = int(shape[1]), int(shape[3])

    @staticmethod
    def token_limit(samples: int) -> int:
        """The most tokens decoded for this many samples of audio."""
        return int(math.ceil(samples / SAMPLE_RATE * TOKENS_PER_SECOND)) + EXTRA_TOKENS

    def transcribe(self, samples: np.ndarray, max_tokens: int | None = None) -> tuple[str, float]:
        """The text of 16 kHz mono float samples in [-1, 1], and exp of the mean token
        log-probability as its confidence. `max_tokens`: at most that many (else
        `token_limit`)."""
        if samples.size == 0:
            return "", 0.0
        audio = samples.astype(np.float32)
        if audio.size < MIN_SAMPLES:
            audio = np.concatenate([audio, np.zeros(MIN_SAMPLES - audio.size, np.float32)])
        audio = audio[None, :]
        hidden = self._encoder.run(None, {
            "input_values": audio, "attention_mask": np.ones(audio.shape, np.int64)})[0]
        tokens, log_probability = self._decode(hidden, max_tokens or self.token_limit(samples.size))
        text = self.tokenizer.decode(tokens)
        confidence = math.exp(log_probability / len(tokens)) if tokens else 0.0
        return text, confidence

    def _decode(self, hidden: np.ndarray, limit: int) -> tuple[list[int], float]:
        empty = np.zeros((1, self._heads, 0, self._head_size), np.float32)
        cache = {name: empty for name in self._cache_inputs}
        mask = np.ones(hidden.shape[:2], np.int64)
        next_ids = np.array([[START_TOKEN]], np.int64)
        tokens: list[int] = []
        log_probability = 0.0
        for step in range(limit):
            outputs = self._decoder.run(None, {
                "input_ids": next_ids, "encoder_hidden_states": hidden, "encoder_attention_mask": mask,
                "use_cache_branch": np.array([step > 0]), **cache})
            logits = outputs[0][0, -1].astype(np.float64)
            token = int(logits.argmax())
            if token == END_TOKEN:
                break
            top = logits[token]
            log_probability += -math.log(float(np.exp(logits - top).sum()))
            tokens.append(token)
            for name in self._cache_inputs:
                # The cross-attention cache is computed once, at the first step.
                if step == 0 or ".decoder." in name:
                    cache[name] = outputs[self._present[name]]
            next_ids = np.array([[token]], np.int64)
        return tokens, log_probability
