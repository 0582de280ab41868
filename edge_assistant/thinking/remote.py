"""The remote LLM backend: an OpenAI-compatible chat completions server, streamed over HTTP.

A satellite (a Pi Zero in the hall) keeps its wake word, STT and TTS and sends each turn to a
stronger machine that runs llama.cpp's llama-server, llama-cpp-python's server, Ollama or vLLM.
`RemoteEngine` keeps the local engine's contract (`generate(prompt, cancel, result)` yields text
pieces and fills a `Generation`), so the pipeline, its events, barge-in and the history work the
same with either backend.

The server renders the chat template, so what goes over the wire is the message list that
`RemotePromptBuilder` kept: the system prompt, the history that fits, the user text. Without
the server's vocabulary that fit is an estimate (`estimate_tokens`): UTF-8 bytes / 3, plus
ChatML's markup around each message. Current vocabularies spend about 4 bytes a token on
English, so the estimate runs some 25 % high and a trimmed prompt fits the server's context.
A tokenize round trip per candidate prompt (trimming tries several) would cost more than the
exact count is worth, and not every server offers one.

The stream is read with http.client on the generating thread. A read blocked on the socket
cannot look at the cancel flag, so while a reply streams a watcher thread shuts the socket down
once the flag is set: the read returns at once, the connection is closed, and the server, seeing
its client gone, stops generating.
"""

from __future__ import annotations

import contextlib
import dataclasses
import http.client
import json
import logging
import socket
import ssl
import threading
import time
import urllib.parse
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

from .. import __version__
from .chat import ChatSession, Generation, LlmError, ModelInfo
from ..concurrency import Backoff
from ..config import ConfigError, LlmConfig, PromptConfig
from ..events import Event, EventType
from .prompt import ChatMLFormat, Conversation, Message, Prompt, PromptBuilder, Turn

log = logging.getLogger(__name__)

BYTES_PER_TOKEN = 3
# Pauses between connection attempts; the attempts stop at llm.connect_timeout_s.
CONNECT_BACKOFF_S = (0.1, 0.25, 0.5, 1.0)
# How often the watcher looks at the cancel flag while a reply streams.
CANCEL_POLL_S = 0.05
# Longest SSE line or error body read; a server sending more is broken.
MAX_LINE_BYTES = 1 << 20
MAX_ERROR_BYTES = 1 << 16


class RemoteError(LlmError):
    """The server cannot be reached, refused the request, or broke off the reply."""


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


def read_api_key(path: str) -> str:
    if not path:
        return ""
    file = Path(path).expanduser()
    try:
        key = file.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        raise ConfigError(f"llm.api_key_file: {file} does not exist") from None
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"llm.api_key_file: cannot read {file}: {error}") from None
    if not key:
        raise ConfigError(f"llm.api_key_file: {file} is empty")
    return key


def _describe(error: OSError, host: str) -> str:
    if isinstance(error, ConnectionRefusedError):
        return "connection refused"
    if isinstance(error, TimeoutError):
        return "no connection (timed out)"
    if isinstance(error, socket.gaierror):
        return f"cannot resolve {host}: {error.strerror or error}"
    return error.strerror or str(error) or type(error).__name__


