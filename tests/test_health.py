"""The health of each part: how it is recorded and logged, the status socket, the parts that feed
it (microphone and speaker on the ALSA file devices, the bridge on a real mosquitto), and the
daemon that shows it in STATUS=, on the retained health topic, in Home Assistant's problem
sensor and in `edge-assistant status`, while devices come and go and the broker stops."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import jinja2
import pytest

from edge_assistant.audio.devices import AudioDeviceMissing
from edge_assistant.audio.microphone import MicrophoneSource
from edge_assistant.audio.speaker import SpeakerSink
from edge_assistant.config import MqttConfig
from edge_assistant.health import Fault, Health, PartState, device_fix, format_report, log_fault
from edge_assistant.mqtt import MqttBridge, discovery_configs
from edge_assistant.mqtt.topics import Topics
from edge_assistant.status import StatusServer, ask
from tests.support.mqtt_fixtures import eventually, run_async
from tests.support.timing import slack
from tests.test_service import DEVICE, config_text

TEMPLATES = jinja2.Environment()


def problem_sensor(cfg: MqttConfig, device_id: str) -> dict:
    [config] = [config for topic, config in discovery_configs(cfg, device_id).items()
                if topic.split("/")[1:4:2] == ["binary_sensor", "problem"]]
    return config


def ha_problem_state(config: dict, payload: bytes | str) -> str:
    """What Home Assistant shows for the problem sensor: its value template rendered."""
    return TEMPLATES.from_string(config["value_template"]).render(value_json=json.loads(payload))


# -- the record ------------------------------------------------------------------------------


def test_a_failing_part_is_one_line_with_its_fix_until_it_works_again(caplog):
    caplog.set_level(logging.DEBUG, logger="edge_assistant.health")
    health = Health()
    changes = []
    health.listeners.append(lambda h: changes.append(h.to_json()))
    health.ok("microphone", "testmic")
    for _ in range(5):  # a retry every few seconds, the same failure
        health.failed("speaker", "missing, retrying", "output device 'testspk' not found", device_fix("output"))
    assert health.status("listening") == "listening; speaker missing, retrying"
    assert [h["problem"] for h in changes] == [False, True]
    assert changes[-1]["reason"] == "speaker missing, retrying"
    assert changes[-1]["parts"]["speaker"]["fix"] == device_fix("output")
    health.ok("speaker", "testspk")
    assert health.status("idle") == "idle" and not health.to_json()["problem"]

    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert warnings == ["speaker missing, retrying: output device 'testspk' not found "
                        f"(fix: {device_fix('output')})"]
    assert "speaker works again: testspk" in [r.getMessage() for r in caplog.records if r.levelno == logging.INFO]


def test_starting_and_unused_parts_are_no_problem():
    health = Health()
    health.off("microphone", 'audio.input_device = "none"')
    health.starting("broker", "connecting to localhost:1883")
    assert not health.problems() and health.status("idle") == "idle"
    with pytest.raises(ValueError):
        health.ok("toaster")


def test_an_expected_fault_logs_no_traceback_above_debug(caplog):
    caplog.set_level(logging.DEBUG)
    logger = logging.getLogger("test.faults")
    try:
        try:
            raise KeyError("inner")
        except KeyError:
            raise AudioDeviceMissing("output device 'testspk' not found")
    except Fault as error:
        log_fault(logger, "playback failed", error)
    [record] = caplog.records
    assert record.levelno == logging.DEBUG and record.exc_info
    caplog.clear()
    try:
        raise ZeroDivisionError("a bug")
    except ZeroDivisionError as error:
        log_fault(logger, "playback failed", error)
    [record] = caplog.records
    assert record.levelno == logging.ERROR and record.exc_info


def test_the_problem_sensor_shows_the_health_and_its_reason():
    cfg = MqttConfig()
    sensor = problem_sensor(cfg, "kitchen")
    health_topic = Topics.for_config(cfg, "kitchen").health
    assert (sensor["device_class"], sensor["state_topic"], sensor["json_attributes_topic"]) == (
        "problem", health_topic, health_topic)
    health = Health()
    health.ok("speaker", "testspk")
    assert ha_problem_state(sensor, json.dumps(health.to_json())) == "OFF"
    health.failed("broker", "unreachable, retrying", "cannot connect", "start the broker")
    attributes = health.to_json()  # the attributes: the payload's top level
    assert ha_problem_state(sensor, json.dumps(attributes)) == "ON"
    assert attributes["reason"] == "broker unreachable, retrying"


def test_the_report_for_a_person():
    health = Health()
    health.ok("microphone", "testmic")
    health.failed("speaker", "missing, retrying", "output device 'testspk' not found", "plug it in")
    lines = format_report({"device": "kitchen", "state": "idle", **health.to_json()})
    assert lines[0] == "kitchen: idle, 1 problem"
    assert "  microphone  ok       testmic" in lines
    assert "  speaker     FAILED   missing, retrying: output device 'testspk' not found" in lines
    assert lines[lines.index("  speaker     FAILED   missing, retrying: output device 'testspk' not found") + 1].strip() \
        == "fix: plug it in"


def test_repeated_errors_are_logged_once_and_device_errors_left_to_the_health(caplog):
    from edge_assistant.config import Config
    from edge_assistant.events import Event
    from edge_assistant.service import RunOptions, Service, SystemdNotifier

    caplog.set_level(logging.DEBUG, logger="edge_assistant.service")
    service = Service(None, Config(), RunOptions(), notifier=SystemdNotifier(""))
    for _ in range(5):
        service._on_event(Event("error", {"code": "llm_failed", "message": "the server is down"}))
    service._on_event(Event("error", {"code": "llm_failed", "message": "another failure"}))
    for _ in range(3):
        service._on_event(Event("error", {"code": "audio_output_failed", "message": "speaker gone"}))
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 2 and "the server is down" in warnings[0] and "another failure" in warnings[1]
    assert sum("speaker gone" in r.getMessage() for r in caplog.records if r.levelno == logging.DEBUG) == 3


# -- the status socket -----------------------------------------------------------------------


def socket_config(path: Path):
    from edge_assistant.config import Config, ServiceConfig

    return Config(service=ServiceConfig(status_socket=str(path)))


@run_async
async def test_the_status_socket_answers_status_and_reload(tmp_path):
    reloads = []

    async def reload():
        reloads.append(time.monotonic())
        await asyncio.sleep(0.2)  # the models load again
        return {"ok": False, "error": "llm.n_ctx: must be an integer"}

    path = tmp_path / "status.sock"
    server = StatusServer(path, lambda: {"state": "idle", "problem": False}, reload)
    assert await server.start()
    config = socket_config(path)
    try:
        assert await asyncio.to_thread(ask, config) == {"state": "idle", "problem": False}
        outcome = await asyncio.to_thread(ask, config, "reload")
        assert outcome == {"ok": False, "error": "llm.n_ctx: must be an integer"} and len(reloads) == 1
        # A second server on the same path leaves the running one alone.
        assert not await StatusServer(path, dict, reload).start()
        assert await asyncio.to_thread(ask, config) == {"state": "idle", "problem": False}
    finally:
        await server.aclose()
    assert not path.exists()


@run_async
async def test_a_stale_socket_is_replaced_and_a_long_path_left_out(tmp_path):
    path = tmp_path / "status.sock"
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(str(path))
    stale.close()  # a killed process leaves this behind
    server = StatusServer(path, lambda: {"state": "idle"}, None)
    assert await server.start()
    assert (await asyncio.to_thread(ask, socket_config(path)))["state"] == "idle"
    await server.aclose()
    assert not await StatusServer(tmp_path / ("x" * 120), dict, None).start()


# -- the parts that feed it ------------------------------------------------------------------


@run_async
async def test_the_speaker_reports_a_device_that_goes_and_comes_back(alsa_devices):
    errors, opened = [], []
    sink = SpeakerSink(alsa_devices.audio_config(output_rate=22050, reopen_backoff_max_s=0.2),
                       on_error=errors.append, on_open=opened.append, idle_close_s=0.05)
    watch = asyncio.create_task(sink.watch())
    try:
        await eventually(lambda: opened == ["testspk"], what="the speaker checked at start")
        alsa_devices.remove_device("testspk")
        with pytest.raises(AudioDeviceMissing):
            await sink.play(b"\0\0" * 2205, 22050)
        # The watch retries with backoff until the device opens again.
        await asyncio.sleep(0.6)
        assert len(errors) >= 2 and all(isinstance(e, AudioDeviceMissing) and "testspk" in str(e) for e in errors)
        assert opened == ["testspk"]
        alsa_devices.restore_devices()
        await eventually(lambda: len(opened) == 2, what="the speaker back")
        assert await sink.play(b"\0\0" * 2205, 22050)
    finally:
        watch.cancel()
        await asyncio.gather(watch, return_exceptions=True)
        await sink.aclose()


@run_async
async def test_the_microphone_reports_each_opening(alsa_devices):
    alsa_devices.remove_device("testmic")
    errors, opened = [], []
    source = MicrophoneSource(alsa_devices.audio_config(input_rate=16000, reopen_backoff_max_s=0.2),
                              on_error=errors.append, on_open=opened.append)

    async def read() -> None:
        async for _ in source.frames():
            pass

    reader = asyncio.create_task(read())
    try:
        await eventually(lambda: errors, what="the missing microphone reported")
        assert isinstance(errors[0], AudioDeviceMissing) and not opened
        alsa_devices.restore_devices()
        await eventually(lambda: opened == ["testmic"], what="the microphone opened")
    finally:
        await source.aclose()
        await asyncio.gather(reader, return_exceptions=True)


@run_async
async def test_the_bridge_reports_the_broker_and_reconnects_without_a_stale_problem(mosquitto_factory, mqtt_probe):
    broker = mosquitto_factory()
    health = Health()
    statuses = []
    bridges: list[MqttBridge] = []

    def on_connection(status, message):
        statuses.append(status)
        if status == "connected":
            health.ok("broker", "up")
        else:
            health.failed("broker", "unreachable, retrying", message or "", "start the broker")

    health.listeners.append(lambda h: bridges and bridges[0].set_health(h.to_json()))
    # Reconnects 1 to 2 s apart: a probe started with the broker is there before the bridge.
    bridge = MqttBridge(broker.mqtt_config(reconnect_max_s=2.0), "dev1", asyncio.get_running_loop(),
                        on_connection=on_connection)
    bridges.append(bridge)
    health.announce()
    bridge.start()
    topic = "edge-assistant/dev1/health"
    try:
        bridge.set_state("idle")
        await eventually(lambda: bridge.ready, what="connected")
        probe = mqtt_probe(broker)
        probe.subscribe(topic)
        await asyncio.to_thread(probe.wait_for, topic, lambda m: m.json()["parts"]["broker"]["state"] == "ok")
        broker.stop()
        await eventually(lambda: health.part("broker").state == PartState.FAILED, what="the broker reported down")
        broker.start()
        probe = mqtt_probe(broker)
        probe.subscribe(topic)
        await eventually(lambda: health.part("broker").state == PartState.OK, timeout=slack(30), what="back")
        # The retained value from before the stop, then the reconnect's announce: none of them
        # says the broker is unreachable (the health changed before the announce was sent).
        values = await asyncio.to_thread(probe.wait_count, topic, 2)
        assert [value.json()["problem"] for value in values] == [False, False], [v.json() for v in values]
        assert statuses[0] == "connected" and "unreachable" in statuses and statuses[-1] == "connected"
    finally:
        await bridge.aclose()


# -- the daemon ------------------------------------------------------------------------------

PREFIX = f"edge-assistant/{DEVICE}"
SENSOR = problem_sensor(MqttConfig(), DEVICE)


def daemon_config(tmp_path, broker, model, audio: str) -> str:
    return config_text(tmp_path, broker, llm_model=model, llm_extra="max_tokens = 6",
                       audio_text=f"{audio}\nreopen_backoff_max_s = 1.0")


def cli(config_path: Path, *args: str, env=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "edge_assistant.cli", "-c", str(config_path), *args],
                          capture_output=True, text=True, timeout=slack(360), env={**os.environ, **(env or {})})


def wait_status(notify, predicate, since: int = 0, timeout: float = slack(20)) -> str:
    """The first STATUS= line from `since` on that satisfies `predicate`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for _, line in notify.messages[since:]:
            if line.startswith("STATUS=") and predicate(line[len("STATUS="):]):
                return line[len("STATUS="):]
        time.sleep(0.05)
    raise AssertionError(f"no such STATUS=; got {[l for l in notify.lines()[since:] if l.startswith('STATUS=')][-8:]}")


