"""The local LLM: llama-cpp-python on a GGUF file, streaming tokens, reusing the KV cache.

One `LlamaEngine` owns one `Llama` and one lock: llama.cpp contexts are not thread-safe, and the
device has the cores for one generation at a time anyway. Generation runs in a worker thread and
checks a cancel flag after every token, so barge-in stops it within one token.

llama-cpp-python's public API lacks a few things this engine needs (the tokens in the KV
cache, token attributes, llama.cpp's own prompt timer, freeing the sampler); `LlamaInternals`
is the one place that reaches into its private attributes, so an upgrade breaks one class.
"""

from __future__ import annotations

import functools
import logging
import os
import threading
import time
from pathlib import Path
from typing import Iterator

from .chat import Generation, LlmError, ModelInfo, quantization_name
from ..config import LlmConfig
from .prompt import Prompt, looks_like_markup, special_pattern

log = logging.getLogger(__name__)

GGUF_MAGIC = b"GGUF"
GGML_LOG_LEVEL_ERROR = 4  # ggml_log_level: NONE, DEBUG, INFO, WARN, ERROR, CONT

_llama_log_installed = False
# Set on the thread loading a model: llama.cpp's errors then explain the LlmError that names
# the model, and stay at debug level (llama-cpp-python's load used to send them to /dev/null
# with all of stderr; the log now has a descriptor of its own, edge_assistant.journal).
_loading = threading.local()


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
            loud = level == GGML_LOG_LEVEL_ERROR and not getattr(_loading, "active", False)
            log.log(logging.WARNING if loud else logging.DEBUG, "%s", message)

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


def file_quantization(path: Path) -> str:
    """The quantization a GGUF file declares, read from its header without loading it."""
    from gguf import GGUFReader

    field = GGUFReader(str(path)).fields.get("general.file_type")
    return quantization_name(int(field.parts[-1][0]) if field else None)


@functools.lru_cache(maxsize=4)
def compiled_grammar(gbnf: str):
    """A GBNF grammar parsed once: the same tools come back turn after turn."""
    from llama_cpp import LlamaGrammar

    return LlamaGrammar.from_string(gbnf, verbose=False)


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


class LlamaInternals:
    """What this project needs of a `Llama` beyond llama-cpp-python's public API."""

    def __init__(self, llama) -> None:
        self.llama = llama

    @property
    def model(self):
        """The low-level model: vocabulary, token attributes, BOS/EOS."""
        return self.llama._model

    def cached_tokens(self) -> list[int]:
        """The tokens whose keys and values are in the KV cache now."""
        return self.llama._input_ids[: self.llama.n_tokens].tolist()

    def keep_cached(self, count: int) -> None:
        """Keep only the first `count` tokens of the cache; the next evaluation continues there."""
        self.llama.n_tokens = count

    def synchronize(self) -> None:
        """Wait for evaluation queued on the backend (llama_decode returns before it ends, and
        its time would be counted in the next reply's prompt timer)."""
        import llama_cpp

        llama_cpp.llama_synchronize(self.llama._ctx.ctx)

    def reset_timers(self) -> None:
        import llama_cpp

        llama_cpp.llama_perf_context_reset(self.llama._ctx.ctx)

    def prompt_eval_ms(self) -> float:
        """llama.cpp's own count of the time spent evaluating prompt batches since the reset."""
        import llama_cpp

        return llama_cpp.llama_perf_context(self.llama._ctx.ctx).t_p_eval_ms

    def free_sampler(self) -> None:
        # The sampler sits in a reference cycle: left to the cyclic collector, each reply's
        # copy (megabytes with a large vocabulary) would pile up.
        sampler = self.llama._sampler
        if sampler is not None:
            sampler.close()
            self.llama._sampler = None


class LlamaTokenizer:
    """The `prompt.Tokenizer` view of a loaded model's vocabulary."""

    def __init__(self, llama, info: ModelInfo) -> None:
        import llama_cpp

        self._llama = llama
        model = LlamaInternals(llama).model
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


