"""The local LLM: llama-cpp-python on a GGUF file, streaming tokens, reusing the KV cache.

One `LlmEngine` owns one `Llama` and one lock: llama.cpp contexts are not thread-safe, and the
device has the cores for one generation at a time anyway. Generation runs in a worker thread and
checks a cancel flag after every token, so barge-in stops it within one token.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import AsyncIterator, Callable, Iterator, Protocol

from . import models
from .config import Config, LlmConfig
from .prompt import Conversation, Prompt, PromptBuilder, looks_like_markup, special_pattern
from .sentences import SentenceSplitter

log = logging.getLogger(__name__)

GGUF_MAGIC = b"GGUF"
GGML_LOG_LEVEL_ERROR = 4  # ggml_log_level: NONE, DEBUG, INFO, WARN, ERROR, CONT

# general.file_type values (llama.cpp's LLAMA_FTYPE_*) to the names people know.
FILE_TYPES = {
    0: "F32", 1: "F16", 2: "Q4_0", 3: "Q4_1", 7: "Q8_0", 8: "Q5_0", 9: "Q5_1", 10: "Q2_K",
    11: "Q3_K_S", 12: "Q3_K_M", 13: "Q3_K_L", 14: "Q4_K_S", 15: "Q4_K_M", 16: "Q5_K_S",
    17: "Q5_K_M", 18: "Q6_K", 19: "IQ2_XXS", 20: "IQ2_XS", 21: "Q2_K_S", 22: "IQ3_XS",
    23: "IQ3_XXS", 24: "IQ1_S", 25: "IQ4_NL", 26: "IQ3_S", 27: "IQ3_M", 28: "IQ2_S",
    29: "IQ2_M", 30: "IQ4_XS", 31: "IQ1_M", 32: "BF16", 36: "TQ1_0", 37: "TQ2_0", 38: "MXFP4",
}


class LlmError(RuntimeError):
    """The model cannot be loaded or run; the message names the file."""


_llama_log_installed = False


def _route_llama_logs() -> None:
    """Send llama.cpp's own logging to ours (debug level) instead of raw stderr lines."""
    global _llama_log_installed
    if _llama_log_installed:
        return
    import ctypes

    import llama_cpp

    @llama_cpp.llama_log_callback
    def forward(level: int, text: bytes, _user_data: ctypes.c_void_p) -> None:
        message = text.decode("utf-8", "replace").rstrip()
        if message:
            log.log(logging.WARNING if level == GGML_LOG_LEVEL_ERROR else logging.DEBUG, "%s", message)

    llama_cpp.llama_log_set(forward, ctypes.c_void_p(0))
    # ctypes callbacks must outlive their registration.
    globals()["_llama_log_callback"] = forward
    _llama_log_installed = True


def physical_cores() -> int:
    """Physical cores, the right thread count for llama.cpp (hyperthreads only add contention)."""
    try:
        import psutil

        count = psutil.cpu_count(logical=False)
        if count:
            return count
    except Exception:  # psutil can fail inside minimal containers
        pass
    return max(1, (os.cpu_count() or 2))


def check_gguf_file(path: Path) -> None:
    """Fail early with a message naming the path, before llama.cpp prints pages of logs."""
    if not path.exists():
        raise LlmError(f"{path}: model file not found")
    if not path.is_file():
        raise LlmError(f"{path}: not a file")
    with path.open("rb") as handle:
        magic = handle.read(4)
    if magic != GGUF_MAGIC:
        raise LlmError(f"{path}: not a GGUF file (starts with {magic!r}, expected {GGUF_MAGIC!r})")


def sampling_arguments(config: LlmConfig) -> dict:
    """llama-cpp-python's `create_completion` sampling settings, as llm.* configures them."""
    return {
        "temperature": config.temperature,
        "top_p": config.top_p,
        "top_k": config.top_k,
        "min_p": config.min_p,
        "repeat_penalty": config.repeat_penalty,
        "seed": config.seed if config.seed >= 0 else None,
    }


