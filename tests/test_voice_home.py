"""The daemon acting on the home and keeping timers, end to end: speech into the ALSA file
microphone, simulated devices that are real MQTT clients, what the speaker file says."""

import json
import signal
import time

import numpy as np
import pytest

from edge_assistant.audio.pcm import resample
from edge_assistant.audio.wav import read_wav
from edge_assistant.config import SttConfig
from edge_assistant.hearing.stt import create_transcriber
from tests.support.timing import slack

pytestmark = pytest.mark.slow

DEVICE = "homedev"
PREFIX = f"edge-assistant/{DEVICE}"
SPEAKER_RATE = 22050


def config_text(tmp_path, broker, expose='["Kitchen"]', audio='input_device = "none"', llm_model="") -> str:
    return f"""
[audio]
{audio}
[llm]
model = "{llm_model}"
temperature = 0.0
seed = 1
[mqtt]
host = "{broker.host}"
port = {broker.port}
device_id = "{DEVICE}"
reconnect_max_s = 1.0
metrics_interval_s = 0
[home]
expose = {expose}
settle_s = 5.0
[timers]
ring_interval_s = 1.0
ring_max_s = 30.0
[service]
state_dir = "{tmp_path / 'state'}"
earcons = false
"""


MICROPHONE = 'input_device = "testmic"\ninput_rate = 16000\noutput_device = "testspk"\noutput_rate = 22050'


def heard(samples: np.ndarray) -> str:
    return create_transcriber(SttConfig(engine="whisper")).transcribe(
        resample(samples, SPEAKER_RATE, 16000)).text.lower()


def spoken_to_the_daemon(text, tmp_path, mosquitto, mqtt_probe, alsa_devices, make_speech_wav, daemons):
    """The daemon on the ALSA file devices, `text` spoken into its microphone; (daemon, probe)."""
    alsa_devices.write_input(read_wav(make_speech_wav(text, lead_silence_s=1.0, tail_silence_s=10.0,
                                                      sentence_gap_s=0.6)))
    probe = mqtt_probe(mosquitto)
    probe.subscribe(f"{PREFIX}/#")
    daemon = daemons(tmp_path, config_text(tmp_path, mosquitto, audio=MICROPHONE), env=alsa_devices.env).start()
    return daemon, probe


def test_spoken_command_switches_the_light_and_says_so(tmp_path, mosquitto, mqtt_probe, home_devices, alsa_devices,
                                                     make_speech_wav, daemons):
    light = home_devices(mosquitto).zigbee_light("Kitchen Light", "Kitchen")
    daemon, probe = spoken_to_the_daemon("Hey Jarvis. Turn on the kitchen light.", tmp_path, mosquitto, mqtt_probe,
                                         alsa_devices, make_speech_wav, daemons)
    try:
        action = probe.wait_for(f"{PREFIX}/event/action", timeout=slack(300)).json()
        probe.wait_for(f"{PREFIX}/event/tts_stop", timeout=slack(60))
    except AssertionError:
        raise AssertionError(daemon.log())
    daemon.signal(signal.SIGTERM)
    assert daemon.wait(30) == 0, daemon.log()

    assert light.state["state"] == "ON"
    command = light.commands[-1]
    assert json.loads(command.payload) == {"state": "ON"} and command.retain is False
    assert action["confirmed"] is True and action["entity"] == "light.kitchen_light"
    intent = probe.wait_for(f"{PREFIX}/event/intent").json()
    assert intent["name"] == "HassTurnOn" and intent["source"] == "template"
    reply = probe.wait_for(f"{PREFIX}/event/reply").json()
    assert reply["source"] == "home" and "prompt_tokens" not in reply  # no LLM call
    spoken = heard(alsa_devices.output())
    assert "turned on" in spoken or "turn on" in spoken, spoken


