"""The remote LLM backend: an OpenAI-compatible chat completions server, streamed over HTTP.

A satellite (a Pi Zero in the hall) keeps its wake word, STT and TTS and sends each turn to a
stronger machine that runs llama.cpp's llama-server, llama-cpp-python's server, Ollama or vLLM.
`RemoteEngine` keeps the local engine's contract (`generate(prompt, cancel, result)` yields text
pieces and fills a `Generation`), so the pipeline, its events, barge-in and the history work the
same with either backend.

The server renders the chat template, so what goes over the wire is the message list that
remote_prompt.py's `RemotePromptBuilder` kept, measured by estimate.

The stream is read with httpx and httpx-sse on the generating thread, one connection a turn. A
read blocked on the socket can look neither at the cancel flag nor at llm.timeout_s, which
counts tokens, not bytes (a server's pings do not reset it), so a watcher thread shuts the
socket down once the flag is set or the time is up: the read returns at once, the connection is
closed, and the server, seeing its client gone, stops generating.
"""

from __future__ import annotations

import contextlib
import json
import logging
import socket
import ssl
import threading
import time
import urllib.parse
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import httpx
from httpx_sse import SSEError, ServerSentEvent, connect_sse

from .. import __version__
from .chat import ChatSession, Generation, LlmError, ModelInfo
from ..concurrency import Backoff
from ..config import ConfigError, LlmConfig
from ..events import Event, EventType
from .prompt import Conversation, Message, Prompt
from .remote_prompt import EstimatingTokenizer, dialogue
from .tool_output import StreamedToolCalls

log = logging.getLogger(__name__)

# Pauses between connection attempts; the attempts stop at llm.connect_timeout_s.
CONNECT_BACKOFF_S = (0.1, 0.25, 0.5, 1.0)
# How often the watcher looks at the cancel flag and the clock while a request is out.
CANCEL_POLL_S = 0.05
# Longest error body read; a server sending more is broken.
MAX_ERROR_BYTES = 1 << 16


class RemoteError(LlmError):
    """The server cannot be reached, refused the request, or broke off the reply."""


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


