"""The remote backend: a real llama-cpp-python server on loopback (the scripted tiny GGUF), tiny
stdlib servers that misbehave on purpose, and the daemon as a satellite with a real mosquitto."""

from __future__ import annotations

import dataclasses
import json
import logging
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Callable

import pytest

from edge_assistant.config import Config, ConfigError, LlmConfig, PromptConfig, from_mapping
from edge_assistant.thinking.chat import ChatSession, Generation, Reply
from edge_assistant.thinking.llama_engine import LlamaEngine
from edge_assistant.thinking.llm import load_session
from edge_assistant.thinking.prompt import Conversation
from edge_assistant.thinking.remote import FallbackEngine, RemoteEngine, RemoteError
from edge_assistant.thinking.remote_prompt import RemotePromptBuilder, estimate_tokens
from tests.support.timing import slack
from tests.support.llm_server_fixtures import ANSWER

# Margin for a loaded 2-core machine on top of a configured timeout.
SLACK_S = slack(2.0)
from tests.support.mqtt_fixtures import free_port

def remote_config(base_url: str, **llm) -> Config:
    values = dict(backend="openai", base_url=base_url, max_tokens=12, temperature=0.0, seed=1,
                  n_ctx=1024, connect_timeout_s=1.0, timeout_s=2.0)
    values.update(llm)
    return Config(llm=LlmConfig(**values))


def answer(session: ChatSession, text: str, cancel: threading.Event | None = None,
           on_sentence: Callable[[str], None] | None = None) -> Reply:
    prompt = session.prepare(text)
    reply = Reply(prompt, Generation())
    for sentence in session.sentences(prompt, cancel or threading.Event(), reply):
        if on_sentence is not None:
            on_sentence(sentence)
    return reply


def unused_url() -> str:
    return f"http://127.0.0.1:{free_port()}/v1"


# --- stdlib servers that misbehave --------------------------------------------------------------


class StubServer:
    """One-connection-at-a-time HTTP server on loopback whose answer is a function of the test."""

    def __init__(self, respond: Callable[[socket.socket, "StubServer"], None]) -> None:
        self.respond = respond
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.requests: list[tuple[str, dict[str, str], bytes]] = []
        self.client_gone = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def _serve(self) -> None:
        while True:
            try:
                connection, _ = self.listener.accept()
            except OSError:
                return
            with connection:
                if not self._read_request(connection):
                    continue
                try:
                    self.respond(connection, self)
                except OSError:
                    self.client_gone.set()

    def _read_request(self, connection: socket.socket) -> bool:
        data = b""
        while b"\r\n\r\n" not in data:
            received = connection.recv(65536)
            if not received:
                return False
            data += received
        head, _, body = data.partition(b"\r\n\r\n")
        lines = head.decode().split("\r\n")
        headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
        while len(body) < int(headers.get("content-length", 0)):
            body += connection.recv(65536)
        self.requests.append((lines[0], headers, body))
        return True

    def close(self) -> None:
        self.listener.close()


@pytest.fixture
def stub_server():
    servers: list[StubServer] = []

    def make(respond) -> StubServer:
        server = StubServer(respond)
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.close()


def wait_until_closed(connection: socket.socket, stub: StubServer) -> None:
    """Block until the client closes its end."""
    connection.settimeout(30)
    while connection.recv(1024):
        pass
    stub.client_gone.set()


STREAM_HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n\r\n"


def sse(content: str) -> bytes:
    chunk = {"object": "chat.completion.chunk", "model": "stub",
             "choices": [{"index": 0, "delta": {"content": content}, "finish_reason": None}]}
    return f"data: {json.dumps(chunk)}\n\n".encode()


def silent(connection, stub) -> None:
    wait_until_closed(connection, stub)


def endless(connection, stub) -> None:
    connection.sendall(STREAM_HEAD)
    while True:
        connection.sendall(sse(" word"))
        time.sleep(0.02)


def two_words_then_silence(connection, stub) -> None:
    connection.sendall(STREAM_HEAD + sse("Hello") + sse(" there"))
    wait_until_closed(connection, stub)


