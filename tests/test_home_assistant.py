"""The assistant against a real Home Assistant core (its MQTT integration, a real mosquitto),
set up as a new user would: onboarding, the MQTT integration added through its config flow,
everything checked through HA's own REST and websocket APIs.

HA needs Python >= 3.13, so it runs in a Debian 13 chroot that scripts/home-assistant-env.sh
makes with debootstrap and caches under /var/cache/edge-assistant-tests (the first run downloads
and installs for several minutes). Skipped only where debootstrap cannot run (not root, or
debootstrap not installed). Broker-level checks of the same: tests/test_mqtt_home_assistant.py.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import time
from datetime import datetime
from pathlib import Path

import pytest

from edge_assistant.events import Event
from edge_assistant.health import Health, device_fix
from edge_assistant.mqtt.client import dumps
from edge_assistant.mqtt.retained import RetainedStates
from edge_assistant.mqtt.topics import Topics
from tests.support.home_assistant import ENV_SCRIPT, HomeAssistant
from tests.support.mqtt_fixtures import free_port
from tests.support.timing import slack

pytestmark = pytest.mark.slow

DEVICE = "hadev"
PREFIX = f"edge-assistant/{DEVICE}"
ENTITIES = {  # object id -> domain
    "state": "sensor", "transcript": "sensor", "reply": "sensor", "error": "sensor", "action": "sensor",
    "next_timer": "sensor", "problem": "binary_sensor", "mute": "switch", "listen": "button", "cancel": "button", "reset": "button",
    "ask": "text", "say": "text", "volume": "number",
}
TRIGGERS = {"wake_word_heard", "transcript", "reply_finished", "timer_finished", "command_not_understood"}


@pytest.fixture(scope="module")
def home_assistant_root() -> Path:
    if os.geteuid() != 0:
        pytest.skip("a real Home Assistant needs root here: debootstrap and chroot")
    if shutil.which("debootstrap", path=os.environ.get("PATH", "") + ":/usr/sbin:/sbin") is None:
        pytest.skip("debootstrap is not installed (scripts/setup.sh installs it)")
    result = subprocess.run(["bash", str(ENV_SCRIPT)], capture_output=True, text=True, timeout=3000)
    if result.returncode != 0:
        pytest.fail(f"{ENV_SCRIPT.name} failed ({result.returncode}):\n{result.stderr[-6000:]}")
    return Path(result.stdout.strip().splitlines()[-1])


@pytest.fixture
def home_assistant(home_assistant_root):
    ha = HomeAssistant(home_assistant_root, free_port())
    ha.start()
    yield ha
    ha.stop()


def daemon_config(tmp_path, broker, model) -> str:
    return f"""
[audio]
input_device = "none"
volume = 0.8
[llm]
model = "{model}"
# Long enough for a reply over Home Assistant's 255 characters.
max_tokens = 88
[mqtt]
host = "{broker.host}"
port = {broker.port}
device_id = "{DEVICE}"
reconnect_max_s = 1.0
[service]
state_dir = "{tmp_path / 'state'}"
earcons = false
"""


def entity_ids(ha: HomeAssistant) -> dict[str, str]:
    """Object id -> entity id of this device's entities, from HA's entity registry."""
    [reply] = ha.websocket({"type": "config/entity_registry/list"})
    prefix = f"edge_assistant_{DEVICE}_"
    return {
        entry["unique_id"][len(prefix):]: entry["entity_id"]
        for entry in reply["result"]
        if entry["platform"] == "mqtt" and entry["unique_id"].startswith(prefix)
    }


def automation(ha: HomeAssistant, automation_id: str, trigger: dict, topic: str, payload: str) -> None:
    """An automation as HA's editor saves it: the device trigger, publishing on `topic`."""
    ha.rest("POST", f"/api/config/automation/config/{automation_id}", {
        "alias": f"edge {automation_id}",
        "triggers": [{key: value for key, value in trigger.items() if key != "metadata"}],
        "actions": [{"action": "mqtt.publish", "data": {"topic": topic, "payload": payload}}],
    })


@pytest.mark.timeout(3600)  # the first run prepares the chroot
def test_home_assistant_sees_and_drives_the_assistant(
    tmp_path, mosquitto, mqtt_probe, scripted_gguf, daemons, home_assistant
):
    ha = home_assistant
    probe = mqtt_probe(mosquitto)
    probe.subscribe(f"{PREFIX}/#")
    probe.subscribe("ha-test/#")
    config = daemon_config(tmp_path, mosquitto, scripted_gguf)
    args = ["--output", str(tmp_path / "speaker.wav")]
    first = daemons(tmp_path, config, args=args).start()
    try:
        ha.wait_until_up()
        ha.onboard()
        ha.add_mqtt(mosquitto.host, mosquitto.port)
        run_the_scenario(ha, probe, first, lambda: daemons(tmp_path, config, args=args).start())
    except AssertionError as error:
        raise AssertionError(f"{error}\n\nHome Assistant:\n{ha.log()}") from None