class RemoteEngine:
    """Streams replies from an OpenAI-compatible `/chat/completions` endpoint."""

    def __init__(self, config: LlmConfig) -> None:
        self.config = config
        self.url = config.base_url.rstrip("/")
        parts = urllib.parse.urlsplit(self.url)
        try:
            parts.port
        except ValueError as error:
            raise ConfigError(f"llm.base_url: {error}") from None
        self.host = parts.hostname or ""
        self.endpoint = self.url + "/chat/completions"
        self._api_key = read_api_key(config.api_key_file)
        self._client = httpx.Client(
            # One connection a turn: the watcher can close only a socket it saw being opened.
            limits=httpx.Limits(max_keepalive_connections=0),
            # https uses the system's CA certificates; a server on the LAN is reached directly,
            # whatever proxy the environment names.
            verify=ssl.create_default_context(), trust_env=False,
        )
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
        self._client.close()

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
        first_piece_at = None
        pieces = 0
        watch = _Watch(cancel, self.config.timeout_s)
        try:
            with contextlib.closing(self._pieces(body, watch, result)) as stream:
                for piece in stream:
                    first_piece_at = first_piece_at or time.perf_counter()
                    pieces += 1
                    result.text += piece
                    watch.deadline = None  # the time the caller holds a piece is not the server's
                    yield piece
                    if watch.cancelled:
                        return
                    watch.token()
        finally:
            watch.stop()
            if not result.completion_tokens:
                # No usage from the server: each streamed piece is one token on the servers we know.
                result.completion_tokens = pieces
            result.finish(start, first_piece_at, self.config.max_tokens, watch.cancelled)
            if first_piece_at is not None and not result.timings.prompt_ms:
                # llama.cpp's server times its prompt evaluation itself; others do not.
                result.timings.prompt_ms = result.timings.first_token_ms

    def _pieces(self, body: bytes, watch: _Watch, result: Generation) -> Iterator[str]:
        calls = StreamedToolCalls()
        yield from self._stream(body, watch, result, calls)
        if not watch.cancelled and calls.text():
            yield calls.text()  # a tool call is known only once the stream has ended

    def _stream(self, body: bytes, watch: _Watch, result: Generation, calls: StreamedToolCalls) -> Iterator[str]:
        got_text = False
        try:
            for event in self._events(body, watch):
                if watch.cancelled or event.data.strip() == "[DONE]":
                    return
                # Comments (": ping") and events without data are of no use here.
                pieces = calls.pieces
                for text in self._chunk(event.data, result, calls) if event.data else ():
                    got_text = True
                    yield text
                if calls.pieces != pieces:
                    watch.token()  # a tool call's pieces are tokens too
        except SSEError as error:
            raise RemoteError(f"llm server {self.url}: the reply is not an event stream ({error})") from None
        except httpx.HTTPError as error:
            if not (watch.cancelled or watch.expired):  # else the watcher closed the connection
                when = "mid-reply" if got_text else "before the reply"
                raise RemoteError(f"llm server {self.url}: connection lost {when} "
                                  f"({_describe(error, self.host)})") from None
        if watch.cancelled:
            return
        if watch.expired:
            what = "no further token" if got_text else "no answer"
            raise RemoteError(f"llm server {self.url}: {what} within {self.config.timeout_s:g} s (llm.timeout_s)")
        if not result.finish_reason:  # complete when only the [DONE] is missing
            raise RemoteError(f"llm server {self.url}: the stream ended "
                              + ("mid-reply" if got_text else "before the reply"))

    def _events(self, body: bytes, watch: _Watch) -> Iterator[ServerSentEvent]:
        """The server's events, the connection tried again with backoff until
        llm.connect_timeout_s; none when the turn is cancelled first."""
        deadline = time.monotonic() + self.config.connect_timeout_s
        backoff = Backoff(CONNECT_BACKOFF_S)
        attempts = 0
        while not (watch.cancelled or watch.expired):
            attempts += 1
            timeout = httpx.Timeout(None, connect=max(0.05, deadline - time.monotonic()))
            try:
                with connect_sse(self._client, "POST", self.endpoint, content=body, headers=self._headers(),
                                 timeout=timeout, extensions={"trace": watch.trace}) as source:
                    if source.response.status_code != 200:
                        raise self._http_error(source.response)
                    yield from source.iter_sse()
                    return
            except (httpx.ConnectError, httpx.ConnectTimeout) as error:
                failure = error
                if isinstance(_os_error(error), ssl.SSLError):
                    # A certificate problem does not go away by trying again.
                    raise RemoteError(f"llm server {self.url}: TLS failed: {_os_error(error)}") from None
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise RemoteError(
                    f"llm server {self.url}: {_describe(failure, self.host)} "
                    f"({attempts} attempt{'s' if attempts > 1 else ''} in {self.config.connect_timeout_s:g} s, "
                    "llm.connect_timeout_s)")
            if watch.wait(min(backoff.next(), remaining)):
                return

    def _headers(self) -> dict[str, str]:
        headers = {"Content-Type": "application/json", "User-Agent": f"edge-assistant/{__version__}"}
        if self._api_key:
            headers["Authorization"] = f"Bearer {self._api_key}"
        return headers

    def _chunk(self, payload: str, result: Generation, calls: StreamedToolCalls) -> Iterator[str]:
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
            calls.add(delta.get("tool_calls"))
            text = delta.get("content")
            if isinstance(text, str) and text:
                yield text

    def _http_error(self, response: httpx.Response) -> RemoteError:
        raw = b""
        with contextlib.suppress(httpx.HTTPError):
            for part in response.iter_bytes():
                raw += part
                if len(raw) >= MAX_ERROR_BYTES:
                    break
        detail = raw[:MAX_ERROR_BYTES].decode("utf-8", "replace").strip()
        try:
            detail = _error_message(json.loads(detail)) or detail
        except ValueError:
            pass
        message = f"llm server {self.url}: HTTP {response.status_code} {response.reason_phrase}"
        if detail:
            message += f": {' '.join(detail.split())[:300]}"
        if response.status_code in (401, 403):
            message += " (check llm.api_key_file)"
        elif response.status_code == 404:
            message += " (check llm.base_url and llm.remote_model)"
        return RemoteError(message)


