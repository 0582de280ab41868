"""Recognising what was said about the home: hassil over the home-assistant-intents templates.

The templates of ``stt.language`` (or English, with a warning) are parsed once per process and
kept (`load_language`). Slot lists are built from the registry, once per change of its entities
(`Home.version`), as Home Assistant's default agent builds them: every name carries its
entity's domain as context, so a template's ``requires_context``/``excludes_context`` admits only
names of the right kind ("unlock {name}" only names locks). Names come from the entities that
can be asked about (`Home.visible`); whether one may be controlled is for the executor to say.

`Recognizer.recognize` returns a `Match`: the intent, its slots, the entities meant ("all the
lights in the kitchen" = every light there), the response key; or None when no template fits.
Intents outside `HOME_INTENTS` (timers, added with `extra_intents`/`allow`) come back as matches
without entities, for the caller to route.
"""

from __future__ import annotations

import functools
import json
import logging
import re
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

from hassil import Intents, recognize_ranked
from hassil.expression import TextChunk
from hassil.filter import filter_intents
from hassil.intents import SlotList, TextSlotList, TextSlotValue
from hassil.util import merge_dict
from home_assistant_intents import get_intents, get_languages

from .entities import DOMAINS, normalize_name
from .registry import Home

log = logging.getLogger(__name__)

HOME_INTENTS = (
    "HassTurnOn", "HassTurnOff", "HassToggle", "HassLightSet", "HassSetPosition",
    "HassFanSetSpeed", "HassClimateSetTemperature", "HassGetState", "HassNevermind",
    "HassGetCurrentTime", "HassGetCurrentDate",
)
# Intents that need no device.
NO_TARGET_INTENTS = ("HassNevermind", "HassGetCurrentTime", "HassGetCurrentDate")
FALLBACK_LANGUAGE = "en"
# Results of one recognition looked at before settling for the best so far.
MAX_RESULTS = 64
MAX_TEXT_CHARS = 500

# The English intents have no HassToggle; these few templates add it.
_TOGGLE_EN = {
    "language": "en",
    "intents": {
        "HassToggle": {
            "data": [{
                "sentences": ["toggle [<the>] {name}", "toggle [<the>] {area} [<the>] {name}",
                              "toggle [<the>] {name} <in> [<the>] {area}"],
                "requires_context": {"domain": ["light", "switch", "fan"]},
            }],
        },
    },
}


@dataclass(frozen=True)
class Language:
    """One language's parsed templates and response texts."""

    code: str
    intents: Intents
    responses: Mapping[str, Mapping[str, str]]
    errors: Mapping[str, str]


@dataclass(frozen=True)
class Match:
    intent: str
    # Slot name -> value: the text for name/area/floor, numbers for brightness/position/...
    slots: dict[str, Any]
    # Entities meant, in order; () for intents with no device or not handled here.
    entities: tuple[str, ...]
    response_key: str
    elapsed_ms: float
    # When nothing can be done: an error key of the language's responses (no_entity_exposed...).
    error: str = ""
    # Words to fill the error text with (entity, area, domain).
    error_slots: dict[str, str] = field(default_factory=dict)

    @property
    def handled_here(self) -> bool:
        return self.intent in HOME_INTENTS

    def event_data(self, source: str = "template") -> dict[str, Any]:
        return {
            "name": self.intent,
            "slots": {k: v for k, v in self.slots.items() if isinstance(v, (str, int, float, bool))},
            "entities": list(self.entities),
            "source": source,
            "match_ms": round(self.elapsed_ms, 2),
        }


def resolve_language(language: str) -> str:
    """The intents language for an stt.language such as "en", "de-CH" or "pt_BR"."""
    available = set(get_languages())
    wanted = language.replace("_", "-")
    for candidate in (wanted, wanted.split("-")[0]):
        if candidate in available:
            return candidate
    log.warning("home: no intents for language %r; using %r", language, FALLBACK_LANGUAGE)
    return FALLBACK_LANGUAGE


@functools.lru_cache(maxsize=8)
def _load(code: str, allowed: frozenset[str], extra_json: str) -> Language:
    data = get_intents(code)
    if data is None:
        raise ValueError(f"no intents for language {code!r}")
    responses = data.get("responses", {})
    if code == "en":
        merge_dict(data, json.loads(json.dumps(_TOGGLE_EN)))
    for extra in json.loads(extra_json):
        merge_dict(data, extra)
    intents = Intents.from_dict(data)
    domains = set(DOMAINS)
    intents = filter_intents(intents, intent_names=allowed, domains=domains)
    return Language(code, intents, responses.get("intents", {}), responses.get("errors", {}))


