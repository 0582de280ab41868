"""A tool call acts the same whichever backend wrote it: a local model under the grammar, a
llama-cpp-python server that writes the call as text, or a server that answers with OpenAI
`tool_calls`. Each is asked through the responder, on the simulated home of `bench answers`;
the server is offered the tools of the home's schema."""

from __future__ import annotations

import asyncio
import json
import threading

import pytest

from edge_assistant.config import from_mapping
from edge_assistant.respond import Responder, Response
from edge_assistant.thinking.llm import load_session
from edge_assistant.thinking.tool_schema import openai_tools
from tests.support.llm_fixtures import write_tiny_gguf
from tests.test_remote import STREAM_HEAD, remote_config, stub_server  # noqa: F401 (a fixture)

REQUEST = "I need the Bedroom Fan"
CALL = {"tool": "toggle", "entity_id": "fan.bedroom_fan"}
CALL_TEXT = json.dumps(CALL)
# The call in tokens of the tiny model's vocabulary, each its own, so that its script can say it
# (llama-cpp-python reads at most 32 bytes of a token).
CALL_TOKENS = ('{"tool": "toggle", ', '"entity_id": ', '"fan.bedroom_fan"}')


@pytest.fixture(scope="module")
def calling_gguf(tmp_path_factory):
    """A tiny model that writes the call, then ends its turn."""
    assert "".join(CALL_TOKENS) == CALL_TEXT
    return write_tiny_gguf(tmp_path_factory.mktemp("calls") / "calling-chat.gguf", user_defined=CALL_TOKENS,
                           script=(*CALL_TOKENS, "<|im_end|>"))


def ask(session, tmp_path) -> tuple[list[str], Response, list[tuple[str, dict]], dict]:
    """The responder's answer to REQUEST, on a fresh simulated home; and that home's schema."""
    from edge_assistant.bench.answers import bench_config, simulated_home

    config = bench_config(from_mapping({}), tmp_path)

    async def run():
        home = await simulated_home(config)
        responder = Responder(session, home=home)
        response, events = Response(), []
        said = [s async for s in responder.sentences(REQUEST, threading.Event(), response,
                                                     lambda kind, data: events.append((kind, data)))]
        return said, response, events, home.toolbox().schema()

    return asyncio.run(run())


def acted(response: Response) -> list[tuple[str, str]]:
    return [(action["entity"], action["action"]) for action in response.actions]


def what_happened(said: list[str], response: Response, events: list[tuple[str, dict]]) -> tuple:
    """What was said, done and published, the time each action took aside."""
    return said, response.text, response.source, [
        (kind, {k: v for k, v in data.items() if k != "latency_ms"}) for kind, data in events]


@pytest.fixture(scope="module")
def local_answer(calling_gguf, tmp_path_factory):
    session = load_session(from_mapping({"llm": {"model": str(calling_gguf), "n_ctx": 4096, "max_tokens": 8,
                                                  "temperature": 0.0, "seed": 1}}))
    try:
        said, response, events, _ = ask(session, tmp_path_factory.mktemp("local"))
    finally:
        session.engine.close()
    # Under the grammar the model wrote the call, and the home acted on it.
    assert response.reply.tool_call == CALL_TEXT
    assert acted(response) == [("fan.bedroom_fan", "toggle")], response.actions
    assert said and not [data for kind, data in events if kind == "error"], events
    return what_happened(said, response, events)


def test_a_servers_tool_calls_act_like_the_local_models(local_answer, stub_server, tmp_path):  # noqa: F811
    def call_a_tool(connection, stub) -> None:
        deltas = [
            {"role": "assistant", "tool_calls": [{"index": 0, "id": "c1", "type": "function",
                                                  "function": {"name": CALL["tool"], "arguments": ""}}]},
            {"tool_calls": [{"index": 0, "function": {"arguments": '{"entity_id": '}}]},
            {"tool_calls": [{"index": 0, "function": {"arguments": json.dumps(CALL["entity_id"]) + "}"}}]},
        ]
        body = "".join(f"data: {json.dumps({'choices': [{'index': 0, 'delta': d}]})}\n\n" for d in deltas)
        body += 'data: {"choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]}\n\ndata: [DONE]\n\n'
        connection.sendall(STREAM_HEAD + body.encode())

    stub = stub_server(call_a_tool)
    session = load_session(remote_config(stub.base_url))
    said, response, events, schema = ask(session, tmp_path)
    sent = json.loads(stub.requests[0][2])
    # The request carries the tools of the home's one schema, the grammar's twin.
    assert sent["tools"] == openai_tools(schema) and sent["tool_choice"] == "auto"
    assert "fan.bedroom_fan" in sent["messages"][0]["content"]
    assert json.loads(response.reply.tool_call) == CALL
    assert acted(response) == [("fan.bedroom_fan", "toggle")]
    assert what_happened(said, response, events) == local_answer


def test_a_call_a_server_writes_as_text_acts_like_the_local_models(local_answer, calling_gguf, llama_servers,
                                                                    tmp_path):
    server = llama_servers(calling_gguf)
    session = load_session(remote_config(server.base_url, timeout_s=30.0))
    said, response, events, _ = ask(session, tmp_path)
    assert response.reply.tool_call == CALL_TEXT
    assert acted(response) == [("fan.bedroom_fan", "toggle")]
    assert what_happened(said, response, events) == local_answer
