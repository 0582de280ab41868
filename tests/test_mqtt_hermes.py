"""Hermes (Rhasspy/Snips) compatibility of MqttBridge against a real mosquitto."""

from __future__ import annotations

import asyncio
import json

from edge_assistant.config import MqttConfig
from edge_assistant.events import Command, Event
from edge_assistant.mqtt import MqttBridge
from edge_assistant.mqtt.hermes import (
    HERMES_SAY,
    HERMES_SAY_FINISHED,
    HERMES_START_LISTENING,
    HERMES_TEXT_CAPTURED,
)
from tests.support.mqtt_fixtures import eventually, next_command, run_async

DEVICE = "dev1"


async def ready(mqtt_bridges, cfg: MqttConfig) -> MqttBridge:
    bridge = mqtt_bridges(cfg, DEVICE)
    await eventually(lambda: bridge.ready, what="bridge connected and subscribed")
    return bridge


@run_async
async def test_hermes_both_ways(mosquitto, mqtt_probe, mqtt_bridges):
    bridge = await ready(mqtt_bridges, mosquitto.mqtt_config(hermes=True))
    probe = mqtt_probe(mosquitto)
    probe.subscribe("hermes/#")
    probe.subscribe(bridge.topics.event("error"))

    # Out: wake -> hotword detected, transcript -> textCaptured.
    bridge.publish_event(Event("wake", {"model": "/models/hey_jarvis.tflite", "score": 0.93}))
    detected = await asyncio.to_thread(probe.wait_for, "hermes/hotword/+/detected")
    assert detected.topic == "hermes/hotword/hey_jarvis/detected"
    assert {key: detected.json()[key] for key in ("modelId", "siteId")} == {
        "modelId": "/models/hey_jarvis.tflite",
        "siteId": DEVICE,
    }
    # A first-pass text (stt.first_pass) may yet be wrong: Hermes hears the final one only.
    bridge.publish_event(Event("transcript", {"text": "what time is hit", "confidence": 0.7,
                                              "duration_s": 1.5, "pass": "fast"}))
    transcript = {"text": "what time is it", "confidence": 0.8, "duration_s": 1.5}
    bridge.publish_event(Event("transcript", transcript))
    captured = await asyncio.to_thread(probe.wait_for, HERMES_TEXT_CAPTURED)
    assert captured.json() == {
        "text": "what time is it",
        "likelihood": 0.8,
        "seconds": 1.5,
        "siteId": DEVICE,
        "sessionId": None,
    }

    # In: only what is addressed to this site.
    probe.publish(HERMES_SAY, json.dumps({"text": "not me", "siteId": "kitchen", "id": "k1"}))
    probe.publish(HERMES_SAY, json.dumps({"text": "no site", "id": "k2"}))
    say = {"text": "Hello", "siteId": DEVICE, "id": "h1", "sessionId": "s1", "lang": "en"}
    probe.publish(HERMES_SAY, json.dumps(say))
    assert await next_command(bridge) == Command("say", {"text": "Hello"}, "h1", origin="hermes")
    probe.publish(HERMES_START_LISTENING, json.dumps({"siteId": "kitchen", "sessionId": "k3"}))
    probe.publish(HERMES_START_LISTENING, json.dumps({"siteId": DEVICE, "sessionId": "s2"}))
    listen = await next_command(bridge)
    assert (listen.name, listen.data, listen.origin) == ("listen", {}, "hermes")
    assert listen.request_id

    # sayFinished answers only says that came over Hermes, with their id and session.
    bridge.publish_event(Event("tts_stop", {"text": "other", "cancelled": False}, request_id="not-hermes"))
    bridge.publish_event(Event("tts_stop", {"text": "Hello", "cancelled": False}, request_id="h1"))
    finished = await asyncio.to_thread(probe.wait_for, HERMES_SAY_FINISHED)
    assert finished.json() == {"id": "h1", "siteId": DEVICE, "sessionId": "s1"}

    # The transcript of a Hermes startListening carries its session.
    bridge.publish_event(
        Event(
            "transcript",
            {"text": "lights on", "confidence": 0.7, "duration_s": 1.0},
            request_id=listen.request_id,
        )
    )
    answer = await asyncio.to_thread(
        probe.wait_for, HERMES_TEXT_CAPTURED, lambda m: m.json()["text"] == "lights on"
    )
    assert answer.json()["sessionId"] == "s2"

    # Bad Hermes input is rejected like any other command input.
    probe.publish(HERMES_SAY, b"{oops")
    probe.publish(HERMES_SAY, json.dumps({"text": " ", "siteId": DEVICE, "id": "h3"}))
    errors = await asyncio.to_thread(probe.wait_count, bridge.topics.event("error"), 2)
    got = [(m.json()["code"], m.json().get("id")) for m in errors]
    assert got == [("bad_json", None), ("empty_text", "h3")]
    probe.publish(bridge.topics.command("say"), '{"text": "sentinel", "id": "sentinel"}')
    assert (await next_command(bridge)).request_id == "sentinel", "nothing else may have been queued"


@run_async
async def test_hermes_is_off_unless_enabled(mosquitto, mqtt_probe, mqtt_bridges):
    bridge = await ready(mqtt_bridges, mosquitto.mqtt_config())
    probe = mqtt_probe(mosquitto)
    probe.subscribe("hermes/#")
    probe.subscribe(bridge.topics.event("metrics"))
    bridge.publish_event(Event("wake", {"model": "hey_jarvis", "score": 0.9}))
    bridge.publish_event(Event("transcript", {"text": "hi", "confidence": 1.0, "duration_s": 1.0}))
    bridge.publish_event(Event("metrics", {"sentinel": True}))
    # Published in order: had Hermes messages gone out, they would be here before the sentinel.
    await asyncio.to_thread(probe.wait_for, bridge.topics.event("metrics"))
    assert probe.on("hermes/#") == []

    probe.publish(HERMES_SAY, json.dumps({"text": "Hello", "siteId": DEVICE, "id": "h1"}))
    probe.publish(bridge.topics.command("say"), '{"text": "sentinel", "id": "sentinel"}')
    assert (await next_command(bridge)).request_id == "sentinel"
