"""Which devices a sentence names or clearly implies: what the LLM fallback may act on.

A wrong device is worse than none, so a tool call of the model is checked against the words of
the request before anything is published (`check_call`), and the grammar offers only those
devices to begin with (`Grounding.allowed`). A device counts as meant when the sentence

- says its name or one of its aliases ("the desk lamp"), singular or plural; or
- says its area or floor (or their aliases) and a word for its kind ("the kitchen lights",
  "the blinds downstairs"); or
- says a word for its kind, and no place, and it is the only device of that kind, or it
  stands in the assistant's own area (``home.area``).

An area alone ("it is cold in the hall") implies no device. A word for how the room feels
("hot", "dark") stands for a kind in a request ("it is too dark where I cook"), not in a question:
"What is the opposite of hot?" turns on no fan.

The action must not contradict the words either ("lights off" never turns anything on, "to 22
degrees" never just switches).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Iterable

from .entities import Entity
from .places import Places, any_mentioned, mentions, words_in

# Words for a device's kind, by component and by device class (singular, lower case).
DOMAIN_WORDS: dict[str, tuple[str, ...]] = {
    "light": ("light", "lamp", "lighting", "bulb", "chandelier", "spotlight", "dark", "bright", "dim"),
    "switch": ("switch", "plug", "socket", "outlet", "power"),
    "fan": ("fan", "ventilation", "ventilator", "breeze", "hot"),
    "cover": ("cover", "blind", "shade", "curtain", "shutter", "awning", "daylight", "sunlight", "darken"),
    "lock": ("lock", "door"),
    "valve": ("valve", "water", "tap"),
    "climate": ("thermostat", "heating", "heater", "radiator", "temperature", "ac", "air conditioning",
                "air conditioner", "climate", "degree", "warm", "cold"),
    "scene": ("scene",),
    "button": ("button",),
    "alarm_control_panel": ("alarm", "security"),
    "sensor": ("sensor",),
    "binary_sensor": ("sensor",),
}
CLASS_WORDS: dict[str, tuple[str, ...]] = {
    "garage": ("garage", "garage door", "door"), "door": ("door",), "gate": ("gate",), "window": ("window",),
    "blind": ("blind",), "curtain": ("curtain",), "shade": ("shade",), "shutter": ("shutter",),
    "awning": ("awning",), "temperature": ("temperature",), "humidity": ("humidity",),
    "water": ("water",), "gas": ("gas",), "outlet": ("outlet", "socket", "plug"),
}
# Kind words that say how the room feels: a kind in a request, nothing in a question.
FEELING_WORDS = frozenset({"dark", "bright", "dim", "hot", "warm", "cold", "breeze", "daylight", "sunlight",
                           "darken"})
_QUESTION = re.compile(r"^(?:what|who|whom|whose|where|when|why|how|which|is|are|was|were|do|does|did|can|"
                       r"could|would|will|should|shall|may|might|have|has)\b|\?\s*$")
# Words that contradict an action: present without a word for the action itself, it is refused.
_OPPOSITES: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "turn_on": (("off", "stop", "kill"), ("on", "start")),
    "turn_off": (("on", "start"), ("off", "stop", "kill")),
    "toggle": (("on", "off", "start", "stop", "kill"), ("toggle",)),
    "open": (("close", "shut"), ("open",)),
    "close": (("open",), ("close", "shut")),
    "lock": (("unlock",), ("lock",)),
    "unlock": (("lock",), ("unlock",)),
}


# Words for any cover over a window, whatever its class.
_WINDOW_WORDS = ("cover", "daylight", "sunlight", "darken")
# Actions that take no number: a sentence asking for one ("to 22 degrees") does not mean them.
_VALUE = re.compile(r"\b\d+(\.\d+)?\s*(%|percent|degrees?)")
_NO_VALUE_TOOLS = ("turn_on", "turn_off", "toggle", "open", "close", "stop", "lock", "unlock")


def kind_words(entity: Entity) -> tuple[str, ...]:
    if entity.domain == "cover" and entity.device_class in CLASS_WORDS:
        # A curtain is not a blind: the class says which kind of cover it is.
        return CLASS_WORDS[entity.device_class] + (() if entity.device_class in ("garage", "door", "gate")
                                                   else _WINDOW_WORDS)
    return DOMAIN_WORDS.get(entity.domain, ()) + CLASS_WORDS.get(entity.device_class, ())


@dataclass(frozen=True)
class Grounding:
    """What one sentence says about the home's devices."""

    text: str
    words: frozenset[str]
    # Entity ids named by their name or an alias.
    named: frozenset[str]
    # Entity ids whose area or floor is said.
    placed: frozenset[str]
    # Entity ids a word for whose kind is said.
    kinds: frozenset[str]
    # Entity ids standing in the assistant's own area.
    here: frozenset[str]

    def allowed(self, tool: str, able: Iterable[str]) -> set[str]:
        """The devices among `able` (those exposed that can do `tool`) the sentence means: the
        ones it names (in the place it says, if it says one); else those of the kind it says in
        the place it says; else the only one of that kind, or those of that kind here."""
        able = set(able)
        named = self.named & able
        if named:
            return (named & self.placed) or named
        placed_kind = self.placed & self.kinds & able
        if placed_kind:
            return placed_kind
        if self.placed & able:
            return set()  # a place said, but nothing there of the kind said
        kind = self.kinds & able
        if len(self.kinds) == 1:
            return kind  # the one device of the kind said (whatever else could do the action)
        return kind & self.here


def ground(sentence: str, entities: Iterable[Entity], places: Places, here: str = "") -> Grounding:
    words = words_in(sentence)
    question = _QUESTION.search(" ".join(sentence.casefold().split())) is not None
    named, placed, kinds, local = set(), set(), set(), set()
    here_key = " ".join(here.split()).casefold()
    for entity in entities:
        if any_mentioned(words, places.names_of(entity)):
            named.add(entity.entity_id)
        spots = [entity.area, *places.area_aliases(entity.area)] if entity.area else []
        if entity.floor:
            spots += [entity.floor, *places.floor_aliases(entity.floor)]
        if any_mentioned(words, spots):
            placed.add(entity.entity_id)
        if any(mentions(words, w) for w in kind_words(entity) if not (question and w in FEELING_WORDS)):
            kinds.add(entity.entity_id)
        if here_key and entity.area.casefold() == here_key:
            local.add(entity.entity_id)
    return Grounding(sentence.casefold(), frozenset(words), frozenset(named), frozenset(placed),
                     frozenset(kinds), frozenset(local))


def check_call(tool: str, entity_ids: Iterable[str], grounding: Grounding, able: Iterable[str]) -> str | None:
    """Why a call of `tool` on `entity_ids` is not what the sentence asked for; None if it is.
    `able`: every exposed device that can do `tool`."""
    ids = list(entity_ids)
    able = set(able)
    if not ids:
        return "no device"
    contradicting, supporting = _OPPOSITES.get(tool, ((), ()))
    if any(w in grounding.words for w in contradicting) and not any(w in grounding.words for w in supporting):
        return f"the sentence does not ask to {tool.replace('_', ' ')}"
    if tool in _NO_VALUE_TOOLS and _VALUE.search(grounding.text):
        return f"the sentence asks for a value, not to {tool.replace('_', ' ')}"
    allowed = grounding.allowed(tool, able)
    for entity_id in ids:
        if entity_id not in allowed:
            return f"the sentence does not name or imply {entity_id}"
    return None
