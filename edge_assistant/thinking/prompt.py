"""Chat prompt building: ChatML, Zephyr, the GGUF's own Jinja template, and a plain few-shot
dialogue for base models, with history that fits the context window.

Injection safety is structural: a rendered prompt is a list of pieces that remember whether they
came from the template (trusted) or from a person (a transcript, MQTT, the CLI). Only trusted
text is searched for special tokens; untrusted text is tokenized with special-token parsing off,
so `<|im_end|>` typed or spoken by anyone reaches the model as the plain characters `<`, `|`, ...
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, Sequence

from jinja2 import TemplateError
from jinja2.sandbox import ImmutableSandboxedEnvironment

from ..config import PromptConfig

FORMAT_NAMES = ("chatml", "zephyr", "plain", "gguf")


class PromptError(ValueError):
    """The prompt cannot be built (bad template, nothing fits the context)."""


class Tokenizer(Protocol):
    """What the prompt builder needs from a model's vocabulary (llm.py provides it)."""

    model_name: str
    chat_template: str | None
    # Text of every control token, mapped to its id: recognised in template text only.
    special_tokens: dict[str, int]
    # Markup-like tokens the tokenizer matches even in plain text (llama.cpp's user-defined
    # tokens); None if there are none.
    guarded_pattern: re.Pattern | None
    bos_token: str
    eos_token: str
    add_bos: bool

    def tokenize(self, text: str) -> list[int]:
        """Tokens of plain text, never parsing special tokens, never adding BOS."""
        ...


@dataclass(frozen=True)
class Message:
    role: str  # "system", "user" or "assistant"
    content: str


@dataclass(frozen=True)
class Piece:
    text: str
    trusted: bool


@dataclass(frozen=True)
class Rendered:
    pieces: tuple[Piece, ...]
    stop: tuple[str, ...]

    @property
    def text(self) -> str:
        return "".join(piece.text for piece in self.pieces)


class ChatFormat(Protocol):
    name: str

    def render(self, messages: Sequence[Message]) -> Rendered: ...


def _trusted(text: str) -> Piece:
    return Piece(text, True)


def _untrusted(text: str) -> Piece:
    return Piece(text, False)


class ChatMLFormat:
    """`<|im_start|>role\\ncontent<|im_end|>\\n`, the format of Qwen2.5 and SmolLM2 instruct."""

    name = "chatml"

    def render(self, messages: Sequence[Message]) -> Rendered:
        pieces: list[Piece] = []
        for message in messages:
            pieces += [
                _trusted(f"<|im_start|>{message.role}\n"),
                _untrusted(message.content),
                _trusted("<|im_end|>\n"),
            ]
        pieces.append(_trusted("<|im_start|>assistant\n"))
        return Rendered(tuple(pieces), stop=("<|im_end|>", "<|im_start|>"))


class ZephyrFormat:
    """`<|user|>\\ncontent</s>\\n`: what TinyLlama-1.1B-Chat-v1.0 was trained on."""

    name = "zephyr"

    def __init__(self, eos_token: str = "</s>") -> None:
        self.eos_token = eos_token

    def render(self, messages: Sequence[Message]) -> Rendered:
        pieces: list[Piece] = []
        for message in messages:
            pieces += [
                _trusted(f"<|{message.role}|>\n"),
                _untrusted(message.content),
                _trusted(f"{self.eos_token}\n"),
            ]
        pieces.append(_trusted("<|assistant|>\n"))
        return Rendered(tuple(pieces), stop=(self.eos_token, "<|user|>", "<|system|>"))


class PlainFormat:
    """A few-shot `User:`/`Assistant:` dialogue for base models that never learned a chat format.

    The examples teach the model the length and tone of an answer; the stop strings end the
    reply where a base model would go on to write the user's next line itself.
    """

    name = "plain"
    examples = (
        Message("user", "What is the capital of Italy?"),
        Message("assistant", "Rome."),
        Message("user", "How many legs does a spider have?"),
        Message("assistant", "A spider has eight legs."),
    )

    def render(self, messages: Sequence[Message]) -> Rendered:
        pieces: list[Piece] = []
        system = [m for m in messages if m.role == "system"]
        for message in system:
            pieces += [_untrusted(message.content), _trusted("\n\n")]
        for message in (*self.examples, *[m for m in messages if m.role != "system"]):
            speaker = "User" if message.role == "user" else "Assistant"
            # A newline in someone's text must not open a fake turn of its own.
            content = " ".join(message.content.split())
            pieces += [_trusted(f"{speaker}: "), _untrusted(content), _trusted("\n")]
        pieces.append(_trusted("Assistant:"))
        return Rendered(tuple(pieces), stop=("\nUser:", "\nAssistant:", "\n\n", "User:"))


