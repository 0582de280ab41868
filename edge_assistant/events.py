"""What the assistant tells the world (events) and what the world asks of it (commands).

Both are plain frozen records so that every stage can produce them and MQTT, the CLI's `--json`
output and the tests can consume them without knowing where they came from.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

SCHEMA_VERSION = 1


class State(StrEnum):
    """States of the assistant, published retained on MQTT and in sd_notify STATUS=."""

    IDLE = "idle"
    LISTENING = "listening"
    THINKING = "thinking"
    SPEAKING = "speaking"
    MUTED = "muted"
    ERROR = "error"


STATES = tuple(State)


class EventType(StrEnum):
    """Event types; each maps to the MQTT topic <prefix>/<device_id>/event/<type>."""

    STATE = "state"  # {"state": one of STATES}
    WAKE = "wake"  # {"model", "score"}
    STOP_WORD = "stop_word"  # {"score"}: "stop" heard while the assistant spoke or rang
    SPEECH_START = "speech_start"  # {}
    SPEECH_END = "speech_end"  # {"duration_s", "reason": "silence" | "end_of_turn" | "max_length" | "timeout"}
    TRANSCRIPT_PARTIAL = "transcript_partial"  # {"text"}
    TRANSCRIPT = "transcript"  # {"text", "confidence", "duration_s", "latency_s", "engine"}
    QUESTION = "question"  # {"text", "origin"}: a typed question (command ask); spoken ones are transcripts
    PROMPT_TRIMMED = "prompt_trimmed"  # {"dropped_turns", "trimmed_chars"}
    REPLY_SENTENCE = "reply_sentence"  # {"text", "index"}
    REPLY = "reply"  # {"text", "source", "prompt_tokens", "completion_tokens", "timings", "cancelled"}
    TTS_START = "tts_start"  # {"text"}
    TTS_STOP = "tts_stop"  # {"text", "cancelled"}
    ERROR = "error"  # {"code", "message"}
    METRICS = "metrics"  # free-form counters
    INTENT = "intent"  # {"name", "slots", "entities", "source": "template" | "llm" | "device", "match_ms"}
    ACTION = "action"  # {"entity", "topic", "payload", "confirmed", "latency_ms", "outcome"}
    TIMER_STARTED = "timer_started"  # {"id", "name", "total_s", "remaining_s", "ends_at"}
    TIMER_UPDATED = "timer_updated"  # the same
    TIMER_CANCELLED = "timer_cancelled"  # the same
    TIMER_FINISHED = "timer_finished"  # the same, "missed": true if it ended while the device was off
    ANNOUNCE_START = "announce_start"  # {"text"}
    ANNOUNCE_END = "announce_end"  # {"text", "cancelled"}


EVENT_TYPES = tuple(EventType)


def new_id() -> str:
    return uuid.uuid4().hex[:12]


@dataclass(frozen=True)
class Event:
    type: EventType
    data: dict[str, Any] = field(default_factory=dict)
    turn_id: str | None = None
    request_id: str | None = None
    timestamp: float = field(default_factory=time.time)

    def to_json_dict(self) -> dict[str, Any]:
        payload: dict[str, Any] = {
            "schema": SCHEMA_VERSION,
            "type": self.type,
            "timestamp": round(self.timestamp, 3),
        }
        if self.turn_id is not None:
            payload["turn_id"] = self.turn_id
        if self.request_id is not None:
            # Timer events carry the timer's own `id`: the request's then goes as `request_id`.
            payload["request_id" if "id" in self.data else "id"] = self.request_id
        payload.update(self.data)
        return payload


# Commands accepted from MQTT (and the CLI); see docs/mqtt.md.
COMMANDS = ("ask", "say", "listen", "cancel", "mute", "unmute", "volume", "reset", "announce", "stop",
            "timer")


@dataclass(frozen=True)
class Command:
    name: str
    data: dict[str, Any] = field(default_factory=dict)
    request_id: str | None = None
    # Where it came from ("mqtt", "hermes", "cli"), for logs.
    origin: str = "mqtt"
