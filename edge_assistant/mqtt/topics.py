"""The topics of one device, and the payloads of its availability topic."""

from __future__ import annotations

from dataclasses import dataclass

from ..config import MqttConfig, sanitize_device_id
from ..events import EventType

ONLINE = "online"
OFFLINE = "offline"
# Device id level of the opt-in topic that addresses every device at once.
BROADCAST_ID = "all"
# Kinds of `Topics.last`: the latest question (spoken or typed), reply, error and action.
LAST_KINDS = (EventType.QUESTION, EventType.REPLY, EventType.ERROR, EventType.ACTION)


@dataclass(frozen=True)
class Topics:
    """Every topic of one device, derived from the prefixes and the device id."""

    prefix: str
    device_id: str
    discovery_prefix: str = "homeassistant"

    @classmethod
    def for_config(cls, cfg: MqttConfig, device_id: str) -> Topics:
        return cls(cfg.topic_prefix, device_id, cfg.discovery_prefix)

    @property
    def base(self) -> str:
        return f"{self.prefix}/{self.device_id}"

    @property
    def availability(self) -> str:
        return f"{self.base}/availability"

    @property
    def state(self) -> str:
        return f"{self.base}/state"

    @property
    def transcript(self) -> str:
        return f"{self.base}/transcript"

    @property
    def reply(self) -> str:
        return f"{self.base}/reply"

    @property
    def mute(self) -> str:
        return f"{self.base}/mute"

    @property
    def volume(self) -> str:
        return f"{self.base}/volume"

    def last(self, kind: EventType) -> str:
        """Retained JSON: the latest event of one of `LAST_KINDS`."""
        return f"{self.base}/last/{kind}"

    @property
    def timers(self) -> str:
        """Retained JSON: the running timers, the next one to end first."""
        return f"{self.base}/timers"

    @property
    def health(self) -> str:
        """Retained JSON: whether any part (microphone, speaker, broker, ...) fails, and why."""
        return f"{self.base}/health"

    @property
    def retained_states(self) -> tuple[str, ...]:
        return (
            self.state, self.transcript, self.reply, self.mute, self.volume, self.timers, self.health,
            *(self.last(kind) for kind in LAST_KINDS),
        )

    def event(self, event_type: EventType) -> str:
        return f"{self.base}/event/{event_type}"

    def command(self, name: str) -> str:
        return f"{self.base}/cmd/{name}"

    @property
    def command_filter(self) -> str:
        return f"{self.base}/cmd/+"

    @property
    def broadcast_filter(self) -> str:
        return f"{self.prefix}/{BROADCAST_ID}/cmd/+"

    def command_name(self, topic: str, broadcast: bool) -> str | None:
        """The command name if `topic` addresses this device (or, with `broadcast`, every
        device), else None."""
        starts = [self.command("")]
        if broadcast:
            starts.append(f"{self.prefix}/{BROADCAST_ID}/cmd/")
        for start in starts:
            if topic.startswith(start):
                name = topic[len(start):]
                return None if "/" in name else name
        return None

    @property
    def ha_status(self) -> str:
        return f"{self.discovery_prefix}/status"

    def discovery(self, component: str, object_id: str) -> str:
        # Home Assistant only accepts [a-zA-Z0-9_-] as node id.
        node_id = sanitize_device_id(self.device_id)
        return f"{self.discovery_prefix}/{component}/{node_id}/{object_id}/config"
