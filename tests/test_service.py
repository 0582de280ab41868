"""The daemon as a subprocess, as systemd runs it: real models, a real mosquitto, real PortAudio
devices backed by files, sd_notify on a test socket, signals."""

import json
import signal
import time

import numpy as np
import pytest

from edge_assistant.audio.pcm import SAMPLE_RATE, resample
from edge_assistant.audio.wav import read_wav
from edge_assistant.config import SttConfig
from edge_assistant.hearing.stt import create_transcriber
from tests.support.speech_fixtures import similarity
from tests.support.timing import slack

pytestmark = pytest.mark.slow

DEVICE = "testdev"
PREFIX = f"edge-assistant/{DEVICE}"


def config_text(tmp_path, broker, llm_model="", llm_extra="", audio_text='input_device = "none"',
                metrics_s=0, **extra) -> str:
    text = f"""
[audio]
{audio_text}
[llm]
model = "{llm_model}"
temperature = 0.0
seed = 1
{llm_extra}
[mqtt]
host = "{broker.host}"
port = {broker.port}
device_id = "{DEVICE}"
reconnect_max_s = 1.0
metrics_interval_s = {metrics_s}
[service]
state_dir = "{tmp_path / 'state'}"
earcons = false
"""
    for table, body in extra.items():
        text += f"[{table}]\n{body}\n"
    return text


def event_types(probe, since=0):
    return [m.topic.rsplit("/", 1)[-1] for m in probe.messages[since:] if "/event/" in m.topic]


def transcribe(samples: np.ndarray, rate: int) -> str:
    resampled = resample(samples, rate, SAMPLE_RATE)
    return create_transcriber(SttConfig(engine="whisper")).transcribe(resampled).text


def test_spoken_question_end_to_end(tmp_path, mosquitto, mqtt_probe, alsa_devices, make_speech_wav, daemons):
    question = read_wav(make_speech_wav(
        "Hey Jarvis. What is the capital of France?", lead_silence_s=1.0, tail_silence_s=8.0,
        sentence_gap_s=0.6,
    ))
    alsa_devices.write_input(question)
    probe = mqtt_probe(mosquitto)
    probe.subscribe(f"{PREFIX}/#")
    daemon = daemons(tmp_path, config_text(
        tmp_path, mosquitto,
        audio_text='input_device = "testmic"\ninput_rate = 16000\noutput_device = "testspk"\noutput_rate = 22050',
    ), env=alsa_devices.env).start()
    try:
        probe.wait_for(f"{PREFIX}/event/tts_stop", timeout=300)
        probe.wait_for(f"{PREFIX}/state", lambda m: m.text == "idle", timeout=30)
    except AssertionError:
        raise AssertionError(daemon.log())
    daemon.signal(signal.SIGTERM)
    assert daemon.wait(30) == 0, daemon.log()

    types = event_types(probe)
    order = ["wake", "speech_start", "speech_end", "transcript", "reply_sentence", "reply", "tts_start", "tts_stop"]
    positions = [types.index(name) for name in order]
    assert positions == sorted(positions), types
    transcript = probe.wait_for(f"{PREFIX}/event/transcript").json()
    assert "capital" in transcript["text"].lower() and "france" in transcript["text"].lower()
    reply = probe.wait_for(f"{PREFIX}/event/reply").json()
    assert reply["text"].strip() and reply["completion_tokens"] > 0, reply
    assert reply["turn_id"] == transcript["turn_id"]
    assert probe.retained(f"{PREFIX}/availability")[f"{PREFIX}/availability"].text == "offline"

    spoken = alsa_devices.output()
    assert np.abs(spoken.astype(np.int32)).max() > 3000, "the speaker got no speech"
    # A one-word reply ("Paris.") is hard for Whisper tiny; close is what "approximately" means.
    heard = transcribe(spoken, 22050)
    assert similarity(heard, reply["text"]) >= 0.7, (heard, reply["text"])


