"""What Home Assistant sees, checked on a real mosquitto: values after restarts, every control,
the sensors' states and attributes (rendered with the templates of their discovery configs),
device triggers. The same against a real Home Assistant: tests/test_home_assistant.py."""

from __future__ import annotations

import asyncio
import json
import re
import signal
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import jinja2
import pytest

from edge_assistant.config import MqttConfig
from edge_assistant.events import Event
from edge_assistant.mqtt import ERROR_CODES, MqttBridge, discovery_configs
from tests.support.mqtt_fixtures import eventually, next_command, run_async
from tests.support.timing import slack

DEVICE = "dev1"
REPO = Path(__file__).resolve().parents[1]
TEMPLATES = jinja2.Environment()


def by_object(cfg: MqttConfig, device_id: str = DEVICE) -> dict[str, dict]:
    """The entities' discovery configs by object id (device triggers left out)."""
    return {
        topic.split("/")[3]: config
        for topic, config in discovery_configs(cfg, device_id).items()
        if topic.split("/")[1] != "device_automation"
    }


def ha_state(config: dict, payload: bytes) -> str:
    """The state Home Assistant gives a sensor for `payload`: its value template rendered."""
    return TEMPLATES.from_string(config["value_template"]).render(value_json=json.loads(payload))


def published_before(probe, message, since: int) -> list:
    """What the probe received from `since` up to `message` (found by identity: equal messages
    from an earlier process may precede it)."""
    messages = probe.messages[since:]
    return messages[:next(index for index, seen in enumerate(messages) if seen is message)]


def ha_command(config: dict, value) -> str:
    return TEMPLATES.from_string(config["command_template"]).render(value=value)


async def running(mqtt_bridges, cfg: MqttConfig) -> MqttBridge:
    bridge = mqtt_bridges(cfg, DEVICE)
    bridge.set_state("idle")  # as the core does once it runs
    await eventually(lambda: bridge.ready, what="bridge connected and subscribed")
    return bridge


async def published(probe, topic: str, cause=None, predicate=lambda message: True) -> bytes:
    """The payload published on `topic` after `cause()` (or at all) that satisfies `predicate`."""
    since = len(probe.messages)
    if cause is not None:
        cause()
    else:
        since = 0
    message = await asyncio.to_thread(probe.wait_for, topic, predicate, since=since)
    return message.payload


# -- restarts ---------------------------------------------------------------------------------

PROCESS = """
import asyncio, json, sys, time
from edge_assistant.config import MqttConfig
from edge_assistant.events import Event
from edge_assistant.mqtt import MqttBridge

async def main():
    port, load_s, muted, volume, state, timer = json.loads(sys.argv[1])
    bridge = MqttBridge(MqttConfig(host="127.0.0.1", port=port), "restart-dev", asyncio.get_running_loop())
    bridge.start()
    await asyncio.sleep(load_s)  # loading the models
    bridge.set_muted(muted)
    bridge.set_volume(volume)
    bridge.set_state(state)
    if timer:
        bridge.publish_event(Event("timer_started", {"id": "t1", "name": "tea", "total_s": 600,
                                                     "remaining_s": 600, "ends_at": time.time() + 600}))
    await asyncio.sleep(3600)

asyncio.run(main())
"""


def start_process(port: int, load_s: float, muted: bool, volume: float, state: str, timer: bool):
    arguments = json.dumps([port, load_s, muted, volume, state, timer])
    return subprocess.Popen([sys.executable, "-c", PROCESS, arguments], cwd=REPO)