class _Watch:
    """The watcher of one request: shuts its socket down once the turn is cancelled, or once no
    token came for llm.timeout_s since the connection or the last token, so that a read blocked
    on the socket returns. `trace`, the request's httpcore trace hook, hands it each socket."""

    def __init__(self, cancel: threading.Event | None, timeout_s: float) -> None:
        self.cancel = cancel
        self.timeout_s = timeout_s
        # When the time for the next token is up; None while nothing is awaited.
        self.deadline: float | None = None
        self.expired = False
        self._closing = False
        self._sock: socket.socket | None = None
        self._lock = threading.Lock()
        self._finished = threading.Event()
        self._thread = threading.Thread(target=self._run, name="llm-stream-watch", daemon=True)
        self._thread.start()

    @property
    def cancelled(self) -> bool:
        return self.cancel is not None and self.cancel.is_set()

    def token(self) -> None:
        self.deadline = time.monotonic() + self.timeout_s

    def trace(self, event: str, info: dict[str, Any]) -> None:
        if event not in ("connection.connect_tcp.complete", "connection.start_tls.complete"):
            return
        sock = info["return_value"].get_extra_info("socket")
        with self._lock:
            self._sock = sock
            closing = self._closing
        if event == "connection.connect_tcp.complete":
            self.token()  # llm.timeout_s counts from the request on
        if closing:
            _shut_down(sock)

    def wait(self, seconds: float) -> bool:
        """A pause between attempts; True when the turn was cancelled meanwhile."""
        if self.cancel is None:
            time.sleep(seconds)
            return False
        return self.cancel.wait(seconds)

    def stop(self) -> None:
        self._finished.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._finished.is_set():
            (self.cancel or self._finished).wait(CANCEL_POLL_S)
            deadline = self.deadline
            self.expired = deadline is not None and time.monotonic() >= deadline and not self._finished.is_set()
            if self.cancelled or self.expired:
                with self._lock:
                    self._closing = True  # a socket opened after this is shut down at once
                    sock = self._sock
                if sock is not None:
                    _shut_down(sock)
                return


def _shut_down(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)


def _os_error(error: BaseException | None) -> BaseException | None:
    """The socket's error under an httpx one (httpx wraps httpcore's, which wraps the OSError)."""
    while error is not None and not isinstance(error, OSError):
        error = error.__cause__ or error.__context__
    return error


def _describe(error: BaseException, host: str) -> str:
    cause = _os_error(error)
    if isinstance(cause, ConnectionRefusedError):
        return "connection refused"
    if isinstance(error, httpx.ConnectTimeout) or isinstance(cause, TimeoutError):
        return "no connection (timed out)"
    if isinstance(cause, socket.gaierror):
        return f"cannot resolve {host}: {cause.strerror or cause}"
    if isinstance(cause, OSError):
        return cause.strerror or str(cause) or type(cause).__name__
    return str(error) or type(error).__name__


def _error_message(payload: Any) -> str:
    """The message of an error body: OpenAI's {"error": {"message"}}, FastAPI's {"detail"}."""
    if not isinstance(payload, dict):
        return ""
    error = payload.get("error")
    if isinstance(error, dict):
        error = error.get("message")
    detail = error or payload.get("detail") or ""
    return detail if isinstance(detail, str) else json.dumps(detail)[:300]



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
