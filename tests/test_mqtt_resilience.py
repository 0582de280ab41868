"""MqttBridge when things go wrong: broker restarts and outages, credentials, TLS, floods."""

from __future__ import annotations

import asyncio
import gc
import logging
import socket
import sys
import threading
import time
import tracemalloc

import pytest

from edge_assistant.broker import make_client
from edge_assistant.config import MqttConfig
from edge_assistant.events import Event
from edge_assistant.mqtt import MqttBridge
from tests.support.mqtt_fixtures import WAIT_S, eventually, next_command, run_async
from tests.support.timing import slack

DEVICE = "dev1"


async def ready(mqtt_bridges, cfg: MqttConfig, device_id: str = DEVICE) -> MqttBridge:
    bridge = mqtt_bridges(cfg, device_id)
    bridge.set_state("idle")  # as the core does once it runs: availability may say online
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
    bridge.set_muted(True)
    await asyncio.to_thread(probe.wait_count, metrics, 5)

    await asyncio.to_thread(broker.stop)
    for seq in range(5, 10):
        emit(seq)  # may still meet the dying connection
    await eventually(lambda: not bridge.connected, what="disconnect noticed")
    assert bridge.last_error and "lost connection" in bridge.last_error
    for seq in range(10, 30):
        emit(seq)  # the broker is certainly away
    bridge.set_muted(False)
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
    # The retained state is the latest, set while the broker was away.
    assert mqtt_probe(broker).retained(topics.mute)[topics.mute].text == "OFF"
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


@pytest.mark.slow
@run_async
async def test_the_loop_never_waits_while_a_reconnect_flushes_a_large_backlog(
    mosquitto_factory, mqtt_bridges
):
    # Large enough that handing it all to paho takes several times the bound below: as long
    # as the loop used to wait for the bridge's lock at a reconnect.
    backlog = 60_000
    broker = mosquitto_factory()
    # Room for the events the loop adds below while the broker is still away.
    bridge = await ready(mqtt_bridges, broker.mqtt_config(offline_queue=2 * backlog))
    await asyncio.to_thread(broker.stop)
    await eventually(lambda: not bridge.connected, what="disconnect noticed")
    for seq in range(backlog):
        bridge.publish_event(Event("metrics", {"seq": seq}))
    assert bridge.stats["offline_queued"] == backlog
    published_before = bridge.stats["published"]

    # Everything the core calls on the bridge, timed call by call while the backlog goes out.
    calls = {
        "publish_event": lambda: bridge.publish_event(Event("metrics", {"seq": -1})),
        "set_state": lambda: bridge.set_state("idle"),
        "set_muted": lambda: bridge.set_muted(False),
        "set_volume": lambda: bridge.set_volume(0.5),
        "stats": lambda: bridge.stats,
        "ready": lambda: bridge.ready,
    }
    slowest = dict.fromkeys(calls, 0.0)
    restarting = asyncio.ensure_future(asyncio.to_thread(broker.start))
    deadline = time.monotonic() + WAIT_S
    published = published_before
    # What is timed is waiting for the bridge, not a garbage collection of all the objects a
    # whole test run holds (0.44 s seen there).
    gc.collect()
    gc.disable()
    try:
        while published < published_before + backlog:
            assert time.monotonic() < deadline, f"the backlog did not go out: {bridge.stats}"
            for name, call in calls.items():
                start = time.perf_counter()
                result = call()
                slowest[name] = max(slowest[name], time.perf_counter() - start)
                if name == "stats":
                    published = result["published"]
            await asyncio.sleep(0.005)
    finally:
        gc.enable()
    await restarting
    assert bridge.stats["reconnects"] == 1
    assert max(slowest.values()) < slack(0.2), slowest
    assert bridge.stats["dropped"] == 0


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