def healthy(status: str) -> bool:
    return ";" not in status and status in ("idle", "listening", "muted")


def wait_health(probe, predicate, since: int = 0):
    message = probe.wait_for(f"{PREFIX}/health", lambda m: predicate(m.json()), since=since, timeout=slack(20))
    return message.json(), ha_problem_state(SENSOR, message.payload)


@pytest.mark.slow
def test_every_view_follows_the_microphone_the_speaker_and_the_broker(
    tmp_path, mosquitto_factory, mqtt_probe, scripted_gguf, alsa_devices, notify_socket, daemons
):
    broker = mosquitto_factory()
    alsa_devices.remove_device("testmic")  # deaf from the start
    probe = mqtt_probe(broker)
    probe.subscribe(f"{PREFIX}/#")
    audio = 'input_device = "testmic"\ninput_rate = 16000\noutput_device = "testspk"\noutput_rate = 22050'
    daemon = daemons(tmp_path, daemon_config(tmp_path, broker, scripted_gguf, audio),
                     env={**alsa_devices.env, "NOTIFY_SOCKET": str(notify_socket.path)}).start()
    try:
        notify_socket.wait_for("READY=1")

        # -- no microphone: every view says so, with the fix --------------------------------
        status = wait_status(notify_socket, lambda s: "microphone missing, retrying" in s)
        assert status.split(";")[0] in ("idle", "listening"), status
        health, sensor = wait_health(probe, lambda h: h["parts"]["microphone"]["state"] == "failed")
        assert sensor == "ON" and health["reason"] == "microphone missing, retrying", health
        assert "testmic" in health["parts"]["microphone"]["detail"]
        assert health["parts"]["microphone"]["fix"] == device_fix("input")
        shown = cli(daemon.config, "status")
        assert shown.returncode == 1, shown.stdout + shown.stderr
        assert "microphone  FAILED   missing, retrying" in shown.stdout and "fix: plug it in" in shown.stdout
        error = probe.wait_for(f"{PREFIX}/event/error").json()
        assert error["code"] == "audio_input_failed"

        # -- plugged in: back by itself -----------------------------------------------------
        mark, since = len(notify_socket.messages), len(probe.messages)
        alsa_devices.restore_devices()
        wait_status(notify_socket, healthy, since=mark)
        health, sensor = wait_health(probe, lambda h: not h["problem"], since=since)
        assert sensor == "OFF" and health["parts"]["microphone"] == {**health["parts"]["microphone"], "state": "ok",
                                                                      "detail": "testmic"}
        shown = cli(daemon.config, "status")
        assert shown.returncode == 0 and "every part works" in shown.stdout, shown.stdout + shown.stderr

        # -- the speaker unplugged: noticed at the next sound, back by itself ---------------
        alsa_devices.remove_device("testspk")
        mark, since = len(notify_socket.messages), len(probe.messages)
        probe.publish(f"{PREFIX}/cmd/say", json.dumps({"text": "Can you hear me?"}))
        status = wait_status(notify_socket, lambda s: s.endswith("; speaker missing, retrying"), since=mark)
        health, sensor = wait_health(probe, lambda h: h["problem"], since=since)
        assert sensor == "ON" and health["reason"] == "speaker missing, retrying"
        assert cli(daemon.config, "status", "--json").returncode == 1
        mark, since = len(notify_socket.messages), len(probe.messages)
        alsa_devices.restore_devices()
        wait_status(notify_socket, healthy, since=mark)
        assert wait_health(probe, lambda h: not h["problem"], since=since)[1] == "OFF"

        # -- the broker stopped: STATUS= and the socket say so; back by itself --------------
        mark = len(notify_socket.messages)
        broker.stop()
        wait_status(notify_socket, lambda s: s.endswith("; broker unreachable, retrying"), since=mark)
        shown = cli(daemon.config, "status")
        assert shown.returncode == 1 and "broker      FAILED   unreachable, retrying" in shown.stdout, shown.stdout
        mark = len(notify_socket.messages)
        broker.start()
        wait_status(notify_socket, healthy, since=mark)
        retained = mqtt_probe(broker).retained(f"{PREFIX}/health")[f"{PREFIX}/health"]
        assert retained.json()["problem"] is False and ha_problem_state(SENSOR, retained.payload) == "OFF"
        assert cli(daemon.config, "status", "--mqtt").returncode == 0
    except AssertionError as failure:
        raise AssertionError(f"{failure}\n\n{daemon.log()[-6000:]}") from None
    daemon.signal(signal.SIGTERM)
    assert daemon.wait(slack(30)) == 0, daemon.log()

    # Each fault: one line with its fix, no traceback, however often it was retried.
    log = daemon.log()
    assert "Traceback" not in log, log
    for fault in ("microphone missing, retrying", "speaker missing, retrying", "broker unreachable, retrying"):
        lines = [line for line in log.splitlines() if fault in line]
        assert len(lines) == 1 and lines[0].startswith("WARNING") and "(fix: " in lines[0], (fault, lines)
    assert shown.stderr == ""


