"""What a language model's reply may not say: what only the device knows, and the prompt itself.

A small model asked "turn on the kitchen lights" with nothing to act on answers "The kitchen
lights are on."; asked the time, it says "12:03 p.m."; with a device list in its prompt it may
speak the tool instructions' placeholder ("Your short spoken answer."). The device answers
those things itself (facts, home, timers) before the model is asked, and no action is ever
taken by the model's words, so a reply that claims an action or a device's state, states a
clock time or a timer, or repeats the prompt's own wording is refused: the caller says it did
not understand instead. The patterns are deliberately narrow (first-person claims, device
states, clock times); a general answer ("Paris is the capital of France.") passes.
"""

from __future__ import annotations

import re
from typing import Iterable

# Sentences of the tool instructions a model speaks back in place of an answer.
PROMPT_PHRASES = ("short spoken answer", "spoken answer", "json object", "entity_id", "reply with only",
                  "devices listed below", "id; name; area", '{"tool"', '{"answer"')
# The shortest run of the system prompt's words that counts as repeating it.
ECHO_WORDS = 5

_CLAIMS = (
    # "I have turned on ...", "I've set a timer", "I'll switch it off", "I turned ..."
    re.compile(r"\bi(?:'ve| have|'ll| will| just| already)*\s+(?:now\s+)?(?:turned|switched|set|started|stopped|"
               r"opened|closed|locked|unlocked|dimmed|brightened|activated|deactivated|scheduled|cancell?ed|"
               r"paused|created|added|muted|unmuted|adjusted|changed|turn|switch|start|open|close|lock|unlock)\b"),
    # "The kitchen lights are on.", "It is on.", "The door is now locked."
    re.compile(r"\b(?:is|are|was|were)\s+(?:now\s+|currently\s+|still\s+|already\s+|turned\s+|switched\s+)*"
               r"(?:on|off|open|closed|locked|unlocked|dimmed|muted|unmuted)\s*[.!,]?\s*$"),
    re.compile(r"\b(?:turned|switched|powered)\s+(?:it\s+|them\s+)?(?:on|off)\b"),
    re.compile(r"\b(?:timer|alarm|reminder)s?\b.*\b(?:is|are|has been|have been|was)?\s*"
               r"(?:set|started|running|created|cancell?ed|stopped|paused|left|remaining|ringing)\b"),
    re.compile(r"\byour\s+(?:\w+\s+)?(?:timer|alarm|reminder)s?\b"),
    re.compile(r"\b(?:minutes?|hours?|seconds?)\s+(?:left|remaining|to go)\b"),
    # "I have a kitchen light.", "You have 3 devices."
    re.compile(r"\b(?:i|you)\s+(?:have|don't have|do not have|can see|found)\s+(?:a|an|the|\d+|no|two|three|some)\s+"
               r"(?:[\w-]+\s+){0,3}?(?:lights?|lamps?|switch(?:es)?|fans?|thermostats?|locks?|doors?|blinds?|"
               r"devices?|sensors?|plugs?|timers?|alarms?)\b"),
    # A clock time: "12:03", "7 p.m.", "it's 7 o'clock".
    re.compile(r"\b\d{1,2}:\d{2}\b"),
    re.compile(r"\b\d{1,2}\s*(?:a\.?\s?m\b\.?|p\.?\s?m\b\.?|o'clock\b)"),
    re.compile(r"\b(?:it is|it's|the time is)\s+(?:now\s+)?(?:\w+\s+)?(?:o'clock|noon|midnight|"
               r"(?:one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve)\b)"),
)


def _words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9']+", text.casefold())


class ReplyGuard:
    """Checks each sentence of a model's reply before it is spoken."""

    def __init__(self, prompt_texts: Iterable[str] = ()) -> None:
        self._echoes: set[tuple[str, ...]] = set()
        for text in prompt_texts:
            words = _words(text)
            self._echoes.update(tuple(words[i:i + ECHO_WORDS]) for i in range(len(words) - ECHO_WORDS + 1))

    def refusal(self, sentence: str) -> str | None:
        """Why `sentence` must not be spoken, or None if it may."""
        text = " ".join(sentence.casefold().replace("’", "'").split())
        for phrase in PROMPT_PHRASES:
            if phrase in text:
                return f"repeats the prompt ({phrase!r})"
        words = _words(text)
        for i in range(len(words) - ECHO_WORDS + 1):
            if tuple(words[i:i + ECHO_WORDS]) in self._echoes:
                return f"repeats the prompt ({' '.join(words[i:i + ECHO_WORDS])!r})"
        for pattern in _CLAIMS:
            found = pattern.search(text)
            if found:
                return f"claims what only the device knows ({found.group(0).strip()!r})"
        return None
