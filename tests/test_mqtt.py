"""MqttBridge against a real mosquitto: commands, events, retained state, availability,
Home Assistant discovery and rejected input."""

from __future__ import annotations

import ast
import asyncio
import json
import logging
import re
import subprocess
import sys
import threading
from dataclasses import replace
from pathlib import Path

import jinja2
import pytest

from edge_assistant.broker import client_id
from edge_assistant.config import Config, ConfigError, MqttConfig
from edge_assistant.events import Command, Event
from edge_assistant.mqtt import ERROR_CODES, MqttBridge, discovery_configs, unregister
from tests.support.mqtt_fixtures import eventually, next_command, run_async
from tests.support.timing import slack

DEVICE = "dev1"
REPO = Path(__file__).resolve().parents[1]


async def connected(mqtt_bridges, cfg: MqttConfig, device_id: str = DEVICE) -> MqttBridge:
    bridge = mqtt_bridges(cfg, device_id)
    bridge.set_state("idle")  # as the core does once it runs: availability may say online
    await eventually(lambda: bridge.ready, what="bridge connected and subscribed")
    return bridge


@run_async
async def test_commands_become_command_objects(mosquitto, mqtt_probe, mqtt_bridges):
    bridge = await connected(mqtt_bridges, mosquitto.mqtt_config())
    probe = mqtt_probe(mosquitto)
    cmd = bridge.topics.command
    json_cases = [
        (
            "ask",
            '{"text": " What time is it? ", "id": "r1"}',
            Command("ask", {"text": "What time is it?", "speak": True}, "r1"),
        ),
        (
            "ask",
            '{"text": "quietly", "speak": false, "id": 7}',
            Command("ask", {"text": "quietly", "speak": False}, "7"),
        ),
        ("say", '{"text": "Hello", "id": "r2"}', Command("say", {"text": "Hello"}, "r2")),
        ("listen", '{"id": "r3"}', Command("listen", {}, "r3")),
        ("cancel", '{"id": "r4"}', Command("cancel", {}, "r4")),
        ("mute", '{"id": "r5"}', Command("mute", {}, "r5")),
        ("mute", '{"mute": false, "id": "r6"}', Command("unmute", {}, "r6")),
        ("unmute", '{"id": "r7"}', Command("unmute", {}, "r7")),
        ("volume", '{"volume": 40, "id": "r8"}', Command("volume", {"volume": 0.4}, "r8")),
        ("reset", '{"id": "r9", "unknown_key": 1}', Command("reset", {}, "r9")),
    ]
    for name, payload, expected in json_cases:
        probe.publish(cmd(name), payload)
        assert await next_command(bridge) == expected

    # Plain payloads: the text of ask/say, a number for volume, ignored by the others.
    plain_cases = [
        ("ask", "Tell me a joke", "ask", {"text": "Tell me a joke", "speak": True}),
        ("say", "Dinner is ready", "say", {"text": "Dinner is ready"}),
        ("volume", "75", "volume", {"volume": 0.75}),
        ("listen", "PRESS", "listen", {}),
        ("cancel", "", "cancel", {}),
    ]
    ids = set()
    for name, payload, expected_name, expected_data in plain_cases:
        probe.publish(cmd(name), payload)
        command = await next_command(bridge)
        assert (command.name, command.data, command.origin) == (expected_name, expected_data, "mqtt")
        assert isinstance(command.request_id, str) and command.request_id
        ids.add(command.request_id)
    assert len(ids) == len(plain_cases), "generated request ids must be distinct"
    assert bridge.stats["commands"] == len(json_cases) + len(plain_cases)
    assert bridge.stats["malformed"] == 0


