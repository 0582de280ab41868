"""Home Assistant MQTT discovery: the entities of one device and their config payloads."""

from __future__ import annotations

from typing import Any

from .. import __version__
from ..config import MqttConfig, sanitize_device_id
from .topics import OFFLINE, ONLINE, Topics

# Home Assistant refuses entity states longer than this.
HA_STATE_CHARS = 255


def discovery_configs(cfg: MqttConfig, device_id: str) -> dict[str, dict[str, Any]]:
    """Discovery topic -> config payload for every entity of this device."""
    topics = Topics.for_config(cfg, device_id)
    node_id = sanitize_device_id(device_id)
    common: dict[str, Any] = {
        "device": {
            "identifiers": [f"edge_assistant_{node_id}"],
            "name": device_id,
            "model": "edge-assistant",
            "manufacturer": "edge-assistant",
            "sw_version": __version__,
        },
        "origin": {"name": "edge-assistant", "sw_version": __version__},
        "availability_topic": topics.availability,
        "payload_available": ONLINE,
        "payload_not_available": OFFLINE,
        "qos": cfg.qos,
    }
    # Sensor states are cut to what Home Assistant accepts; the topics carry the full text.
    cut = "{{ value[:%d] }}" % HA_STATE_CHARS
    entities: list[tuple[str, str, dict[str, Any]]] = [
        ("sensor", "state", {"name": "State", "icon": "mdi:robot", "state_topic": topics.state}),
        (
            "sensor",
            "transcript",
            {
                "name": "Last transcript",
                "icon": "mdi:account-voice",
                "state_topic": topics.transcript,
                "value_template": cut,
            },
        ),
        (
            "sensor",
            "reply",
            {
                "name": "Last reply",
                "icon": "mdi:message-reply-text",
                "state_topic": topics.reply,
                "value_template": cut,
            },
        ),
        (
            "switch",
            "mute",
            {
                "name": "Mute",
                "icon": "mdi:microphone-off",
                "command_topic": topics.command("mute"),
                "payload_on": '{"mute": true}',
                "payload_off": '{"mute": false}',
                "state_topic": topics.mute,
                "state_on": "ON",
                "state_off": "OFF",
            },
        ),
        (
            "button",
            "listen",
            {
                "name": "Listen",
                "icon": "mdi:microphone",
                "command_topic": topics.command("listen"),
                "payload_press": "{}",
            },
        ),
        (
            "text",
            "ask",
            {
                "name": "Ask",
                "icon": "mdi:chat-question",
                "command_topic": topics.command("ask"),
                # JSON, so a question that starts with "{" is not mistaken for a JSON payload.
                "command_template": '{{ {"text": value} | tojson }}',
                "min": 0,
                "max": min(HA_STATE_CHARS, cfg.max_text_chars),
                "mode": "text",
            },
        ),
        (
            "number",
            "volume",
            {
                "name": "Volume",
                "icon": "mdi:volume-high",
                "command_topic": topics.command("volume"),
                "command_template": '{"volume": {{ value }}}',
                "state_topic": topics.volume,
                "min": 0,
                "max": 100,
                "step": 1,
                "unit_of_measurement": "%",
                "mode": "slider",
            },
        ),
    ]
    return {
        topics.discovery(component, object_id): {
            "unique_id": f"edge_assistant_{node_id}_{object_id}",
            **fields,
            **common,
        }
        for component, object_id, fields in entities
    }
