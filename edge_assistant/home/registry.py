"""`Home`: every entity the assistant knows, what it may control, and their live states.

Loop-confined: the MQTT connection hands each message over to the event loop and `Home` is only
ever touched there, so it needs no lock. It applies discovery configs (adding, replacing and
removing entities, bounded by ``home.max_entities``), state and availability messages, and
answers which entities are exposed:

- ``home.expose`` lists area names, components (``light``), entity ids, or ``*``;
- locks, covers of class garage/gate/door, valves and alarm panels are exposed only by their
  entity id, never by ``*``, an area or a component, and every command on them is confirmed
  by voice first (`Entity.sensitive`).

`version` changes whenever the set of entities, their names or areas change (slot lists and
the LLM's device list are rebuilt then, not on state changes).
"""

from __future__ import annotations

import asyncio
import collections
import logging
from typing import Callable, Iterable

from ..config import HomeConfig
from .states import apply_availability, apply_state, availability_topics, state_topics
from .discovery import Discovery, parse_discovery
from .discovery_config import entities_from_declared
from .entities import DOMAINS, Entity, normalize_name
from .places import Places

log = logging.getLogger(__name__)

MAX_REJECTED_REMEMBERED = 200
STAT_KEYS = ("discovery_messages", "state_messages", "rejected", "over_limit", "own_ignored", "duplicates")