def two_words_then_hang_up(connection, stub) -> None:
    connection.sendall(STREAM_HEAD + sse("Hello") + sse(" there"))


# --- prompts --------------------------------------------------------------------------------


def test_estimate_runs_high_for_english_and_counts_bytes():
    assert estimate_tokens("") == 0
    assert estimate_tokens("It is sunny. Bring a hat!") == 9  # 25 bytes; real vocabularies: 7-8
    assert estimate_tokens("ü") == 1 and estimate_tokens("日本語") == 3


def test_builder_keeps_whole_turns_and_sends_what_it_measured():
    builder = RemotePromptBuilder(PromptConfig(system_prompt="Be brief."), n_ctx=200, max_tokens=60,
                                  model_name="remote")
    conversation = Conversation()
    for index in range(12):
        conversation.add(f"Question number {index} about the weather?", f"Answer number {index}: sunny.")
    prompt = builder.build("And tomorrow?", conversation)
    assert prompt.dropped_turns > 0
    assert len(prompt.tokens) <= builder.budget
    kept = conversation.turns[prompt.dropped_turns:]
    assert [m.role for m in prompt.messages] == ["system"] + ["user", "assistant"] * len(kept) + ["user"]
    assert prompt.messages[1].content == kept[0].user and prompt.messages[-1].content == "And tomorrow?"
    # The messages sent are exactly the ones whose size was measured.
    assert builder.format.render(prompt.messages).text == prompt.text
    assert builder.format.name == "server"

    long = builder.build("word " * 400, conversation)
    assert long.trimmed_chars > 0 and len(long.messages) == 2
    assert long.messages[-1].content == ("word " * 400)[: 2000 - long.trimmed_chars]
    assert builder.format.render(long.messages).text == long.text


def test_config_keys_and_errors_name_the_key(tmp_path):
    config = from_mapping({"llm": {"backend": "openai", "base_url": "https://llm.lan:8443/v1",
                                   "fallback_local": True, "timeout_s": 5}})
    assert config.llm.backend == "openai" and config.llm.timeout_s == 5.0
    with pytest.raises(ConfigError, match=r"llm\.backend"):
        from_mapping({"llm": {"backend": "cloud"}})
    with pytest.raises(ConfigError, match=r"llm\.base_url"):
        from_mapping({"llm": {"base_url": "llm-host:8000/v1"}})
    with pytest.raises(ConfigError, match=r"llm\.base_url.*api_key_file"):
        from_mapping({"llm": {"base_url": "http://user:secret@llm-host/v1"}})
    with pytest.raises(ConfigError, match=r"llm\.api_key_file.*does not exist"):
        RemoteEngine(LlmConfig(backend="openai", api_key_file=str(tmp_path / "missing")))


# --- a real server ------------------------------------------------------------------------------


def test_streams_sentences_and_keeps_the_history(scripted_server):
    session = load_session(remote_config(scripted_server.base_url))
    assert isinstance(session.engine, RemoteEngine)
    assert session.engine.info.architecture == "remote"
    sentences = []
    reply = answer(session, "What is the weather like for a picnic?", on_sentence=sentences.append)
    assert sentences == ["It is sunny.", "Bring a hat!", "It is sunny."]
    generation = reply.generation
    assert generation.text.strip().startswith(ANSWER)
    assert generation.completion_tokens == 12 and generation.finish_reason == "length"
    assert generation.prompt_tokens == len(reply.prompt.tokens) > 0
    assert generation.timings.first_token_ms > 0 and not generation.cancelled
    # The server named its model in the stream.
    assert session.engine.info.name == str(scripted_server.model)

    session.record("What is the weather like for a picnic?", reply)
    second = answer(session, "And tomorrow?")
    assert [m.role for m in second.prompt.messages] == ["system", "user", "assistant", "user"]
    assert second.prompt.messages[2].content == generation.text.strip()
    assert second.generation.text.strip().startswith(ANSWER)


