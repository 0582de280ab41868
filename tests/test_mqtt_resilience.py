"""MqttBridge when things go wrong: broker restarts and outages, credentials, TLS, floods."""

from __future__ import annotations

import asyncio
import sys
import tracemalloc

import pytest

from edge_assistant.config import MqttConfig
from edge_assistant.events import Event
from edge_assistant.mqtt import MqttBridge
from tests.support.mqtt_fixtures import eventually, next_command, run_async

DEVICE = "dev1"


async def ready(mqtt_bridges, cfg: MqttConfig, device_id: str = DEVICE) -> MqttBridge:
    bridge = mqtt_bridges(cfg, device_id)
    await eventually(lambda: bridge.ready, what="bridge connected and subscribed")
    return bridge


def seqs(messages) -> list[int]:
    return [message.json()["seq"] for message in messages]


@run_async
async def test_broker_restart_loses_no_event_and_restores_everything(
    mosquitto_factory, mqtt_probe, mqtt_bridges
):
    broker = mosquitto_factory()
    # A persistent session: what the bridge sends while this probe is still reconnecting waits
    # in the broker (which saves it across the clean restart) instead of being missed.
    probe = mqtt_probe(broker, client_id="restart-probe", clean_session=False)
    probe.subscribe(f"edge-assistant/{DEVICE}/#")
    probe.subscribe("homeassistant/#")
    bridge = await ready(mqtt_bridges, broker.mqtt_config())
    topics = bridge.topics
    metrics = topics.event("metrics")

    def emit(seq: int) -> None:
        bridge.publish_event(Event("metrics", {"seq": seq}))

    for seq in range(5):
        emit(seq)
    await asyncio.to_thread(probe.wait_count, metrics, 5)

    await asyncio.to_thread(broker.stop)
    for seq in range(5, 10):
        emit(seq)  # may still meet the dying connection
    await eventually(lambda: not bridge.connected, what="disconnect noticed")
    assert bridge.last_error and "lost connection" in bridge.last_error
    for seq in range(10, 30):
        emit(seq)  # the broker is certainly away
    assert bridge.stats["offline_queued"] >= 20
    mark = len(probe.messages)

    await asyncio.to_thread(broker.start)
    await eventually(lambda: bridge.ready and bridge.stats["reconnects"] == 1, what="reconnected")
    await eventually(lambda: set(range(30)) <= set(seqs(probe.on(metrics))), what="all 30 events delivered")
    assert bridge.stats["dropped"] == 0
    assert bridge.last_error is None

    # Availability and discovery announced again (live messages, not retained replays).
    await asyncio.to_thread(
        probe.wait_for, topics.availability, lambda m: m.text == "online" and not m.retain, since=mark
    )
    await asyncio.to_thread(
        probe.wait_for, f"homeassistant/sensor/{DEVICE}/state/config", lambda m: not m.retain, since=mark
    )
    # Subscriptions renewed: a command after the restart still arrives.
    probe.publish(topics.command("say"), '{"text": "still there?", "id": "after-restart"}')
    assert (await next_command(bridge)).request_id == "after-restart"


@run_async
async def test_broker_down_at_start_is_retried_and_the_offline_queue_is_bounded(
    mosquitto_factory, mqtt_probe, mqtt_bridges
):
    broker = mosquitto_factory()
    probe = mqtt_probe(broker, client_id="late-probe", clean_session=False)
    metrics = f"edge-assistant/{DEVICE}/event/metrics"
    probe.subscribe(metrics)
    await asyncio.to_thread(broker.stop)

    bridge = mqtt_bridges(broker.mqtt_config(offline_queue=5))
    await eventually(lambda: bridge.last_error is not None, what="first connection failure")
    assert "cannot connect" in bridge.last_error and not bridge.connected
    for seq in range(8):
        bridge.publish_event(Event("metrics", {"seq": seq}))
    assert (bridge.stats["offline_queued"], bridge.stats["dropped"]) == (5, 3)

    await asyncio.to_thread(broker.start)
    await eventually(lambda: bridge.ready, what="connected once the broker is up")
    bridge.publish_event(Event("metrics", {"seq": 100}))
    await asyncio.to_thread(probe.wait_for, metrics, lambda m: m.json()["seq"] == 100)
    # Oldest dropped, the rest in order, before anything published after the reconnect.
    assert seqs(probe.on(metrics)) == [3, 4, 5, 6, 7, 100]
    assert bridge.stats["offline_queued"] == 0


@run_async
async def test_username_and_password(mosquitto_factory, mqtt_bridges, tmp_path):
    broker = mosquitto_factory(users={"assistant": "s3cret"}, anonymous=False)
    secret = tmp_path / "mqtt-password"
    secret.write_text("s3cret\n")
    good = await ready(mqtt_bridges, broker.mqtt_config(username="assistant", password_file=str(secret)))
    await good.aclose()

    bad = mqtt_bridges(broker.mqtt_config(username="assistant", password="wrong", client_id="bad"))
    await eventually(lambda: bad.stats["connect_failures"] >= 2, what="refused, then tried again")
    assert not bad.connected
    assert "refused" in bad.last_error and "not authorized" in bad.last_error.lower()
    # Fixing the broker side is enough: the bridge keeps retrying and gets in.
    broker.set_users({"assistant": "wrong"})
    await eventually(lambda: bad.ready, what="connected after the password was accepted")
    assert bad.last_error is None


