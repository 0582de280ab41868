"""The speech commands as a user runs them: devices, say, transcribe, listen, mqtt unregister."""

import asyncio
import dataclasses
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from edge_assistant.audio.devices import list_devices
from edge_assistant.audio.pcm import SAMPLE_RATE, resample
from edge_assistant.audio.wav import read_wav
from edge_assistant.cli.speech import say
from edge_assistant.config import from_mapping
from edge_assistant.tts import Synthesizer

# Without noise piper is deterministic, so audio can be compared sample for sample.
EXACT = {"noise_scale": 0.0, "noise_w_scale": 0.0}


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


@pytest.fixture(scope="module")
def synth():
    synthesizer = Synthesizer(from_mapping({"tts": EXACT}).tts)
    yield synthesizer
    synthesizer.close()


def exact_config(tmp_path, **audio):
    config = from_mapping({"tts": EXACT, "service": {"state_dir": str(tmp_path / "state")}})
    return dataclasses.replace(config, audio=audio["audio"]) if audio else config


def test_say_writes_a_wav_at_the_voice_rate(tmp_path, synth):
    out = tmp_path / "said.wav"
    text = "Hello. The door is locked."
    asyncio.run(say(exact_config(tmp_path), text, out_path=out))
    expected = np.concatenate([c.samples for c in synth.synthesize(text)])
    assert np.array_equal(read_wav(out, sample_rate=22050), expected)
    with open(out, "rb") as f:
        assert f.read(4) == b"RIFF"


def test_say_nothing_writes_an_empty_wav(tmp_path):
    out = tmp_path / "empty.wav"
    asyncio.run(say(exact_config(tmp_path), "  ", out_path=out))
    assert read_wav(out).size == 0


def test_say_through_the_speaker_device(tmp_path, alsa_devices, synth):
    text = "Testing the speaker. One, two, three."
    asyncio.run(say(exact_config(tmp_path, audio=alsa_devices.audio_config(output_rate=0)), text))
    rate = int(
        next(d for d in list_devices() if d["name"] == "testspk")["default_samplerate"]
    )
    played = alsa_devices.output()
    chunks = list(synth.synthesize(text))
    expected = sum(len(resample(c.samples, c.sample_rate, rate)) for c in chunks)
    assert len(played) == expected
    assert float(np.sqrt(np.mean(played.astype(np.float64) ** 2))) > 1000


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