@dataclass(frozen=True)
class ModelInfo:
    path: str
    name: str
    architecture: str
    quantization: str
    context_length: int
    size_bytes: int
    chat_template: str | None


class LlamaTokenizer:
    """The `prompt.Tokenizer` view of a loaded model's vocabulary."""

    def __init__(self, llama, info: ModelInfo) -> None:
        import llama_cpp

        self._llama = llama
        model = llama._model
        self.model_name = info.name
        self.chat_template = info.chat_template
        self.special_tokens: dict[str, int] = {}
        guarded: dict[str, int] = {}
        for token_id in range(model.n_vocab()):
            attributes = model.token_get_attr(token_id)
            if attributes & llama_cpp.LLAMA_TOKEN_ATTR_CONTROL:
                text = model.token_get_text(token_id)
                if text:
                    self.special_tokens.setdefault(text, token_id)
            elif attributes & llama_cpp.LLAMA_TOKEN_ATTR_USER_DEFINED:
                # llama.cpp matches user-defined tokens even with special parsing off; those
                # that look like markup must be broken up when they appear in a person's text.
                text = model.token_get_text(token_id)
                if looks_like_markup(text):
                    guarded.setdefault(text, token_id)
        self.special_pattern = special_pattern(self.special_tokens)
        self.guarded_pattern = special_pattern(guarded)
        self.bos_id = model.token_bos()
        self.eos_id = model.token_eos()
        self.bos_token = model.token_get_text(self.bos_id) if self.bos_id >= 0 else ""
        self.eos_token = model.token_get_text(self.eos_id) if self.eos_id >= 0 else ""
        self.add_bos = bool(model.add_bos_token()) and self.bos_id >= 0

    def tokenize(self, text: str) -> list[int]:
        if not text:
            return []
        return self._llama.tokenize(text.encode("utf-8"), add_bos=False, special=False)

    def piece(self, token_id: int) -> str:
        return self._llama.detokenize([token_id], special=True).decode("utf-8", "replace")


@dataclass
class Timings:
    prompt_ms: float = 0.0
    first_token_ms: float = 0.0
    total_ms: float = 0.0
    tokens_per_s: float = 0.0

    def as_dict(self) -> dict[str, float]:
        return {
            "prompt_ms": round(self.prompt_ms, 1),
            "first_token_ms": round(self.first_token_ms, 1),
            "total_ms": round(self.total_ms, 1),
            "tokens_per_s": round(self.tokens_per_s, 2),
        }


@dataclass
class Generation:
    """What one reply cost; filled in while the reply streams."""

    text: str = ""
    prompt_tokens: int = 0
    # Prompt tokens taken from the KV cache of the previous turn instead of evaluated again.
    cached_tokens: int = 0
    completion_tokens: int = 0
    cancelled: bool = False
    finish_reason: str = ""
    timings: Timings = field(default_factory=Timings)


