"""Where things are and what people call them: the ``[home]`` areas, floors and aliases of the
config, and names as they are said (singular or plural, without an article).

Discovery gives an entity a name and at most a suggested area; the config puts areas on floors
and adds other names for areas, floors and devices. `Places` answers, for the templates' slot
lists and for the LLM's device list alike: which floor an area is on, and every way to say an
area, a floor or a device.
"""

from __future__ import annotations

import re
from typing import Iterable

from ..config import HomeConfig
from .entities import Entity, normalize_name

_ARTICLE = re.compile(r"^(the|a|an|my|our)\s+", re.I)
_SIBILANT = ("s", "x", "z", "ch", "sh")
# Words whose plural is not made with -s.
_IRREGULAR = {"person": "people", "man": "men", "woman": "women", "child": "children", "shelf": "shelves"}
_IRREGULAR_SINGULAR = {plural: singular for singular, plural in _IRREGULAR.items()}


def singular(word: str) -> str:
    lower = word.lower()
    if lower in _IRREGULAR_SINGULAR:
        return _match_case(_IRREGULAR_SINGULAR[lower], word)
    if len(lower) > 4 and lower.endswith("ies"):
        return word[:-3] + "y"
    if len(lower) > 3 and lower.endswith("es") and lower[:-2].endswith(_SIBILANT):
        return word[:-2]
    if len(lower) > 3 and lower.endswith("s") and not lower.endswith(("ss", "us", "is")):
        return word[:-1]
    return word


def plural(word: str) -> str:
    lower = word.lower()
    if lower in _IRREGULAR:
        return _match_case(_IRREGULAR[lower], word)
    if lower.endswith("y") and len(lower) > 2 and lower[-2] not in "aeiou":
        return word[:-1] + "ies"
    if lower.endswith(_SIBILANT):
        return word + "es"
    return word + "s"


def _match_case(word: str, like: str) -> str:
    return word.capitalize() if like[:1].isupper() else word


def name_variants(name: str) -> list[str]:
    """Ways to say a name besides itself: without a leading article, and with its last word in
    the other number ("Kitchen Lights" -> "Kitchen Light")."""
    base = _ARTICLE.sub("", name).strip() or name
    variants = [base] if base != name else []
    words = base.split()
    if words and words[-1].isalpha() and len(words[-1]) > 2:
        last = words[-1]
        other = singular(last)
        if other == last:
            other = plural(last)
        if other != last:
            variants.append(" ".join([*words[:-1], other]))
    return variants


class Places:
    """The config's areas, floors and aliases, looked up by normalized name."""

    def __init__(self, cfg: HomeConfig) -> None:
        self._floor_of_area: dict[str, str] = {}
        self._area_aliases: dict[str, tuple[str, ...]] = {}
        self._floor_aliases: dict[str, tuple[str, ...]] = {}
        self._device_aliases: dict[str, tuple[str, ...]] = {}
        self.floors: list[str] = []
        for area in cfg.areas:
            key = normalize_name(area.name)
            if area.floor.strip():
                self._floor_of_area[key] = " ".join(area.floor.split())
            self._area_aliases[key] = tuple(a.strip() for a in area.aliases)
        for floor in cfg.floors:
            self._floor_aliases[normalize_name(floor.name)] = tuple(a.strip() for a in floor.aliases)
        for entry in cfg.aliases:
            self._device_aliases[normalize_name(entry.name)] = tuple(a.strip() for a in entry.aliases)
        self.floors = sorted({*self._floor_of_area.values(), *(f.name.strip() for f in cfg.floors)})

    def floor_of(self, entity: Entity) -> str:
        """The configured floor of the entity's area, else the floor it declared itself."""
        return self._floor_of_area.get(normalize_name(entity.area), entity.floor) if entity.area else entity.floor

    def area_aliases(self, area: str) -> tuple[str, ...]:
        return self._area_aliases.get(normalize_name(area), ())

    def floor_aliases(self, floor: str) -> tuple[str, ...]:
        return self._floor_aliases.get(normalize_name(floor), ())

    def device_aliases(self, entity: Entity) -> tuple[str, ...]:
        """Aliases given for the entity by its id or its name."""
        return (self._device_aliases.get(entity.entity_id, ())
                + self._device_aliases.get(normalize_name(entity.name), ()))

    def names_of(self, entity: Entity) -> list[str]:
        """Every name the entity is called by: its own, its aliases (as given), then the way
        people say them (articles dropped, singular/plural)."""
        given = [entity.name, *self.device_aliases(entity)]
        result: list[str] = []
        for name in given:
            for candidate in (name, *name_variants(name)):
                if candidate and candidate not in result:
                    result.append(candidate)
        return result


def words_in(text: str) -> set[str]:
    """The words of a sentence, lower case, singular: what `mentions` compares."""
    return {singular(w) for w in re.findall(r"[a-z0-9]+", text.casefold())}


def mentions(sentence_words: set[str], phrase: str) -> bool:
    """Whether every word of `phrase` (singular) is in the sentence."""
    words = words_in(phrase)
    return bool(words) and words <= sentence_words


def any_mentioned(sentence_words: set[str], phrases: Iterable[str]) -> bool:
    return any(mentions(sentence_words, p) for p in phrases)
