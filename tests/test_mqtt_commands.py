"""Command parsing, Hermes mapping, topics and Home Assistant discovery payloads, without a broker."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pytest

from edge_assistant.config import MqttConfig
from edge_assistant.events import COMMANDS, Command, Event, EventType
from edge_assistant.home.outcomes import StepOutcome
from edge_assistant.mqtt.commands import ERROR_CODES, CommandRejected, parse_command
from edge_assistant.mqtt.discovery import discovery_configs
from edge_assistant.mqtt.hermes import (
    HERMES_SAY,
    HERMES_SAY_FINISHED,
    HERMES_START_LISTENING,
    HERMES_TEXT_CAPTURED,
    HermesSessions,
    parse_hermes,
)
from edge_assistant.mqtt.topics import Topics
from edge_assistant.respond import ResponseSource

REPO = Path(__file__).resolve().parents[1]
CFG = MqttConfig(max_payload_bytes=4096, max_text_chars=50)
DEVICE = "kitchen"


def parse(name: str, payload: str | bytes, cfg: MqttConfig = CFG) -> Command:
    return parse_command(name, payload.encode() if isinstance(payload, str) else payload, cfg)


def rejected(name: str, payload: str | bytes, cfg: MqttConfig = CFG) -> CommandRejected:
    with pytest.raises(CommandRejected) as caught:
        parse(name, payload, cfg)
    error = caught.value
    assert error.code in ERROR_CODES and error.message
    return error


@pytest.mark.parametrize(
    "name, payload, expected",
    [
        ("ask", '{"text": " What time is it? ", "id": "r1"}', Command("ask", {"text": "What time is it?", "speak": True}, "r1")),
        ("ask", '{"text": "quietly", "speak": false, "id": 7}', Command("ask", {"text": "quietly", "speak": False}, "7")),
        ("say", '{"text": "Hello", "id": " r2 "}', Command("say", {"text": "Hello"}, "r2")),
        ("listen", '{"id": "r3"}', Command("listen", {}, "r3")),
        ("cancel", '  {"id": "r4"}  ', Command("cancel", {}, "r4")),
        ("mute", '{"id": "r5"}', Command("mute", {}, "r5")),
        ("mute", '{"mute": true, "id": "r5"}', Command("mute", {}, "r5")),
        ("mute", '{"mute": false, "id": "r6"}', Command("unmute", {}, "r6")),
        ("unmute", '{"id": "r7"}', Command("unmute", {}, "r7")),
        ("volume", '{"volume": 40, "id": "r8"}', Command("volume", {"volume": 0.4}, "r8")),
        ("volume", '{"volume": 0, "id": "r8"}', Command("volume", {"volume": 0.0}, "r8")),
        ("volume", '{"volume": 100.0, "id": "r8"}', Command("volume", {"volume": 1.0}, "r8")),
        ("reset", '{"id": "r9", "unknown_key": 1}', Command("reset", {}, "r9")),
        ("ask", '{"text": "%s", "id": "%s"}' % ("x" * 50, "i" * 128), Command("ask", {"text": "x" * 50, "speak": True}, "i" * 128)),
    ],
)
def test_json_commands(name, payload, expected):
    assert parse(name, payload) == expected


@pytest.mark.parametrize(
    "name, payload, data",
    [
        ("ask", "Tell me a joke", {"text": "Tell me a joke", "speak": True}),
        ("ask", "  [not json] ", {"text": "[not json]", "speak": True}),
        ("say", "Dinner is ready\n", {"text": "Dinner is ready"}),
        ("volume", " 75 ", {"volume": 0.75}),
        ("listen", "PRESS", {}),
        ("cancel", "", {}),
        ("mute", "ON", {}),
        ("unmute", "anything", {}),
        ("reset", "", {}),
    ],
)
def test_plain_commands_get_a_fresh_request_id(name, payload, data):
    first, second = parse(name, payload), parse(name, payload)
    assert (first.name, first.data, first.origin) == (name, data, "mqtt")
    assert first.request_id and second.request_id and first.request_id != second.request_id


def test_every_command_has_a_plain_form():
    plain = {"ask": "hi", "say": "hi", "volume": "50", "announce": "hi",
             "timer": '{"action": "start", "seconds": 60}'}
    assert {parse(name, plain.get(name, "")).name for name in COMMANDS} == set(COMMANDS)


def test_announce_options_and_their_defaults():
    plain = parse("announce", "The door is open.")
    assert plain.data == {"text": "The door is open.", "chime": True, "priority": "normal", "then_listen": False}
    full = parse("announce", json.dumps({"text": "Close it?", "chime": False, "priority": "high",
                                         "then_listen": True, "id": "a1"}))
    assert full.data == {"text": "Close it?", "chime": False, "priority": "high", "then_listen": True}
    assert full.request_id == "a1"
    for bad in ({"text": "x", "priority": "urgent"}, {"text": "x", "chime": "yes"}, {"chime": True}):
        with pytest.raises(CommandRejected):
            parse("announce", json.dumps(bad))


def test_timer_commands_are_checked_before_they_reach_the_assistant():
    started = parse("timer", json.dumps({"action": "start", "seconds": 90, "name": "pasta", "id": "t1"}))
    assert started.request_id == "t1"
    assert (started.data["command"].action, started.data["command"].seconds) == ("start", 90)
    for bad in ({"action": "explode"}, {"action": "start", "seconds": -5}, {"action": "cancel"}):
        with pytest.raises(CommandRejected) as rejected:
            parse("timer", json.dumps(bad))
        assert rejected.value.code == "bad_request"


def test_origin_is_kept():
    assert parse_command("listen", b"", CFG, origin="cli").origin == "cli"


@pytest.mark.parametrize(
    "name, payload, code, request_id",
    [
        ("ask", '{"text": "unterminated', "bad_json", None),
        ("ask", '{"text": "hi",}', "bad_json", None),
        ("ask", '{"a":' + "[" * 3000, "bad_json", None),
        ("ask", '{"text": 42, "id": "r2"}', "bad_request", "r2"),
        ("ask", '{"id": "r2"}', "bad_request", "r2"),
        ("ask", '{"text": "hi", "speak": "yes", "id": "r3"}', "bad_request", "r3"),
        ("ask", '{"text": "hi", "id": ["x"]}', "bad_request", None),
        ("ask", '{"text": "hi", "id": ""}', "bad_request", None),
        ("ask", '{"text": "hi", "id": true}', "bad_request", None),
        ("ask", '{"text": "hi", "id": "%s"}' % ("i" * 129), "bad_request", None),
        ("say", '{"text": "   ", "id": "r5"}', "empty_text", "r5"),
        ("say", "   ", "empty_text", None),
        ("say", json.dumps({"text": "x" * 51, "id": "r6"}), "text_too_long", "r6"),
        ("ask", "x" * 51, "text_too_long", None),
        ("mute", '{"mute": "no", "id": "r7"}', "bad_request", "r7"),
        ("volume", '{"volume": 150, "id": "r8"}', "bad_request", "r8"),
        ("volume", '{"volume": -1}', "bad_request", None),
        ("volume", '{"volume": NaN}', "bad_request", None),
        ("volume", '{"volume": "40"}', "bad_request", None),
        ("volume", '{"volume": true}', "bad_request", None),
        ("volume", "{}", "bad_request", None),
        ("volume", "loud", "bad_request", None),
        ("volume", "inf", "bad_request", None),
        ("dance", '{"id": "r9"}', "unknown_command", "r9"),
        ("dance", '{"id": ["x"]}', "unknown_command", None),
        ("dance", "{broken", "unknown_command", None),
        ("dance", "PRESS", "unknown_command", None),
    ],
)
def test_rejected_commands(name, payload, code, request_id):
    error = rejected(name, payload)
    assert (error.code, error.request_id, error.command) == (code, request_id, name)


def test_oversize_payloads_are_refused_before_decoding():
    error = rejected("say", b"\xff" * 4097)
    assert error.code == "too_large" and "mqtt.max_payload_bytes" in error.message
    assert rejected("say", b"\xff" * 4096).code == "bad_encoding"
    assert rejected("say", b'\xff\xfe{"text": "hi"}').code == "bad_encoding"
    # The size limit is on bytes, before anything else is looked at.
    assert rejected("dance", b"x" * 4097).code == "too_large"


def test_text_length_counts_characters_after_stripping():
    assert parse("say", "  " + "é" * 50 + "  ").data == {"text": "é" * 50}
    assert "mqtt.max_text_chars" in rejected("say", "é" * 51).message


def test_error_codes_are_the_documented_ones():
    assert ERROR_CODES == (
        "too_large", "bad_encoding", "bad_json", "bad_request", "unknown_command", "empty_text",
        "text_too_long", "busy", "not_understood",
    )
    documented = (REPO / "docs" / "mqtt.md").read_text()
    assert [code for code in ERROR_CODES if f"| `{code}` |" not in documented] == []


def documented_events() -> dict[str, str]:
    """docs/mqtt.md's table of event types: each type -> its fields cell."""
    table = (REPO / "docs" / "mqtt.md").read_text().split("| Type | Fields |\n|---|---|\n", 1)[1]
    events = {}
    for row in table.split("\n\n", 1)[0].splitlines():
        types, fields = row.strip("|").split(" | ", 1)
        events.update({name: fields for name in re.findall(r"`([a-z_]+)`", types)})
    return events