def test_cancel_mid_stream_stops_at_once_and_the_server_goes_on_serving(scripted_server):
    session = load_session(remote_config(scripted_server.base_url, max_tokens=900))
    cancel = threading.Event()
    sentences = []

    def hear(sentence: str) -> None:
        sentences.append(sentence)
        cancel.set()

    reply = answer(session, "Tell me everything.", cancel, on_sentence=hear)
    assert sentences == ["It is sunny."]
    assert reply.generation.cancelled and reply.generation.finish_reason == "cancelled"
    assert reply.generation.completion_tokens < 20
    assert answer(session, "Again?").generation.text.strip().startswith(ANSWER)


@pytest.mark.slow
def test_server_killed_mid_reply_is_a_clear_error_at_once(slow_scripted_gguf, llama_servers):
    server = llama_servers(slow_scripted_gguf)
    session = load_session(remote_config(server.base_url, max_tokens=900, timeout_s=30.0))
    sentences = []
    started = time.monotonic()

    def kill_on_first(sentence: str) -> None:
        sentences.append(sentence)
        if len(sentences) == 1:
            server.kill()

    with pytest.raises(RemoteError, match=r"llm server http://127\.0\.0\.1:\d+/v1: .*mid-reply") as raised:
        answer(session, "Tell me everything.", on_sentence=kill_on_first)
    # A dead server is noticed at once, long before llm.timeout_s.
    assert time.monotonic() - started < 10, raised.value
    assert sentences[0] == "It is sunny."


# --- servers that fail ------------------------------------------------------------------------


def test_server_down_is_retried_then_reported_within_the_connect_timeout(tmp_path):
    session = load_session(remote_config(unused_url(), connect_timeout_s=1.0))
    started = time.monotonic()
    with pytest.raises(RemoteError, match=r"connection refused \(\d+ attempts in 1 s, llm\.connect_timeout_s\)") as raised:
        answer(session, "Hello?")
    elapsed = time.monotonic() - started
    assert 1.0 <= elapsed < 1.0 + SLACK_S
    attempts = int(re.search(r"\((\d+) attempts", str(raised.value)).group(1))
    assert attempts >= 3  # retried with backoff


def test_a_server_that_never_answers_fails_within_the_timeout(stub_server):
    stub = stub_server(silent)
    session = load_session(remote_config(stub.base_url, timeout_s=0.5))
    started = time.monotonic()
    with pytest.raises(RemoteError, match=r"no answer within 0\.5 s \(llm\.timeout_s\)"):
        answer(session, "Hello?")
    assert time.monotonic() - started < 0.5 + SLACK_S
    assert stub.client_gone.wait(SLACK_S)


def test_a_stream_that_stalls_or_breaks_mid_reply(stub_server):
    stalled = load_session(remote_config(stub_server(two_words_then_silence).base_url, timeout_s=0.5))
    with pytest.raises(RemoteError, match=r"no further token within 0\.5 s"):
        answer(stalled, "Hello?")
    broken = load_session(remote_config(stub_server(two_words_then_hang_up).base_url))
    with pytest.raises(RemoteError, match=r"stream ended mid-reply"):
        answer(broken, "Hello?")


def test_cancel_while_the_server_is_silent_closes_the_connection(stub_server):
    stub = stub_server(silent)
    session = load_session(remote_config(stub.base_url, timeout_s=60.0))
    cancel = threading.Event()
    threading.Timer(0.3, cancel.set).start()
    started = time.monotonic()
    reply = answer(session, "Hello?", cancel)
    assert time.monotonic() - started < SLACK_S
    assert reply.generation.cancelled and reply.generation.text == ""
    assert stub.client_gone.wait(SLACK_S), "the connection stayed open"
    assert not watchers()


def test_cancel_between_chunks_closes_the_stream(stub_server):
    stub = stub_server(endless)
    engine = RemoteEngine(remote_config(stub.base_url).llm)
    prompt = RemotePromptBuilder(PromptConfig(), 1024, 12, "stub").build("Hello?")
    cancel = threading.Event()
    result = Generation()
    pieces = []
    for piece in engine.generate(prompt, cancel, result):
        pieces.append(piece)
        if len(pieces) == 3:
            cancel.set()
    assert pieces == [" word"] * 3 and result.cancelled
    assert stub.client_gone.wait(SLACK_S), "the server kept streaming to us"
    assert not watchers(), "the watcher thread was left running"