def test_mqtt_ask_and_say_go_through_the_same_pipeline(tmp_path, mosquitto, mqtt_probe, scripted_gguf, daemons):
    probe = mqtt_probe(mosquitto)
    probe.subscribe(f"{PREFIX}/#")
    output = tmp_path / "speaker.wav"
    daemon = daemons(tmp_path, config_text(tmp_path, mosquitto, llm_model=scripted_gguf, llm_extra="max_tokens = 12",
                                           metrics_s=0.5),
                     args=["--output", str(output)]).start()
    probe.wait_for(f"{PREFIX}/availability", lambda m: m.text == "online", timeout=120)
    probe.wait_for(f"{PREFIX}/state", lambda m: m.text == "idle", timeout=120)

    probe.publish(f"{PREFIX}/cmd/ask", json.dumps({"text": "What is the weather like for a picnic?", "id": "q1"}))
    stop = probe.wait_for(f"{PREFIX}/event/tts_stop", lambda m: m.json().get("id") == "q1", timeout=120).json()
    reply = probe.wait_for(f"{PREFIX}/event/reply", lambda m: m.json().get("id") == "q1").json()
    assert reply["text"].startswith("It is sunny. Bring a hat!")
    assert reply["completion_tokens"] >= 12 and set(reply["timings"]) >= {"first_token_ms", "tokens_per_s"}
    assert stop["cancelled"] is False
    sentences = [m.json()["text"] for m in probe.on(f"{PREFIX}/event/reply_sentence") if m.json().get("id") == "q1"]
    assert sentences[:2] == ["It is sunny.", "Bring a hat!"]

    mark = len(probe.messages)
    probe.publish(f"{PREFIX}/cmd/ask", json.dumps({"text": "And tomorrow?", "speak": False, "id": "q2"}))
    second = probe.wait_for(f"{PREFIX}/event/reply", lambda m: m.json().get("id") == "q2", since=mark).json()
    # The second turn saw the first one: its prompt was longer and mostly cached.
    assert second["prompt_tokens"] > reply["prompt_tokens"]
    assert second["cached_tokens"] >= reply["prompt_tokens"] - 1
    probe.publish(f"{PREFIX}/cmd/say", json.dumps({"text": "Goodbye for now.", "id": "s1"}))
    said = probe.wait_for(f"{PREFIX}/event/tts_stop", lambda m: m.json().get("id") == "s1", since=mark, timeout=60)
    assert said.json()["text"] == "Goodbye for now."
    assert not [m for m in probe.messages[mark:] if m.topic.endswith("/event/tts_start") and m.json().get("id") == "q2"]

    # Barge-in over MQTT: `cancel` stops a long announcement mid-sentence.
    probe.publish(f"{PREFIX}/cmd/say", json.dumps({"text": "This is a very long announcement. " * 6, "id": "long"}))
    probe.wait_for(f"{PREFIX}/event/tts_start", lambda m: m.json().get("id") == "long", timeout=60)
    probe.publish(f"{PREFIX}/cmd/cancel", "")
    cut = probe.wait_for(f"{PREFIX}/event/tts_stop", lambda m: m.json().get("id") == "long", timeout=30).json()
    assert cut["cancelled"] is True and cut["text"].count("announcement") < 6

    metrics = probe.wait_for(f"{PREFIX}/event/metrics", lambda m: m.json()["turns"] >= 3).json()
    assert metrics["errors"] == 0 and metrics["rss_mb"] > 0 and metrics["mqtt"]["published"] > 0

    daemon.signal(signal.SIGTERM)
    assert daemon.wait(30) == 0, daemon.log()
    heard = transcribe(read_wav(output, sample_rate=22050), 22050).lower()
    assert "sunny" in heard and "goodbye" in heard, heard