def documented_values(fields: str, key: str) -> set[str]:
    """The values a fields cell lists for `key`: `key` (`a`, `b` or `c`...)."""
    listed = re.search(rf"`{key}` \(([^)]*)\)", fields).group(1)
    return set(re.findall(r"`([a-z_]+)`", listed.split(":")[0]))


def test_every_event_type_is_documented_and_nothing_else():
    assert sorted(documented_events()) == sorted(EventType)


def test_the_documented_reply_sources_and_action_outcomes_are_the_ones_given():
    events = documented_events()
    assert documented_values(events["reply"], "source") == {s for s in ResponseSource if s}
    assert documented_values(events["action"], "outcome") == set(StepOutcome)


# -- Hermes ------------------------------------------------------------------------------------


def hermes(topic: str, body: object) -> tuple[Command, str | None] | None:
    payload = body if isinstance(body, bytes) else json.dumps(body).encode()
    return parse_hermes(topic, payload, CFG, DEVICE)


def test_hermes_requests_for_this_site():
    say = {"text": " Hello ", "siteId": DEVICE, "id": "h1", "sessionId": "s1", "lang": "en"}
    assert hermes(HERMES_SAY, say) == (Command("say", {"text": "Hello"}, "h1", origin="hermes"), "s1")
    command, session = hermes(HERMES_START_LISTENING, {"siteId": DEVICE, "sessionId": "s2"})
    assert (command.name, command.data, command.origin, session) == ("listen", {}, "hermes", "s2")
    assert command.request_id
    # Ids and sessions that are not non-empty strings are not Hermes ids: replaced or left out.
    command, session = hermes(HERMES_SAY, {"text": "hi", "siteId": DEVICE, "id": 5, "sessionId": ""})
    assert command.request_id and command.request_id != "5" and session is None