class LlamaEngine:
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
        _loading.active = True
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
        finally:
            _loading.active = False
        self.internals = LlamaInternals(self.llama)
        self.info = self._read_info()
        self.tokenizer = LlamaTokenizer(self.llama, self.info)

    def _read_info(self) -> ModelInfo:
        metadata = self.llama.metadata
        architecture = metadata.get("general.architecture", "unknown")
        file_type = metadata.get("general.file_type")
        return ModelInfo(
            path=str(self.model_path),
            name=metadata.get("general.name") or self.model_path.stem,
            architecture=architecture,
            quantization=quantization_name(int(file_type)) if file_type else "unknown",
            context_length=int(metadata.get(f"{architecture}.context_length", 0) or 0),
            size_bytes=self.model_path.stat().st_size,
            chat_template=metadata.get("tokenizer.chat_template") or None,
        )

    def close(self) -> None:
        """Free the model; waits for a generation in progress to end (call it off the loop)."""
        with self.lock:
            self.closed = True
            self.llama.close()

    def warm(self, tokens: list[int]) -> int:
        """Evaluate `tokens` (a prompt's start) into the KV cache, keeping what is cached."""
        with self.lock:
            if self.closed or not tokens:
                return 0
            internals = self.internals
            cached = self.llama.longest_token_prefix(internals.cached_tokens(), tokens)
            if cached >= len(tokens):
                return 0
            internals.keep_cached(cached)
            self.llama.eval(tokens[cached:])
            internals.synchronize()
            return len(tokens) - cached

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
        from llama_cpp import StoppingCriteriaList

        with self.lock:
            if self.closed:
                # llama.cpp would crash the process on a freed context.
                raise LlmError(f"{self.model_path}: the model was closed")
            llama = self.llama
            internals = self.internals
            cached = llama.longest_token_prefix(internals.cached_tokens(), list(prompt.tokens))
            result.prompt_tokens = len(prompt.tokens)
            # generate() re-evaluates at least one token to refresh the logits.
            result.cached_tokens = min(cached, len(prompt.tokens) - 1)
            start = time.perf_counter()
            tokens = _TokenCounter(result, cancel)
            internals.reset_timers()
            stream = llama.create_completion(
                prompt=list(prompt.tokens),
                max_tokens=config.max_tokens,
                **sampling_arguments(config),
                stop=list(dict.fromkeys((*prompt.stop, *config.stop))),
                stopping_criteria=StoppingCriteriaList([tokens]),
                grammar=compiled_grammar(prompt.grammar) if prompt.grammar else None,
                stream=True,
            )
            try:
                for chunk in stream:
                    if cancel is not None and cancel.is_set():
                        break
                    choice = chunk["choices"][0]
                    if choice.get("finish_reason"):
                        result.finish_reason = choice["finish_reason"]
                    if choice["text"]:
                        result.text += choice["text"]
                        yield choice["text"]
                    if cancel is not None and cancel.is_set():
                        break
            finally:
                stream.close()
                internals.free_sampler()
                result.finish(start, tokens.first_at, config.max_tokens, cancel is not None and cancel.is_set())
                if tokens.first_at is not None:
                    result.timings.prompt_ms = internals.prompt_eval_ms()


class _TokenCounter:
    """The stopping criterion that llama-cpp-python calls after every sampled token: exact
    counts and times, and a cancel that takes effect before the next token is evaluated."""

    def __init__(self, result: Generation, cancel: threading.Event | None) -> None:
        self.result = result
        self.cancel = cancel
        self.first_at: float | None = None
        self._length = -1

    def __call__(self, input_ids, _logits) -> bool:
        if self.first_at is None:
            self.first_at = time.perf_counter()
        # It is called once more after its loop, with the same context length: not a new token.
        if len(input_ids) != self._length:
            self.result.completion_tokens += 1
            self._length = len(input_ids)
        return self.cancel is not None and self.cancel.is_set()