def load_language(language: str, *, allow: Iterable[str] = (), extra_intents: Iterable[Mapping] = ()) -> Language:
    """Parsed templates of `language` limited to the home intents plus `allow` and the names of
    `extra_intents` (dicts in hassil's format). Cached: the same arguments parse once."""
    extra = [dict(item) for item in extra_intents]
    names = set(HOME_INTENTS) | set(allow)
    for item in extra:
        names |= set(item.get("intents", {}))
    return _load(resolve_language(language), frozenset(names), json.dumps(extra, sort_keys=True))


class Recognizer:
    """Matches text against the language's templates with slot lists from a `Home`."""

    def __init__(
        self,
        language: str,
        home: Home,
        *,
        allow: Iterable[str] = (),
        extra_intents: Iterable[Mapping] = (),
    ) -> None:
        self._language_code = language
        self._allow = tuple(allow)
        self._extra: list[Mapping] = list(extra_intents)
        self.language = load_language(language, allow=self._allow, extra_intents=self._extra)
        self.home = home
        self._slot_lists: dict[str, SlotList] = {}
        self._built_version = -1
        self._matching = threading.Lock()
        area = home.cfg.area.strip()
        self._intent_context = {"area": {"value": normalize_name(area), "text": area}} if area else {}

    def add_intents(self, intents: Mapping, allow: Iterable[str] = ()) -> None:
        """More intents (hassil's dict format), e.g. timers handled by the caller."""
        self._extra.append(intents)
        self._allow += tuple(allow)
        self.language = load_language(self._language_code, allow=self._allow, extra_intents=self._extra)

    def slot_lists(self) -> dict[str, SlotList]:
        if self._built_version != self.home.version:
            self._slot_lists = build_slot_lists(self.home)
            self._built_version = self.home.version
        return self._slot_lists

    def recognize(self, text: str) -> Match | None:
        started = time.perf_counter()
        return self.choose(self.candidates(text, self.slot_lists()), started)

    def candidates(self, text: str, slot_lists: dict[str, SlotList]) -> list[Any]:
        """hassil's results for `text`, best first as Home Assistant ranks them
        (`recognize_ranked`, as under `recognize_best`: a device named beats an area, then more
        literal text and fewer wildcards), at most `MAX_RESULTS`. Touches no registry state, so
        it may run in a worker thread (one at a time: slot lists index themselves lazily)."""
        text = text.strip()[:MAX_TEXT_CHARS]
        if not text:
            return []
        with self._matching:
            results = recognize_ranked(
                text, self.language.intents, slot_lists=slot_lists,
                intent_context=self._intent_context, language=self.language.code, best_slot_name="name",
            )
            return results[:MAX_RESULTS]

    def choose(self, results: list[Any], started: float) -> Match | None:
        """The best reading among hassil's ranked results, resolved against the registry: the
        first that can be acted on, else the first (whose error is then said)."""
        best: Match | None = None
        for result in results:
            match = self._resolve(result)
            if match is None:
                continue
            if best is None:
                best = match
            if not match.error:
                best = match
                break
        if best is None:
            return None
        elapsed = (time.perf_counter() - started) * 1000
        return Match(best.intent, best.slots, best.entities, best.response_key, elapsed, best.error, best.error_slots)

    def _resolve(self, result: Any) -> Match | None:
        intent = result.intent.name
        slots: dict[str, Any] = {}
        for entity in result.entities_list:
            if entity.name == "name":
                slots["name"] = entity.text_clean or str(entity.value)
                slots["name_id"] = entity.value
            elif entity.name in ("area", "floor"):
                # The value is the area's (floor's) own name, also when an alias was said.
                slots[entity.name] = str(entity.value or entity.text_clean)
            else:
                slots[entity.name] = entity.value
        response = result.response or "default"
        if intent not in HOME_INTENTS or intent in NO_TARGET_INTENTS:
            return Match(intent, _public(slots), (), response, 0.0)
        resolved = self._targets(intent, slots)
        if resolved is None:
            return None
        targets, error, words = resolved
        return Match(intent, _public(slots), targets, response, 0.0, error, words)

    def _targets(self, intent: str, slots: dict[str, Any]) -> tuple[tuple[str, ...], str, dict[str, str]] | None:
        """The entities meant, or an error key when there are none; None: not this reading."""
        home = self.home
        controls = intent != "HassGetState"
        area = slots.get("area")
        if "name_id" in slots:
            entity = home.get(slots["name_id"])
            if entity is None:
                return None
            if area is not None and normalize_name(entity.area) != normalize_name(str(area)):
                return None  # another entity of that name may be in that area
            if controls and not home.exposed(entity):
                return (entity.entity_id,), "no_entity_exposed", {"entity": entity.name}
            return (entity.entity_id,), "", {}
        domains = slots.get("domain")
        domains = {domains} if isinstance(domains, str) else set(domains or ())
        if intent == "HassFanSetSpeed":
            domains = {"fan"}
        elif intent == "HassClimateSetTemperature":
            domains = {"climate"}
        device_class = slots.get("device_class")
        floor = slots.get("floor")
        candidates = [
            e for e in home.entities.values()
            if home.visible(e)
            and (not domains or e.domain in domains)
            and (device_class is None or e.device_class == device_class)
            and (area is None or normalize_name(e.area) == normalize_name(str(area)))
            and (floor is None or normalize_name(e.floor) == normalize_name(str(floor)))
        ]
        chosen = [e for e in candidates if home.exposed(e)] if controls else candidates
        words = {"area": str(area or ""), "floor": str(floor or ""),
                 "domain": next(iter(sorted(domains)), ""), "device_class": str(device_class or "")}
        if not chosen:
            kind = "no_device_class" if device_class else "no_domain"
            where = "_in_area" if area else "_in_floor" if floor else ""
            return (), kind + where + ("_exposed" if candidates else ""), words
        chosen.sort(key=lambda e: (e.name.casefold(), e.entity_id))
        return tuple(e.entity_id for e in chosen), "", words