@run_async
async def test_events_and_retained_state(mosquitto, mqtt_probe, mqtt_bridges):
    bridge = await connected(mqtt_bridges, mosquitto.mqtt_config())
    topics = bridge.topics
    probe = mqtt_probe(mosquitto)
    probe.subscribe(f"{topics.base}/event/#")

    bridge.set_state("listening", turn_id="t1")
    bridge.publish_event(
        Event(
            "transcript",
            {"text": "hello there", "confidence": 0.9},
            turn_id="t1",
            request_id="r1",
            timestamp=1700000000.12345,
        )
    )
    bridge.publish_event(Event("reply", {"text": "General Kenobi", "cancelled": False}, turn_id="t1"))
    bridge.publish_event(Event("metrics", {"rss_mb": 120.5, "ratio": float("nan")}))
    bridge.set_muted(True)
    bridge.set_volume(0.42)

    # The "idle" set while connecting may reach the probe too, if it went out after `ready`.
    state = await asyncio.to_thread(probe.wait_for, topics.event("state"), lambda m: m.json().get("turn_id") == "t1")
    assert state.json() == {
        "schema": 1,
        "type": "state",
        "timestamp": state.json()["timestamp"],
        "turn_id": "t1",
        "state": "listening",
    }
    transcript = await asyncio.to_thread(probe.wait_for, topics.event("transcript"))
    assert transcript.json() == {
        "schema": 1,
        "type": "transcript",
        "timestamp": 1700000000.123,
        "turn_id": "t1",
        "id": "r1",
        "text": "hello there",
        "confidence": 0.9,
    }
    assert not transcript.retain
    metrics = await asyncio.to_thread(probe.wait_for, topics.event("metrics"))
    assert metrics.json()["rss_mb"] == 120.5
    assert metrics.json()["ratio"] is None, "NaN is not JSON; it must arrive as null"

    # A newcomer (Home Assistant after a restart) sees the latest values, retained.
    retained = mqtt_probe(mosquitto).retained(f"{topics.base}/#")
    assert {topic: message.text for topic, message in retained.items()} == {
        topics.availability: "online",
        topics.state: "listening",
        topics.transcript: "hello there",
        topics.reply: "General Kenobi",
        topics.mute: "ON",
        topics.volume: "42",
        topics.timers: '{"next": null, "name": null, "count": 0, "timers": []}',
        topics.last("question"): transcript.text,
        topics.last("reply"): retained[topics.last("reply")].text,
    }
    assert retained[topics.last("reply")].json()["text"] == "General Kenobi"

    with pytest.raises(ValueError):
        bridge.set_state("dancing")
    with pytest.raises(ValueError):
        bridge.publish_event(Event("no_such_type"))


@run_async
async def test_clean_stop_leaves_retained_offline(mosquitto, mqtt_probe, mqtt_bridges):
    bridge = await connected(mqtt_bridges, mosquitto.mqtt_config())
    probe = mqtt_probe(mosquitto)
    probe.subscribe(bridge.topics.availability)
    await asyncio.to_thread(probe.wait_for, bridge.topics.availability, lambda m: m.text == "online")
    await bridge.aclose()
    await bridge.aclose()  # stopping twice is harmless
    assert not [thread for thread in threading.enumerate() if thread.name.startswith("mqtt-publisher")]
    await asyncio.to_thread(probe.wait_for, bridge.topics.availability, lambda m: m.text == "offline")
    retained = mqtt_probe(mosquitto).retained(bridge.topics.availability)
    assert retained[bridge.topics.availability].text == "offline"
    assert not bridge.connected


LWT_SCRIPT = """
import asyncio, sys
from edge_assistant.config import MqttConfig
from edge_assistant.mqtt import MqttBridge

async def main():
    cfg = MqttConfig(host="127.0.0.1", port=int(sys.argv[1]))
    bridge = MqttBridge(cfg, "lwt-dev", asyncio.get_running_loop())
    bridge.start()
    bridge.set_state("idle")
    await asyncio.sleep(3600)

asyncio.run(main())
"""


def test_last_will_says_offline_when_the_process_dies(mosquitto, mqtt_probe):
    topic = "edge-assistant/lwt-dev/availability"
    probe = mqtt_probe(mosquitto)
    probe.subscribe(topic)
    process = subprocess.Popen([sys.executable, "-c", LWT_SCRIPT, str(mosquitto.port)], cwd=REPO)
    try:
        probe.wait_for(topic, lambda m: m.text == "online", timeout=slack(60))
        process.kill()  # SIGKILL: no chance to say goodbye; the broker must publish the will
        process.wait(slack(10))
        probe.wait_for(topic, lambda m: m.text == "offline")
    finally:
        process.kill()
        process.wait(slack(10))
    assert mqtt_probe(mosquitto).retained(topic)[topic].text == "offline"


HA_REQUIRED = {
    "sensor": {"state_topic"},
    "binary_sensor": {"state_topic"},
    "switch": {"command_topic"},
    "button": {"command_topic"},
    "text": {"command_topic"},
    "number": {"command_topic", "min", "max", "step"},
    "device_automation": {"automation_type", "topic", "type", "subtype", "device"},
}