class RemoteEngine:
    """Streams replies from an OpenAI-compatible `/chat/completions` endpoint."""

    def __init__(self, config: LlmConfig) -> None:
        self.config = config
        self.url = config.base_url.rstrip("/")
        parts = urllib.parse.urlsplit(self.url)
        try:
            port = parts.port
        except ValueError as error:
            raise ConfigError(f"llm.base_url: {error}") from None
        self.https = parts.scheme == "https"
        # https uses the system's CA certificates.
        self._tls = ssl.create_default_context() if self.https else None
        self.host = parts.hostname or ""
        self.port = port or (443 if self.https else 80)
        self.path = (parts.path or "") + "/chat/completions"
        self._api_key = read_api_key(config.api_key_file)
        self.tokenizer = EstimatingTokenizer(config.remote_model or "remote")
        self.info = ModelInfo(
            path=self.url,
            name=config.remote_model or self.url,
            architecture="remote",
            quantization="remote",
            context_length=config.n_ctx,
            size_bytes=0,
            chat_template=None,
        )
        self.closed = False

    def __repr__(self) -> str:  # never shows the key
        return f"RemoteEngine({self.url!r})"

    def close(self) -> None:
        self.closed = True

    def warm(self, tokens: list[int]) -> int:
        return 0  # the server keeps its own cache

    def request_body(self, messages: Sequence[Message], tools: Sequence[dict[str, Any]] = ()) -> dict[str, Any]:
        config = self.config
        body: dict[str, Any] = {
            "messages": [{"role": m.role, "content": m.content} for m in messages],
            "stream": True,
            "stream_options": {"include_usage": True},
            "max_tokens": config.max_tokens,
            "temperature": config.temperature,
            "top_p": config.top_p,
            # llama.cpp's samplers; its servers use them, Ollama and vLLM ignore what they lack.
            "top_k": config.top_k,
            "min_p": config.min_p,
            "repeat_penalty": config.repeat_penalty,
        }
        if config.remote_model:
            body["model"] = config.remote_model
        if config.seed >= 0:
            body["seed"] = config.seed
        if config.stop:
            body["stop"] = list(config.stop)
        if tools:
            # The home's devices as OpenAI tools; the server's model may call one or answer.
            body["tools"] = list(tools)
            body["tool_choice"] = "auto"
        return body

    def generate(
        self,
        prompt: Prompt,
        cancel: threading.Event | None = None,
        result: Generation | None = None,
    ) -> Iterator[str]:
        """Yield text pieces as the server streams them (blocking; run it in a worker thread).

        Raises `RemoteError` when the server cannot be reached within llm.connect_timeout_s,
        answers with an error, sends no token for llm.timeout_s, or breaks off the stream.
        """
        result = result if result is not None else Generation()
        if self.closed:
            raise LlmError(f"llm server {self.url}: the backend was closed")
        messages = getattr(prompt, "messages", ())
        if not messages:
            raise LlmError("a prompt for the remote backend must come from RemotePromptBuilder")
        body = json.dumps(self.request_body(messages, prompt.tools), ensure_ascii=False).encode("utf-8")
        # The server's own count replaces the estimate when it reports usage.
        result.prompt_tokens = len(prompt.tokens)
        start = time.perf_counter()
        first_piece_at: list[float] = []
        pieces = 0
        connection = None
        finished = threading.Event()
        watcher = None
        try:
            connection = self._connect(cancel)
            if connection is None:
                return
            if cancel is not None:
                watcher = threading.Thread(
                    target=_shut_down_when_cancelled, args=(connection.sock, cancel, finished),
                    name="llm-cancel-watch", daemon=True,
                )
                watcher.start()
            calls: dict[int, dict[str, str]] = {}

            def text_then_tool_call() -> Iterator[str]:
                yield from self._stream(connection, body, cancel, result, calls)
                yield from _tool_call_text(calls)  # known only once the stream has ended

            for piece in text_then_tool_call():
                if not first_piece_at:
                    first_piece_at.append(time.perf_counter())
                pieces += 1
                result.text += piece
                yield piece
                if cancel is not None and cancel.is_set():
                    return
        finally:
            finished.set()
            if watcher is not None:
                watcher.join()
            if connection is not None:
                connection.close()
            if cancel is not None and cancel.is_set():
                result.cancelled = True
                result.finish_reason = "cancelled"
            if not result.completion_tokens:
                # No usage from the server: each streamed piece is one token on the servers we know.
                result.completion_tokens = pieces
            end = time.perf_counter()
            timings = result.timings
            timings.total_ms = (end - start) * 1000
            if first_piece_at:
                timings.first_token_ms = (first_piece_at[0] - start) * 1000
                if not timings.prompt_ms:  # llama.cpp's server times its prompt evaluation itself
                    timings.prompt_ms = timings.first_token_ms
                decode_s = end - first_piece_at[0]
                if result.completion_tokens > 1 and decode_s > 0:
                    timings.tokens_per_s = (result.completion_tokens - 1) / decode_s
            if not result.finish_reason:
                result.finish_reason = (
                    "length" if result.completion_tokens >= self.config.max_tokens else "stop"
                )

    def _connect(self, cancel: threading.Event | None) -> http.client.HTTPConnection | None:
        """A connected HTTP connection, retried with backoff; None if cancelled meanwhile."""
        deadline = time.monotonic() + self.config.connect_timeout_s
        backoff = Backoff(CONNECT_BACKOFF_S)
        attempts = 0
        while True:
            if cancel is not None and cancel.is_set():
                return None
            attempts += 1
            timeout = max(0.05, deadline - time.monotonic())
            if self._tls is not None:
                connection = http.client.HTTPSConnection(self.host, self.port, timeout=timeout, context=self._tls)
            else:
                connection = http.client.HTTPConnection(self.host, self.port, timeout=timeout)
            try:
                connection.connect()
                return connection
            except ssl.SSLError as error:
                # A certificate problem does not go away by trying again.
                connection.close()
                raise RemoteError(f"llm server {self.url}: TLS failed: {error}") from None
            except OSError as error:
                connection.close()
                failure = error
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            pause = min(backoff.next(), remaining)
            if cancel is not None:
                if cancel.wait(pause):
                    return None
            else:
                time.sleep(pause)
        raise RemoteError(
            f"llm server {self.url}: {_describe(failure, self.host)} "
            f"({attempts} attempt{'s' if attempts > 1 else ''} in {self.config.connect_timeout_s:g} s, "
            "llm.connect_timeout_s)"
        )

    def _stream(
        self,
        connection: http.client.HTTPConnection,
        body: bytes,
        cancel: threading.Event | None,
        result: Generation,
        calls: dict[int, dict[str, str]],
    ) -> Iterator[str]:
        timeout_s = self.config.timeout_s
        sock = connection.sock
        got_text = False
        headers = {
            "Content-Type": "application/json",
            "Accept": "text/event-stream",
            "User-Agent": f"edge-assistant/{__version__}",
        }
        if self._api_key:
            headers["Authorization"] = f"Bearer {self._api_key}"
        # llm.timeout_s counts from the request to the first token, then between tokens; pings
        # and role-only chunks do not reset it.
        deadline = time.monotonic() + timeout_s
        try:
            sock.settimeout(timeout_s)
            connection.request("POST", self.path, body, headers)
            response = connection.getresponse()
            if response.status != 200:
                raise self._http_error(response)
            data: list[str] = []
            while True:
                sock.settimeout(max(0.01, deadline - time.monotonic()))
                raw = response.readline(MAX_LINE_BYTES)
                if cancel is not None and cancel.is_set():
                    return
                if raw and not raw.endswith(b"\n") and len(raw) >= MAX_LINE_BYTES:
                    raise RemoteError(f"llm server {self.url}: a stream line longer than {MAX_LINE_BYTES} bytes")
                line = raw.decode("utf-8", "replace").rstrip("\r\n")
                if line:
                    # "data: ..." lines make up an event; comments (": ping") and other fields
                    # are of no use here.
                    field, _, value = line.partition(":")
                    if field == "data":
                        data.append(value.removeprefix(" "))
                    continue
                # A blank line (or the end of the stream) ends one server-sent event.
                if data:
                    payload, data = "\n".join(data), []
                    if payload.strip() == "[DONE]":
                        return
                    for text in self._chunk(payload, result, calls):
                        got_text = True
                        deadline = time.monotonic() + timeout_s
                        yield text
                if not raw:
                    if result.finish_reason:
                        return  # complete, only the [DONE] is missing
                    raise RemoteError(
                        f"llm server {self.url}: the stream ended "
                        + ("mid-reply" if got_text else "before the reply")
                    )
        except TimeoutError:
            if cancel is not None and cancel.is_set():
                return
            what = "no further token" if got_text else "no answer"
            raise RemoteError(f"llm server {self.url}: {what} within {timeout_s:g} s (llm.timeout_s)") from None
        except (OSError, http.client.HTTPException) as error:
            if cancel is not None and cancel.is_set():
                return  # the watcher closed the connection
            when = "mid-reply" if got_text else "before the reply"
            reason = _describe(error, self.host) if isinstance(error, OSError) else type(error).__name__
            raise RemoteError(f"llm server {self.url}: connection lost {when} ({reason})") from None

    def _chunk(self, payload: str, result: Generation, calls: dict[int, dict[str, str]]) -> Iterator[str]:
        """The text of one `chat.completion.chunk`, its usage, finish reason and the pieces of
        tool calls (collected in `calls` by index) noted."""
        try:
            chunk = json.loads(payload)
        except ValueError:
            raise RemoteError(f"llm server {self.url}: unreadable stream data {payload[:80]!r}") from None
        if not isinstance(chunk, dict):
            raise RemoteError(f"llm server {self.url}: unexpected stream data {payload[:80]!r}")
        if chunk.get("error"):
            raise RemoteError(f"llm server {self.url}: {_error_message(chunk) or payload[:200]}")
        model = chunk.get("model")
        if not self.config.remote_model and isinstance(model, str) and model and self.info.name != model:
            self.info = replace(self.info, name=model)
        usage = chunk.get("usage")
        if isinstance(usage, dict):
            if isinstance(usage.get("prompt_tokens"), int):
                result.prompt_tokens = usage["prompt_tokens"]
            if isinstance(usage.get("completion_tokens"), int):
                result.completion_tokens = usage["completion_tokens"]
            details = usage.get("prompt_tokens_details")
            if isinstance(details, dict) and isinstance(details.get("cached_tokens"), int):
                result.cached_tokens = details["cached_tokens"]
        timings = chunk.get("timings")  # llama.cpp's server: KV cache reuse, prompt time
        if isinstance(timings, dict):
            if isinstance(timings.get("cache_n"), int):
                result.cached_tokens = timings["cache_n"]
            if isinstance(timings.get("prompt_ms"), (int, float)):
                result.timings.prompt_ms = float(timings["prompt_ms"])
        for choice in chunk.get("choices") or ():
            if not isinstance(choice, dict):
                continue
            if choice.get("finish_reason"):
                result.finish_reason = str(choice["finish_reason"])
            delta = choice.get("delta")
            if not isinstance(delta, dict):
                continue
            for call in delta.get("tool_calls") or ():
                function = call.get("function") if isinstance(call, dict) else None
                if not isinstance(function, dict):
                    continue
                index = call.get("index", 0) if isinstance(call.get("index", 0), int) else 0
                collected = calls.setdefault(index, {"name": "", "arguments": ""})
                if isinstance(function.get("name"), str):
                    collected["name"] += function["name"]
                if isinstance(function.get("arguments"), str):
                    collected["arguments"] += function["arguments"]
            text = delta.get("content")
            if isinstance(text, str) and text:
                yield text

    def _http_error(self, response: http.client.HTTPResponse) -> RemoteError:
        try:
            raw = response.read(MAX_ERROR_BYTES)
        except (OSError, http.client.HTTPException):
            raw = b""
        detail = raw.decode("utf-8", "replace").strip()
        try:
            detail = _error_message(json.loads(detail)) or detail
        except ValueError:
            pass
        message = f"llm server {self.url}: HTTP {response.status} {response.reason}"
        if detail:
            message += f": {' '.join(detail.split())[:300]}"
        if response.status in (401, 403):
            message += " (check llm.api_key_file)"
        elif response.status == 404:
            message += " (check llm.base_url and llm.remote_model)"
        return RemoteError(message)