def watchers() -> list[str]:
    return [thread.name for thread in threading.enumerate() if thread.name == "llm-stream-watch"]


def test_pings_do_not_keep_a_silent_server_waiting(stub_server):
    def pings(connection, stub) -> None:
        connection.sendall(STREAM_HEAD + b'data: {"choices": [{"index": 0, "delta": {"role": "assistant"}}]}\n\n')
        while True:
            connection.sendall(b": ping\n\n")
            time.sleep(0.05)

    stub = stub_server(pings)
    session = load_session(remote_config(stub.base_url, timeout_s=0.5))
    started = time.monotonic()
    with pytest.raises(RemoteError, match=r"no answer within 0\.5 s \(llm\.timeout_s\)"):
        answer(session, "Hello?")
    assert time.monotonic() - started < 0.5 + SLACK_S
    assert stub.client_gone.wait(SLACK_S) and not watchers()


def test_a_tool_call_streamed_slowly_is_not_a_silent_server(stub_server):
    """llm.timeout_s waits for the next token: a piece of a tool call is one, as text is."""
    timeout_s = 1.0

    def slow_call(connection, stub) -> None:
        connection.sendall(STREAM_HEAD)
        for name, arguments in (("turn_on", '{"entity_id": '), ("", '"light.kitchen"'), ("", "}")):
            delta = {"tool_calls": [{"index": 0, "function": {"name": name, "arguments": arguments}}]}
            connection.sendall(f"data: {json.dumps({'choices': [{'index': 0, 'delta': delta}]})}\n\n".encode())
            time.sleep(timeout_s * 0.6)
        connection.sendall(b'data: {"choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]}\n\n')

    engine = RemoteEngine(remote_config(stub_server(slow_call).base_url, timeout_s=timeout_s).llm)
    prompt = RemotePromptBuilder(PromptConfig(), 1024, 12, "stub").build("The kitchen light, please")
    result = Generation()
    assert list(engine.generate(prompt, None, result)) == ['{"tool": "turn_on", "entity_id": "light.kitchen"}']
    assert result.finish_reason == "tool_calls" and not watchers()


def test_request_key_usage_and_stream_parsing(stub_server, tmp_path, caplog):
    key = "sk-test-0123456789"
    (tmp_path / "key").write_text(key + "\n")

    def stream(connection, stub) -> None:
        chunks = [
            ": ping\r\n\r\n",
            'data: {"model": "stub-model", "choices": [{"index": 0, "delta": {"role": "assistant"}}]}\r\n\r\n',
            *(sse(word).decode() for word in ("Hi", " there.", " Bye")),
            'data: {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}\n\n',
            'data: {"choices": [], "usage": {"prompt_tokens": 31, "completion_tokens": 3,'
            ' "prompt_tokens_details": {"cached_tokens": 20}}, "timings": {"prompt_ms": 12.5}}\n\n',
            "data: [DONE]\n\n",
        ]
        body = "".join(chunks).encode()
        # Chunked, cut at odd places: lines arrive split across chunks.
        connection.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                           b"Transfer-Encoding: chunked\r\n\r\n")
        for start in range(0, len(body), 37):
            piece = body[start : start + 37]
            connection.sendall(b"%x\r\n%s\r\n" % (len(piece), piece))
        connection.sendall(b"0\r\n\r\n")

    stub = stub_server(stream)
    caplog.set_level(logging.DEBUG)
    session = load_session(remote_config(stub.base_url, remote_model="stub-model", api_key_file=str(tmp_path / "key"),
                                         stop=("Goodbye",), top_k=7))
    reply = answer(session, "Say hi")
    assert reply.sentences == ["Hi there.", "Bye"]
    generation = reply.generation
    assert (generation.prompt_tokens, generation.completion_tokens, generation.cached_tokens) == (31, 3, 20)
    assert generation.finish_reason == "stop" and generation.timings.prompt_ms == 12.5

    request_line, headers, body = stub.requests[0]
    assert request_line == "POST /v1/chat/completions HTTP/1.1"
    assert headers["authorization"] == f"Bearer {key}"
    sent = json.loads(body)
    assert sent["model"] == "stub-model" and sent["stream"] is True
    assert sent["stream_options"] == {"include_usage": True}
    assert sent["messages"][-1] == {"role": "user", "content": "Say hi"}
    assert sent["messages"][0]["role"] == "system"
    assert (sent["max_tokens"], sent["stop"], sent["top_k"], sent["seed"]) == (12, ["Goodbye"], 7, 1)
    assert key not in caplog.text and key not in repr(session.engine)


