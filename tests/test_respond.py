"""Answering one request on real (tiny, scripted) GGUFs: what the device knows never reaches the
model, a home out of reach is said to be, and a reply that claims what only the device knows is
not spoken."""

import asyncio
import threading

import pytest

from edge_assistant.config import from_mapping
from edge_assistant.facts import DeviceFacts
from edge_assistant.respond import HOME_UNREACHABLE, NO_HOME, NOT_UNDERSTOOD, Responder, Response
from tests.support.llm_fixtures import write_tiny_gguf


def session_for(model) -> object:
    from edge_assistant.thinking.llm import load_session

    return load_session(from_mapping({"llm": {"model": str(model), "n_ctx": 512, "max_tokens": 24,
                                              "temperature": 0.0, "seed": 1}}))


@pytest.fixture(scope="module")
def claiming_gguf(tmp_path_factory):
    """A tiny model that answers everything with "Bring a hat! It is on." (a claim about a device)."""
    return write_tiny_gguf(tmp_path_factory.mktemp("claims") / "claims-chat.gguf",
                           script=("▁Bring", "▁a", "▁hat", "!", "▁It", "▁is", "▁on", "."))


@pytest.fixture(scope="module")
def claiming_first_gguf(tmp_path_factory):
    """A tiny model whose first sentence is the claim: "It is on. Bring a hat!"."""
    return write_tiny_gguf(tmp_path_factory.mktemp("claims-first") / "claims-first-chat.gguf",
                           script=("▁It", "▁is", "▁on", ".", "▁Bring", "▁a", "▁hat", "!"))


def answer(responder: Responder, text: str, cancel: threading.Event | None = None):
    events: list[tuple[str, dict]] = []
    response = Response()
    cancel = cancel or threading.Event()

    async def run():
        return [s async for s in responder.sentences(text, cancel, response,
                                                     lambda kind, data: events.append((kind, data)))]

    return asyncio.run(run()), response, events


def errors(events) -> list[str]:
    return [data["code"] for kind, data in events if kind == "error"]


def test_a_claim_is_replaced_by_not_understood_and_the_turn_is_not_cancelled(claiming_first_gguf):
    session = session_for(claiming_first_gguf)
    cancel = threading.Event()
    said, response, events = answer(Responder(session), "what is new?", cancel)
    assert said == [NOT_UNDERSTOOD]
    assert response.text == NOT_UNDERSTOOD and response.source == "llm"
    assert errors(events) == ["not_understood"]
    # Leaving the model early is not a barge-in: the turn goes on to say "not understood".
    assert not cancel.is_set()
    session.engine.close()


def test_a_claim_after_a_true_sentence_ends_the_reply_there(claiming_gguf):
    session = session_for(claiming_gguf)
    said, response, events = answer(Responder(session), "what should I wear?")
    assert said == ["Bring a hat!"] and response.text == "Bring a hat!"
    assert errors(events) == ["not_understood"]
    session.engine.close()


def test_a_plain_answer_is_spoken_whole(scripted_gguf):
    session = session_for(scripted_gguf)
    said, response, events = answer(Responder(session), "what is the weather like?")
    assert said[:2] == ["It is sunny.", "Bring a hat!"] and errors(events) == []
    session.engine.close()


def test_what_the_device_knows_never_reaches_the_model(claiming_gguf):
    session = session_for(claiming_gguf)
    responder = Responder(session, facts=DeviceFacts(volume=lambda: 0.5))
    for question, expected in (("What time is it?", "It is "), ("What is 15 times 12?", "15 times 12 is 180."),
                               ("what's your volume", "My volume is 50 percent.")):
        said, response, events = answer(responder, question)
        assert response.source == "device" and response.reply is None, question
        assert said[0].startswith(expected), said
        assert [kind for kind, _ in events] == ["intent"]
    session.engine.close()


def test_a_home_command_without_a_home_is_said_to_be_out_of_reach(claiming_gguf):
    session = session_for(claiming_gguf)
    for configured, expected, code in ((True, HOME_UNREACHABLE, "home_unreachable"), (False, NO_HOME, "not_understood")):
        responder = Responder(session, home_configured=configured)
        for command in ("Turn on the kitchen light", "Is the kitchen light on?"):
            said, response, events = answer(responder, command)
            assert said == [expected] and response.reply is None, command
            assert errors(events) == [code]
    session.engine.close()



@pytest.mark.parametrize("request_text, acted", [
    ("What is the opposite of hot?", False), ("What do bees make?", False),
    ("it is too warm in the bedroom, the fan please", True), ("I need the Bedroom Fan", True),
    ("it is too hot in here", True), ("is it hot in here?", False),
])
def test_a_tool_call_must_concern_a_device_the_request_mentions(tmp_path, scripted_gguf, request_text, acted):
    """What a small model did under the grammar for "what is the opposite of hot?": toggle a fan."""
    from edge_assistant.assembly import build_responder
    from edge_assistant.bench.answers import bench_config, simulated_home

    session = session_for(scripted_gguf)
    config = bench_config(from_mapping({}), tmp_path)

    async def run():
        home = await simulated_home(config)
        responder = build_responder(config, session, home=home)
        response, events = Response(), []
        said = await responder._tool_call(request_text, '{"tool": "toggle", "entity_id": "fan.bedroom_fan"}',
                                          home.toolbox(request_text), response,
                                          lambda kind, data: events.append((kind, data)),
                                          False)
        return said, response, events

    said, response, events = asyncio.run(run())
    if acted:
        assert [a["entity"] for a in response.actions] == ["fan.bedroom_fan"] and errors(events) == []
    else:
        assert said == [NOT_UNDERSTOOD] and response.actions == [] and errors(events) == ["not_understood"]
    session.engine.close()