class Home:
    def __init__(
        self,
        cfg: HomeConfig,
        discovery_prefix: str,
        *,
        own_node_id: str = "",
        own_topic_prefix: str = "",
    ) -> None:
        self.cfg = cfg
        self.discovery_prefix = discovery_prefix
        self.own_node_id = own_node_id
        # Commands onto the assistant's own topics would be a loop through the broker.
        self.own_topic_prefix = own_topic_prefix
        self.entities: dict[str, Entity] = {}
        self.version = 0
        self.stats = dict.fromkeys(STAT_KEYS, 0)
        # Discovery key -> why (part of) it was not used; bounded, newest last.
        self.rejected: collections.OrderedDict[str, str] = collections.OrderedDict()
        # Discovery key (or component of one, or config:<n>) -> the entity id it declared.
        self._by_source: dict[str, str] = {}
        # Discovery key -> its sources (the components of a device config).
        self._sources_by_key: dict[str, set[str]] = collections.defaultdict(set)
        self._by_topic: dict[str, set[str]] = collections.defaultdict(set)
        self._by_unique_id: dict[str, str] = {}
        self._expose_rules = _ExposeRules(cfg.expose)
        # The config's floors of areas and other names ([[home.areas]], floors, aliases).
        self.places = Places(cfg)
        # Topics gained and lost since the connection last asked (`take_subscription_changes`).
        self._subscribe: set[str] = set()
        self._unsubscribe: set[str] = set()
        self._waiters: dict[str, list[tuple[Callable[[Entity], bool], asyncio.Future]]] = {}
        for source, entity in entities_from_declared(cfg.devices):
            if isinstance(entity, str):
                self._reject(source, entity)
            else:
                self._replace(source, entity)

    # -- messages ------------------------------------------------------------------------------

    def handle_message(self, topic: str, payload: bytes) -> None:
        """One MQTT message: a discovery config, a state or an availability update."""
        if topic.startswith(self.discovery_prefix + "/") and topic.endswith("/config"):
            result = parse_discovery(topic, payload, self.discovery_prefix, own_node_id=self.own_node_id)
            if result is not None:
                self.stats["discovery_messages"] += 1
                self.apply_discovery(result)
                return
        ids = self._by_topic.get(topic)
        if not ids:
            return
        self.stats["state_messages"] += 1
        for entity_id in tuple(ids):
            entity = self.entities[entity_id]
            if topic in state_topics(entity):
                apply_state(entity, topic, payload)
                # Every state message counts as an answer, also one repeating the state.
                self._notify(entity)
            if topic in availability_topics(entity):
                apply_availability(entity, topic, payload)

    def apply_discovery(self, result: Discovery) -> None:
        if result.own:
            self.stats["own_ignored"] += 1
        if result.rejected:
            self._reject(result.key, "; ".join(result.rejected))
        else:
            self.rejected.pop(result.key, None)
        # A device config replaces all of its components: those no longer listed go.
        gone = set(self._sources_by_key.get(result.key, ()))
        for entity in result.entities:
            gone.discard(entity.source)
            self._replace(entity.source, entity)
        for source in gone:
            self._replace(source, None)

    def _replace(self, source: str, entity: Entity | None) -> None:
        """Put `entity` in place of what `source` declared before (None: remove it)."""
        previous = self.entities.get(self._by_source.get(source, ""))
        if entity is not None:
            entity.floor = self.places.floor_of(entity)
        if entity is None:
            if previous is not None:
                self._remove(previous)
                self.version += 1
            return
        if previous is not None and previous.definition()[1:] == entity.definition()[1:]:
            return  # the same config again (a reconnect, a restart of the device)
        owner = self._by_unique_id.get(entity.unique_id) if entity.unique_id else None
        if owner is not None and (previous is None or owner != previous.entity_id):
            self.stats["duplicates"] += 1
            self._reject(source, f"unique_id {entity.unique_id!r} already used by {owner}")
            return
        if previous is None and len(self.entities) >= self.cfg.max_entities:
            self.stats["over_limit"] += 1
            self._reject(source, f"more than home.max_entities ({self.cfg.max_entities}) entities")
            return
        if self.own_topic_prefix and any(
            t.startswith(self.own_topic_prefix + "/") for t in (entity.command_topic, *entity.topics.values())
        ):
            self._reject(source, "it would command the assistant's own topics")
            return
        if previous is not None:
            # A changed config: the entity keeps its id and what is known of its state.
            entity.entity_id = previous.entity_id
            entity.state, entity.available = previous.state, previous.available
            entity.availability_seen = previous.availability_seen
            self._remove(previous)
        else:
            entity.entity_id = self._free_id(entity.entity_id)
        self._add(entity)
        self.version += 1

    def _free_id(self, wanted: str) -> str:
        if wanted not in self.entities:
            return wanted
        number = 2
        while f"{wanted}_{number}" in self.entities:
            number += 1
        return f"{wanted}_{number}"

    def _add(self, entity: Entity) -> None:
        self.entities[entity.entity_id] = entity
        self._by_source[entity.source] = entity.entity_id
        self._sources_by_key[entity.source.split("#", 1)[0]].add(entity.source)
        if entity.unique_id:
            self._by_unique_id[entity.unique_id] = entity.entity_id
        for topic in state_topics(entity) | availability_topics(entity):
            if not self._by_topic[topic]:
                self._subscribe.add(topic)
                self._unsubscribe.discard(topic)
            self._by_topic[topic].add(entity.entity_id)

    def _remove(self, entity: Entity) -> None:
        self.entities.pop(entity.entity_id, None)
        if self._by_source.get(entity.source) == entity.entity_id:
            del self._by_source[entity.source]
            key = entity.source.split("#", 1)[0]
            self._sources_by_key[key].discard(entity.source)
            if not self._sources_by_key[key]:
                del self._sources_by_key[key]
        if entity.unique_id and self._by_unique_id.get(entity.unique_id) == entity.entity_id:
            del self._by_unique_id[entity.unique_id]
        for topic in state_topics(entity) | availability_topics(entity):
            ids = self._by_topic.get(topic)
            if ids is None:
                continue
            ids.discard(entity.entity_id)
            if not ids:
                del self._by_topic[topic]
                self._unsubscribe.add(topic)
                self._subscribe.discard(topic)
        for _, future in self._waiters.pop(entity.entity_id, []):
            if not future.done():
                future.set_result(False)

    def _reject(self, key: str, reason: str) -> None:
        self.stats["rejected"] += 1
        self.rejected.pop(key, None)
        self.rejected[key] = reason[:300]
        while len(self.rejected) > MAX_REJECTED_REMEMBERED:
            self.rejected.popitem(last=False)
        log.debug("home: %s not used: %s", key, reason)

    # -- subscriptions -------------------------------------------------------------------------

    def state_subscriptions(self) -> set[str]:
        return set(self._by_topic)

    def take_subscription_changes(self) -> tuple[set[str], set[str]]:
        """Topics to subscribe to and to drop since the last call."""
        gained, lost = self._subscribe, self._unsubscribe
        self._subscribe, self._unsubscribe = set(), set()
        return gained, lost

    # -- exposure ------------------------------------------------------------------------------

    def exposed(self, entity: Entity) -> bool:
        """May be controlled."""
        return self._expose_rules.allows(entity)

    def visible(self, entity: Entity) -> bool:
        """May be asked about: exposed, or a lock or garage door that a rule other than its id
        names (readable, but controlled only when exposed by id)."""
        return self._expose_rules.names(entity)

    def exposed_entities(self) -> list[Entity]:
        return [e for e in self.entities.values() if self._expose_rules.allows(e)]

    def get(self, entity_id: str) -> Entity | None:
        return self.entities.get(entity_id)

    def in_area(self, area: str) -> list[Entity]:
        wanted = normalize_name(area)
        return [e for e in self.entities.values() if e.area and normalize_name(e.area) == wanted]

    # -- state waiters -------------------------------------------------------------------------

    def expect(self, entity_id: str, predicate: Callable[[Entity], bool]) -> asyncio.Future:
        """A future that becomes True when a state message for the entity satisfies
        `predicate` (False if the entity goes away). Registered at once, so a reply that comes
        right after a command published next cannot be missed; `forget` it when done."""
        future: asyncio.Future = asyncio.get_running_loop().create_future()
        if entity_id not in self.entities:
            future.set_result(False)
        else:
            self._waiters.setdefault(entity_id, []).append((predicate, future))
        return future

    def forget(self, entity_id: str, future: asyncio.Future) -> None:
        waiters = self._waiters.get(entity_id)
        if waiters:
            waiters[:] = [w for w in waiters if w[1] is not future]
            if not waiters:
                del self._waiters[entity_id]

    async def wait_for(self, entity_id: str, predicate: Callable[[Entity], bool], timeout: float) -> bool:
        """True once a state message makes `predicate(entity)` hold, False on timeout or removal."""
        future = self.expect(entity_id, predicate)
        try:
            return await asyncio.wait_for(asyncio.shield(future), timeout)
        except asyncio.TimeoutError:
            return False
        finally:
            self.forget(entity_id, future)

    def _notify(self, entity: Entity) -> None:
        for predicate, future in tuple(self._waiters.get(entity.entity_id, ())):
            if future.done():
                continue
            try:
                matched = predicate(entity)
            except Exception:  # a predicate over odd device data must not break message handling
                log.exception("home: state predicate failed")
                matched = False
            if matched:
                future.set_result(True)

    # -- listing -------------------------------------------------------------------------------

    def snapshot(self) -> list[dict]:
        rows = []
        for entity in sorted(self.entities.values(), key=lambda e: (e.area.casefold(), e.entity_id)):
            row = entity.summary()
            row["exposed"] = self.exposed(entity)
            row["needs_confirmation"] = entity.sensitive
            rows.append(row)
        return rows


class _ExposeRules:
    """``home.expose`` compiled: ids, components, areas, and whether ``*`` is there."""

    def __init__(self, rules: Iterable[str]) -> None:
        self.everything = False
        self.ids: set[str] = set()
        self.domains: set[str] = set()
        self.areas: set[str] = set()
        for rule in rules:
            rule = rule.strip()
            if rule == "*":
                self.everything = True
            elif rule in DOMAINS:
                self.domains.add(rule)
            elif "." in rule and rule.split(".", 1)[0] in DOMAINS:
                self.ids.add(rule)
            elif rule:
                self.areas.add(normalize_name(rule))

    def allows(self, entity: Entity) -> bool:
        if entity.entity_id in self.ids:
            return True
        return not entity.sensitive and self._by_rule(entity)

    def names(self, entity: Entity) -> bool:
        return entity.entity_id in self.ids or self._by_rule(entity)

    def _by_rule(self, entity: Entity) -> bool:
        return (
            self.everything
            or entity.domain in self.domains
            or bool(entity.area) and normalize_name(entity.area) in self.areas
        )