class LlmEngine:
    """Loads a GGUF once and streams replies for prompts built by `prompt.PromptBuilder`."""

    def __init__(self, config: LlmConfig, model_path: Path) -> None:
        self.config = config
        self.model_path = Path(model_path)
        self.lock = threading.Lock()
        self.closed = False
        check_gguf_file(self.model_path)
        from llama_cpp import LLAMA_DEFAULT_SEED, Llama

        _route_llama_logs()

        self.threads = config.n_threads or physical_cores()
        try:
            self.llama = Llama(
                model_path=str(self.model_path),
                n_ctx=config.n_ctx,
                n_threads=self.threads,
                n_threads_batch=self.threads,
                n_batch=min(config.n_batch, config.n_ctx),
                n_gpu_layers=config.n_gpu_layers,
                use_mmap=config.use_mmap,
                use_mlock=config.use_mlock,
                seed=config.seed if config.seed >= 0 else LLAMA_DEFAULT_SEED,
                verbose=False,
            )
        except (ValueError, RuntimeError, OSError) as error:
            raise LlmError(f"{self.model_path}: cannot load model: {error}") from None
        self.info = self._read_info()
        self.tokenizer = LlamaTokenizer(self.llama, self.info)

    def _read_info(self) -> ModelInfo:
        metadata = self.llama.metadata
        architecture = metadata.get("general.architecture", "unknown")
        file_type = metadata.get("general.file_type")
        quantization = FILE_TYPES.get(int(file_type), f"type {file_type}") if file_type else "unknown"
        return ModelInfo(
            path=str(self.model_path),
            name=metadata.get("general.name") or self.model_path.stem,
            architecture=architecture,
            quantization=quantization,
            context_length=int(metadata.get(f"{architecture}.context_length", 0) or 0),
            size_bytes=self.model_path.stat().st_size,
            chat_template=metadata.get("tokenizer.chat_template") or None,
        )

    def close(self) -> None:
        with self.lock:
            self.closed = True
            self.llama.close()

    def generate(
        self,
        prompt: Prompt,
        cancel: threading.Event | None = None,
        result: Generation | None = None,
    ) -> Iterator[str]:
        """Yield text pieces as they are generated (blocking; run it in a worker thread).

        `result` is filled in as generation goes, so a cancelled caller still gets its counts.
        """
        result = result if result is not None else Generation()
        config = self.config
        import llama_cpp
        from llama_cpp import StoppingCriteriaList

        with self.lock:
            if self.closed:
                # llama.cpp would crash the process on a freed context.
                raise LlmError(f"{self.model_path}: the model was closed")
            llama = self.llama
            cached = llama.longest_token_prefix(llama._input_ids[: llama.n_tokens].tolist(), list(prompt.tokens))
            result.prompt_tokens = len(prompt.tokens)
            # generate() re-evaluates at least one token to refresh the logits.
            result.cached_tokens = min(cached, len(prompt.tokens) - 1)
            start = time.perf_counter()
            first_token_at: list[float] = []

            seen_lengths: list[int] = []

            def count_and_check_cancel(input_ids, _logits) -> bool:
                # Called by llama-cpp-python after every sampled token: exact counts and times,
                # and a cancel that takes effect before the next token is evaluated. It calls
                # once more after its loop, with the same context length: not a new token.
                if not first_token_at:
                    first_token_at.append(time.perf_counter())
                if not seen_lengths or len(input_ids) != seen_lengths[-1]:
                    result.completion_tokens += 1
                    seen_lengths[:] = [len(input_ids)]
                return cancel is not None and cancel.is_set()

            llama_cpp.llama_perf_context_reset(llama._ctx.ctx)
            stream = llama.create_completion(
                prompt=list(prompt.tokens),
                max_tokens=config.max_tokens,
                **sampling_arguments(config),
                stop=list(dict.fromkeys((*prompt.stop, *config.stop))),
                stopping_criteria=StoppingCriteriaList([count_and_check_cancel]),
                stream=True,
            )
            try:
                for chunk in stream:
                    if cancel is not None and cancel.is_set():
                        break
                    choice = chunk["choices"][0]
                    text = choice["text"]
                    if choice.get("finish_reason"):
                        result.finish_reason = choice["finish_reason"]
                    if text:
                        result.text += text
                        yield text
                    if cancel is not None and cancel.is_set():
                        break
            finally:
                if cancel is not None and cancel.is_set():
                    result.cancelled = True
                    result.finish_reason = "cancelled"
                stream.close()
                # The sampler sits in a reference cycle: left to the cyclic collector, each
                # reply's copy (megabytes with a large vocabulary) would pile up.
                if llama._sampler is not None:
                    llama._sampler.close()
                    llama._sampler = None
                end = time.perf_counter()
                timings = result.timings
                timings.total_ms = (end - start) * 1000
                if first_token_at:
                    timings.first_token_ms = (first_token_at[0] - start) * 1000
                    # llama.cpp's own count of the time spent evaluating prompt batches.
                    timings.prompt_ms = llama_cpp.llama_perf_context(llama._ctx.ctx).t_p_eval_ms
                    decode_s = end - first_token_at[0]
                    if result.completion_tokens > 1 and decode_s > 0:
                        timings.tokens_per_s = (result.completion_tokens - 1) / decode_s
                if not result.finish_reason:
                    result.finish_reason = "length" if result.completion_tokens >= config.max_tokens else "stop"