def test_http_errors_say_what_the_server_said(stub_server):
    def unauthorized(connection, stub) -> None:
        body = json.dumps({"error": {"message": "Invalid API key", "type": "auth"}}).encode()
        connection.sendall(b"HTTP/1.1 401 Unauthorized\r\nContent-Type: application/json\r\n"
                           b"Content-Length: %d\r\n\r\n%s" % (len(body), body))

    session = load_session(remote_config(stub_server(unauthorized).base_url))
    with pytest.raises(RemoteError, match=r"HTTP 401 Unauthorized: Invalid API key \(check llm\.api_key_file\)"):
        answer(session, "Hello?")


# --- fallback to the local model -------------------------------------------------------------


def test_fallback_answers_with_the_local_model_and_says_so(scripted_gguf, scripted_server):
    config = remote_config(unused_url(), model=str(scripted_gguf), fallback_local=True, connect_timeout_s=0.3)
    session = load_session(config)
    engine = session.engine
    assert isinstance(engine, FallbackEngine) and isinstance(engine.local.engine, LlamaEngine)
    told = []
    engine.on_event = told.append
    reply = answer(session, "What is the weather like?")
    assert reply.generation.text.strip().startswith(ANSWER)
    assert engine.info.name == engine.local.engine.info.name == "tiny-chat"
    assert [event.data["code"] for event in told] == ["llm_fallback"]
    assert "connection refused" in told[0].data["message"] and "tiny-chat" in told[0].data["message"]
    # The local prompt carried the same history, measured by the local tokenizer.
    session.record("What is the weather like?", reply)
    second = answer(session, "And tomorrow?")
    assert second.generation.prompt_tokens > reply.generation.prompt_tokens
    assert len(told) == 2  # each turn tries the server first

    # With the server back, the same session answers from it again.
    engine.remote = RemoteEngine(replace(config.llm, base_url=scripted_server.base_url))
    third = answer(session, "And the day after?")
    assert third.generation.text.strip().startswith(ANSWER)
    assert engine.info.architecture == "remote" and len(told) == 2
    session.engine.close()


def test_no_fallback_once_the_reply_has_begun(scripted_gguf, stub_server):
    config = remote_config(stub_server(two_words_then_hang_up).base_url, model=str(scripted_gguf),
                           fallback_local=True)
    session = load_session(config)
    told = []
    session.engine.on_event = told.append
    with pytest.raises(RemoteError, match="mid-reply"):
        answer(session, "Hello?")
    assert told == []
    session.engine.close()


