"""The issue's cases of made-up answers, asked of the real embedded model (Gemma 3 270M) and of
SmolLM2-135M-Instruct through the responder the daemon and `ask` build: whatever the model would
say, what is spoken is the device's own answer, or "not understood", never the invention."""

import asyncio
import datetime
import threading

import pytest

from edge_assistant.assembly import build_responder, new_home
from edge_assistant.config import PromptConfig, from_mapping
from edge_assistant.thinking.reply_guard import ReplyGuard
from edge_assistant.respond import HOME_UNREACHABLE, TOOL_INSTRUCTIONS, Response
from edge_assistant.timers import TimerScheduler, TimerStore
from tests.support.mqtt_fixtures import free_port

pytestmark = pytest.mark.slow
GUARD = ReplyGuard((PromptConfig().system_prompt, TOOL_INSTRUCTIONS))


@pytest.fixture(params=["embedded", "smollm2"])
def model(request) -> str:
    if request.param == "embedded":
        return "embedded"
    from tests.test_home_tools import smollm2_path

    return str(smollm2_path())


def config_for(model: str, tmp_path, mqtt: dict, home: dict | None = None):
    return from_mapping({
        "llm": {"model": model, "temperature": 0.0, "seed": 1, "n_ctx": 2048, "max_tokens": 48},
        "service": {"state_dir": str(tmp_path / "state")},
        "mqtt": mqtt,
        "home": home or {},
    })


def ask_all(config, questions, with_home: bool):
    """Each question asked alone, as `ask` asks it: (sentences, response, error codes)."""
    from edge_assistant.thinking.llm import load_session

    session = load_session(config)

    async def scenario():
        home = None
        if with_home:
            home = new_home(config)
            await home.start()
        scheduler = TimerScheduler(TimerStore.in_state_dir(config.state_dir()), config.timers)
        await scheduler.start()
        responder = build_responder(config, session, home=home, scheduler=scheduler)
        answers = []
        for question in questions:
            session.reset()
            response, events = Response(), []
            said = [s async for s in responder.sentences(question, threading.Event(), response,
                                                         lambda kind, data: events.append((kind, data)))]
            answers.append((said, response, [d["code"] for k, d in events if k == "error"]))
        await scheduler.close()
        if home is not None:
            await home.aclose()
        return answers

    try:
        return asyncio.run(scenario())
    finally:
        session.engine.close()


def test_without_a_broker_the_device_answers_what_it_knows(model, tmp_path):
    config = config_for(model, tmp_path, {"host": "127.0.0.1", "port": free_port()})
    before = datetime.datetime.now()
    (time_, timer, light, sum_) = ask_all(config, [
        "What time is it?", "How much time is left on my timer?", "Turn on the kitchen light",
        "What is 15 times 12?"], with_home=False)
    after = datetime.datetime.now()
    assert time_[1].source == "device"
    assert any(f"{t.hour % 12 or 12}:{t.minute:02d}" in time_[0][0] for t in (before, after)), time_[0]
    assert timer[0] == ["No timers."] and timer[1].source == "timers"
    assert light[0] == [HOME_UNREACHABLE] and light[2] == ["home_unreachable"]
    assert sum_[0] == ["15 times 12 is 180."]


def test_with_one_device_exposed_the_prompt_is_never_spoken(model, tmp_path, mosquitto, home_devices):
    home_devices(mosquitto).zigbee_light("Kitchen Light", "Kitchen")
    config = config_for(model, tmp_path, {"host": mosquitto.host, "port": mosquitto.port, "device_id": "one"},
                        {"expose": ["Kitchen"], "settle_s": 5.0})
    answers = ask_all(config, ["What is the capital of France?", "Tell me a fun fact.", "Who are you?",
                               "What should I cook tonight?"], with_home=True)
    for said, response, errors in answers:
        assert said, errors
        for sentence in said:
            assert GUARD.refusal(sentence) is None, sentence
            assert "spoken answer" not in sentence.casefold()


def test_with_nothing_exposed_no_action_or_state_is_claimed(model, tmp_path, mosquitto, home_devices):
    light = home_devices(mosquitto).zigbee_light("Kitchen Light", "Kitchen")
    config = config_for(model, tmp_path, {"host": mosquitto.host, "port": mosquitto.port, "device_id": "none"},
                        {"expose": [], "settle_s": 5.0})
    (turn_on, is_on) = ask_all(config, ["turn on the kitchen lights", "Is the kitchen light on?"], with_home=True)
    assert light.commands == [] and light.state.get("state", "OFF") == "OFF"
    assert turn_on[1].actions == [] or all(a["outcome"] == "not_exposed" for a in turn_on[1].actions)
    assert not any("are on" in s.casefold() or "turned on" in s.casefold() for s in turn_on[0]), turn_on[0]
    # The light is off: "It is on." must not be said.
    assert not any(GUARD.refusal(s) for s in is_on[0]), is_on[0]
    assert not any(s.casefold().rstrip(".!") in ("it is on", "yes", "yes, it is on") for s in is_on[0]), is_on[0]