@dataclass
class Reply:
    """One answered turn: the prompt's trimming, the generation's counts, the sentences."""

    prompt: Prompt
    generation: Generation
    sentences: list[str] = field(default_factory=list)


class Engine(Protocol):
    """What a ChatSession needs of a model: `LlmEngine` here, or remote.py's engines."""

    info: ModelInfo

    def generate(
        self, prompt: Prompt, cancel: threading.Event | None = None, result: Generation | None = None
    ) -> Iterator[str]: ...

    def close(self) -> None: ...


class ChatSession:
    """A conversation with one model: builds each prompt from the history, streams sentences.

    The sentence splitter runs on the generating thread, so each sentence is handed on the
    moment its last token arrives.
    """

    def __init__(self, engine: Engine, builder: PromptBuilder) -> None:
        self.engine = engine
        self.builder = builder
        self.conversation = Conversation()

    def prepare(self, user_text: str) -> Prompt:
        return self.builder.build(user_text, self.conversation)

    def sentences(
        self, prompt: Prompt, cancel: threading.Event | None, reply: Reply,
        on_piece: Callable[[str], None] | None = None,
    ) -> Iterator[str]:
        """Blocking: yield whole sentences while the model writes (run in a worker thread)."""
        splitter = SentenceSplitter()
        for piece in self.engine.generate(prompt, cancel, reply.generation):
            if on_piece is not None:
                on_piece(piece)
            for sentence in splitter.feed(piece):
                reply.sentences.append(sentence)
                yield sentence
        if not reply.generation.cancelled:
            for sentence in splitter.flush():
                reply.sentences.append(sentence)
                yield sentence

    def record(
        self, user_text: str, reply: Reply, spoken_text: str | None = None, cut_short: bool = False
    ) -> None:
        """Remember the turn; a reply cut short (in generation or in speech) is kept as far as
        it was heard (`spoken_text`) or written."""
        said = spoken_text if spoken_text is not None else reply.generation.text.strip()
        self.conversation.add(user_text, said, cut_short=cut_short or reply.generation.cancelled)

    def reset(self) -> None:
        self.conversation.reset()


def load_session(config: Config) -> ChatSession:
    """The engine and prompt builder that `config` describes, model resolved and loaded."""
    if config.llm.backend == "openai":
        from .remote import load_remote_session

        return load_remote_session(config)
    model_path = models.resolve_llm(config.llm.model, config.state_dir())
    engine = LlmEngine(config.llm, model_path)
    template = config.prompt.template
    if template == "auto" and not engine.tokenizer.chat_template:
        template = models.template_hint(config.llm.model)
    prompt_config = replace(config.prompt, template=template)
    builder = PromptBuilder(prompt_config, engine.tokenizer, config.llm.n_ctx, config.llm.max_tokens)
    return ChatSession(engine, builder)


async def iterate_in_thread(items: Iterator, cancel: threading.Event) -> AsyncIterator:
    """Run a blocking iterator (a generation) in a worker thread, its items handed to the loop.

    Leaving early (a cancelled task, a closed generator) sets `cancel`, which the generation
    checks after every token, and waits for the worker, so the model's lock is free again.
    """
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue = asyncio.Queue()
    finished = object()

    def produce() -> None:
        try:
            for item in items:
                loop.call_soon_threadsafe(queue.put_nowait, (item, None))
        except BaseException as error:  # raised again on the loop's side
            loop.call_soon_threadsafe(queue.put_nowait, (finished, error))
        else:
            loop.call_soon_threadsafe(queue.put_nowait, (finished, None))

    worker = loop.run_in_executor(None, produce)
    complete = False
    try:
        while True:
            item, error = await queue.get()
            if error is not None:
                complete = True
                raise error
            if item is finished:
                complete = True
                break
            yield item
    finally:
        if not complete:
            cancel.set()
        await asyncio.shield(worker)
