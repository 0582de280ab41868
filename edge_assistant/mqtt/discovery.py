"""Home Assistant MQTT discovery: the entities of one device and their config payloads."""

from __future__ import annotations

from typing import Any

from .. import __version__
from ..config import MqttConfig, sanitize_device_id
from ..events import EventType
from .topics import OFFLINE, ONLINE, Topics

# Home Assistant refuses entity states longer than this.
HA_STATE_CHARS = 255

# Device triggers: trigger type -> (the event type that fires it, and for `error` the code).
DEVICE_TRIGGERS: dict[str, tuple[EventType, str | None]] = {
    "wake_word_heard": (EventType.WAKE, None),
    "transcript": (EventType.TRANSCRIPT, None),
    "reply_finished": (EventType.REPLY, None),
    "timer_finished": (EventType.TIMER_FINISHED, None),
    "command_not_understood": (EventType.ERROR, "not_understood"),
}
# Home Assistant shows a trigger as '"<subtype>" <type>'.
TRIGGER_SUBTYPE = "assistant"


def discovery_configs(cfg: MqttConfig, device_id: str) -> dict[str, dict[str, Any]]:
    """Discovery topic -> config payload for every entity and device trigger of this device."""
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
    # Home Assistant refuses longer states: sensors show the start of a text and carry the
    # whole event (the full text) in their attributes, read from the same retained JSON.
    cut_text = "{{ value_json.text[:%d] }}" % HA_STATE_CHARS
    text_max = min(HA_STATE_CHARS, cfg.max_text_chars)

    def last(kind: EventType, name: str, icon: str, state: str, **extra: Any) -> dict[str, Any]:
        topic = topics.last(kind)
        return {"name": name, "icon": icon, "state_topic": topic, "value_template": state,
                "json_attributes_topic": topic, **extra}

    def button(name: str, icon: str, command: str) -> dict[str, Any]:
        return {"name": name, "icon": icon, "command_topic": topics.command(command), "payload_press": "{}"}

    def text(name: str, icon: str, command: str) -> dict[str, Any]:
        return {
            "name": name,
            "icon": icon,
            "command_topic": topics.command(command),
            # JSON, so a text that starts with "{" is not mistaken for a JSON payload.
            "command_template": '{{ {"text": value} | tojson }}',
            # What the assistant accepts, so Home Assistant refuses the rest with its own message.
            "min": 1,
            "max": text_max,
            "mode": "text",
        }

    entities: list[tuple[str, str, dict[str, Any]]] = [
        ("sensor", "state", {"name": "State", "icon": "mdi:robot", "state_topic": topics.state}),
        # Object id "transcript" from when only speech set it: existing entities keep their id.
        ("sensor", "transcript", last(EventType.QUESTION, "Last question", "mdi:account-voice", cut_text)),
        ("sensor", "reply", last(EventType.REPLY, "Last reply", "mdi:message-reply-text", cut_text)),
        (
            "sensor",
            "error",
            last(EventType.ERROR, "Last error", "mdi:alert-circle-outline", "{{ value_json.code }}",
                 entity_category="diagnostic"),
        ),
        (
            "sensor",
            "action",
            last(
                EventType.ACTION, "Last action", "mdi:home-lightning-bolt-outline",
                # e.g. "turn_on light.kitchen done"
                "{{ ([value_json.get('action'), value_json.get('entity'), value_json.get('outcome')]"
                " | select | join(' '))[:%d] }}" % HA_STATE_CHARS,
            ),
        ),
        (
            "sensor",
            "next_timer",
            {
                "name": "Next timer",
                "icon": "mdi:timer-outline",
                "device_class": "timestamp",
                "state_topic": topics.timers,
                # "None" is Home Assistant's word for unknown: no timer runs.
                "value_template": "{{ value_json.next or 'None' }}",
                "json_attributes_topic": topics.timers,
            },
        ),
        (
            "binary_sensor",
            "problem",
            {
                "name": "Problem",
                "device_class": "problem",
                "entity_category": "diagnostic",
                "state_topic": topics.health,
                "value_template": "{{ 'ON' if value_json.problem else 'OFF' }}",
                # reason ("speaker missing, retrying") and every part with its state and fix.
                "json_attributes_topic": topics.health,
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
        ("button", "listen", button("Listen", "mdi:microphone", "listen")),
        ("button", "cancel", button("Cancel", "mdi:stop-circle-outline", "cancel")),
        ("button", "reset", button("Reset conversation", "mdi:restart", "reset")),
        ("text", "ask", text("Ask", "mdi:chat-question", "ask")),
        ("text", "say", text("Announce", "mdi:bullhorn", "say")),
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
    configs = {
        topics.discovery(component, object_id): {
            "unique_id": f"edge_assistant_{node_id}_{object_id}",
            **fields,
            **common,
        }
        for component, object_id, fields in entities
    }
    # Device triggers for Home Assistant's automation editor. They have no availability or
    # unique id; Home Assistant identifies them by their discovery topic.
    for object_id, (event_type, error_code) in DEVICE_TRIGGERS.items():
        config: dict[str, Any] = {
            "automation_type": "trigger",
            "type": object_id,
            "subtype": TRIGGER_SUBTYPE,
            "topic": topics.event(event_type),
            "qos": cfg.qos,
            "device": common["device"],
            "origin": common["origin"],
        }
        if error_code is not None:
            # Fires only when the template renders this payload.
            config.update(payload=error_code, value_template="{{ value_json.code }}")
        configs[topics.discovery("device_automation", object_id)] = config
    return configs
