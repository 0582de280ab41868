"""What the assistant needs of each part it drives: the protocols the real parts (and a
test's alternatives: a WAV file, a queue of frames) are handed in by."""

from __future__ import annotations

import asyncio
import threading
from typing import Any, AsyncIterable, AsyncIterator, Awaitable, Callable, Protocol

from ..events import Command, Event, EventType
from ..respond import Response


class FrameSource(Protocol):
    """The microphone (or a WAV file standing in for it): 16 kHz mono s16le frames."""

    def frames(self) -> AsyncIterator[bytes]: ...

    async def aclose(self) -> None: ...


class AudioSink(Protocol):
    """The speaker (or a WAV file): `play` returns False if `stop` cut it short."""

    async def play(self, samples: Any, sample_rate: int) -> bool: ...

    def stop(self) -> None: ...

    def set_volume(self, volume: float) -> None: ...

    async def aclose(self) -> None: ...


class SpeechChunkLike(Protocol):
    samples: Any
    sample_rate: int


class SpeechSynthesizer(Protocol):
    """Text to audio, streamed chunk by chunk (tts.Synthesizer). `split=False`: the text is one
    sentence already (a reply's, split as the model wrote it) and is spoken as it is."""

    def stream(self, text: str, *, split: bool = True) -> AsyncIterator[SpeechChunkLike]: ...


class SpeechListener(Protocol):
    """Wake word, endpointing and speech recognition over the frames (listener.Listener)."""

    listening: bool

    async def run(self, frames: AsyncIterable[bytes], on_event: Callable[[Event], None]) -> None: ...

    def listen_now(self, timeout_s: float | None = None) -> None: ...

    def set_speaking(self, speaking: bool) -> None: ...


class TimerControl(Protocol):
    """The timers (timers.TimerScheduler), for what the assistant itself does with them: a ring
    is stopped by the wake word, `stop` or `cancel`; MQTT `cmd/timer` changes them."""

    @property
    def ringing(self) -> list[Any]: ...

    def stop_ringing(self, timer_id: str | None = None) -> list[Any]: ...


class EventBridge(Protocol):
    """Events out and commands in (mqtt.MqttBridge). `publish_event` must never block."""

    commands: asyncio.Queue[Command]

    def publish_event(self, event: Event) -> None: ...

    def set_muted(self, muted: bool) -> None: ...

    def set_volume(self, volume: float) -> None: ...


class Answerer(Protocol):
    """One request answered, sentence by sentence (respond.Responder): home intents, timers,
    facts, then the LLM. What it did goes into `response`; its events out through `emit`."""

    def sentences(self, text: str, cancel: threading.Event, response: Response,
                  emit: Callable[[EventType, dict[str, Any]], None], *,
                  hold: Callable[[], Awaitable[None]] | None = None) -> AsyncIterator[str]: ...

    def tool_context(self) -> tuple[str, Any]: ...