def test_typed_question_takes_the_same_path_and_a_lock_needs_a_yes(
        tmp_path, mosquitto, mqtt_probe, home_devices, scripted_gguf, daemons):
    devices = home_devices(mosquitto)
    light = devices.zigbee_light("Kitchen Light", "Kitchen")
    lock = devices.door_lock("Front Door", "Hall")
    garage = devices.garage_door("Garage Door", "Garage")
    probe = mqtt_probe(mosquitto)
    probe.subscribe(f"{PREFIX}/#")
    # The lock by its id (with a spoken yes each time); the garage door only by its area, which
    # is never enough for a garage door.
    expose = '["Kitchen", "lock.front_door", "Garage"]'
    daemon = daemons(tmp_path, config_text(tmp_path, mosquitto, expose=expose, llm_model=scripted_gguf),
                     args=["--output", str(tmp_path / "speaker.wav")]).start()

    def ask(text: str, request_id: str) -> dict:
        probe.publish(f"{PREFIX}/cmd/ask", json.dumps({"text": text, "id": request_id}))
        return probe.wait_for(f"{PREFIX}/event/reply", lambda m: m.json().get("id") == request_id,
                              timeout=slack(60)).json()

    try:
        probe.wait_for(f"{PREFIX}/state", lambda m: m.text == "idle", timeout=slack(120))
        ask("turn on the kitchen light", "k1")
        action = probe.wait_for(f"{PREFIX}/event/action", lambda m: m.json().get("id") == "k1").json()
        assert action["confirmed"] is True and light.state["state"] == "ON"

        question = ask("unlock the front door", "k2")
        assert question["text"].endswith("?") and lock.commands == [], question
        ask("yes", "k3")
        unlocked = probe.wait_for(f"{PREFIX}/event/action", lambda m: m.json().get("id") == "k3").json()
        assert unlocked["entity"] == "lock.front_door" and lock.commands

        refused = ask("open the garage door", "k4")
        ask("turn on the fans in the kitchen", "k5")  # the kitchen has no fan
        probe.wait_for(f"{PREFIX}/event/error", lambda m: m.json().get("id") == "k5"
                       and m.json().get("code") == "not_understood")
    except AssertionError:
        raise AssertionError(daemon.log())
    daemon.signal(signal.SIGTERM)
    assert daemon.wait(30) == 0, daemon.log()
    assert "Front Door" in question["text"] and lock.state.get("state") == "UNLOCKED"
    assert garage.commands == [], refused


def test_spoken_timer_rings_on_the_speaker_until_stopped(tmp_path, mosquitto, mqtt_probe, alsa_devices,
                                                        make_speech_wav, daemons):
    daemon, probe = spoken_to_the_daemon("Hey Jarvis. Set a timer for two seconds.", tmp_path, mosquitto, mqtt_probe,
                                         alsa_devices, make_speech_wav, daemons)
    try:
        started = probe.wait_for(f"{PREFIX}/event/timer_started", timeout=slack(300)).json()
        assert started["total_s"] == 2
        probe.wait_for(f"{PREFIX}/event/timer_finished", timeout=slack(30))
        # It rings again and again until stopped.
        first = probe.wait_for(f"{PREFIX}/event/tts_stop", lambda m: "timer" in m.json().get("text", "").lower(),
                               timeout=slack(30))
        index = probe.messages.index(first)
        probe.wait_for(f"{PREFIX}/event/tts_stop", lambda m: "timer" in m.json().get("text", "").lower(),
                       timeout=slack(30), since=index + 1)
        probe.publish(f"{PREFIX}/cmd/stop", "")
        probe.wait_for(f"{PREFIX}/state", lambda m: m.text == "idle", timeout=slack(30))
    except AssertionError:
        raise AssertionError(daemon.log())
    daemon.signal(signal.SIGTERM)
    assert daemon.wait(30) == 0, daemon.log()
    spoken = alsa_devices.output()
    assert "timer" in heard(spoken)
    # The ring's bright beep (about 1 kHz) is on the speaker.
    spectrum = np.abs(np.fft.rfft(spoken.astype(np.float64)))
    frequencies = np.fft.rfftfreq(spoken.size, 1 / SPEAKER_RATE)
    band = spectrum[(frequencies > 1000) & (frequencies < 1100)].max()
    assert band > 5 * np.median(spectrum[(frequencies > 300) & (frequencies < 3000)])


def timers_list(probe) -> dict:
    return json.loads(probe.retained(f"{PREFIX}/timers")[f"{PREFIX}/timers"].text)