def test_cli_ask_json_through_the_server(scripted_server, tmp_path):
    config = tmp_path / "satellite.toml"
    config.write_text(f'[llm]\nbackend = "openai"\nbase_url = "{scripted_server.base_url}"\n'
                      "max_tokens = 8\ntemperature = 0.0\n")
    done = subprocess.run([sys.executable, "-m", "edge_assistant.cli", "-c", str(config), "ask", "--json", "Weather?"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["text"].startswith(ANSWER)
    assert (result["architecture"], result["prompt_format"]) == ("remote", "server")
    assert result["model_path"] == scripted_server.base_url

    down = tmp_path / "down.toml"
    down.write_text(f'[llm]\nbackend = "openai"\nbase_url = "{unused_url()}"\nconnect_timeout_s = 0.3\n')
    failed = subprocess.run([sys.executable, "-m", "edge_assistant.cli", "-c", str(down), "ask", "Weather?"],
                            capture_output=True, text=True, timeout=120)
    assert failed.returncode != 0
    assert "connection refused" in failed.stderr and "Traceback" not in failed.stderr


# --- the daemon as a satellite ------------------------------------------------------------------

DEVICE = "satellite"
PREFIX = f"edge-assistant/{DEVICE}"


def satellite_config(tmp_path: Path, broker, base_url: str, llm_extra: str = "") -> str:
    return f"""
[audio]
input_device = "none"
[llm]
backend = "openai"
base_url = "{base_url}"
temperature = 0.0
seed = 1
connect_timeout_s = 1.0
# A fresh server's first reply is slow on a busy machine.
timeout_s = 10.0
{llm_extra}
[mqtt]
host = "{broker.host}"
port = {broker.port}
device_id = "{DEVICE}"
reconnect_max_s = 1.0
metrics_interval_s = 0
[service]
state_dir = "{tmp_path / 'state'}"
earcons = false
"""


def ask(probe, request_id: str, text: str = "What is the weather like?", speak: bool = False) -> None:
    probe.publish(f"{PREFIX}/cmd/ask", json.dumps({"text": text, "id": request_id, "speak": speak}))


def of(request_id: str):
    return lambda message: message.json().get("id") == request_id


@pytest.mark.slow
def test_satellite_daemon_survives_the_server_down_killed_and_back(
    tmp_path, mosquitto, mqtt_probe, slow_scripted_gguf, llama_servers, daemons  # noqa: F811
):
    server = llama_servers(slow_scripted_gguf, start=False)
    probe = mqtt_probe(mosquitto)
    probe.subscribe(f"{PREFIX}/#")
    daemon = daemons(tmp_path, satellite_config(tmp_path, mosquitto, server.base_url, "max_tokens = 200"),
                     args=["--output", str(tmp_path / "speaker.wav")]).start()
    probe.wait_for(f"{PREFIX}/state", lambda m: m.text == "idle", timeout=120)
    try:
        # Down at start: a clear error within llm.connect_timeout_s, then idle again.
        mark = len(probe.messages)
        sent = time.monotonic()
        ask(probe, "q1")
        error = probe.wait_for(f"{PREFIX}/event/error", of("q1"), since=mark, timeout=30).json()
        assert time.monotonic() - sent < 1.0 + SLACK_S + 1.0
        assert error["code"] == "llm_failed"
        assert error["message"].startswith(f"llm server {server.base_url}: connection refused"), error
        probe.wait_for(f"{PREFIX}/event/state", lambda m: m.json()["state"] == "idle", since=mark, timeout=30)

        # Killed mid-reply: an error at once, then idle again.
        server.start()
        mark = len(probe.messages)
        ask(probe, "q2", "Tell me everything.")
        probe.wait_for(f"{PREFIX}/event/reply_sentence", of("q2"), since=mark, timeout=60)
        server.kill()
        killed = time.monotonic()
        error = probe.wait_for(f"{PREFIX}/event/error", of("q2"), since=mark, timeout=30).json()
        assert time.monotonic() - killed < 10.0 + SLACK_S  # within llm.timeout_s
        assert error["code"] == "llm_failed" and "mid-reply" in error["message"], error
        probe.wait_for(f"{PREFIX}/event/state", lambda m: m.json()["state"] == "idle", since=mark, timeout=30)

        # Back again: answered.
        server.start()
        mark = len(probe.messages)
        ask(probe, "q3")
        reply = probe.wait_for(f"{PREFIX}/event/reply", of("q3"), since=mark, timeout=60).json()
        assert reply["text"].startswith(ANSWER) and reply["model"] == str(slow_scripted_gguf)
        assert not [m for m in probe.messages[mark:] if m.topic.endswith("/event/error")]
    except AssertionError as failure:
        raise AssertionError(f"{failure}\n{daemon.log()[-3000:]}") from None
    daemon.signal(signal.SIGTERM)
    assert daemon.wait(30) == 0, daemon.log()


@pytest.mark.slow
def test_satellite_daemon_falls_back_to_its_local_model(
    tmp_path, mosquitto, mqtt_probe, scripted_gguf, llama_servers, daemons  # noqa: F811
):
    server = llama_servers(scripted_gguf, start=False)
    probe = mqtt_probe(mosquitto)
    probe.subscribe(f"{PREFIX}/#")
    daemon = daemons(tmp_path, satellite_config(
        tmp_path, mosquitto, server.base_url, f'max_tokens = 12\nmodel = "{scripted_gguf}"\nfallback_local = true',
    ), args=["--output", str(tmp_path / "speaker.wav")]).start()
    probe.wait_for(f"{PREFIX}/state", lambda m: m.text == "idle", timeout=120)
    try:
        ask(probe, "f1")
        reply = probe.wait_for(f"{PREFIX}/event/reply", of("f1"), timeout=60).json()
        assert reply["text"].startswith(ANSWER) and reply["model"] == "tiny-chat"
        notice = probe.wait_for(f"{PREFIX}/event/error", of("f1")).json()
        assert notice["code"] == "llm_fallback" and "connection refused" in notice["message"]
        assert notice["turn_id"] == reply["turn_id"]
        assert not [m for m in probe.on(f"{PREFIX}/event/error") if m.json()["code"] == "llm_failed"]

        server.start()
        mark = len(probe.messages)
        ask(probe, "f2")
        reply = probe.wait_for(f"{PREFIX}/event/reply", of("f2"), since=mark, timeout=60).json()
        assert reply["text"].startswith(ANSWER) and reply["model"] == str(scripted_gguf)
        assert not [m for m in probe.messages[mark:] if m.topic.endswith("/event/error")]
    except AssertionError as failure:
        raise AssertionError(f"{failure}\n{daemon.log()[-3000:]}") from None
    daemon.signal(signal.SIGTERM)
    assert daemon.wait(30) == 0, daemon.log()


def test_home_tools_go_to_the_server_and_its_tool_call_comes_back_as_ours(stub_server):
    from edge_assistant.home.tools import ToolCall
    from edge_assistant.thinking.tool_output import ToolOutputReader
    from edge_assistant.thinking.tool_schema import openai_tools
    from tests.test_home_tools import toolbox as sample_toolbox

    def call_a_tool(connection, stub) -> None:
        deltas = [
            {"role": "assistant", "tool_calls": [{"index": 0, "id": "c1", "type": "function",
                                                  "function": {"name": "turn_on", "arguments": ""}}]},
            {"tool_calls": [{"index": 0, "function": {"arguments": '{"entity_id": '}}]},
            {"tool_calls": [{"index": 0, "function": {"arguments": json.dumps(light) + "}"}}]},
        ]
        body = "".join(f"data: {json.dumps({'choices': [{'index': 0, 'delta': d}]})}\n\n" for d in deltas)
        body += 'data: {"choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]}\n\ndata: [DONE]\n\n'
        connection.sendall(STREAM_HEAD + body.encode())

    stub = stub_server(call_a_tool)
    session = load_session(remote_config(stub.base_url))
    toolbox, _ = sample_toolbox()
    light = next(entity_id for entity_id in toolbox.entities if entity_id.startswith("light."))
    prompt = dataclasses.replace(session.prepare("lights please", toolbox.prompt_context()),
                                 tools=tuple(openai_tools(toolbox.schema())))
    reply = Reply(prompt, Generation())
    assert list(session.sentences(prompt, None, reply)) == []  # nothing to speak: a tool call
    assert toolbox.parse(reply.tool_call) == ToolCall("turn_on", light, {})
    sent = json.loads(stub.requests[0][2])
    assert sent["tool_choice"] == "auto"
    assert {tool["function"]["name"] for tool in sent["tools"]} >= {"turn_on", "turn_off"}
    assert light in sent["messages"][0]["content"]
    assert reply.generation.finish_reason == "tool_calls"
    assert ToolOutputReader().feed("plain words") == "plain words"
