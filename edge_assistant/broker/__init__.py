"""The connection to the MQTT broker that the assistant's MQTT bridge (`mqtt`) and the home's
device connection (`home.connection`) are both built on.

- `client`: a paho client from the config (`make_client`: credentials, TLS, reconnect backoff,
  paho's log) and the client id of each of this device's connections (`client_id`).
- `connection`: `BrokerConnection`, one client with its publisher thread (the loop only
  queues), messages handed to the loop, subscriptions renewed at each connect, retained values
  announced, and its connection reported (`CONNECTED`, `UNREACHABLE`, `REFUSED`) for the
  daemon's `broker` health entry (`health_reporter`).
"""

from .client import client_id, make_client
from .connection import CONNECTED, REFUSED, UNREACHABLE, BrokerConnection, Message, health_reporter

__all__ = [
    "CONNECTED",
    "REFUSED",
    "UNREACHABLE",
    "BrokerConnection",
    "Message",
    "client_id",
    "health_reporter",
    "make_client",
]