def test_paho_problems_are_logged_with_their_traceback_and_rate_limited(mosquitto, caplog):
    caplog.set_level(logging.WARNING, logger="edge_assistant.broker")
    problems: list[str] = []
    client = make_client(mosquitto.mqtt_config(), "traceback-test", problems.append)
    acknowledged = threading.Semaphore(0)

    def on_subscribe(client, userdata, mid, reason_codes, properties) -> None:
        acknowledged.release()
        raise ZeroDivisionError("a bug in a callback")

    client.on_subscribe = on_subscribe
    client.connect(mosquitto.host, mosquitto.port)
    client.loop_start()
    try:
        for _ in range(3):
            client.subscribe("anything")
            assert acknowledged.acquire(timeout=WAIT_S)
        # paho's network thread survived the bug: it still answers.
        info = client.publish("still/alive", b"1", qos=1)
        info.wait_for_publish(WAIT_S)
        assert info.is_published()
    finally:
        client.disconnect()
        client.loop_stop()

    assert problems == ["Caught exception in on_subscribe: a bug in a callback"] * 3
    logged = [r for r in caplog.records if "on_subscribe" in r.getMessage()]
    assert len(logged) == 1, "the same problem again within a minute is only counted"
    assert logged[0].levelno == logging.ERROR and logged[0].name.startswith("edge_assistant.broker")
    assert logged[0].exc_info is not None and logged[0].exc_info[0] is ZeroDivisionError
    assert "on_subscribe" in caplog.text and "raise ZeroDivisionError" in caplog.text


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
        assert await asyncio.wait_for(flood.wait(), slack(120)) == 0
        # A command is refused on the loop; one that arrives while the loop is over a thousand
        # messages behind is dropped before (and counted).
        handled = ("commands", "commands_refused", "received_dropped")
        await eventually(
            lambda: sum(bridge.stats[key] for key in handled) >= count,
            timeout=slack(120),
            what="every flooded command accepted, refused or dropped",
        )
        growth = tracemalloc.get_traced_memory()[1] - baseline
    finally:
        tracemalloc.stop()

    stats = bridge.stats
    assert stats["commands"] == queue_size
    assert stats["commands_refused"] + stats["received_dropped"] == count - queue_size
    assert stats["commands_refused"] > 0
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


async def stop_in_time(bridge: MqttBridge, timeout: float = 1.0) -> None:
    """`bridge.stop(timeout)` returns, and leaves none of its threads behind. The limit is far
    below the keepalive (3600 s): a stop that waited for the broker would miss it."""
    stopping = threading.Thread(target=bridge.stop, args=(timeout,), name="stopping", daemon=True)
    stopping.start()
    await asyncio.to_thread(stopping.join, slack(30.0))
    assert not stopping.is_alive(), "MqttBridge.stop hung"
    left = [thread.name for thread in threading.enumerate() if thread.name.endswith(DEVICE)]
    assert left == [], left


@run_async
async def test_stop_returns_while_the_broker_answers_nothing(mosquitto_factory, mqtt_bridges):
    broker = mosquitto_factory()
    bridge = await ready(mqtt_bridges, broker.mqtt_config(keepalive=3600))
    broker.freeze()
    try:
        # More than the socket's buffers hold: the offline announce and the DISCONNECT queue
        # behind what the broker never reads.
        for seq in range(300):
            bridge.publish_event(Event("metrics", {"seq": seq, "pad": "x" * 100_000}))
        await eventually(lambda: bridge.stats["published"] >= 300, what="handed to paho")
        await stop_in_time(bridge)
    finally:
        broker.thaw()


@run_async
async def test_stop_returns_while_a_tls_handshake_goes_unanswered(mqtt_bridges):
    with socket.socket() as silent:  # accepts the connection (the kernel does), says nothing
        silent.bind(("127.0.0.1", 0))
        silent.listen(1)
        host, port = silent.getsockname()
        bridge = mqtt_bridges(MqttConfig(host=host, port=port, tls=True, tls_verify=False, keepalive=3600))
        await asyncio.sleep(0.5)  # paho's thread is inside the handshake
        assert not bridge.connected
        await stop_in_time(bridge)
