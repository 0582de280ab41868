"""Reading a reply that may be a tool call, while it streams.

When the model may act on the home, its output is either a tool call, a JSON object such as
``{"tool": "turn_on", "entity_id": "light.kitchen"}``, or an answer: ``{"answer": "..."}``
from a grammar-bound local model, plain text from a server. A tool call is kept whole for the
caller to parse; an answer's text is handed on as it streams, JSON string escapes decoded,
so its first sentence is spoken before the model has finished. A server's own tool call
(OpenAI ``tool_calls``, streamed in pieces) is put together by `StreamedToolCalls` into the JSON
a local model writes, so both are read, and checked, the same way.
"""

from __future__ import annotations

import json
from typing import Any

ANSWER_PREFIX = '{"answer": "'
_ESCAPES = {'"': '"', "\\": "\\", "/": "/", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t"}


class ToolOutputReader:
    """Feed the pieces of a reply; get the answer's text as it comes. `call` holds a tool
    call's JSON once `finish()` has been called (empty when the reply was an answer)."""

    def __init__(self) -> None:
        self.raw = ""
        self.mode = ""  # "" undecided, "text", "answer", "call"
        self.call = ""
        self._escape = ""  # an escape sequence cut between two pieces
        self._closed = False

    def feed(self, piece: str) -> str:
        self.raw += piece
        if not self.mode:
            head = self.raw.lstrip()
            if not head:
                return ""
            if not head.startswith("{"):
                self.mode = "text"
                return head
            if ANSWER_PREFIX.startswith(head[: len(ANSWER_PREFIX)]) and len(head) < len(ANSWER_PREFIX):
                return ""  # still could be either
            if head.startswith(ANSWER_PREFIX):
                self.mode = "answer"
                return self._answer_text(head[len(ANSWER_PREFIX):])
            self.mode = "call"
            return ""
        if self.mode == "text":
            return piece
        if self.mode == "answer":
            return self._answer_text(piece)
        return ""

    def finish(self) -> str:
        """The end of the reply: any text still held back; sets `call` for a tool call."""
        if self.mode == "call" or (not self.mode and self.raw.strip()):
            if self.raw.lstrip().startswith("{"):
                self.mode = "call"
                self.call = self.raw.strip()
                return ""
            self.mode = "text"
            return self.raw.strip()
        return ""

    def _answer_text(self, text: str) -> str:
        """Decode the JSON string content in `text`, up to its closing quote."""
        out = []
        for char in text:
            if self._closed:
                break
            if self._escape:
                self._escape += char
                if self._escape[1] == "u":
                    if len(self._escape) == 6:
                        out.append(json.loads(f'"{self._escape}"'))
                        self._escape = ""
                    continue
                out.append(_ESCAPES.get(char, char))
                self._escape = ""
            elif char == "\\":
                self._escape = char
            elif char == '"':
                self._closed = True
            else:
                out.append(char)
        return "".join(out)


class StreamedToolCalls:
    """The tool calls of an OpenAI-compatible server's stream: `add` each chunk's
    ``delta.tool_calls``; `text()` is the first call, once the stream has ended, as the JSON a
    grammar-bound local model writes (``{"tool": name, ...arguments}``)."""

    def __init__(self) -> None:
        # Index -> the name and the arguments' JSON, each in as many pieces as the server sent.
        self.calls: dict[int, dict[str, str]] = {}
        self.pieces = 0

    def add(self, deltas: Any) -> None:
        for call in deltas or ():
            function = call.get("function") if isinstance(call, dict) else None
            if not isinstance(function, dict):
                continue
            index = call.get("index", 0) if isinstance(call.get("index", 0), int) else 0
            collected = self.calls.setdefault(index, {"name": "", "arguments": ""})
            self.pieces += 1
            for key in ("name", "arguments"):
                if isinstance(function.get(key), str):
                    collected[key] += function[key]

    def text(self) -> str:
        """Arguments that are not a JSON object are passed on as they are, for the caller's
        check to refuse; "" without a call."""
        if not self.calls:
            return ""
        call = self.calls[min(self.calls)]
        try:
            arguments = json.loads(call["arguments"] or "{}")
        except ValueError:
            arguments = {"arguments": call["arguments"]}
        if not isinstance(arguments, dict):
            arguments = {"arguments": arguments}
        return json.dumps({"tool": call["name"], **arguments}, ensure_ascii=False)