@pytest.mark.parametrize("site", [{"siteId": "hall"}, {"siteId": "default"}, {}, {"siteId": None}])
def test_hermes_requests_for_other_sites_are_ignored(site):
    assert hermes(HERMES_SAY, {"text": "not me", "id": "k1", **site}) is None
    assert hermes(HERMES_START_LISTENING, {"sessionId": "k2", **site}) is None


@pytest.mark.parametrize(
    "topic, body, code, request_id",
    [
        (HERMES_SAY, b"{oops", "bad_json", None),
        (HERMES_SAY, b"[1, 2]", "bad_json", None),
        (HERMES_SAY, b"hello", "bad_json", None),
        (HERMES_START_LISTENING, b"", "bad_json", None),
        (HERMES_SAY, b"\xff", "bad_encoding", None),
        (HERMES_SAY, b"{" + b" " * 4096 + b"}", "too_large", None),
        (HERMES_SAY, {"text": " ", "siteId": DEVICE, "id": "h3"}, "empty_text", "h3"),
        (HERMES_SAY, {"siteId": DEVICE, "id": "h4"}, "bad_request", "h4"),
        (HERMES_SAY, {"text": "x" * 51, "siteId": DEVICE}, "text_too_long", None),
    ],
)
def test_bad_hermes_requests(topic, body, code, request_id):
    with pytest.raises(CommandRejected) as caught:
        hermes(topic, body)
    expected_command = "say" if topic == HERMES_SAY else "listen"
    assert (caught.value.code, caught.value.request_id, caught.value.command) == (code, request_id, expected_command)