def ha_command_payload(config: dict, value) -> str:
    """What Home Assistant publishes for `value`: its command_template rendered with Jinja."""
    template = config.get("command_template")
    if template is None:
        return str(value)
    return jinja2.Environment().from_string(template).render(value=value)


@run_async
async def test_home_assistant_discovery(mosquitto, mqtt_probe, mqtt_bridges):
    cfg = mosquitto.mqtt_config()
    bridge = await connected(mqtt_bridges, cfg)
    topics = bridge.topics
    probe = mqtt_probe(mosquitto)
    configs = {topic: message.json() for topic, message in probe.retained("homeassistant/#").items()}
    assert configs == discovery_configs(cfg, DEVICE)
    assert len(configs) == 19

    by_object = {}
    for topic, config in configs.items():
        prefix, component, node_id, object_id, last = topic.split("/")
        assert (prefix, node_id, last) == ("homeassistant", DEVICE, "config")
        assert re.fullmatch(r"[a-zA-Z0-9_-]+", object_id)
        assert HA_REQUIRED[component] <= config.keys(), f"{topic} misses required keys"
        device = config["device"]
        assert device["identifiers"] and {"name", "model", "manufacturer", "sw_version"} <= device.keys()
        if component == "device_automation":
            continue  # tested in test_mqtt_home_assistant.py
        assert config["availability_topic"] == topics.availability
        assert (config["payload_available"], config["payload_not_available"]) == ("online", "offline")
        for key in ("state_topic", "command_topic"):
            if key in config:
                assert config[key].startswith(topics.base + "/")
        by_object[object_id] = (component, config)
    assert {name: component for name, (component, _) in by_object.items()} == {
        "state": "sensor",
        "transcript": "sensor",
        "reply": "sensor",
        "error": "sensor",
        "action": "sensor",
        "next_timer": "sensor",
        "problem": "binary_sensor",
        "mute": "switch",
        "listen": "button",
        "cancel": "button",
        "reset": "button",
        "ask": "text",
        "say": "text",
        "volume": "number",
    }
    assert len({config["unique_id"] for _, config in by_object.values()}) == 14
    assert {config["device"]["identifiers"][0] for config in configs.values()} == {f"edge_assistant_{DEVICE}"}
    number = by_object["volume"][1]
    assert (number["min"], number["max"], number["step"]) == (0, 100, 1)
    assert by_object["state"][1]["state_topic"] == topics.state

    # Each entity's command, published the way Home Assistant would, becomes the right Command.
    question = 'Is {this} "quoted" & <safe>?'
    ask = by_object["ask"][1]
    probe.publish(ask["command_topic"], ha_command_payload(ask, question))
    command = await next_command(bridge)
    assert (command.name, command.data) == ("ask", {"text": question, "speak": True})
    volume = by_object["volume"][1]
    probe.publish(volume["command_topic"], ha_command_payload(volume, 40.0))
    assert (await next_command(bridge)).data == {"volume": 0.4}
    mute = by_object["mute"][1]
    probe.publish(mute["command_topic"], mute["payload_on"])
    assert (await next_command(bridge)).name == "mute"
    probe.publish(mute["command_topic"], mute["payload_off"])
    assert (await next_command(bridge)).name == "unmute"
    listen = by_object["listen"][1]
    probe.publish(listen["command_topic"], listen["payload_press"])
    assert (await next_command(bridge)).name == "listen"

    # The states the entities read use the values they expect.
    probe.subscribe(f"{topics.base}/#")
    bridge.set_muted(False)
    bridge.set_volume(0.3)

    def live(message) -> bool:
        return not message.retain

    assert (await asyncio.to_thread(probe.wait_for, mute["state_topic"], live)).text == mute["state_off"]
    assert (await asyncio.to_thread(probe.wait_for, volume["state_topic"], live)).text == "30"

    # Home Assistant announces a restart: discovery is published again.
    before = len(probe.messages)
    probe.publish("homeassistant/status", "online")
    again = await asyncio.to_thread(probe.wait_count, "homeassistant/+/+/+/config", 19, since=before)
    assert {message.topic for message in again} == set(configs)

    # Removal: every discovery and retained state topic is emptied.
    await bridge.aclose()
    cleared = await asyncio.to_thread(unregister, cfg, DEVICE)
    assert set(configs) <= set(cleared)
    assert mqtt_probe(mosquitto).retained("homeassistant/#") == {}
    assert mqtt_probe(mosquitto).retained(f"{topics.base}/#") == {}


