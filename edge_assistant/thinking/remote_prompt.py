"""A prompt for an OpenAI-compatible server: the messages that fit, measured by estimate.

The server renders the chat template, so what goes over the wire is the message list that
`RemotePromptBuilder` kept: the system prompt, the history that fits, the user text. Without
the server's vocabulary that fit is an estimate (`estimate_tokens`): UTF-8 bytes / 3, plus
ChatML's markup around each message. Current vocabularies spend about 4 bytes a token on
English, so the estimate runs some 25 % high and a trimmed prompt fits the server's context.
A tokenize round trip per candidate prompt (trimming tries several) would cost more than the
exact count is worth, and not every server offers one.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, replace
from typing import Sequence

from .chat import LlmError
from ..config import PromptConfig
from .prompt import ChatMLFormat, Conversation, Message, Prompt, PromptBuilder, Turn

BYTES_PER_TOKEN = 3


def estimate_tokens(text: str) -> int:
    """An upper estimate of the tokens of `text` in any current vocabulary."""
    return -(-len(text.encode("utf-8")) // BYTES_PER_TOKEN)


class EstimatingTokenizer:
    """The `prompt.Tokenizer` of a model we cannot see: lengths are estimates, ids are zeros."""

    chat_template = None
    # Counted as one token each, as a real template's control tokens are.
    special_tokens = {"<|im_start|>": 1, "<|im_end|>": 2}
    guarded_pattern = None
    bos_token = ""
    eos_token = ""
    add_bos = False

    def __init__(self, model_name: str) -> None:
        self.model_name = model_name

    def tokenize(self, text: str) -> list[int]:
        return [0] * estimate_tokens(text) if text else []

    def piece(self, token_id: int) -> str:
        raise LlmError(
            "token ids are not known with llm.backend = 'openai': the server tokenizes, "
            "and prompts are measured by estimate"
        )


class ServerFormat(ChatMLFormat):
    """How a prompt is measured: the server applies its own template, so ChatML stands in for
    it (its markup costs about what other templates' does per message)."""

    name = "server"


@dataclass(frozen=True)
class RemotePrompt(Prompt):
    # What is sent: the system prompt, the history kept and the (possibly cut) user text.
    messages: tuple[Message, ...] = ()


class RemotePromptBuilder(PromptBuilder):
    """Trims the history like `PromptBuilder`, by estimated token counts, and keeps the messages."""

    def __init__(self, config: PromptConfig, n_ctx: int, max_tokens: int, model_name: str) -> None:
        # prompt.template does not apply: the server renders its own.
        super().__init__(replace(config, template="chatml"), EstimatingTokenizer(model_name),
                         n_ctx, max_tokens)
        self.format = ServerFormat()

    def build(self, user_text: str, conversation: Conversation | None = None, context: str = "") -> RemotePrompt:
        prompt = super().build(user_text, conversation, context)
        # build() drops whole turns oldest first and cuts the user text to a prefix, so its
        # counts say exactly which messages it kept.
        history = list(conversation.turns)[prompt.dropped_turns:] if conversation else []
        kept = user_text[: len(user_text) - prompt.trimmed_chars]
        fields = {f.name: getattr(prompt, f.name) for f in dataclasses.fields(Prompt)}
        return RemotePrompt(**fields, messages=tuple(self.messages(history, kept, context)))


def dialogue(messages: Sequence[Message]) -> tuple[list[Turn], str]:
    """The history turns and the user text that a message list holds."""
    spoken = [m for m in messages if m.role != "system"]
    history = [Turn(user.content, assistant.content)
               for user, assistant in zip(spoken[:-1:2], spoken[1:-1:2])]
    return history, spoken[-1].content if spoken else ""