def test_hermes_answers_carry_the_request_and_its_session():
    sessions = HermesSessions(DEVICE)
    say, say_session = hermes(HERMES_SAY, {"text": "Hello", "siteId": DEVICE, "id": "h1", "sessionId": "s1"})
    listen, listen_session = hermes(HERMES_START_LISTENING, {"siteId": DEVICE, "sessionId": "s2"})
    sessions.remember(say, say_session)
    sessions.remember(listen, listen_session)

    assert sessions.say_finished(Event("tts_stop", {"text": "x"}, request_id="not-hermes")) is None
    # A request id is answered as what it came in as, not as another command.
    assert sessions.say_finished(Event("tts_stop", {"text": "x"}, request_id=listen.request_id)) is None
    assert sessions.say_finished(Event("tts_stop", {"text": "Hello"}, request_id="h1")) == (
        HERMES_SAY_FINISHED, {"id": "h1", "siteId": DEVICE, "sessionId": "s1"}
    )
    assert sessions.say_finished(Event("tts_stop", {"text": "Hello"}, request_id="h1")) is None, "answered once"

    transcript = {"text": "lights on", "confidence": 0.7, "duration_s": 1.0}
    assert sessions.text_captured(Event("transcript", transcript, request_id=listen.request_id)) == (
        HERMES_TEXT_CAPTURED,
        {"text": "lights on", "likelihood": 0.7, "seconds": 1.0, "siteId": DEVICE, "sessionId": "s2"},
    )
    # Spoken without a Hermes request; numbers JSON cannot carry get defaults.
    odd = {"text": "hi", "confidence": math.nan, "duration_s": True}
    assert sessions.text_captured(Event("transcript", odd)) == (
        HERMES_TEXT_CAPTURED,
        {"text": "hi", "likelihood": 1.0, "seconds": 0.0, "siteId": DEVICE, "sessionId": None},
    )


@pytest.mark.parametrize(
    "model, topic",
    [
        ("/models/hey_jarvis.tflite", "hermes/hotword/hey_jarvis/detected"),
        ("alexa_v0.1.onnx", "hermes/hotword/alexa_v0_1/detected"),
        ("hey jarvis", "hermes/hotword/hey_jarvis/detected"),
        ("", "hermes/hotword/default/detected"),
    ],
)
def test_hotword_detected(model, topic):
    got_topic, payload = HermesSessions(DEVICE).hotword_detected(Event("wake", {"model": model, "score": 0.9}))
    assert got_topic == topic
    assert payload["siteId"] == DEVICE and payload["modelId"] == (model or "default")
    assert payload["sessionId"] is None


def test_hermes_sessions_forget_the_oldest():
    sessions = HermesSessions(DEVICE)
    for index in range(100):
        sessions.remember(Command("say", {"text": "x"}, f"h{index}", "hermes"), f"s{index}")
    assert sessions.say_finished(Event("tts_stop", request_id="h0")) is None
    assert sessions.say_finished(Event("tts_stop", request_id="h99"))[1]["sessionId"] == "s99"


