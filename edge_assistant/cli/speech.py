"""The commands on sound: `devices`, `say`, `transcribe` and `listen`."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
from pathlib import Path
from typing import Any

from ..config import Config
from .common import home_client_id, load_config, question

log = logging.getLogger(__name__)


def cmd_devices(args: argparse.Namespace) -> int:
    from ..audio.devices import format_devices, list_devices

    if args.json:
        print(json.dumps(list_devices(), indent=2))
    else:
        print(format_devices())
    return 0


def cmd_say(args: argparse.Namespace) -> int:
    config = load_config(args)
    asyncio.run(say(config, question(args), out_path=args.out))
    return 0


async def say(config: Config, text: str, out_path: str | Path | None = None) -> None:
    """Speak `text` on the speaker, or write it to the WAV `out_path` at the voice's own rate
    (nothing lost to resampling). Raises `TtsError`, `AudioDeviceError` or `OSError`."""
    from ..assembly import Assembly
    from ..audio.speaker import SpeakerSink
    from ..audio.wav import WavSink
    from ..tts import clean_text, speak

    if not clean_text(text):
        log.warning("nothing to say: the text has no words")
    async with Assembly(config, hears=False) as parts:
        synthesizer = await parts.synthesizer()
        sink: Any
        if out_path is not None:
            sink = WavSink(out_path, sample_rate=synthesizer.sample_rate)
        else:
            # No retrying here, unlike the daemon's: a missing speaker is the command's failure.
            sink = SpeakerSink(config.audio)
        try:
            await speak(synthesizer, sink, text)
        finally:
            sink.close()


def cmd_transcribe(args: argparse.Namespace) -> int:
    from ..assembly import model_paths
    from ..hearing import stt

    config = load_config(args)
    transcript = stt.transcribe_file(args.file, config.stt, args.engine, model_path=model_paths(config).stt)
    if args.json:
        print(json.dumps(transcript.to_json_dict(), ensure_ascii=False))
    else:
        print(transcript.text)
    return 0


def cmd_listen(args: argparse.Namespace) -> int:
    from ..audio.microphone import MicrophoneSource
    from ..audio.wav import WavSource

    config = load_config(args)
    if args.input:
        source = WavSource(args.input, frame_ms=config.audio.frame_ms, realtime=args.realtime)
    else:
        # Without a handler the microphone logs its failures itself, each one once in a while.
        source = MicrophoneSource(config.audio)
    try:
        asyncio.run(listen(config, source, args))
    finally:
        source.close()
    return 0


async def listen(config: Config, source: Any, args: argparse.Namespace) -> None:
    """Wake word, endpointing and speech recognition on `source`, each event shown, with what
    each transcript would do at home (intent and actions), acting on nothing. The listener is
    closed when done."""
    from ..assembly import Assembly
    from ..events import Event, EventType

    pending: set[asyncio.Task] = set()
    # The source is handed in: the assembly opens neither a microphone nor a speaker of its own.
    async with Assembly(config, source=source, home_client_id=home_client_id(config, "listen"),
                        reachable_home_only=True) as parts:
        listener = await parts.listener()
        home = await parts.home()

        async def show_intent(text: str, turn_id: str | None) -> None:
            result = await home.handle(text, dry_run=True)
            if result is not None and result.intent is not None:
                show(Event(EventType.INTENT, result.intent, turn_id=turn_id), args.json)
                for action in result.actions:
                    show(Event(EventType.ACTION, action, turn_id=turn_id), args.json)

        def emit(event) -> None:
            show(event, args.json)
            text = str(event.data.get("text", "")).strip()
            if home is not None and event.type == EventType.TRANSCRIPT and text:
                task = asyncio.ensure_future(show_intent(text, event.turn_id))
                pending.add(task)
                task.add_done_callback(pending.discard)

        await listener.run(source.frames(), emit, skip_wake=args.no_wake, max_turns=args.turns)
        await asyncio.gather(*pending)


def show(event: Any, as_json: bool) -> None:
    from ..events import EventType

    if as_json:
        print(json.dumps(event.to_json_dict(), ensure_ascii=False), flush=True)
    elif event.type == EventType.TRANSCRIPT:
        print(event.data.get("text", ""), flush=True)
    elif event.type != EventType.TRANSCRIPT_PARTIAL:
        print(f"# {event.type} {json.dumps(event.data, ensure_ascii=False)}", file=sys.stderr, flush=True)
