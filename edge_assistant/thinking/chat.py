"""A conversation with a language model, whatever runs it.

The types every backend shares: what a model is (`ModelInfo`), what one reply cost
(`Generation`, `Timings`), one answered turn (`Reply`), what a session needs of an engine
(`Engine`), and the session itself (`ChatSession`), which builds each prompt from the history
and streams whole sentences. The backends (llama_engine.py, remote.py) and the factory that
picks one (llm.py) build on this module; it imports none of them.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Iterator, Protocol

from .prompt import Conversation, Prompt, PromptBuilder
from .sentences import SentenceSplitter
from .tool_output import ToolOutputReader


class LlmError(RuntimeError):
    """The model cannot be loaded or run; the message names the file."""


def quantization_name(file_type: int | None) -> str:
    """GGUF `general.file_type` (llama.cpp's LLAMA_FTYPE_*) as people know it: "Q4_K_M"."""
    if file_type is None:
        return "unknown"
    from gguf import LlamaFileType

    try:
        name = LlamaFileType(int(file_type)).name
    except ValueError:
        return f"type {file_type}"
    return name.removeprefix("MOSTLY_").removeprefix("ALL_")


@dataclass(frozen=True)
class ModelInfo:
    path: str
    name: str
    architecture: str
    quantization: str
    context_length: int
    size_bytes: int
    chat_template: str | None


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

    def clear(self) -> None:
        """Back to nothing spent (a turn answered again by another engine)."""
        self.__init__()

    def finish(self, start: float, first_piece_at: float | None, max_tokens: int, cancelled: bool) -> None:
        """What is known once the reply has ended (`start`, `first_piece_at`: perf_counter
        times): a cancel, the timings, and the finish reason where the backend gave none."""
        end = time.perf_counter()
        if cancelled:
            self.cancelled = True
            self.finish_reason = "cancelled"
        self.timings.total_ms = (end - start) * 1000
        if first_piece_at is not None:
            self.timings.first_token_ms = (first_piece_at - start) * 1000
            decode_s = end - first_piece_at
            if self.completion_tokens > 1 and decode_s > 0:
                self.timings.tokens_per_s = (self.completion_tokens - 1) / decode_s
        if not self.finish_reason:
            self.finish_reason = "length" if self.completion_tokens >= max_tokens else "stop"


@dataclass
class Reply:
    """One answered turn: the prompt's trimming, the generation's counts, the sentences."""

    prompt: Prompt
    generation: Generation
    sentences: list[str] = field(default_factory=list)
    # A tool call's JSON, when the model chose to act instead of answering.
    tool_call: str = ""


class Engine(Protocol):
    """What a ChatSession needs of a model: llama_engine.LlamaEngine, or remote.py's engines.

    `generate` blocks (run it in a worker thread), yields text pieces as they come, checks
    `cancel` after every token and fills `result` as it goes, so a cancelled caller still gets
    its counts.
    """

    info: ModelInfo

    def generate(
        self, prompt: Prompt, cancel: threading.Event | None = None, result: Generation | None = None
    ) -> Iterator[str]: ...

    def close(self) -> None: ...

    def warm(self, tokens: list[int]) -> int:
        """Evaluate a prompt's start into the model's cache ahead of the question; the tokens
        evaluated (0 for an engine that keeps no cache)."""
        ...


class ChatSession:
    """A conversation with one model: builds each prompt from the history, streams sentences.

    The sentence splitter runs on the generating thread, so each sentence is handed on the
    moment its last token arrives.
    """

    def __init__(self, engine: Engine, builder: PromptBuilder) -> None:
        self.engine = engine
        self.builder = builder
        self.conversation = Conversation()
        # Bumped by reset(): a turn that began before a reset must not write its exchange into
        # the fresh conversation when it ends.
        self.epoch = 0

    def prepare(self, user_text: str, context: str = "") -> Prompt:
        """The prompt for `user_text`; `context` (the home's devices) follows the system prompt."""
        return self.builder.build(user_text, self.conversation, context)

    def warm(self, context: str = "") -> int:
        """Evaluate what every next prompt starts with (system prompt, context, examples, the
        history) now, so the next question pays only for its own tokens. Blocking (a worker
        thread)."""
        first = self.builder.build("a", self.conversation, context).tokens
        second = self.builder.build("b", self.conversation, context).tokens
        shared = 0
        for one, other in zip(first, second):
            if one != other:
                break
            shared += 1
        return self.engine.warm(list(first[:shared]))

    def sentences(
        self, prompt: Prompt, cancel: threading.Event | None, reply: Reply,
        on_piece: Callable[[str], None] | None = None,
    ) -> Iterator[str]:
        """Blocking: yield whole sentences while the model writes (run in a worker thread).

        With tools in the prompt the reply may be a tool call instead: it is not spoken but
        left in `reply.tool_call` for the caller."""
        # A long first sentence is spoken from its first clause on: speech starts sooner.
        splitter = SentenceSplitter(first_clause=True)
        reader = ToolOutputReader() if (prompt.grammar or prompt.tools) else None
        for piece in self.engine.generate(prompt, cancel, reply.generation):
            if on_piece is not None:
                on_piece(piece)
            text = reader.feed(piece) if reader is not None else piece
            for sentence in splitter.feed(text):
                reply.sentences.append(sentence)
                yield sentence
        if reader is not None:
            splitter.feed(reader.finish())
            reply.tool_call = reader.call
        if not reply.generation.cancelled:
            for sentence in splitter.flush():
                reply.sentences.append(sentence)
                yield sentence

    def record(self, user_text: str, reply: Reply) -> None:
        """Remember a turn the model answered in full, as it wrote it."""
        self.remember(user_text, reply.generation.text.strip(), cut_short=reply.generation.cancelled)

    def remember(self, user_text: str, said: str, cut_short: bool = False, epoch: int | None = None) -> None:
        """Remember the turn as far as it was heard; a reply cut short is marked so. A turn from
        before the latest reset (`epoch`) is not remembered."""
        if epoch is not None and epoch != self.epoch:
            return
        self.conversation.add(user_text, said, cut_short=cut_short)

    def reset(self) -> None:
        self.epoch += 1
        self.conversation.reset()