# -- Topics ------------------------------------------------------------------------------------


def test_topics():
    topics = Topics.for_config(MqttConfig(topic_prefix="home/voice", discovery_prefix="ha"), DEVICE)
    assert topics.availability == "home/voice/kitchen/availability"
    assert topics.event("reply") == "home/voice/kitchen/event/reply"
    assert topics.command("ask") == "home/voice/kitchen/cmd/ask"
    assert topics.command_filter == "home/voice/kitchen/cmd/+"
    assert topics.broadcast_filter == "home/voice/all/cmd/+"
    assert topics.ha_status == "ha/status"
    assert topics.retained_states == tuple(
        f"home/voice/kitchen/{name}"
        for name in ("state", "transcript", "reply", "mute", "volume", "timers", "health",
                     "last/question", "last/reply", "last/error", "last/action")
    )
    assert Topics("p", "kitchen.1 é").discovery("sensor", "state") == "homeassistant/sensor/kitchen_1/state/config"


@pytest.mark.parametrize(
    "topic, broadcast, name",
    [
        ("p/kitchen/cmd/ask", False, "ask"),
        ("p/kitchen/cmd/", False, ""),
        ("p/kitchen/cmd/ask/more", False, None),
        ("p/hall/cmd/ask", False, None),
        ("p/all/cmd/ask", False, None),
        ("p/all/cmd/ask", True, "ask"),
        ("q/kitchen/cmd/ask", True, None),
        ("p/kitchen/event/ask", True, None),
    ],
)
def test_command_name(topic, broadcast, name):
    assert Topics("p", "kitchen").command_name(topic, broadcast) == name


# -- Home Assistant discovery ------------------------------------------------------------------

# Full key names Home Assistant's MQTT discovery takes for each component (none abbreviated).
COMMON_KEYS = {
    "unique_id", "name", "icon", "device", "origin", "availability_topic", "payload_available",
    "payload_not_available", "qos",
}
COMPONENT_KEYS = {
    "sensor": COMMON_KEYS | {"state_topic", "value_template", "json_attributes_topic", "device_class",
                             "entity_category"},
    "binary_sensor": COMMON_KEYS | {"state_topic", "value_template", "json_attributes_topic", "device_class",
                                    "entity_category"},
    "switch": COMMON_KEYS | {"command_topic", "payload_on", "payload_off", "state_topic", "state_on", "state_off"},
    "button": COMMON_KEYS | {"command_topic", "payload_press"},
    "text": COMMON_KEYS | {"command_topic", "command_template", "min", "max", "mode"},
    "number": COMMON_KEYS | {"command_topic", "command_template", "state_topic", "min", "max", "step",
                             "unit_of_measurement", "mode"},
}
TRIGGER_KEYS = {"automation_type", "type", "subtype", "topic", "qos", "device", "origin", "payload",
                "value_template"}
REQUIRED_KEYS = {
    "sensor": {"state_topic"},
    "binary_sensor": {"state_topic"},
    "switch": {"command_topic"},
    "button": {"command_topic"},
    "text": {"command_topic"},
    "number": {"command_topic"},
}