def test_after_a_kill_and_restart_only_this_process_values_show_as_online(mosquitto, mqtt_probe):
    base = "edge-assistant/restart-dev"
    availability = f"{base}/availability"
    probe = mqtt_probe(mosquitto)
    probe.subscribe(f"{base}/#")
    old = start_process(mosquitto.port, 0.0, True, 0.72, "muted", True)
    new = None
    try:
        probe.wait_for(availability, lambda m: m.text == "online", timeout=slack(60))
        probe.wait_for(f"{base}/timers", lambda m: m.json()["count"] == 1)
        old.kill()  # SIGKILL: the broker publishes the will
        old.wait(slack(10))
        probe.wait_for(availability, lambda m: m.text == "offline")

        mark = len(probe.messages)
        new = start_process(mosquitto.port, 1.0, False, 1.0, "listening", False)
        # Connected while "loading": says offline, never online with the old values.
        probe.wait_for(availability, lambda m: not m.retain and m.text == "offline", since=mark,
                       timeout=slack(60))
        online = probe.wait_for(availability, lambda m: m.text == "online", since=mark)
        seen = published_before(probe, online, mark)
        latest = {message.topic: message.text for message in seen}
        assert latest[f"{base}/mute"] == "OFF"
        assert latest[f"{base}/volume"] == "100"
        assert latest[f"{base}/state"] == "listening"
        assert json.loads(latest[f"{base}/timers"])["count"] == 0
        assert "online" not in [message.text for message in seen if message.topic == availability]
    finally:
        for process in (old, new):
            if process is not None:
                process.kill()
                process.wait(slack(10))
    retained = mqtt_probe(mosquitto).retained(f"{base}/#")
    assert {topic: retained[f"{base}/{topic}"].text for topic in ("mute", "volume", "state")} == {
        "mute": "OFF", "volume": "100", "state": "listening",
    }
    assert json.loads(retained[f"{base}/timers"].payload)["next"] is None


@run_async
async def test_a_broker_restart_announces_values_before_availability(mosquitto_factory, mqtt_probe, mqtt_bridges):
    broker = mosquitto_factory()
    bridge = await running(mqtt_bridges, broker.mqtt_config())
    topics = bridge.topics
    bridge.set_muted(True)
    await eventually(lambda: bridge.stats["published"] >= 3, what="first values sent")
    await asyncio.to_thread(broker.stop)
    await eventually(lambda: not bridge.connected, what="disconnect noticed")
    bridge.set_volume(0.6)  # while the broker is away
    await asyncio.to_thread(broker.start)
    await eventually(lambda: bridge.ready, what="reconnected")
    retained = mqtt_probe(broker).retained(f"{topics.base}/#")
    assert (retained[topics.volume].text, retained[topics.availability].text) == ("60", "online")
    # The order in which the broker received them, from its log (a subscriber might connect
    # too late to see the reconnect).
    log = (broker.directory / "mosquitto.log").read_text()
    received = re.findall(r"Received PUBLISH from \S+ \([^']*'([^']+)'", log[log.rindex(" starting"):])
    assert received.index(topics.volume) < received.index(topics.availability)
    assert received.index(topics.mute) < received.index(topics.availability)
    assert received.index(topics.state) < received.index(topics.availability)


# -- controls ---------------------------------------------------------------------------------


@run_async
async def test_every_control_reaches_the_assistant(mosquitto, mqtt_probe, mqtt_bridges):
    cfg = mosquitto.mqtt_config(max_text_chars=1000)
    bridge = await running(mqtt_bridges, cfg)
    probe = mqtt_probe(mosquitto)
    entities = by_object(cfg)
    for name in ("listen", "cancel", "reset"):
        button = entities[name]
        probe.publish(button["command_topic"], button["payload_press"])
        assert (await next_command(bridge)).name == name
    announcement = 'Dinner is "ready" {at} 7 & <soon>'
    for name, command in (("ask", "ask"), ("say", "say")):
        text = entities[name]
        probe.publish(text["command_topic"], ha_command(text, announcement))
        received = await next_command(bridge)
        assert (received.name, received.data["text"]) == (command, announcement)
        # Home Assistant checks these bounds itself; the assistant takes all it lets through.
        assert (text["min"], text["max"]) == (1, 255)
        probe.publish(text["command_topic"], ha_command(text, "é" * text["max"]))
        assert len((await next_command(bridge)).data["text"]) == 255