def test_timers_survive_sigkill_and_one_that_ended_meanwhile_is_announced(
        tmp_path, mosquitto, mqtt_probe, scripted_gguf, daemons):
    probe = mqtt_probe(mosquitto)
    probe.subscribe(f"{PREFIX}/#")
    config = config_text(tmp_path, mosquitto, llm_model=scripted_gguf).replace("ring_max_s = 30.0", "ring_max_s = 1.0")
    first = daemons(tmp_path, config, args=["--output", str(tmp_path / "speaker.wav")]).start()
    try:
        probe.wait_for(f"{PREFIX}/state", lambda m: m.text == "idle", timeout=slack(120))
        probe.publish(f"{PREFIX}/cmd/timer", json.dumps({"action": "start", "seconds": 120, "name": "pasta"}))
        probe.publish(f"{PREFIX}/cmd/timer", json.dumps({"action": "start", "seconds": 2, "name": "tea",
                                                         "id": "start-tea"}))
        tea = probe.wait_for(f"{PREFIX}/event/timer_started", lambda m: m.json().get("name") == "tea").json()
        # The timer's id, and the request's beside it.
        assert tea["request_id"] == "start-tea" and tea["id"] != "start-tea"
        assert {t["name"] for t in timers_list(probe)["timers"]} == {"pasta", "tea"}
    except AssertionError:
        raise AssertionError(first.log())
    first.signal(signal.SIGKILL)  # a power cut
    first.wait(10)
    time.sleep(4)  # the tea timer ends while the device is off, and its ringing time passes

    mark = len(probe.messages)
    second = daemons(tmp_path, config, args=["--output", str(tmp_path / "speaker2.wav")]).start()
    try:
        missed = probe.wait_for(f"{PREFIX}/event/timer_finished", lambda m: m.json().get("missed"),
                                timeout=slack(120), since=mark).json()
        announced = probe.wait_for(f"{PREFIX}/event/announce_start", timeout=slack(60), since=mark).json()
        restored = probe.wait_for(f"{PREFIX}/event/timer_updated", since=mark).json()
        added = len(probe.messages)
        probe.publish(f"{PREFIX}/cmd/timer", json.dumps({"action": "add", "name": "pasta", "seconds": 60}))
        updated = probe.wait_for(f"{PREFIX}/event/timer_updated", since=added).json()
    except AssertionError:
        raise AssertionError(second.log())
    second.signal(signal.SIGTERM)
    assert second.wait(30) == 0, second.log()
    assert missed["name"] == "tea"
    assert "tea" in announced["text"].lower() and "while i was off" in announced["text"].lower()
    # The pasta timer went on counting through the power cut: 120 s, minus the time since it
    # was set, plus the minute added.
    assert restored["name"] == "pasta" and 60 < restored["remaining_s"] < 120 - 4
    assert updated["name"] == "pasta" and 120 < updated["remaining_s"] < 180 - 4
    assert [t["name"] for t in timers_list(probe)["timers"]] == ["pasta"]


def test_timer_requests_are_bounded_and_a_corrupt_file_is_set_aside(tmp_path, mosquitto, mqtt_probe,
                                                                  scripted_gguf, daemons):
    state = tmp_path / "state"
    state.mkdir()
    (state / "timers.json").write_text("{not json")
    probe = mqtt_probe(mosquitto)
    probe.subscribe(f"{PREFIX}/#")
    config = config_text(tmp_path, mosquitto, llm_model=scripted_gguf).replace("[timers]", "[timers]\nmax_timers = 20")
    daemon = daemons(tmp_path, config, args=["--output", str(tmp_path / "speaker.wav")]).start()
    try:
        probe.wait_for(f"{PREFIX}/state", lambda m: m.text == "idle", timeout=slack(120))
        for index in range(1000):
            probe.publish(f"{PREFIX}/cmd/timer", json.dumps({"action": "start", "seconds": 600 + index}))
        probe.wait_for(f"{PREFIX}/event/error", lambda m: m.json().get("code") == "timer_limit", timeout=slack(60))
        deadline = time.monotonic() + slack(60)
        while len([m for m in probe.messages if m.topic.endswith("/event/timer_started")]) < 20:
            assert time.monotonic() < deadline
            time.sleep(0.1)
        time.sleep(1.0)
    except AssertionError:
        raise AssertionError(daemon.log())
    daemon.signal(signal.SIGTERM)
    assert daemon.wait(30) == 0, daemon.log()
    started = [m for m in probe.messages if m.topic.endswith("/event/timer_started")]
    refused = [m for m in probe.messages if m.topic.endswith("/event/error")
               and m.json().get("code") in ("timer_limit", "busy")]
    assert len(started) == 20 and len(started) + len(refused) <= 1000
    assert len(timers_list(probe)["timers"]) == 20
    assert [p.name for p in state.iterdir() if p.name.startswith("timers.json.")], "the corrupt file was not kept"


def test_ask_command_dry_run_shows_what_would_be_published(tmp_path, mosquitto, home_devices, scripted_gguf):
    import subprocess
    import sys

    light = home_devices(mosquitto).zigbee_light("Kitchen Light", "Kitchen")
    config = tmp_path / "config.toml"
    config.write_text(config_text(tmp_path, mosquitto, llm_model=scripted_gguf))

    def ask(*args: str) -> dict:
        result = subprocess.run([sys.executable, "-m", "edge_assistant.cli", "-c", str(config), "ask", "--json", *args],
                                capture_output=True, text=True, timeout=slack(120))
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout)

    planned = ask("--dry-run", "turn on the kitchen light")
    assert planned["source"] == "home" and planned["dry_run"] is True
    assert planned["intent"]["name"] == "HassTurnOn"
    [action] = planned["actions"]
    assert action["outcome"] == "dry_run" and action["topic"] == "zigbee2mqtt/Kitchen Light/set"
    assert json.loads(action["payload"]) == {"state": "ON"}
    assert light.commands == [] and light.state["state"] == "OFF"

    done = ask("turn on the kitchen light")
    assert done["actions"][0]["confirmed"] is True and light.state["state"] == "ON"
    assert "model" not in done  # no LLM call for a template match


