"""The factory of chat sessions: the backend that `llm.backend` names, its model loaded.

`local` is llama.cpp on a GGUF (llama_engine.py); `openai` is a server (remote.py), optionally
with the local model as a fallback. Both give a `chat.ChatSession`, so nothing past this point
knows which one answers.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path
from typing import Callable

from .. import models
from .chat import ChatSession
from ..config import Config
from ..events import Event
from .llama_engine import LlamaEngine
from .prompt import PromptBuilder
from .remote import FallbackEngine, RemoteEngine
from .remote_prompt import RemotePromptBuilder

log = logging.getLogger(__name__)


def load_session(config: Config, *, model_path: Path | None = None,
                 on_event: Callable[[Event], None] | None = None) -> ChatSession:
    """The engine and prompt builder that `config` describes, model loaded: `model_path`,
    else llm.model resolved here. `on_event` hears of a remote backend falling back to the
    local model (on the generating thread)."""
    if config.llm.backend == "openai":
        return _remote_session(config, model_path, on_event)
    if model_path is None:
        model_path = models.resolve_llm(config.llm.model, config.state_dir())
    engine = LlamaEngine(config.llm, model_path)
    template = config.prompt.template
    if template == "auto" and not engine.tokenizer.chat_template:
        template = models.template_hint(config.llm.model)
    prompt_config = replace(config.prompt, template=template)
    builder = PromptBuilder(prompt_config, engine.tokenizer, config.llm.n_ctx, config.llm.max_tokens)
    return ChatSession(engine, builder)


def _remote_session(config: Config, model_path: Path | None,
                    on_event: Callable[[Event], None] | None) -> ChatSession:
    """The session of a satellite: the server's model, and the local one if it may fall back."""
    remote = RemoteEngine(config.llm)
    builder = RemotePromptBuilder(config.prompt, config.llm.n_ctx, config.llm.max_tokens, remote.info.name)
    engine: RemoteEngine | FallbackEngine = remote
    if config.llm.fallback_local:
        local = load_session(replace(config, llm=replace(config.llm, backend="local")), model_path=model_path)
        engine = FallbackEngine(remote, local, on_event=on_event)
    log.info("replies from %s%s", remote.url,
             " (local model as fallback)" if config.llm.fallback_local else "")
    return ChatSession(engine, builder)