# -- sensors ----------------------------------------------------------------------------------


@run_async
async def test_spoken_and_typed_questions_are_the_last_question(mosquitto, mqtt_probe, mqtt_bridges):
    cfg = mosquitto.mqtt_config()
    bridge = await running(mqtt_bridges, cfg)
    sensor = by_object(cfg)["transcript"]
    topic = sensor["state_topic"]
    probe = mqtt_probe(mosquitto)
    probe.subscribe(f"{bridge.topics.base}/#")

    payload = await published(probe, topic, lambda: bridge.publish_event(
        Event("transcript", {"text": "what time is it", "confidence": 0.9}, turn_id="t1")))
    assert ha_state(sensor, payload) == "what time is it"
    assert json.loads(payload)["turn_id"] == "t1"

    payload = await published(probe, topic, lambda: bridge.publish_event(
        Event("question", {"text": "typed question", "origin": "mqtt"}, request_id="q1")))
    assert (ha_state(sensor, payload), json.loads(payload)["id"]) == ("typed question", "q1")

    # Noise (an empty transcript) is not a question: the last one stays.
    bridge.publish_event(Event("transcript", {"text": ""}))
    await published(probe, bridge.topics.event("metrics"), lambda: bridge.publish_event(Event("metrics")))
    retained = mqtt_probe(mosquitto).retained(topic)
    assert json.loads(retained[topic].payload)["text"] == "typed question"


@run_async
async def test_long_texts_keep_a_short_state_and_the_full_text_in_the_attributes(
    mosquitto, mqtt_probe, mqtt_bridges
):
    cfg = mosquitto.mqtt_config()
    bridge = await running(mqtt_bridges, cfg)
    entities = by_object(cfg)
    probe = mqtt_probe(mosquitto)
    probe.subscribe(f"{bridge.topics.base}/#")
    long_reply = " ".join(f"Sentence number {index} of a long reply." for index in range(40))
    long_question = "Tell me " + "very " * 100 + "much."
    bridge.publish_event(Event("question", {"text": long_question, "origin": "mqtt"}))
    bridge.publish_event(Event("reply", {"text": long_reply, "cancelled": False}, turn_id="t9"))
    for name, text in (("reply", long_reply), ("transcript", long_question)):
        sensor = entities[name]
        payload = await published(probe, sensor["state_topic"])
        assert ha_state(sensor, payload) == text[:255]
        # The attributes come from the same JSON: the full text.
        assert sensor["json_attributes_topic"] == sensor["state_topic"]
        assert json.loads(payload)["text"] == text
    # The plain reply topic keeps the full text too.
    assert probe.retained(bridge.topics.reply)[bridge.topics.reply].text == long_reply


@run_async
async def test_errors_and_actions_reach_their_sensors(mosquitto, mqtt_probe, mqtt_bridges):
    cfg = mosquitto.mqtt_config()
    bridge = await running(mqtt_bridges, cfg)
    entities = by_object(cfg)
    probe = mqtt_probe(mosquitto)
    probe.subscribe(f"{bridge.topics.base}/#")

    error = entities["error"]
    payload = await published(probe, error["state_topic"], lambda: bridge.publish_event(
        Event("error", {"code": "no_microphone", "message": "no audio input"}, request_id="l1")))
    assert ha_state(error, payload) == "no_microphone"
    assert json.loads(payload)["message"] == "no audio input"
    # Rejected commands too: the bridge's own error replies.
    payload = await published(probe, error["state_topic"], lambda: probe.publish(
        bridge.topics.command("ask"), '{"text": "   ", "id": "blank"}'))
    assert (ha_state(error, payload), json.loads(payload)["id"]) == ("empty_text", "blank")

    action = entities["action"]
    payload = await published(probe, action["state_topic"], lambda: bridge.publish_event(Event("action", {
        "entity": "light.kitchen", "action": "turn_on", "outcome": "done", "topic": "z2m/kitchen/set",
        "payload": '{"state": "ON"}', "confirmed": True, "latency_ms": 41.5,
    })))
    assert ha_state(action, payload) == "turn_on light.kitchen done"
    assert json.loads(payload)["latency_ms"] == 41.5
    # An action event with fewer fields still makes a state, not a template error.
    payload = await published(probe, action["state_topic"], lambda: bridge.publish_event(
        Event("action", {"entity": "switch.fan", "outcome": "failed"})))
    assert ha_state(action, payload) == "switch.fan failed"