def test_sd_notify_watchdog_reload_and_sigterm_mid_reply(tmp_path, mosquitto, mqtt_probe, scripted_gguf, notify_socket, daemons):
    probe = mqtt_probe(mosquitto)
    probe.subscribe(f"{PREFIX}/#")
    daemon = daemons(
        tmp_path, config_text(tmp_path, mosquitto, llm_model=scripted_gguf, llm_extra="max_tokens = 500"),
        args=["--output", str(tmp_path / "speaker.wav")],
        env={"NOTIFY_SOCKET": str(notify_socket.path), "WATCHDOG_USEC": "400000"},
    ).start()
    ready_at = notify_socket.wait_for("READY=1")
    assert "STATUS=loading models" in notify_socket.lines()
    time.sleep(1.0)
    pings = [at for at, line in notify_socket.messages if line == "WATCHDOG=1" and at > ready_at]
    assert len(pings) >= 3, notify_socket.lines()

    # SIGHUP in the middle of a reply: the reply ends, the config is read again, the models
    # are freed and loaded again, and the service comes back ready.
    probe.publish(f"{PREFIX}/cmd/ask", json.dumps({"text": "Tell me everything.", "id": "first"}))
    probe.wait_for(f"{PREFIX}/event/reply_sentence", lambda m: m.json().get("id") == "first", timeout=120)
    count = len(notify_socket.messages)
    daemon.signal(signal.SIGHUP)
    deadline = time.monotonic() + 120
    while not [line for _, line in notify_socket.messages[count:] if line == "READY=1"]:
        assert time.monotonic() < deadline, notify_socket.lines()
        time.sleep(0.1)
    assert any(line.startswith("RELOADING=1") for _, line in notify_socket.messages[count:])

    probe.publish(f"{PREFIX}/cmd/ask", json.dumps({"text": "Tell me everything.", "id": "long"}))
    probe.wait_for(f"{PREFIX}/event/tts_start", lambda m: m.json().get("id") == "long", timeout=120)
    notify_socket.wait_for("STATUS=speaking", timeout=10)
    sent = time.monotonic()
    daemon.signal(signal.SIGTERM)
    # A normal exit (no os._exit): everything was closed, no native thread left to abort on.
    assert daemon.wait(10) == 0, daemon.log()
    exit_s = time.monotonic() - sent
    assert exit_s < slack(2.0), f"took {exit_s:.2f} s to stop"
    assert "STOPPING=1" in notify_socket.lines()
    probe.wait_for(f"{PREFIX}/availability", lambda m: m.text == "offline")
    assert probe.retained(f"{PREFIX}/availability")[f"{PREFIX}/availability"].text == "offline"

    # The pings come from the core loop: through replies, the reload and the stop, nothing
    # blocked it for long (the interval is 0.2 s).
    pings = [at for at, line in notify_socket.messages if line == "WATCHDOG=1"]
    gaps = [later - earlier for earlier, later in zip(pings, pings[1:])]
    assert max(gaps) < slack(1.0), f"the loop stalled for {max(gaps):.2f} s"


def test_broker_down_at_start_is_retried(tmp_path, mosquitto_factory, mqtt_probe, scripted_gguf, notify_socket, daemons):
    broker = mosquitto_factory(start=False)
    daemon = daemons(tmp_path, config_text(tmp_path, broker, llm_model=scripted_gguf, llm_extra="max_tokens = 6"),
                     args=["--output", str(tmp_path / "speaker.wav")],
                     env={"NOTIFY_SOCKET": str(notify_socket.path)}).start()
    notify_socket.wait_for("READY=1")
    assert daemon.process.poll() is None
    broker.start()
    probe = mqtt_probe(broker)
    probe.subscribe(f"{PREFIX}/#")
    probe.wait_for(f"{PREFIX}/availability", lambda m: m.text == "online", timeout=30)
    probe.publish(f"{PREFIX}/cmd/ask", json.dumps({"text": "hello", "id": "late", "speak": False}))
    assert probe.wait_for(f"{PREFIX}/event/reply", lambda m: m.json().get("id") == "late", timeout=60).json()["text"]
    daemon.signal(signal.SIGTERM)
    assert daemon.wait(30) == 0


def test_microphone_missing_at_start_then_appearing(tmp_path, mosquitto, mqtt_probe, scripted_gguf, alsa_devices, make_speech_wav, daemons):
    alsa_devices.remove_input()
    probe = mqtt_probe(mosquitto)
    probe.subscribe(f"{PREFIX}/#")
    daemon = daemons(tmp_path, config_text(
        tmp_path, mosquitto, llm_model=scripted_gguf, llm_extra="max_tokens = 6",
        audio_text='input_device = "testmic"\ninput_rate = 16000\noutput_device = "testspk"\nreopen_backoff_max_s = 1.0',
    ), env=alsa_devices.env).start()
    error = probe.wait_for(f"{PREFIX}/event/error", timeout=120).json()
    assert error["code"] == "audio_input_failed", error
    assert daemon.process.poll() is None
    question = read_wav(make_speech_wav("Hey Jarvis. What is the weather like today?",
                                              lead_silence_s=1.0, tail_silence_s=6.0, sentence_gap_s=0.6))
    alsa_devices.write_input(question)
    transcript = probe.wait_for(f"{PREFIX}/event/transcript", timeout=120).json()
    assert "weather" in transcript["text"].lower()
    daemon.signal(signal.SIGTERM)
    assert daemon.wait(30) == 0, daemon.log()