def test_discovery_payloads():
    cfg = MqttConfig(qos=2, max_text_chars=2000)
    topics = Topics.for_config(cfg, DEVICE)
    configs = discovery_configs(cfg, DEVICE)
    by_object = {}
    for topic, config in configs.items():
        prefix, component, node_id, object_id, last = topic.split("/")
        assert (prefix, node_id, last) == ("homeassistant", DEVICE, "config")
        if component == "device_automation":
            assert config.keys() <= TRIGGER_KEYS
            continue  # device triggers: see test_mqtt_home_assistant.py
        assert REQUIRED_KEYS[component] <= config.keys() <= COMPONENT_KEYS[component], topic
        assert config["unique_id"] == f"edge_assistant_{DEVICE}_{object_id}"
        assert config["availability_topic"] == topics.availability
        assert (config["payload_available"], config["payload_not_available"]) == ("online", "offline")
        assert config["qos"] == 2
        device = config["device"]
        assert device.keys() == {"identifiers", "name", "model", "manufacturer", "sw_version"}
        assert (device["identifiers"], device["name"]) == ([f"edge_assistant_{DEVICE}"], DEVICE)
        assert config["origin"].keys() == {"name", "sw_version"}
        for key in ("state_topic", "command_topic"):
            if key in config:
                assert config[key].startswith(topics.base + "/")
        json.dumps(config, allow_nan=False)  # what is published must be plain JSON
        by_object[object_id] = (component, config)

    assert {name: component for name, (component, _) in by_object.items()} == {
        "state": "sensor", "transcript": "sensor", "reply": "sensor", "error": "sensor", "action": "sensor",
        "next_timer": "sensor", "problem": "binary_sensor", "mute": "switch", "listen": "button",
        "cancel": "button", "reset": "button",
        "ask": "text", "say": "text", "volume": "number",
    }
    assert by_object["state"][1]["state_topic"] == topics.state
    for name, kind in (("transcript", "question"), ("reply", "reply"), ("error", "error"), ("action", "action")):
        sensor = by_object[name][1]
        # State and attributes from one retained JSON: they never disagree.
        assert sensor["state_topic"] == sensor["json_attributes_topic"] == topics.last(kind)
    assert by_object["reply"][1]["value_template"] == "{{ value_json.text[:255] }}"
    timer = by_object["next_timer"][1]
    assert (timer["device_class"], timer["state_topic"]) == ("timestamp", topics.timers)
    assert by_object["mute"][1]["command_topic"] == topics.command("mute")
    assert by_object["mute"][1]["state_topic"] == topics.mute
    for name in ("listen", "cancel", "reset"):
        assert by_object[name][1]["command_topic"] == topics.command(name)
    for name in ("ask", "say"):
        text = by_object[name][1]
        # Home Assistant refuses texts over 255 characters; below that, what the assistant takes.
        assert (text["command_topic"], text["min"], text["max"]) == (topics.command(name), 1, 255)
    volume = by_object["volume"][1]
    assert (volume["min"], volume["max"], volume["step"], volume["state_topic"]) == (0, 100, 1, topics.volume)


def test_discovery_commands_are_accepted_by_the_parser():
    cfg = MqttConfig()
    configs = {topic.split("/")[3]: config for topic, config in discovery_configs(cfg, DEVICE).items()}
    mute = configs["mute"]
    assert parse_command("mute", mute["payload_on"].encode(), cfg).name == "mute"
    assert parse_command("mute", mute["payload_off"].encode(), cfg).name == "unmute"
    for name in ("listen", "cancel", "reset"):
        assert parse_command(name, configs[name]["payload_press"].encode(), cfg).name == name


def test_discovery_follows_the_config():
    cfg = MqttConfig(topic_prefix="voice", discovery_prefix="ha", max_text_chars=100)
    configs = discovery_configs(cfg, "hall.2")
    assert all(topic.startswith("ha/") and "/hall_2/" in topic for topic in configs)
    entities = {topic: config for topic, config in configs.items() if "/device_automation/" not in topic}
    assert all(config["availability_topic"] == "voice/hall.2/availability" for config in entities.values())
    assert {config["device"]["identifiers"][0] for config in configs.values()} == {"edge_assistant_hall_2"}
    assert len({config["unique_id"] for config in entities.values()}) == len(entities) == 14
    assert all(config["topic"].startswith("voice/hall.2/event/") for config in configs.values() if "topic" in config)
    texts = [config for topic, config in configs.items() if topic.startswith("ha/text/")]
    assert [text["max"] for text in texts] == [100, 100]
    # Distinct devices never share an entity.
    other = discovery_configs(cfg, "kitchen")
    assert not {c["unique_id"] for c in entities.values()} & {c.get("unique_id") for c in other.values()}