def _tool_call_text(calls: dict[int, dict[str, str]]) -> list[str]:
    """The first tool call the server streamed, as the JSON a grammar-bound local model writes
    (``{"tool": name, ...arguments}``), so one reader handles both; arguments that are not a
    JSON object are passed on as they are, for the caller's validation to refuse."""
    if not calls:
        return []
    call = calls[min(calls)]
    try:
        arguments = json.loads(call["arguments"] or "{}")
    except ValueError:
        arguments = {"arguments": call["arguments"]}
    if not isinstance(arguments, dict):
        arguments = {"arguments": arguments}
    return [json.dumps({"tool": call["name"], **arguments}, ensure_ascii=False)]


def _error_message(payload: Any) -> str:
    """The message of an error body: OpenAI's {"error": {"message"}}, FastAPI's {"detail"}."""
    if not isinstance(payload, dict):
        return ""
    error = payload.get("error")
    if isinstance(error, dict):
        error = error.get("message")
    detail = error or payload.get("detail") or ""
    return detail if isinstance(detail, str) else json.dumps(detail)[:300]


def _shut_down_when_cancelled(sock: socket.socket, cancel: threading.Event, finished: threading.Event) -> None:
    while not finished.is_set():
        if cancel.wait(CANCEL_POLL_S):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            return