@pytest.mark.slow
def test_a_reload_ends_when_the_service_is_ready_and_a_broken_config_keeps_the_old_one(
    tmp_path, mosquitto, mqtt_probe, scripted_gguf, notify_socket, daemons
):
    probe = mqtt_probe(mosquitto)
    probe.subscribe(f"{PREFIX}/#")
    good = daemon_config(tmp_path, mosquitto, scripted_gguf, 'input_device = "none"')
    daemon = daemons(tmp_path, good, args=["--output", str(tmp_path / "speaker.wav")],
                     env={"NOTIFY_SOCKET": str(notify_socket.path)}).start()
    socket_path = tmp_path / "state" / "status.sock"
    notify_socket.wait_for("READY=1")

    # -- a good reload: `reload` returns once the service is ready again ---------------------
    mark = len(notify_socket.messages)
    result = cli(daemon.config, "reload")
    returned = time.monotonic()
    assert result.returncode == 0 and result.stdout.strip() == "reloaded", result.stderr + daemon.log()
    reloaded = notify_socket.messages[mark:]
    lines = [line for _, line in reloaded]
    starts = [at for at, line in reloaded if line == "RELOADING=1"]
    ready = [at for at, line in reloaded if line == "READY=1"]
    assert len(starts) == 1 and len(ready) == 1 and starts[0] < ready[0] < returned, lines
    [stamp] = [line for line in lines if line.startswith("MONOTONIC_USEC=")]
    # CLOCK_MONOTONIC, as systemd reads it, taken when the reload began.
    assert abs(int(stamp.split("=")[1]) / 1e6 - starts[0]) < slack(2.0)
    assert any(line.startswith("STATUS=loading models") for line in lines)

    # -- a broken config: said to be broken, and the service goes on with the old one --------
    daemon.config.write_text(good.replace("max_tokens = 6", "max_tokens = 'six'"))
    mark, since = len(notify_socket.messages), len(probe.messages)
    result = cli(daemon.config, "reload", "--socket", str(socket_path))
    assert result.returncode == 1, result.stdout
    assert "reload failed: llm.max_tokens" in result.stderr and "previous config" in result.stderr, result.stderr
    lines = notify_socket.lines()[mark:]
    assert lines.index("RELOADING=1") < lines.index("READY=1"), lines
    assert "STATUS=idle; config reload failed, running the previous config" in lines, lines
    assert "STATUS=loading models" not in lines  # nothing was torn down
    health, sensor = wait_health(probe, lambda h: h["problem"], since=since)
    assert sensor == "ON" and "llm.max_tokens" in health["parts"]["config"]["detail"]
    shown = cli(daemon.config, "status", "--socket", str(socket_path))
    assert shown.returncode == 1 and "config      FAILED   reload failed, running the previous config" in shown.stdout
    probe.publish(f"{PREFIX}/cmd/ask", json.dumps({"text": "Still there?", "id": "after", "speak": False}))
    reply = probe.wait_for(f"{PREFIX}/event/reply", lambda m: m.json().get("id") == "after", timeout=slack(60))
    assert reply.json()["completion_tokens"] == 6  # the old max_tokens

    # -- fixed: the next reload clears the problem -----------------------------------------
    daemon.config.write_text(good)
    since = len(probe.messages)
    assert cli(daemon.config, "reload").returncode == 0
    assert wait_health(probe, lambda h: not h["problem"], since=since)[1] == "OFF"
    daemon.signal(signal.SIGTERM)
    assert daemon.wait(slack(30)) == 0, daemon.log()
    assert "Traceback" not in daemon.log()