@run_async
async def test_bad_input_gets_error_events_and_the_bridge_keeps_working(
    mosquitto, mqtt_probe, mqtt_bridges, caplog
):
    caplog.set_level(logging.INFO, logger="edge_assistant.mqtt")
    bridge = await connected(mqtt_bridges, mosquitto.mqtt_config(max_payload_bytes=4096, max_text_chars=50))
    probe = mqtt_probe(mosquitto)
    error_topic = bridge.topics.event("error")
    probe.subscribe(error_topic)
    cmd = bridge.topics.command
    cases = [
        (cmd("ask"), b'{"text": "unterminated', "bad_json", None),
        (cmd("ask"), b'{"a":' + b"[" * 3000, "bad_json", None),  # deeper than the JSON parser recurses
        (cmd("ask"), b'{"text": 42, "id": "r2"}', "bad_request", "r2"),
        (cmd("ask"), b'{"text": "hi", "speak": "yes", "id": "r3"}', "bad_request", "r3"),
        (cmd("ask"), b'{"text": "hi", "id": ["x"]}', "bad_request", None),
        (cmd("dance"), b'{"id": "r4"}', "unknown_command", "r4"),
        (cmd("say"), b'{"text": "   ", "id": "r5"}', "empty_text", "r5"),
        (cmd("say"), json.dumps({"text": "x" * 51, "id": "r6"}).encode(), "text_too_long", "r6"),
        (cmd("say"), b'{"text": "' + b"x" * 5000 + b'", "id": "r7"}', "too_large", None),
        (cmd("say"), b'\xff\xfe{"text": "hi"}', "bad_encoding", None),
        (cmd("volume"), b'{"volume": 150, "id": "r8"}', "bad_request", "r8"),
        (cmd("volume"), b'{"volume": true}', "bad_request", None),
        (cmd("volume"), b"loud", "bad_request", None),
    ]
    for topic, payload, _, _ in cases:
        probe.publish(topic, payload)
    errors = await asyncio.to_thread(probe.wait_count, error_topic, len(cases))
    got = [(m.json()["code"], m.json().get("id")) for m in errors]
    assert got == [(code, rid) for _, _, code, rid in cases]
    for message in errors:
        body = message.json()
        assert body["type"] == "error" and body["code"] in ERROR_CODES
        assert isinstance(body["message"], str) and body["message"]

    # Still working, and nothing bad reached the queue.
    probe.publish(cmd("say"), '{"text": "fine", "id": "ok"}')
    assert (await next_command(bridge)).request_id == "ok"
    assert bridge.commands.empty()
    assert bridge.stats["malformed"] == len(cases)

    # The same problem over and over is logged once, not once per message.
    for _ in range(5):
        probe.publish(cmd("ask"), b"{nope")
    await asyncio.to_thread(probe.wait_count, error_topic, len(cases) + 5)
    json_logs = [
        r for r in caplog.records if r.name.startswith("edge_assistant.mqtt") and "invalid JSON" in r.getMessage()
    ]
    assert len(json_logs) == 1


@run_async
async def test_commands_for_other_devices_never_act_here(mosquitto, mqtt_probe, mqtt_bridges):
    cfg = mosquitto.mqtt_config()
    here = await connected(mqtt_bridges, cfg)
    probe = mqtt_probe(mosquitto)
    say = '{"text": "hi", "id": "%s"}'
    probe.publish("edge-assistant/other/cmd/say", say % "for-other")
    probe.publish("edge-assistant/all/cmd/say", say % "for-all")
    probe.publish(here.topics.command("say"), say % "mine")
    # Messages from one publisher arrive in order: anything wrongly taken would come first.
    assert (await next_command(here)).request_id == "mine"

    # Opt-in broadcast: the "all" topic reaches a device that asked for it.
    listener = await connected(mqtt_bridges, mosquitto.mqtt_config(broadcast_commands=True), "dev2")
    probe.publish("edge-assistant/all/cmd/say", say % "for-all-2")
    probe.publish("edge-assistant/other/cmd/say", say % "for-other-2")
    probe.publish(listener.topics.command("say"), say % "mine-2")
    assert [(await next_command(listener)).request_id for _ in range(2)] == ["for-all-2", "mine-2"]
    probe.publish(here.topics.command("say"), say % "mine-3")
    assert (await next_command(here)).request_id == "mine-3"