def run_the_scenario(ha: HomeAssistant, probe, daemon, start_daemon) -> None:
    # -- discovery: every entity, available, with this process's values --------------------
    deadline = time.monotonic() + slack(120)
    while (entities := entity_ids(ha)).keys() != ENTITIES.keys():
        assert time.monotonic() < deadline, f"entities in HA: {sorted(entities)}"
        time.sleep(1)
    assert {name: entity.split(".")[0] for name, entity in entities.items()} == ENTITIES
    ha.wait_for_state(entities["state"], lambda s: s["state"] == "idle", timeout=slack(120))
    assert ha.state(entities["mute"])["state"] == "off"
    assert float(ha.state(entities["volume"])["state"]) == 80
    assert ha.state(entities["next_timer"])["state"] == "unknown"
    for name in ("ask", "say"):
        attributes = ha.state(entities[name])["attributes"]
        assert (attributes["min"], attributes["max"]) == (1, 255)

    # -- device triggers, and automations built on them ------------------------------------
    device_id = ha.template("{{ device_id('%s') }}" % entities["state"])
    [reply] = ha.websocket({"type": "device_automation/trigger/list", "device_id": device_id})
    triggers = {trigger["type"]: trigger for trigger in reply["result"] if trigger["domain"] == "mqtt"}
    assert set(triggers) == TRIGGERS
    automation(ha, "reply", triggers["reply_finished"], "ha-test/reply", "{{ trigger.payload_json.text[:12] }}")
    automation(ha, "not_understood", triggers["command_not_understood"], "ha-test/not-understood",
               "{{ trigger.payload_json.message }}")
    ha.wait_for_state("automation.edge_not_understood", lambda s: s["state"] == "on")
    # HA subscribes to a trigger's topic a moment after the automation is on; an event before
    # that is missed (seen once: the reply came 0.36 s after). Go on once one gets through.
    deadline = time.monotonic() + slack(30)
    while True:
        mark = len(probe.messages)
        probe.publish(f"{PREFIX}/event/reply", json.dumps({"schema": 1, "type": "reply", "text": "subscribed"}))
        try:
            probe.wait_for("ha-test/reply", lambda m: m.text == "subscribed", timeout=1.0, since=mark)
            break
        except AssertionError:
            assert time.monotonic() < deadline, "the reply_finished automation never fired"

    # -- a typed question: last question, a long reply, the automation, cancel -------------
    question = "What is the weather like for a picnic?"
    asking = len(probe.messages)
    ha.call("text", "set_value", entity_id=entities["ask"], value=question)
    asked = ha.wait_for_state(entities["transcript"], lambda s: s["state"] == question, what="typed question")
    assert (asked["attributes"]["type"], asked["attributes"]["origin"]) == ("question", "mqtt")
    reply = ha.wait_for_state(entities["reply"], lambda s: s["state"].startswith("It is sunny"), timeout=slack(120))
    full_text = reply["attributes"]["text"]
    # The state is the start (HA strips what its templates render), the attribute the whole.
    assert len(full_text) > 255 and reply["state"] == full_text[:255].strip()
    assert probe.wait_for("ha-test/reply", timeout=slack(30), since=asking).text == "It is sunny."
    ha.wait_for_state(entities["state"], lambda s: s["state"] == "speaking")
    ha.call("button", "press", entity_id=entities["cancel"])
    stop = probe.wait_for(f"{PREFIX}/event/tts_stop", timeout=slack(30)).json()
    assert stop["cancelled"] is True
    ha.wait_for_state(entities["state"], lambda s: s["state"] == "idle")

    # Over-long input: HA refuses it with its own message (what its frontend shows).
    [refused] = ha.websocket({"type": "call_service", "domain": "text", "service": "set_value",
                              "service_data": {"entity_id": entities["ask"], "value": "x" * 256}}, check=False)
    assert not refused["success"] and "too long (maximum length 255)" in refused["error"]["message"]

    # -- announce, listen (no microphone: the error reaches HA), reset ---------------------
    mark = len(probe.messages)
    ha.call("text", "set_value", entity_id=entities["say"], value="Dinner is ready.")
    said = probe.wait_for(f"{PREFIX}/event/tts_stop", since=mark, timeout=slack(60)).json()
    assert said["text"] == "Dinner is ready." and said["cancelled"] is False
    ha.call("button", "press", entity_id=entities["listen"])
    error = ha.wait_for_state(entities["error"], lambda s: s["state"] == "no_microphone")
    assert error["attributes"]["message"]
    mark = len(probe.messages)
    ha.call("button", "press", entity_id=entities["reset"])
    probe.wait_for(f"{PREFIX}/cmd/reset", since=mark)

    # -- "command not understood" fires on that error code only ----------------------------
    for code, message in (("busy", "not this one"), ("not_understood", "turn on the moon")):
        event = {"schema": 1, "type": "error", "timestamp": time.time(), "code": code, "message": message}
        probe.publish(f"{PREFIX}/event/error", json.dumps(event))
    assert probe.wait_for("ha-test/not-understood").text == "turn on the moon"

    # -- the timer and action sensors, fed what the bridge publishes for those events ---------
    # (the events come from the timers and the home control, tested there)
    retained = RetainedStates(Topics("edge-assistant", DEVICE))
    ends_at = time.time() + 600
    for event in (
        Event("timer_started", {"id": "t1", "name": "tea", "total_s": 600, "remaining_s": 600, "ends_at": ends_at}),
        Event("action", {"entity": "light.kitchen", "action": "turn_on", "outcome": "done", "confirmed": True}),
    ):
        for topic, payload in retained.updates(event, dumps(event.to_json_dict())):
            probe.publish(topic, payload, retain=True)
    timer = ha.wait_for_state(entities["next_timer"], lambda s: s["state"] != "unknown")
    assert abs(datetime.fromisoformat(timer["state"]).timestamp() - ends_at) < 1
    assert (timer["attributes"]["name"], timer["attributes"]["count"]) == ("tea", 1)
    assert timer["attributes"]["device_class"] == "timestamp"
    action = ha.wait_for_state(entities["action"], lambda s: s["state"] != "unknown")
    assert (action["state"], action["attributes"]["confirmed"]) == ("turn_on light.kitchen done", True)

    # -- the problem sensor: off while every part works, on with the reason -------------------
    assert ha.state(entities["problem"])["state"] == "off"
    health = Health()  # what the daemon publishes when its speaker is unplugged
    health.failed("speaker", "missing, retrying", "output device 'USB Speaker' not found", device_fix("output"))
    probe.publish(f"{PREFIX}/health", dumps(health.to_json()), retain=True)
    problem = ha.wait_for_state(entities["problem"], lambda s: s["state"] == "on")
    assert problem["attributes"]["reason"] == "speaker missing, retrying"
    assert problem["attributes"]["device_class"] == "problem"

    # -- mute and volume from HA ------------------------------------------------------------
    ha.call("switch", "turn_on", entity_id=entities["mute"])
    ha.wait_for_state(entities["state"], lambda s: s["state"] == "muted")
    ha.call("number", "set_value", entity_id=entities["volume"], value=35)
    ha.wait_for_state(entities["volume"], lambda s: float(s["state"]) == 35)
    assert ha.state(entities["mute"])["state"] == "on"

    # -- SIGKILL and restart: unavailable, then only the new process's values ----------------
    daemon.signal(signal.SIGKILL)  # a crash or a power cut: the broker sends the last will
    daemon.wait(slack(10))
    ha.wait_for_state(entities["state"], lambda s: s["state"] == "unavailable", what="unavailable after SIGKILL")
    start_daemon()
    watched = " ".join("{{ states('%s') }}" % entities[name] for name in ("state", "mute", "volume", "next_timer"))
    deadline = time.monotonic() + slack(120)
    while (seen := ha.template(watched).split())[0] == "unavailable":
        assert time.monotonic() < deadline, "the restarted assistant never became available"
        time.sleep(0.1)
    # The first values HA shows as available are the new process's (its timers: none yet).
    state, mute, volume, next_timer = seen
    assert (state, mute, float(volume), next_timer) == ("idle", "off", 80, "unknown"), seen
    assert ha.state(entities["problem"])["state"] == "off"  # the new process's health
    assert ha.state(entities["reply"])["attributes"]["text"] == full_text  # history stays

    # -- no warning in HA's log but the expected ones ---------------------------------------
    expected = (
        "Skipping pip installation",  # --skip-pip: the requirements are installed beforehand
        "[homeassistant.components.websocket_api.http.connection]",  # the over-long text refused
    )
    problems = [
        line for line in (ha.config_dir / "home-assistant.log").read_text().splitlines()
        if re.search(r"^\S+ \S+ (WARNING|ERROR|CRITICAL) ", line) and not any(text in line for text in expected)
    ]
    assert problems == []
