"""The daemon's lifecycle in-process: a stop or reload while the models load."""

import asyncio
import threading

from edge_assistant import service
from edge_assistant.config import Config
from edge_assistant.service import RunOptions, Service, SystemdNotifier


def test_stop_during_the_load_awaits_it_and_frees_what_it_loaded(monkeypatch):
    release = threading.Event()
    loads, closed = [], []

    class Loaded:
        def close(self):
            closed.append(self)

    def slow_load(config, with_listener, own_sound=None):
        loads.append(threading.current_thread().name)
        release.wait(10)
        return Loaded()

    monkeypatch.setattr(service, "load_models", slow_load)

    async def scenario():
        daemon = Service(None, Config(), RunOptions(), notifier=SystemdNotifier(""))
        loading = asyncio.create_task(daemon._load(daemon.config))
        await asyncio.sleep(0.2)
        daemon._on_signal(service.signal.SIGHUP)  # a reload asked for mid-load
        await asyncio.sleep(0.5)
        # Not abandoned: a reload starting now would hold two model sets at once.
        still_loading = not loading.done()
        release.set()
        return still_loading, await loading, daemon._next_config is not None

    still_loading, result, reload_pending = asyncio.run(scenario())
    assert still_loading and result is None and reload_pending
    assert len(loads) == 1 and len(closed) == 1


def test_sigterm_after_sighup_does_not_reload():
    daemon = Service(None, Config(), RunOptions(), notifier=SystemdNotifier(""))

    async def scenario():
        reload = daemon.request_reload()
        daemon._on_signal(service.signal.SIGTERM)
        await daemon._reload_check
        return reload.result()

    outcome = asyncio.run(scenario())
    assert daemon.stopping.is_set() and daemon._next_config is None and outcome["ok"] is False


def test_a_bad_input_file_leaves_no_mqtt_thread_and_no_model_behind(tmp_path, mosquitto, scripted_gguf):
    import pytest

    from edge_assistant.audio.wav import AudioFormatError
    from edge_assistant.config import from_mapping
    from edge_assistant.tts import shared_voices

    not_audio = tmp_path / "question.wav"
    not_audio.write_text("not a WAV file")
    config = from_mapping({
        "mqtt": {"host": mosquitto.host, "port": mosquitto.port, "device_id": "badinput"},
        "llm": {"model": str(scripted_gguf)},
        "service": {"state_dir": str(tmp_path / "state"), "earcons": False},
        "home": {"enabled": False},
    })
    voices_before = len(shared_voices)
    daemon = Service(None, config, RunOptions(input_wav=not_audio, output_wav=tmp_path / "out.wav"),
                     notifier=SystemdNotifier(""))
    with pytest.raises(AudioFormatError, match="question.wav"):
        asyncio.run(daemon.run())
    alive = [thread.name for thread in threading.enumerate() if thread.name.startswith("mqtt-publisher")]
    assert alive == [] and (daemon.bridge is None or not daemon.bridge.connected)
    assert len(shared_voices) == voices_before  # the models loaded for the run were let go


def test_a_reload_of_speech_and_llm_settings_keeps_the_device_online(tmp_path, mosquitto, mqtt_probe, scripted_gguf):
    from edge_assistant.config import load

    device = "keeponline"
    availability = f"edge-assistant/{device}/availability"
    config_path = tmp_path / "config.toml"

    def write_config(temperature: float, length_scale: float, speculative: str, keepalive: int = 60) -> None:
        config_path.write_text(f"""
[audio]
input_device = "none"
[llm]
model = "{scripted_gguf}"
temperature = {temperature}
max_tokens = 6
[tts]
length_scale = {length_scale}
[stt]
speculative = {speculative}
[mqtt]
host = "{mosquitto.host}"
port = {mosquitto.port}
device_id = "{device}"
keepalive = {keepalive}
[service]
state_dir = "{tmp_path / 'state'}"
earcons = false
[home]
enabled = false
""")

    write_config(0.0, 1.0, "true")
    probe = mqtt_probe(mosquitto)
    probe.subscribe(f"edge-assistant/{device}/#")
    daemon = Service(str(config_path), load(str(config_path)),
                     RunOptions(output_wav=tmp_path / "speaker.wav"), notifier=SystemdNotifier(""))

    async def scenario():
        running = asyncio.create_task(daemon.run())
        await asyncio.to_thread(probe.wait_for, availability, lambda m: m.text == "online", 120)
        bridge, mark = daemon.bridge, len(probe.messages)
        write_config(0.7, 1.2, "false")
        outcome = await asyncio.wait_for(daemon.request_reload(), 120)
        reloaded = daemon.config
        kept = daemon.bridge is bridge
        connects = bridge.stats["connects"]
        await asyncio.sleep(0.5)  # a goodbye said in the reload reaches the probe by then
        between = [m.text for m in probe.messages[mark:] if m.topic == availability]
        # A changed [mqtt] does need a new connection.
        write_config(0.7, 1.2, "false", keepalive=30)
        outcome_mqtt = await asyncio.wait_for(daemon.request_reload(), 120)
        replaced = daemon.bridge is not bridge and daemon.bridge is not None and not bridge.connected
        daemon._on_signal(service.signal.SIGTERM)
        return await running, outcome, reloaded, kept, connects, between, outcome_mqtt["ok"] and replaced

    status, outcome, reloaded, kept, connects, between, replaced = asyncio.run(scenario())
    assert status == 0 and outcome["ok"] and replaced, outcome
    assert reloaded.llm.temperature == 0.7 and reloaded.tts.length_scale == 1.2
    # Home Assistant saw the device online through the reload: no goodbye, no new connection.
    assert kept and connects == 1 and between == [], between
    # The stop still says goodbye.
    assert probe.retained(availability)[availability].text == "offline"
