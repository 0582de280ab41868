"""MQTT: events out, commands in, Home Assistant discovery and Hermes compatibility.

Modules, in the order they build on each other:

- `topics`: every topic of one device (`Topics`), availability payloads.
- `commands`: incoming command payloads validated into `events.Command` (`parse_command`,
  `CommandRejected`, `ERROR_CODES`).
- `hermes`: Hermes (Rhasspy, Snips) topics, requests as commands, and the messages answering them.
- `discovery`: Home Assistant discovery configs, entities and device triggers (`discovery_configs`).
- `client`: name checks, `unregister`, `read_retained` (paho clients from `broker`), JSON.
- `retained`: the retained topics events update (last question, reply, error, action; timers).
- `bridge`: `MqttBridge`, the connection of the running assistant (a `broker.BrokerConnection`).

Topics and payloads: docs/mqtt.md.
"""

from .bridge import MqttBridge
from .client import MqttError, read_retained, unregister
from .commands import ERROR_CODES, CommandRejected, parse_command
from .discovery import discovery_configs
from .topics import Topics

__all__ = [
    "ERROR_CODES",
    "CommandRejected",
    "MqttBridge",
    "MqttError",
    "Topics",
    "discovery_configs",
    "parse_command",
    "read_retained",
    "unregister",
]