class JinjaFormat:
    """A Hugging Face style Jinja chat template (from the GGUF or a file), sandboxed.

    Message contents are replaced by sentinels before rendering and put back afterwards as
    untrusted pieces, so the template can never be tricked into treating them as markup.
    """

    _SENTINEL = "\ue000{}\ue001"
    _SENTINEL_RE = re.compile("\ue000(\\d+)\ue001")

    def __init__(self, template: str, bos_token: str, eos_token: str, name: str = "gguf") -> None:
        self.name = name
        self.bos_token = bos_token
        self.eos_token = eos_token
        environment = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
        environment.globals["raise_exception"] = _raise_template_exception
        try:
            self.template = environment.from_string(template)
        except TemplateError as error:
            raise PromptError(f"chat template does not compile: {error}") from None

    def render(self, messages: Sequence[Message]) -> Rendered:
        placeholders = [
            {"role": m.role, "content": self._SENTINEL.format(i)} for i, m in enumerate(messages)
        ]
        try:
            text = self.template.render(
                messages=placeholders,
                add_generation_prompt=True,
                bos_token=self.bos_token,
                eos_token=self.eos_token,
            )
        except TemplateError as error:
            raise PromptError(f"chat template failed: {error}") from None
        pieces: list[Piece] = []
        position = 0
        for match in self._SENTINEL_RE.finditer(text):
            if match.start() > position:
                pieces.append(_trusted(text[position : match.start()]))
            pieces.append(_untrusted(messages[int(match.group(1))].content))
            position = match.end()
        if position < len(text):
            pieces.append(_trusted(text[position:]))
        stop = (self.eos_token,) if self.eos_token else ()
        return Rendered(tuple(pieces), stop=stop)


def _raise_template_exception(message: str) -> None:
    raise TemplateError(message)


# TinyLlama-1.1B-Chat was tuned on Zephyr's format, whatever its name suggests.
_ZEPHYR_NAME = re.compile(r"(tinyllama.*chat|zephyr)", re.IGNORECASE)
_INSTRUCT_NAME = re.compile(r"(chat|instruct|[-_ ]it\b|assistant|hermes)", re.IGNORECASE)


def select_format(setting: str, tokenizer: Tokenizer) -> ChatFormat:
    """Pick the chat format for `prompt.template` (auto, chatml, zephyr, plain, gguf, or a file)."""
    if setting == "chatml":
        return ChatMLFormat()
    if setting == "zephyr":
        return ZephyrFormat(tokenizer.eos_token or "</s>")
    if setting == "plain":
        return PlainFormat()
    if setting == "gguf":
        if not tokenizer.chat_template:
            raise PromptError(
                "prompt.template: 'gguf' chosen but the model has no tokenizer.chat_template"
            )
        return JinjaFormat(tokenizer.chat_template, tokenizer.bos_token, tokenizer.eos_token)
    if setting == "auto":
        if tokenizer.chat_template:
            return JinjaFormat(tokenizer.chat_template, tokenizer.bos_token, tokenizer.eos_token)
        if _ZEPHYR_NAME.search(tokenizer.model_name):
            return ZephyrFormat(tokenizer.eos_token or "</s>")
        if "<|im_start|>" in tokenizer.special_tokens or _INSTRUCT_NAME.search(tokenizer.model_name):
            return ChatMLFormat()
        return PlainFormat()
    path = Path(setting).expanduser()
    try:
        template = path.read_text(encoding="utf-8")
    except OSError as error:
        raise PromptError(f"prompt.template: cannot read template file {path}: {error}") from None
    return JinjaFormat(template, tokenizer.bos_token, tokenizer.eos_token, name=str(path))


@dataclass(frozen=True)
class Prompt:
    tokens: tuple[int, ...]
    text: str
    stop: tuple[str, ...]
    # Ids whose positions hold special tokens (for display only).
    special_positions: frozenset[int]
    dropped_turns: int = 0
    trimmed_chars: int = 0
    # What the reply must look like: a llama.cpp grammar (GBNF) for a local model, OpenAI
    # `tools` for a server; set for the turns that may act on the home.
    grammar: str | None = None
    tools: tuple = ()


def looks_like_markup(text: str) -> bool:
    stripped = text.strip()
    return len(stripped) > 2 and stripped[0] in "<[" and stripped[-1] in ">]"


def special_pattern(special_tokens: dict[str, int]) -> re.Pattern | None:
    """A regex matching any special token's text, longest first (`<|im_end|>` before `<|im`)."""
    if not special_tokens:
        return None
    return re.compile("|".join(re.escape(t) for t in sorted(special_tokens, key=len, reverse=True)))


