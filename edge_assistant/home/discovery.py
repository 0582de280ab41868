"""Home Assistant MQTT discovery, parsed: (topic, payload bytes) -> the entities it declares.

Pure functions, no I/O. Understood: ``<prefix>/<component>/[<node_id>/]<object_id>/config``
(one entity) and ``<prefix>/device/[<node_id>/]<object_id>/config`` (a device with its
components under ``cmps``), abbreviated keys, the ``~`` topic base, removal by an empty payload.
Each entity's config is read by `discovery_config.entity_from_config` (availability topics, the
light ``json`` schema, ...), as declared devices' are. Everything is bounded: payload size,
number of components, topic and text lengths. A config that cannot be used yields a `Discovery`
whose `rejected` says why, never an exception.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, Mapping

from .discovery_config import MAX_LIST_ITEMS, DiscoveryError, entity_from_config
from .discovery_keys import ABBREVIATIONS, DEVICE_ABBREVIATIONS, ORIGIN_ABBREVIATIONS
from .entities import DOMAINS, Entity, clean_text

MAX_DISCOVERY_BYTES = 256 * 1024
MAX_COMPONENTS = 256
TOPIC_BASE = "~"
DEVICE_COMPONENT = "device"
# Marks what edge-assistant itself announces (mqtt.discovery_configs): not a device of the home.
OWN_IDENTIFIER_PREFIX = "edge_assistant_"
OWN_ORIGIN = "edge-assistant"

_ID = re.compile(r"[a-zA-Z0-9_-]{1,128}")


@dataclass(frozen=True)
class Discovery:
    """What one discovery message means for the registry.

    `key` identifies the message's topic; the registry replaces every entity it had under that
    key with `entities` (none: a removal). `rejected` lists why parts were not usable.
    """

    key: str
    entities: tuple[Entity, ...] = ()
    rejected: tuple[str, ...] = ()
    own: bool = False


@dataclass(frozen=True)
class DiscoveryTopic:
    component: str
    node_id: str
    object_id: str

    @property
    def device_based(self) -> bool:
        return self.component == DEVICE_COMPONENT


def parse_topic(topic: str, prefix: str) -> DiscoveryTopic | None:
    """``<prefix>/<component>/[<node_id>/]<object_id>/config`` split, or None."""
    if not topic.startswith(prefix + "/") or not topic.endswith("/config"):
        return None
    levels = topic[len(prefix) + 1: -len("/config")].split("/")
    if len(levels) == 2:
        component, object_id = levels
        node_id = ""
    elif len(levels) == 3:
        component, node_id, object_id = levels
    else:
        return None
    if not _ID.fullmatch(component) or not _ID.fullmatch(object_id):
        return None
    if node_id and not _ID.fullmatch(node_id):
        return None
    return DiscoveryTopic(component, node_id, object_id)


def parse_discovery(
    topic: str,
    payload: bytes,
    prefix: str,
    *,
    own_node_id: str = "",
    max_bytes: int = MAX_DISCOVERY_BYTES,
) -> Discovery | None:
    """The meaning of a message on a discovery topic; None if the topic is not one we read."""
    where = parse_topic(topic, prefix)
    if where is None:
        return None
    if not where.device_based and where.component not in DOMAINS:
        return None
    key = topic[: -len("/config")]
    if not payload:
        return Discovery(key)  # an empty retained config removes what it declared
    if len(payload) > max_bytes:
        return Discovery(key, rejected=(f"config of {len(payload)} bytes exceeds {max_bytes}",))
    try:
        raw = json.loads(payload)
    except (ValueError, RecursionError) as error:
        return Discovery(key, rejected=(f"not JSON: {str(error)[:80]}",))
    if not isinstance(raw, dict):
        return Discovery(key, rejected=("config is not a JSON object",))
    config = expand(raw)
    if where.node_id and where.node_id == own_node_id or _is_own(config):
        return Discovery(key, own=True)
    if where.device_based:
        return _device_discovery(key, where, config)
    try:
        entity = entity_from_config(where.component, config, source=key, object_id=where.object_id)
    except DiscoveryError as error:
        return Discovery(key, rejected=(str(error),))
    return Discovery(key, (entity,))


def _device_discovery(key: str, where: DiscoveryTopic, config: dict[str, Any]) -> Discovery:
    components = config.get("components")
    if not isinstance(components, dict):
        return Discovery(key, rejected=("device config without components (cmps)",))
    shared = {k: v for k, v in config.items() if k not in ("components", "migrate_discovery")}
    entities: list[Entity] = []
    rejected: list[str] = []
    for index, (component_id, component) in enumerate(components.items()):
        if index >= MAX_COMPONENTS:
            rejected.append(f"more than {MAX_COMPONENTS} components; the rest ignored")
            break
        label = clean_text(component_id, 64)
        if not isinstance(component, dict) or not _ID.fullmatch(str(component_id)):
            rejected.append(f"component {label!r}: not a usable config")
            continue
        merged = {**shared, **expand(component)}
        platform = merged.pop("platform", None)
        if not isinstance(platform, str) or not platform:
            rejected.append(f"component {label!r}: no platform (p)")
            continue
        if platform not in DOMAINS:
            continue  # a component kind the assistant does not use (number, select, update...)
        if set(component) <= {"p", "platform"}:
            continue  # only the platform left: Home Assistant's removal of one component
        try:
            entities.append(
                entity_from_config(platform, merged, source=f"{key}#{component_id}", object_id=str(component_id))
            )
        except DiscoveryError as error:
            rejected.append(f"component {label!r}: {error}")
    return Discovery(key, tuple(entities), tuple(rejected))


def expand(config: Mapping[str, Any]) -> dict[str, Any]:
    """Abbreviations replaced by full keys, and the ``~`` base put into every topic."""
    full: dict[str, Any] = {}
    for key, value in config.items():
        full[ABBREVIATIONS.get(key, key)] = value
    for name, table in (("device", DEVICE_ABBREVIATIONS), ("origin", ORIGIN_ABBREVIATIONS)):
        if isinstance(full.get(name), dict):
            full[name] = {table.get(k, k): v for k, v in full[name].items()}
    if isinstance(full.get("availability"), list):
        full["availability"] = [
            {ABBREVIATIONS.get(k, k): v for k, v in item.items()} if isinstance(item, dict) else item
            for item in full["availability"][:MAX_LIST_ITEMS]
        ]
    base = full.get(TOPIC_BASE)
    if isinstance(base, str) and base:
        for key, value in list(full.items()):
            if key.endswith("_topic") or key == "topic":
                full[key] = _with_base(value, base)
        for item in full.get("availability") or ():
            if isinstance(item, dict) and "topic" in item:
                item["topic"] = _with_base(item["topic"], base)
    return full


def _with_base(value: Any, base: str) -> Any:
    if isinstance(value, str):
        if value.startswith(TOPIC_BASE):
            return base + value[1:]
        if value.endswith(TOPIC_BASE):
            return value[:-1] + base
    return value


def _is_own(config: Mapping[str, Any]) -> bool:
    origin = config.get("origin")
    if isinstance(origin, dict) and origin.get("name") == OWN_ORIGIN:
        return True
    device = config.get("device")
    if isinstance(device, dict):
        identifiers = device.get("identifiers")
        if isinstance(identifiers, str):
            identifiers = [identifiers]
        if isinstance(identifiers, list) and any(
            isinstance(i, str) and i.startswith(OWN_IDENTIFIER_PREFIX) for i in identifiers
        ):
            return True
    return False