def _public(slots: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in slots.items() if k != "name_id"}


_SPOKEN = re.compile(r"[^\w\s'-]+")


def build_slot_lists(home: Home) -> dict[str, SlotList]:
    """``name``, ``area`` and ``floor`` lists from the entities that can be asked about: every
    name as people say it (aliases, singular and plural, no article; a form that is another
    entity's own name is left to that one), areas and floors with their aliases."""
    places = home.places
    visible = [e for e in home.entities.values() if home.visible(e)]
    own_names = {normalize_name(_spoken(e.name)) for e in visible}
    names: list[TextSlotValue] = []
    areas: dict[str, tuple[str, str]] = {}
    floors: dict[str, tuple[str, str]] = {}
    for entity in visible:
        said: set[str] = set()
        for index, name in enumerate(places.names_of(entity)):
            spoken = _spoken(name)
            key = normalize_name(spoken)
            taken = index and key in own_names and key != normalize_name(_spoken(entity.name))
            if not spoken or key in said or taken:
                continue
            said.add(key)
            names.append(TextSlotValue(TextChunk(spoken), entity.entity_id, context={"domain": entity.domain}))
        _add_place(areas, entity.area, places.area_aliases(entity.area))
        _add_place(floors, entity.floor, places.floor_aliases(entity.floor))
    if home.cfg.area.strip():
        _add_place(areas, home.cfg.area.strip(), places.area_aliases(home.cfg.area))
    for floor in places.floors:
        _add_place(floors, floor, places.floor_aliases(floor))
    return {
        "name": TextSlotList(name="name", values=names),
        "area": TextSlotList(name="area", values=[TextSlotValue(TextChunk(t), v) for t, v in areas.values()]),
        "floor": TextSlotList(name="floor", values=[TextSlotValue(TextChunk(t), v) for t, v in floors.values()]),
    }


def _add_place(table: dict[str, tuple[str, str]], name: str, aliases: Iterable[str]) -> None:
    """An area or floor and its aliases as (spoken text, the place's own name), once each."""
    own = _spoken(name)
    if not own:
        return
    for text in (own, *(_spoken(a) for a in aliases)):
        if text:
            table.setdefault(normalize_name(text), (text, own))


def _spoken(text: str) -> str:
    """A name as it can be said: markup and punctuation the recogniser never hears dropped."""
    return " ".join(_SPOKEN.sub(" ", text).split())
