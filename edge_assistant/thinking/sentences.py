"""Turns a stream of LLM text into speakable sentences as soon as each one is complete.

Speech starts when the first sentence is done, not when the reply is, so a sentence is released
the moment its end is certain: a terminator followed by white space, unless that terminator
belongs to an abbreviation ("Dr."), an initial ("J. R. R."), a list number ("2.") or a number
("3.14" never has white space after its point). Words that are abbreviations only before a
number ("No. 5", but "No. Paris is...") wait for the next word. Line breaks end sentences too
(lists), and very long runs are cut at a comma so that a rambling model still starts speaking.
The same splitter cuts the LLM's stream and the texts given to the speech synthesizer.

With `first_clause=True` (a reply), a long first sentence is released at its first clause
(a comma, semicolon or colon after a few words), so that speech starts after those words
instead of after the whole sentence; the sentences after it are released whole.
"""

from __future__ import annotations

import re

ABBREVIATIONS = frozenset(
    """mr mrs ms dr prof st sr jr vs etc e.g i.e eg ie approx nr fig inc ltd co mt ft
    jan feb mar apr jun jul aug sep sept oct nov dec mon tue wed thu fri sat sun
    a.m p.m u.s u.k min max est dept univ""".split()
)
# Abbreviations only when a number follows: "No. 5", "Vol. 2"; otherwise ordinary words that
# end sentences ("No. Paris is the capital.").
NUMBER_ABBREVIATIONS = frozenset({"no", "vol", "art", "p", "pp"})
TERMINATORS = ".!?…。！？"
# Past this many characters, a comma, semicolon or colon is taken as a sentence end.
LONG_SENTENCE = 160
# first_clause: a first sentence longer than this is cut at its first clause mark that follows
# at least FIRST_CLAUSE_WORDS words ("Well," alone is not worth a pause of its own).
FIRST_CLAUSE_CHARS = 40
FIRST_CLAUSE_WORDS = 3

_CLAUSE_MARK = re.compile(r"[,;:](?=\s)")
_MARKDOWN = re.compile(r"(\*\*|__|`+|^#+\s*|^\s*[-*•]\s+|^\s*\d+[.)]\s+)", re.MULTILINE)
_SPACES = re.compile(r"\s+")


def clean_for_speech(text: str) -> str:
    """Strip markdown and list markers a speech model would read out literally."""
    text = _MARKDOWN.sub("", text)
    return _SPACES.sub(" ", text).strip()


def _ends_sentence(buffer: str, index: int, end: int) -> bool | None:
    """Whether the terminator at `index` (white space at `end`) closes a sentence; None while
    that depends on text not yet streamed in."""
    if buffer[index] != ".":
        return True
    words = buffer[: index].split()
    if not words:
        return False
    word = words[-1].strip("\"'()[]").lower()
    if word in ABBREVIATIONS or word.rstrip(".") in ABBREVIATIONS:
        return False
    if word in NUMBER_ABBREVIATIONS:
        following = buffer[end:].lstrip()
        if not following:
            return None
        return not following[0].isdigit()
    if len(word) == 1 and word.isalpha():
        return False  # an initial, as in "J. R. R. Tolkien"
    if word.isdigit() and len(words) == 1:
        return False  # "2. Bring a blanket": a list number at the start
    line_start = buffer.rfind("\n", 0, index) + 1
    if word.isdigit() and not buffer[line_start:index].strip(" \t0123456789"):
        return False
    return True


class SentenceSplitter:
    """Feed text as it streams in; get whole sentences out as soon as they end."""

    def __init__(self, long_sentence: int = LONG_SENTENCE, first_clause: bool = False) -> None:
        self.buffer = ""
        self.long_sentence = long_sentence
        self.first_clause = first_clause
        self._released = 0

    def feed(self, text: str) -> list[str]:
        self.buffer += text
        sentences = []
        while True:
            end = self._find_end()
            if end is None:
                break
            sentence = clean_for_speech(self.buffer[:end])
            self.buffer = self.buffer[end:].lstrip()
            if sentence and any(ch.isalnum() for ch in sentence):
                sentences.append(sentence)
        self._released += len(sentences)
        return sentences

    def flush(self) -> list[str]:
        """The rest of the text once the reply is over, even with no final punctuation."""
        sentence = clean_for_speech(self.buffer)
        self.buffer = ""
        return [sentence] if sentence and any(ch.isalnum() for ch in sentence) else []

    def _find_end(self) -> int | None:
        end, undecided = self._sentence_end()
        if self.first_clause and not self._released:
            clause = self._first_clause_end(len(self.buffer) if end is None else end)
            if clause is not None:
                return clause
        if end is not None or undecided:
            return end
        return self._long_run_end()

    def _first_clause_end(self, sentence_chars: int) -> int | None:
        """Where a long first sentence (`sentence_chars` so far) is cut, if it has a clause."""
        if sentence_chars <= FIRST_CLAUSE_CHARS:
            return None
        for mark in _CLAUSE_MARK.finditer(self.buffer, 0, sentence_chars):
            if len(self.buffer[: mark.start()].split()) >= FIRST_CLAUSE_WORDS:
                return mark.end()
        return None

    def _sentence_end(self) -> tuple[int | None, bool]:
        """Where the first sentence in the buffer ends, if it does; and whether that depends on
        text not streamed in yet."""
        buffer = self.buffer
        for index, char in enumerate(buffer):
            if char == "\n":
                if buffer[:index].strip():
                    return index + 1, False
                continue
            if char in TERMINATORS:
                # Swallow runs like "?!" or '..."' before deciding.
                end = index + 1
                while end < len(buffer) and buffer[end] in TERMINATORS + "\"')]”’":
                    end += 1
                if end >= len(buffer):
                    return None, True  # cannot know yet: "3." may become "3.14"
                if buffer[end].isspace():
                    ends = _ends_sentence(buffer, index, end)
                    if ends is None:
                        return None, True
                    if ends:
                        return end, False
        return None, False

    def _long_run_end(self) -> int | None:
        buffer = self.buffer
        if len(buffer) > self.long_sentence:
            cut = max(buffer.rfind(mark, 0, len(buffer) - 1) for mark in ",;:")
            if cut > 0 and cut + 1 < len(buffer) and buffer[cut + 1].isspace():
                return cut + 1
        return None