@run_async
async def test_the_next_timer_follows_the_timer_events(mosquitto, mqtt_probe, mqtt_bridges):
    cfg = mosquitto.mqtt_config()
    bridge = await running(mqtt_bridges, cfg)
    sensor = by_object(cfg)["next_timer"]
    assert sensor["device_class"] == "timestamp"
    probe = mqtt_probe(mosquitto)
    probe.subscribe(sensor["state_topic"])
    now = time.time()

    async def timer(event_type: str, timer_id: str, name: str, ends_at) -> tuple[str, dict]:
        event = Event(event_type, {"id": timer_id, "name": name, "total_s": 600, "remaining_s": 600,
                                   "ends_at": ends_at})
        payload = await published(probe, sensor["state_topic"], lambda: bridge.publish_event(event))
        return ha_state(sensor, payload), json.loads(payload)

    def instant(shown: str) -> datetime:
        return datetime.fromisoformat(shown)

    # At start (the core's first state) no timer of a previous process is left; "None" is
    # Home Assistant's unknown.
    payload = await published(probe, sensor["state_topic"])
    assert (ha_state(sensor, payload), json.loads(payload)) == (
        "None", {"next": None, "name": None, "count": 0, "timers": []}
    )
    await timer("timer_started", "t1", "tea", now + 900)
    shown, attributes = await timer("timer_started", "t2", "pasta", now + 300)
    assert instant(shown) == datetime.fromtimestamp(now + 300, timezone.utc)
    assert (attributes["name"], attributes["count"]) == ("pasta", 2)
    assert [entry["id"] for entry in attributes["timers"]] == ["t2", "t1"]
    # Extended past the other one (an ISO 8601 end is understood too).
    later = datetime.fromtimestamp(now + 1200, timezone.utc).isoformat()
    shown, attributes = await timer("timer_updated", "t2", "pasta", later)
    assert (instant(shown), attributes["name"]) == (datetime.fromtimestamp(now + 900, timezone.utc), "tea")
    shown, attributes = await timer("timer_finished", "t1", "tea", now + 900)
    assert (instant(shown), attributes["count"]) == (datetime.fromisoformat(later), 1)
    shown, attributes = await timer("timer_cancelled", "t2", "pasta", later)
    assert (shown, attributes["count"]) == ("None", 0)


# -- device triggers --------------------------------------------------------------------------


@run_async
async def test_device_triggers_fire_on_their_events(mosquitto, mqtt_probe, mqtt_bridges):
    cfg = mosquitto.mqtt_config()
    bridge = await running(mqtt_bridges, cfg)
    probe = mqtt_probe(mosquitto)
    triggers = {
        topic: message.json()
        for topic, message in probe.retained("homeassistant/device_automation/#").items()
    }
    assert triggers == {
        topic: config for topic, config in discovery_configs(cfg, DEVICE).items()
        if "/device_automation/" in topic
    }
    by_type = {config["type"]: config for config in triggers.values()}
    assert set(by_type) == {
        "wake_word_heard", "transcript", "reply_finished", "timer_finished", "command_not_understood",
    }
    for config in by_type.values():
        assert config["automation_type"] == "trigger" and config["subtype"] == "assistant"
        assert config["device"]["identifiers"] == [f"edge_assistant_{DEVICE}"]
        probe.subscribe(config["topic"])

    events = {
        "wake_word_heard": Event("wake", {"model": "hey_jarvis", "score": 0.9}),
        "transcript": Event("transcript", {"text": "turn on the light"}),
        "reply_finished": Event("reply", {"text": "Done.", "cancelled": False}),
        "timer_finished": Event("timer_finished", {"id": "t1", "name": "tea", "total_s": 60,
                                                   "remaining_s": 0, "ends_at": time.time()}),
        "command_not_understood": Event("error", {"code": "not_understood", "message": "no intent"}),
    }
    for trigger_type, event in events.items():
        bridge.publish_event(event)
        config = by_type[trigger_type]
        message = await asyncio.to_thread(probe.wait_for, config["topic"], lambda m: m.json()["type"] == event.type)
        if "value_template" in config:
            rendered = TEMPLATES.from_string(config["value_template"]).render(value_json=message.json())
            assert rendered == config["payload"]
    # Other errors do not fire "command not understood".
    not_understood = by_type["command_not_understood"]
    assert not_understood["payload"] in ERROR_CODES
    other = TEMPLATES.from_string(not_understood["value_template"]).render(value_json={"code": "busy"})
    assert other != not_understood["payload"]