class FallbackEngine:
    """The remote engine, and the local one for turns the server fails before its first token
    (llm.fallback_local). `info` is that of the engine that answered the latest turn, so the
    `reply` event's `model` names it."""

    def __init__(self, remote: RemoteEngine, local: ChatSession, on_event: Callable[[Event], None] | None = None) -> None:
        self.remote = remote
        self.local = local
        self.config = remote.config
        self.tokenizer = remote.tokenizer
        self.answered: Any = remote
        # Told of each fallback (an `error` event "llm_fallback"); called on the generating thread.
        self.on_event = on_event

    @property
    def info(self) -> ModelInfo:
        return self.answered.info

    def close(self) -> None:
        self.remote.close()
        self.local.engine.close()

    def warm(self, tokens: list[int]) -> int:
        return 0  # the server answers first; the fallback's prompts differ anyway

    def generate(
        self,
        prompt: Prompt,
        cancel: threading.Event | None = None,
        result: Generation | None = None,
    ) -> Iterator[str]:
        result = result if result is not None else Generation()
        self.answered = self.remote
        started = False
        try:
            for piece in self.remote.generate(prompt, cancel, result):
                started = True
                yield piece
            return
        except RemoteError as error:
            if started:
                raise  # half a reply was spoken: the turn failed
            failure = error
        local = self.local.engine
        self.answered = local
        message = f"{failure}; answered by the local model {local.info.name}"
        log.warning("%s", message)
        if self.on_event is not None:
            self.on_event(Event(EventType.ERROR, {"code": "llm_fallback", "message": message}))
        result.clear()
        history, user_text = dialogue(getattr(prompt, "messages", ()))
        local_prompt = self.local.builder.build(user_text, Conversation(history))
        yield from local.generate(local_prompt, cancel, result)
