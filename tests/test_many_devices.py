"""Two satellites on one mosquitto, answered by one LLM host (a real llama-cpp-python server):
device ids keep topics, Home Assistant entities and Hermes sites apart; broadcasts are opt-in."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest

from tests.support.llm_server_fixtures import ANSWER
from tests.support.timing import slack

pytestmark = pytest.mark.slow

PREFIX = "edge-assistant"
DEVICES = ("kitchen", "hall")


def device_config(directory: Path, broker, device_id: str, base_url: str, broadcast: bool) -> str:
    return f"""
[audio]
input_device = "none"
[llm]
backend = "openai"
base_url = "{base_url}"
max_tokens = 12
temperature = 0.0
seed = 1
timeout_s = 10.0
[mqtt]
host = "{broker.host}"
port = {broker.port}
device_id = "{device_id}"
hermes = true
broadcast_commands = {'true' if broadcast else 'false'}
reconnect_max_s = 1.0
metrics_interval_s = 0
[service]
state_dir = "{directory / 'state'}"
earcons = false
"""


def start_device(tmp_path, daemons, broker, device_id, base_url, broadcast):  # noqa: F811
    directory = tmp_path / device_id
    directory.mkdir()
    return daemons(directory, device_config(directory, broker, device_id, base_url, broadcast),
                   args=["--output", str(directory / "speaker.wav")]).start()


def ids(probe, device: str, since: int) -> set[str]:
    """Request ids in the events `device` published since `since`."""
    return {m.json().get("id") for m in probe.messages[since:]
            if m.topic.startswith(f"{PREFIX}/{device}/event/")} - {None}


def say(probe, device: str, request_id: str, text: str = "Okay.") -> None:
    probe.publish(f"{PREFIX}/{device}/cmd/say", json.dumps({"text": text, "id": request_id}))


def spoken(probe, device: str, request_id: str, since: int) -> dict:
    return probe.wait_for(f"{PREFIX}/{device}/event/tts_stop",
                          lambda m: m.json().get("id") == request_id, since=since, timeout=slack(60)).json()


def sync(probe, mark: int, tag: str) -> None:
    """Each device handles commands in order: once both have spoken a `say` sent now, anything
    they were going to do about earlier messages has been done."""
    for device in DEVICES:
        say(probe, device, f"{tag}-{device}")
    for device in DEVICES:
        spoken(probe, device, f"{tag}-{device}", mark)


def test_two_satellites_one_broker_one_llm_host(tmp_path, mosquitto, mqtt_probe, scripted_server, daemons):  # noqa: F811
    probe = mqtt_probe(mosquitto)
    probe.subscribe(f"{PREFIX}/#")
    probe.subscribe("hermes/#")
    kitchen = start_device(tmp_path, daemons, mosquitto, "kitchen", scripted_server.base_url, broadcast=True)
    hall = start_device(tmp_path, daemons, mosquitto, "hall", scripted_server.base_url, broadcast=False)
    try:
        for device in DEVICES:
            probe.wait_for(f"{PREFIX}/{device}/state", lambda m: m.text == "idle", timeout=slack(120))

        # Home Assistant: one device each, entities that never collide.
        discovery = {device: probe.retained(f"homeassistant/+/{device}/+/config") for device in DEVICES}
        # Entities; device triggers (device_automation) have no unique id.
        unique_ids = {device: {m.json()["unique_id"] for m in configs.values() if "unique_id" in m.json()}
                      for device, configs in discovery.items()}
        assert len(unique_ids["kitchen"]) == len(unique_ids["hall"]) == 14
        assert not unique_ids["kitchen"] & unique_ids["hall"]
        for device, configs in discovery.items():
            for message in configs.values():
                config = message.json()
                assert config["device"]["identifiers"] == [f"edge_assistant_{device}"]
                for key in ("state_topic", "command_topic", "availability_topic"):
                    if key in config:
                        assert config[key].startswith(f"{PREFIX}/{device}/"), (key, config)

        # An ask to the kitchen is answered, aloud, by the kitchen alone.
        mark = len(probe.messages)
        probe.publish(f"{PREFIX}/kitchen/cmd/ask", json.dumps({"text": "What is the weather like?", "id": "k1"}))
        stop = spoken(probe, "kitchen", "k1", mark)
        reply = probe.wait_for(f"{PREFIX}/kitchen/event/reply", lambda m: m.json().get("id") == "k1",
                               since=mark).json()
        assert reply["text"].startswith(ANSWER) and reply["model"] == str(scripted_server.model)
        assert stop["text"].startswith("It is sunny. Bring a hat!") and not stop["cancelled"]
        sentences = [m.json()["text"] for m in probe.messages[mark:]
                     if m.topic == f"{PREFIX}/kitchen/event/reply_sentence"]
        assert sentences[:2] == ["It is sunny.", "Bring a hat!"]
        probe.wait_for(f"{PREFIX}/kitchen/event/tts_start", lambda m: m.json().get("id") == "k1", since=mark)
        sync(probe, mark, "s1")
        assert ids(probe, "kitchen", mark) == {"k1", "s1-kitchen"}
        assert ids(probe, "hall", mark) == {"s1-hall"}
        assert probe.retained(f"{PREFIX}/hall/reply") == {}

        # Hermes: each device is its own siteId; the default site addresses nobody.
        mark = len(probe.messages)
        for request_id, site in (("hm0", "default"), ("hm1", "hall"), ("hm2", "kitchen")):
            probe.publish("hermes/tts/say", json.dumps({"text": "Hello there.", "siteId": site, "id": request_id}))
        finished = {}
        for request_id in ("hm1", "hm2"):
            finished[request_id] = probe.wait_for(
                "hermes/tts/sayFinished", lambda m, r=request_id: m.json().get("id") == r, since=mark, timeout=slack(60),
            ).json()["siteId"]
        assert finished == {"hm1": "hall", "hm2": "kitchen"}
        sync(probe, mark, "s2")
        assert ids(probe, "hall", mark) == {"hm1", "s2-hall"}
        assert ids(probe, "kitchen", mark) == {"hm2", "s2-kitchen"}
        assert len(probe.on("hermes/tts/sayFinished")) == 2

        # A broadcast reaches only the devices that opted in ...
        mark = len(probe.messages)
        probe.publish(f"{PREFIX}/all/cmd/say", json.dumps({"text": "Dinner is ready.", "id": "b1"}))
        spoken(probe, "kitchen", "b1", mark)
        sync(probe, mark, "s3")
        assert "b1" not in ids(probe, "hall", mark)

        # ... and every device once all have.
        hall.config.write_text(device_config(tmp_path / "hall", mosquitto, "hall", scripted_server.base_url,
                                             broadcast=True))
        mark = len(probe.messages)
        hall.signal(signal.SIGHUP)
        probe.wait_for(f"{PREFIX}/hall/availability", lambda m: m.text == "online", since=mark, timeout=slack(120))
        probe.publish(f"{PREFIX}/all/cmd/say", json.dumps({"text": "Dinner is ready.", "id": "b2"}))
        for device in DEVICES:
            assert spoken(probe, device, "b2", mark)["text"] == "Dinner is ready."
    except AssertionError as failure:
        raise AssertionError(f"{failure}\n--- kitchen\n{kitchen.log()[-2000:]}\n--- hall\n{hall.log()[-2000:]}") from None
    for daemon in (kitchen, hall):
        daemon.signal(signal.SIGTERM)
    for daemon in (kitchen, hall):
        assert daemon.wait(slack(30)) == 0, daemon.log()