# -- the daemon -------------------------------------------------------------------------------


@pytest.mark.slow
def test_the_daemon_after_sigkill_shows_its_own_values(tmp_path, mosquitto, mqtt_probe, scripted_gguf, daemons):
    prefix = "edge-assistant/hadev"
    config = f"""
[audio]
input_device = "none"
volume = 0.8
[llm]
model = "{scripted_gguf}"
max_tokens = 6
[mqtt]
host = "{mosquitto.host}"
port = {mosquitto.port}
device_id = "hadev"
reconnect_max_s = 1.0
[service]
state_dir = "{tmp_path / 'state'}"
earcons = false
"""
    probe = mqtt_probe(mosquitto)
    probe.subscribe(f"{prefix}/#")
    args = ["--output", str(tmp_path / "speaker.wav")]
    first = daemons(tmp_path, config, args=args).start()
    probe.wait_for(f"{prefix}/availability", lambda m: m.text == "online", timeout=slack(120))
    probe.publish(f"{prefix}/cmd/mute", '{"mute": true}')
    probe.publish(f"{prefix}/cmd/volume", "35")
    probe.wait_for(f"{prefix}/volume", lambda m: m.text == "35")
    probe.wait_for(f"{prefix}/state", lambda m: m.text == "muted")
    # A typed question becomes the last question; `listen` without a microphone the last error.
    probe.publish(f"{prefix}/cmd/ask", '{"text": "Typed, not spoken?", "speak": false, "id": "typed"}')
    question = probe.wait_for(f"{prefix}/last/question", lambda m: m.json().get("id") == "typed", timeout=60)
    assert (question.json()["type"], question.json()["text"]) == ("question", "Typed, not spoken?")
    probe.wait_for(f"{prefix}/last/reply", lambda m: m.json().get("id") == "typed", timeout=60)
    probe.publish(f"{prefix}/cmd/listen", '{"id": "no-mic"}')
    error = probe.wait_for(f"{prefix}/last/error", lambda m: m.json().get("id") == "no-mic")
    assert error.json()["code"] == "no_microphone"

    first.signal(signal.SIGKILL)
    first.wait(slack(10))
    probe.wait_for(f"{prefix}/availability", lambda m: m.text == "offline")
    mark = len(probe.messages)
    daemons(tmp_path, config, args=args).start()
    online = probe.wait_for(f"{prefix}/availability", lambda m: m.text == "online", since=mark, timeout=slack(120))
    before = {m.topic: m.text for m in published_before(probe, online, mark)}
    assert (before[f"{prefix}/mute"], before[f"{prefix}/volume"], before[f"{prefix}/state"]) == ("OFF", "80", "idle")
    retained = mqtt_probe(mosquitto).retained(f"{prefix}/#")
    assert retained[f"{prefix}/last/question"].json()["text"] == "Typed, not spoken?"
    assert retained[f"{prefix}/state"].text == "idle"
