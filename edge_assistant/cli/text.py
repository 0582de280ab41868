"""The commands on text: `config check`, `prompt` and `ask`."""

from __future__ import annotations

import argparse
import json
import sys
import threading

from ..config import Config
from .common import EXIT_FAILURE, home_client_id, load_config, question


def cmd_config_check(args: argparse.Namespace) -> int:
    from ..service import load_checked

    config = load_checked(args.file or args.config)
    print(f"{config.source}: OK")
    return 0


def cmd_prompt(args: argparse.Namespace) -> int:
    import asyncio

    config = load_config(args)
    asyncio.run(_prompt(config, question(args), args))
    return 0


async def _prompt(config: Config, text: str, args: argparse.Namespace) -> None:
    """As the daemon asks: the home's devices and tools (where the home is reachable) follow
    the system prompt."""
    from ..assembly import Assembly
    from ..respond import Responder

    async with Assembly(config, home_client_id=home_client_id(config, "prompt"), reachable_home_only=True) as parts:
        session = await parts.session()
        home = await parts.home()
        context, toolbox = Responder(session, home=home).tool_context() if home is not None else ("", None)
        _print_prompt(session, session.prepare(text, context),
                      home.toolbox(text) if toolbox is not None else None, args)


def _print_prompt(session, prompt, toolbox, args: argparse.Namespace) -> None:
    if args.tokens:
        tokenizer = session.engine.tokenizer
        for position, token_id in enumerate(prompt.tokens):
            marker = "special" if position in prompt.special_positions else ""
            print(f"{token_id}\t{tokenizer.piece(token_id)!r}\t{marker}".rstrip())
    else:
        sys.stdout.write(prompt.text)
        if not prompt.text.endswith("\n"):
            sys.stdout.write("\n")
    print(
        f"# format={session.builder.format.name} tokens={len(prompt.tokens)}"
        f" budget={session.builder.budget} dropped_turns={prompt.dropped_turns}"
        f" trimmed_chars={prompt.trimmed_chars}",
        file=sys.stderr,
    )
    if toolbox is not None:
        offered = toolbox.offered()
        print(f"# tools for this request: {', '.join(sorted(offered)) or 'none (an answer only)'}", file=sys.stderr)
        if args.grammar:
            from ..thinking import tool_schema

            sys.stdout.write(tool_schema.gbnf(toolbox.schema()))


def cmd_ask(args: argparse.Namespace) -> int:
    import asyncio

    from ..events import EventType

    config = load_config(args)
    text = question(args)
    cancel = threading.Event()
    try:
        session, response, events = asyncio.run(_answer(config, text, cancel, args))
    except KeyboardInterrupt:
        cancel.set()
        return EXIT_FAILURE
    if not args.json:
        print()
        return 0
    result = {"text": response.text, "source": response.source, "intent": response.intent,
              "actions": response.actions, "dry_run": args.dry_run,
              "errors": [data for kind, data in events if kind == EventType.ERROR]}
    reply = response.reply
    if reply is not None:
        info, generation = session.engine.info, reply.generation
        result.update({
            "model": info.name,
            "model_path": info.path,
            "architecture": info.architecture,
            "quantization": info.quantization,
            "prompt_format": session.builder.format.name,
            "prompt_tokens": generation.prompt_tokens,
            "completion_tokens": generation.completion_tokens,
            "finish_reason": generation.finish_reason,
            "timings": generation.timings.as_dict(),
            "sentences": reply.sentences,
            "trimmed_chars": reply.prompt.trimmed_chars,
        })
    print(json.dumps(result, ensure_ascii=False))
    return 0


async def _answer(config: Config, text: str, cancel: threading.Event, args: argparse.Namespace):
    """Answer as the daemon does (`assembly.Assembly`'s responder): what the device knows, the
    home's templates, the timers (read from the device's state, never changed from here), then
    the LLM with its tools."""
    from ..assembly import Assembly
    from ..events import EventType
    from ..respond import Response

    events: list[tuple[EventType, dict]] = []

    def emit(kind: EventType, data: dict) -> None:
        events.append((kind, data))
        if kind == EventType.PROMPT_TRIMMED and data.get("trimmed_chars"):
            print(f"# question cut by {data['trimmed_chars']} characters to fit the context", file=sys.stderr)

    response = Response()
    # Without a sink, the volume said is the one the device starts with; a running daemon may
    # have been set louder since.
    async with Assembly(config, home_client_id=home_client_id(config, "ask"), reachable_home_only=True,
                        read_only_timers=True) as parts:
        responder = await parts.responder()
        await parts.start()
        spoken = 0
        async for sentence in responder.sentences(text, cancel, response, emit, dry_run=args.dry_run):
            if not args.json:
                sys.stdout.write((" " if spoken else "") + sentence)
                sys.stdout.flush()
                spoken += 1
        return await parts.session(), response, events