def tokenize_rendered(rendered: Rendered, tokenizer: Tokenizer) -> tuple[list[int], set[int]]:
    """Token ids for a rendered prompt; special tokens come from trusted text alone."""
    special_re = getattr(tokenizer, "special_pattern", None) or special_pattern(tokenizer.special_tokens)
    guarded_re = getattr(tokenizer, "guarded_pattern", None)
    tokens: list[int] = []
    special_positions: set[int] = set()
    # Runs of text between special tokens; a run is tokenized as one string, except that it is
    # cut inside any guarded token a person wrote, so that token cannot re-form.
    pending_text: list[str] = []
    cuts: list[int] = []

    def flush() -> None:
        text = "".join(pending_text)
        pending_text.clear()
        start = 0
        for cut in cuts:
            tokens.extend(tokenizer.tokenize(text[start:cut]))
            start = cut
        tokens.extend(tokenizer.tokenize(text[start:]))
        cuts.clear()

    def add_untrusted(text: str) -> None:
        offset = sum(len(t) for t in pending_text)
        if guarded_re is not None:
            for match in guarded_re.finditer(text):
                cuts.append(offset + (match.start() + match.end()) // 2)
        pending_text.append(text)

    def add_special(token_text: str) -> None:
        flush()
        special_positions.add(len(tokens))
        tokens.append(tokenizer.special_tokens[token_text])

    for piece in rendered.pieces:
        if not piece.trusted:
            add_untrusted(piece.text)
            continue
        if special_re is None:
            pending_text.append(piece.text)
            continue
        position = 0
        for match in special_re.finditer(piece.text):
            pending_text.append(piece.text[position : match.start()])
            add_special(match.group(0))
            position = match.end()
        pending_text.append(piece.text[position:])
    flush()
    bos_id = tokenizer.special_tokens.get(tokenizer.bos_token)
    if tokenizer.add_bos and bos_id is not None and (not tokens or tokens[0] != bos_id):
        tokens.insert(0, bos_id)
        special_positions = {p + 1 for p in special_positions} | {0}
    return tokens, special_positions


@dataclass
class Turn:
    user: str
    assistant: str
    cut_short: bool = False


@dataclass
class Conversation:
    """The dialogue so far, trimmed to the context window when a prompt is built."""

    turns: list[Turn] = field(default_factory=list)

    def add(self, user: str, assistant: str, cut_short: bool = False) -> None:
        if cut_short and assistant:
            # Tell the model, in the history it reads, that the listener stopped it.
            assistant = assistant.rstrip() + " …"
        self.turns.append(Turn(user, assistant, cut_short))

    def reset(self) -> None:
        self.turns.clear()


class PromptBuilder:
    """Builds token-exact prompts for one model, keeping as much history as fits."""

    def __init__(self, config: PromptConfig, tokenizer: Tokenizer, n_ctx: int, max_tokens: int):
        self.config = config
        self.tokenizer = tokenizer
        self.format = select_format(config.template, tokenizer)
        self.budget = n_ctx - max_tokens
        if self.budget < 16:
            raise PromptError(
                f"llm.n_ctx ({n_ctx}) leaves no room for a prompt after llm.max_tokens ({max_tokens})"
            )

    def messages(self, history: Sequence[Turn], user_text: str, context: str = "") -> list[Message]:
        """`context` (the home's devices, say) follows the system prompt: the same text turn after
        turn, so it stays in the KV cache. It is data, never template text: a device named
        `<|im_end|>` reaches the model as plain characters."""
        messages = []
        system = "\n\n".join(part for part in (self.config.system_prompt, context) if part)
        if system:
            messages.append(Message("system", system))
        for turn in history:
            messages += [Message("user", turn.user), Message("assistant", turn.assistant)]
        messages.append(Message("user", user_text))
        return messages

    def _prompt(self, history: Sequence[Turn], user_text: str, context: str = "") -> Prompt:
        rendered = self.format.render(self.messages(history, user_text, context))
        tokens, special_positions = tokenize_rendered(rendered, self.tokenizer)
        return Prompt(tuple(tokens), rendered.text, rendered.stop, frozenset(special_positions))

    def build(self, user_text: str, conversation: Conversation | None = None, context: str = "") -> Prompt:
        """The prompt for `user_text` after the conversation's history.

        Whole past turns are dropped oldest first until the prompt fits `n_ctx - max_tokens`;
        a user message too long even alone is cut to the start that fits, never raised as an error.
        """
        history = list(conversation.turns) if conversation else []
        trimmed_chars = 0
        if len(user_text) > self.config.max_user_chars:
            trimmed_chars = len(user_text) - self.config.max_user_chars
            user_text = user_text[: self.config.max_user_chars]
        dropped = 0
        prompt = self._prompt(history, user_text, context)
        while len(prompt.tokens) > self.budget and history:
            history.pop(0)
            dropped += 1
            prompt = self._prompt(history, user_text, context)
        if len(prompt.tokens) > self.budget:
            prompt, cut = self._cut_user_text(user_text, context)
            trimmed_chars += cut
        return Prompt(
            prompt.tokens,
            prompt.text,
            prompt.stop,
            prompt.special_positions,
            dropped_turns=dropped,
            trimmed_chars=trimmed_chars,
        )

    def _cut_user_text(self, user_text: str, context: str = "") -> tuple[Prompt, int]:
        # Binary search on the number of characters kept: token counts grow with length.
        low, high = 0, len(user_text)
        best = self._prompt([], "", context)
        if len(best.tokens) > self.budget:
            raise PromptError(
                f"the system prompt alone ({len(best.tokens)} tokens) does not fit "
                f"llm.n_ctx - llm.max_tokens ({self.budget} tokens)"
            )
        best_kept = 0
        while low <= high:
            middle = (low + high) // 2
            candidate = self._prompt([], user_text[:middle], context)
            if len(candidate.tokens) <= self.budget:
                best, best_kept = candidate, middle
                low = middle + 1
            else:
                high = middle - 1
        return best, len(user_text) - best_kept