def test_what_no_template_matches_goes_to_the_llm_under_the_home_grammar(mosquitto, home_devices):
    """SmolLM2-135M-Instruct (ChatML) decides; whatever it writes, the result is an action on an
    exposed device or a spoken answer, and nothing reaches a device that is not exposed."""
    import asyncio
    import threading

    from edge_assistant.config import from_mapping
    from edge_assistant.home.assistant import HomeControl
    from edge_assistant.thinking.llm import load_session
    from edge_assistant.respond import Responder, Response
    from tests.test_home_tools import smollm2_path

    devices = home_devices(mosquitto)
    light = devices.zigbee_light("Kitchen Light", "Kitchen")
    lock = devices.door_lock("Front Door", "Hall")
    config = from_mapping({
        "mqtt": {"host": mosquitto.host, "port": mosquitto.port, "device_id": "llmhome"},
        "home": {"expose": ["Kitchen"], "settle_s": 5.0},
        "llm": {"model": str(smollm2_path()), "temperature": 0.0, "seed": 1, "n_ctx": 2048, "max_tokens": 64},
    })
    session = load_session(config)
    questions = ("I can't see anything in the kitchen, help me", "it is too bright where I cook",
                 "open the front door for the guests", "what is a good name for a cat?")

    async def scenario():
        home = HomeControl(config)
        await home.start()
        responder = Responder(session, home=home)
        context, toolbox = responder.tool_context()
        acting = {t.entity_id for tool, targets in toolbox.targets.items() if tool != "get_state" for t in targets}
        assert "light.kitchen_light" in context and "light.kitchen_light" in acting
        assert "lock.front_door" not in acting  # known (it can be asked about), not exposed
        answers = []
        for question in questions:
            response = Response()
            events = []
            sentences = [s async for s in responder.sentences(question, threading.Event(), response,
                                                              lambda kind, data: events.append((kind, data)))]
            answers.append((question, response, sentences, events))
        await home.aclose()
        return answers

    answers = asyncio.run(scenario())
    # The front door is in no exposed area, so the assistant does not know it: said so by the
    # device, without asking the model (which would claim the door open).
    [door] = [answer for answer in answers if answer[0].startswith("open the front door")]
    assert door[1].source == "device" and door[2] == ["Sorry, I don't know that device."]
    answers.remove(door)
    # The device list sits in the system prompt, the same every turn: after the first question
    # it comes from the KV cache.
    context_tokens = answers[0][1].reply.generation.prompt_tokens - 30
    assert all(response.reply.generation.cached_tokens >= context_tokens for _, response, _, _ in answers[1:])
    for question, response, sentences, events in answers:
        assert response.source == "llm", question
        assert response.reply is not None and response.reply.prompt.grammar
        if response.actions:
            assert {action["entity"] for action in response.actions} <= {"light.kitchen_light"}, question
        else:
            assert sentences and response.text, (question, events)
    assert lock.commands == []
    session.engine.close()


def test_listen_json_shows_what_a_spoken_command_would_do(tmp_path, mosquitto, home_devices, make_speech_wav):
    import subprocess
    import sys

    light = home_devices(mosquitto).zigbee_light("Kitchen Light", "Kitchen")
    config = tmp_path / "config.toml"
    config.write_text(config_text(tmp_path, mosquitto))
    wav = make_speech_wav("Hey Jarvis. Turn on the kitchen light.", lead_silence_s=1.0, tail_silence_s=2.0,
                          sentence_gap_s=0.6)
    result = subprocess.run([sys.executable, "-m", "edge_assistant.cli", "-c", str(config), "listen", "--json",
                             "--input", str(wav), "--turns", "1"],
                            capture_output=True, text=True, timeout=slack(300))
    assert result.returncode == 0, result.stderr
    events = [json.loads(line) for line in result.stdout.splitlines()]
    transcript = next(e for e in events if e["type"] == "transcript")
    intent = next(e for e in events if e["type"] == "intent")
    action = next(e for e in events if e["type"] == "action")
    assert intent["name"] == "HassTurnOn" and intent["turn_id"] == transcript["turn_id"]
    assert action["entity"] == "light.kitchen_light" and action["outcome"] == "dry_run"
    assert light.commands == []  # listening acts on nothing