def test_missing_model_file_is_a_clear_error(tmp_path, mosquitto, mqtt_probe, daemons):
    probe = mqtt_probe(mosquitto)
    probe.subscribe(f"{PREFIX}/#")
    daemon = daemons(tmp_path, config_text(tmp_path, mosquitto, llm_model=tmp_path / "gone.gguf")).start()
    assert daemon.wait(60) == 1
    log = daemon.log()
    assert "llm.model" in log and "gone.gguf" in log and "Traceback" not in log
    retained = probe.retained(f"{PREFIX}/availability")
    assert all(message.text == "offline" for message in retained.values())


def test_file_input_exits_when_the_last_reply_is_spoken(tmp_path, mosquitto, scripted_gguf, make_speech_wav, daemons):
    question = make_speech_wav("Hey Jarvis. What is the weather like today?", sentence_gap_s=0.6)
    output = tmp_path / "reply.wav"
    daemon = daemons(tmp_path, config_text(tmp_path, mosquitto, llm_model=scripted_gguf, llm_extra="max_tokens = 6"),
                     args=["--input", str(question), "--output", str(output)]).start()
    assert daemon.wait(180) == 0, daemon.log()
    assert "sunny" in transcribe(read_wav(output, sample_rate=22050), 22050).lower()


def test_a_request_said_straight_after_the_wake_word_is_heard_whole(tmp_path, mosquitto, scripted_gguf, daemons):
    """`run --input`, earcons on, a fast voice (espeak-ng en-gb at 165 wpm) and no pause after
    the wake word: every word is transcribed and the timer is set (it was "for five minutes.",
    answered "Three minutes." with no timer)."""
    import re

    from edge_assistant.audio.wav import write_wav
    from tests.support.speech_fixtures import spoken_words, voice_speech

    question = tmp_path / "question.wav"
    write_wav(question, voice_speech("espeak-en-gb-165", "Hey Jarvis, set a timer for ten minutes."), SAMPLE_RATE)
    text = config_text(tmp_path, mosquitto, llm_model=scripted_gguf, llm_extra="max_tokens = 6")
    daemon = daemons(tmp_path, text.replace("earcons = false", "earcons = true"),
                     args=["--input", str(question), "--output", str(tmp_path / "reply.wav")]).start()
    assert daemon.wait(180) == 0, daemon.log()
    log = daemon.log()
    transcript = re.search(r"event transcript \{'text': '([^']*)'", log)
    assert transcript, log[-3000:]
    assert spoken_words(transcript.group(1)) == spoken_words("set a timer for ten minutes")
    assert "event timer_started" in log


def test_the_wake_event_waits_for_the_persons_next_word_only_where_an_earcon_could_cover_it():
    from edge_assistant.audio.own_sound import AssistantSound
    from edge_assistant.config import Config, ServiceConfig
    from edge_assistant.hearing.listener import WAKE_SPEECH_LOOKAHEAD_S, wake_speech_lookahead_s
    from tests.support.own_sound import cancelling

    def lookahead(earcons: bool, cancels: bool) -> float:
        own_sound = cancelling() if cancels else AssistantSound(hears_speaker=True)
        return wake_speech_lookahead_s(Config(service=ServiceConfig(earcons=earcons)), own_sound)

    assert lookahead(earcons=True, cancels=False) == WAKE_SPEECH_LOOKAHEAD_S > 0
    assert lookahead(earcons=True, cancels=True) == 0.0  # the earcon's echo is cancelled
    assert lookahead(earcons=False, cancels=False) == 0.0