@run_async
async def test_full_command_queue_refuses_with_busy(mosquitto, mqtt_probe, mqtt_bridges):
    bridge = await connected(mqtt_bridges, mosquitto.mqtt_config(command_queue=2))
    probe = mqtt_probe(mosquitto)
    probe.subscribe(bridge.topics.event("error"))
    for index in range(3):
        probe.publish(bridge.topics.command("say"), '{"text": "hi", "id": "q%d"}' % index)
    error = await asyncio.to_thread(probe.wait_for, bridge.topics.event("error"))
    body = error.json()
    assert (body["code"], body["id"], body["command"]) == ("busy", "q2", "say")
    assert [(await next_command(bridge)).request_id for _ in range(2)] == ["q0", "q1"]
    assert bridge.stats["commands_refused"] == 1
    assert bridge.stats["commands"] == 2


def test_configuration_errors_are_clear(tmp_path):
    loop = asyncio.new_event_loop()
    try:
        with pytest.raises(ConfigError, match="mqtt.password_file"):
            MqttBridge(MqttConfig(username="u", password_file=str(tmp_path / "missing")), DEVICE, loop)
        with pytest.raises(ConfigError, match="mqtt.password_file"):
            unregister(MqttConfig(username="u", password_file=str(tmp_path / "missing")), DEVICE)
        with pytest.raises(ConfigError, match="mqtt.username"):
            MqttBridge(MqttConfig(password="secret"), DEVICE, loop)
        with pytest.raises(ConfigError, match="mqtt.ca_file"):
            MqttBridge(MqttConfig(tls=True, ca_file=str(tmp_path / "missing.pem")), DEVICE, loop)
        with pytest.raises(ConfigError, match="mqtt.certfile"):
            MqttBridge(MqttConfig(tls=True, certfile=str(tmp_path / "missing.pem")), DEVICE, loop)
        for device_id in ("", "a/b", "x+", "all"):
            with pytest.raises(ConfigError, match="mqtt.device_id"):
                MqttBridge(MqttConfig(), device_id, loop)
        with pytest.raises(ConfigError, match="mqtt.topic_prefix"):
            MqttBridge(MqttConfig(topic_prefix="home/#"), DEVICE, loop)
        secret = tmp_path / "secret"
        secret.write_text("s3cret\n")
        MqttBridge(MqttConfig(username="u", password_file=str(secret)), DEVICE, loop)
    finally:
        loop.close()


def made_up_client_ids(source: str) -> list[str]:
    """Client ids built outside `broker.client_id`: an ``edge-assistant-...`` name put together,
    or ``mqtt.client_id`` read."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.JoinedStr) and node.values and isinstance(node.values[0], ast.Constant):
            built = str(node.values[0].value).startswith("edge-assistant-")
        elif isinstance(node, ast.BinOp) and isinstance(node.left, ast.Constant):
            built = str(node.left.value).startswith("edge-assistant-")
        else:
            built = (isinstance(node, ast.Attribute) and node.attr == "client_id"
                     and re.search(r"(^|[._])(cfg|mqtt)$", ast.unparse(node.value)) is not None)
        if built:
            found.append(f"line {node.lineno}: {ast.unparse(node)}")
    return found


def test_every_connection_takes_its_client_id_from_one_function():
    cfg = MqttConfig(client_id="kitchen-voice", device_id=DEVICE)
    assert (client_id(cfg, DEVICE), client_id(cfg, DEVICE, "home")) == ("kitchen-voice", "kitchen-voice-home")
    assert client_id(MqttConfig(), DEVICE, "home") == "edge-assistant-dev1-home"
    loop = asyncio.new_event_loop()
    try:
        assert MqttBridge(cfg, DEVICE, loop).client_id == client_id(cfg, DEVICE)
    finally:
        loop.close()
    from edge_assistant.home.assistant import HomeControl

    assert HomeControl(replace(Config(), mqtt=cfg)).connection.client_id == client_id(cfg, DEVICE, "home")
    # Nowhere else is one made up (the command line's, doctor's, the one-shot clients').
    package = REPO / "edge_assistant"
    made_up = {
        str(path.relative_to(package)): found for path in sorted(package.rglob("*.py"))
        if path != package / "broker" / "client.py"
        and (found := made_up_client_ids(path.read_text(encoding="utf-8")))
    }
    assert made_up == {}
    assert made_up_client_ids('cid = f"edge-assistant-{device_id}"\nbase = cfg.client_id or "x"\n'
                              'other = config.mqtt.client_id + "-home"\n') == [
        'line 1: f\'edge-assistant-{device_id}\'', "line 2: cfg.client_id", "line 3: config.mqtt.client_id"]
