"""The speech commands as a user runs them: devices, say, transcribe, listen, mqtt unregister."""

import json
import os
import subprocess
import sys

import numpy as np

from edge_assistant.audio.pcm import SAMPLE_RATE
from edge_assistant.audio.wav import read_wav


def run(*args, env=None, timeout=180):
    return subprocess.run(
        [sys.executable, "-m", "edge_assistant.cli", *args],
        capture_output=True, text=True, env={**os.environ, **(env or {})}, timeout=timeout,
    )


def test_devices_lists_the_test_devices(alsa_devices):
    listed = run("devices", "--json", env=alsa_devices.env)
    assert listed.returncode == 0, listed.stderr
    names = {device["name"] for device in json.loads(listed.stdout)}
    assert {"testmic", "testspk"} <= names
    table = run("devices", env=alsa_devices.env)
    assert "testmic" in table.stdout and "default input" in table.stdout


def test_say_to_a_file_then_transcribe_it(tmp_path):
    out = tmp_path / "said.wav"
    said = run("say", "--out", str(out), "The party starts at noon.")
    assert said.returncode == 0, said.stderr
    assert read_wav(out).size > SAMPLE_RATE
    heard = run("transcribe", "--json", str(out))
    assert heard.returncode == 0, heard.stderr
    transcript = json.loads(heard.stdout)
    assert "noon" in transcript["text"].lower() and transcript["engine"] == "whisper"
    assert {"confidence", "duration_s", "latency_s"} <= set(transcript)


def test_say_on_the_speaker_device(alsa_devices):
    config = alsa_devices.env
    said = run("say", "Hello there.", env={**config, "EDGE_ASSISTANT_AUDIO_OUTPUT_DEVICE": "testspk"})
    assert said.returncode == 0, said.stderr
    assert np.abs(alsa_devices.output().astype(np.int32)).max() > 3000


def test_transcribe_rejects_a_file_that_is_not_a_wav(tmp_path):
    junk = tmp_path / "junk.wav"
    junk.write_bytes(b"ID3\x03 not a wave file")
    result = run("transcribe", str(junk))
    assert result.returncode == 1
    assert "junk.wav" in result.stderr and "Traceback" not in result.stderr


def test_listen_prints_one_json_line_per_event(make_speech_wav):
    clip = make_speech_wav("Hey Jarvis. What is the capital of France?", sentence_gap_s=0.6)
    result = run("listen", "--json", "--input", str(clip))
    assert result.returncode == 0, result.stderr
    events = [json.loads(line) for line in result.stdout.splitlines()]
    types = [event["type"] for event in events if event["type"] != "transcript_partial"]
    assert types == ["wake", "speech_start", "speech_end", "transcript"]
    assert "france" in events[-1]["text"].lower()
    assert len({event["turn_id"] for event in events}) == 1


def test_mqtt_unregister_clears_discovery(tmp_path, mosquitto, mqtt_probe):
    config = tmp_path / "c.toml"
    config.write_text(f"[mqtt]\nhost = '{mosquitto.host}'\nport = {mosquitto.port}\ndevice_id = 'den'\n")
    probe = mqtt_probe(mosquitto)
    topic = "homeassistant/sensor/den/state/config"
    probe.publish(topic, b'{"name": "old"}', retain=True)
    result = run("-c", str(config), "mqtt", "unregister")
    assert result.returncode == 0, result.stderr
    assert topic in result.stdout.split()
    assert topic not in probe.retained("homeassistant/#")