@run_async
async def test_tls(mosquitto_factory, mqtt_probe, mqtt_bridges):
    broker = mosquitto_factory(tls=True)
    bridge = await ready(mqtt_bridges, broker.mqtt_config())
    probe = mqtt_probe(broker)
    probe.subscribe(bridge.topics.event("metrics"))
    bridge.publish_event(Event("metrics", {"over": "tls"}))
    received = await asyncio.to_thread(probe.wait_for, bridge.topics.event("metrics"))
    assert received.json()["over"] == "tls"
    probe.publish(bridge.topics.command("say"), '{"text": "secure", "id": "t1"}')
    assert (await next_command(bridge)).request_id == "t1"

    # A broker certificate from an unknown CA is refused, clearly, and retried.
    wrong = mqtt_bridges(broker.mqtt_config(ca_file=str(broker.tls.other_ca), client_id="wrong-ca"))
    await eventually(lambda: wrong.stats["connect_failures"] >= 2, what="refused, then tried again")
    assert not wrong.connected
    assert "certificate verify failed" in wrong.last_error
    # Unless verification is explicitly switched off.
    insecure_cfg = broker.mqtt_config(ca_file="", tls_verify=False, client_id="insecure")
    insecure = await ready(mqtt_bridges, insecure_cfg)
    assert insecure.connected


@run_async
async def test_tls_client_certificate(mosquitto_factory, mqtt_bridges):
    broker = mosquitto_factory(tls=True, require_client_cert=True)
    files = broker.tls
    with_cert = mqtt_bridges(
        broker.mqtt_config(certfile=str(files.client_cert), keyfile=str(files.client_key))
    )
    without = mqtt_bridges(broker.mqtt_config(client_id="no-cert"))
    await eventually(lambda: with_cert.ready, what="connected with a client certificate")
    await eventually(lambda: without.stats["connect_failures"] >= 1, what="refused without a certificate")
    assert not without.connected and "certificate" in without.last_error


FLOOD_SCRIPT = """
import sys, threading
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

host, port, topic, count = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
connected = threading.Event()
client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="flood")
client.on_connect = lambda *args: connected.set()
client.max_inflight_messages_set(100)
client.connect(host, port)
client.loop_start()
assert connected.wait(30)
text = "x" * 1900
for index in range(count):
    info = client.publish(topic, '{"text": "%s", "id": "f%d"}' % (text, index), qos=1)
info.wait_for_publish(120)
client.disconnect()
client.loop_stop()
sys.exit(0 if info.is_published() else 1)
"""


@pytest.mark.slow
@run_async
async def test_flood_of_commands_keeps_memory_bounded(mosquitto, mqtt_probe, mqtt_bridges):
    count, queue_size = 10_000, 16
    bridge = await ready(mqtt_bridges, mosquitto.mqtt_config(command_queue=queue_size))
    probe = mqtt_probe(mosquitto)
    probe.subscribe(bridge.topics.event("error"))

    # The core is not consuming: the worst case. Had every command been kept, ~2 kB each,
    # the flood would hold over 20 MB.
    tracemalloc.start()
    try:
        baseline = tracemalloc.get_traced_memory()[0]
        flood = await asyncio.create_subprocess_exec(
            sys.executable, "-c", FLOOD_SCRIPT, mosquitto.host, str(mosquitto.port),
            bridge.topics.command("ask"), str(count),
        )
        assert await asyncio.wait_for(flood.wait(), 120) == 0
        await eventually(
            lambda: bridge.stats["commands"] + bridge.stats["commands_refused"] >= count,
            timeout=120,
            what="every flooded command accepted or refused",
        )
        growth = tracemalloc.get_traced_memory()[1] - baseline
    finally:
        tracemalloc.stop()

    stats = bridge.stats
    assert stats["commands"] == queue_size
    assert stats["commands_refused"] == count - queue_size
    assert stats["malformed"] == 0
    assert bridge.commands.qsize() == queue_size
    assert growth < 5_000_000, f"memory grew by {growth} bytes during the flood"
    # Refusals are answered, but the replies are rate-limited, not one per flooded message.
    busy = await asyncio.to_thread(
        probe.wait_for, bridge.topics.event("error"), lambda m: m.json()["code"] == "busy"
    )
    assert busy.json()["id"].startswith("f")
    assert stats["errors_suppressed"] > 0

    # Still serving once the core catches up.
    while not bridge.commands.empty():
        bridge.commands.get_nowait()
    probe.publish(bridge.topics.command("say"), '{"text": "hello again", "id": "after-flood"}')
    assert (await next_command(bridge)).request_id == "after-flood"
