"""`edge-assistant`: the command line. The only module that sees argparse.

Every command loads the config the same way (--config, else /etc/edge-assistant/..., else the
built-in defaults), and every expected failure ends with one line on stderr and exit status 1
(2 for usage errors), never a traceback.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import sys
import threading
from pathlib import Path

from . import __version__, config as config_module, journal, models
from .config import Config, ConfigError

log = logging.getLogger("edge_assistant")

EXIT_FAILURE = 1
# `status`: nothing answers (as `systemctl status` says of a unit that is not running).
EXIT_NOT_RUNNING = 3
# `status`: this user may not ask the service (LSB's "status unknown").
EXIT_NOT_ALLOWED = 4


class CliError(Exception):
    """An expected failure: printed as one line, exit status 1."""


def _load_config(args: argparse.Namespace) -> Config:
    return config_module.load(getattr(args, "config", None))


def _setup_logging(level: str) -> None:
    # Under systemd each line carries its priority, so `journalctl -p warning` finds it.
    journal.setup(getattr(logging, level.upper(), logging.INFO))


# --- config -------------------------------------------------------------------------------


def cmd_config_check(args: argparse.Namespace) -> int:
    from .service import load_checked

    config = load_checked(args.file or args.config)
    print(f"{config.source}: OK")
    return 0


# --- text: prompt and ask -----------------------------------------------------------------


def _question(args: argparse.Namespace) -> str:
    text = " ".join(args.text) if args.text else ""
    if text == "-" or (not text and not sys.stdin.isatty()):
        raw = sys.stdin.buffer.read()
        text = raw.decode("utf-8", errors="replace")
    if not text.strip():
        raise CliError("the question is empty")
    return text


def cmd_prompt(args: argparse.Namespace) -> int:
    import asyncio

    from .thinking import llm, tool_schema

    config = _load_config(args)
    session = llm.load_session(config)
    question = _question(args)
    # As the daemon asks: the home's devices and tools follow the system prompt.
    context, toolbox = asyncio.run(_tool_context_for_cli(config, session, question))
    prompt = session.prepare(question, context)
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
            sys.stdout.write(tool_schema.gbnf(toolbox.schema()))
    return 0


async def _tool_context_for_cli(config, session, question: str):
    """The device and tool part of the prompt and the toolbox for `question`, as the daemon
    would have them; ("", None) without a reachable home."""
    from .respond import Responder

    home = await _start_home_for_cli(config, "prompt")
    if home is None:
        return "", None
    try:
        context, toolbox = Responder(session, home=home).tool_context()
        return context, home.toolbox(question) if toolbox is not None else None
    finally:
        await home.aclose()


def cmd_ask(args: argparse.Namespace) -> int:
    import asyncio

    from .events import EventType
    from .thinking.llm import load_session

    config = _load_config(args)
    question = _question(args)
    session = load_session(config)
    cancel = threading.Event()
    try:
        response, events = asyncio.run(_answer(config, session, question, cancel, args))
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


async def _answer(config, session, question: str, cancel: threading.Event, args: argparse.Namespace):
    """Answer as the daemon does (assembly.build_responder): what the device knows, the home's
    templates, the timers (read from the device's state, never changed from here), then the
    LLM with its tools."""
    from .assembly import ReadOnlyTimerStore, build_responder, timer_store
    from .events import EventType
    from .respond import Response
    from .timers import TimerScheduler

    home = await _start_home_for_cli(config, "ask")
    scheduler = TimerScheduler(ReadOnlyTimerStore(timer_store(config).path), config.timers)
    events: list[tuple[EventType, dict]] = []

    def emit(kind: EventType, data: dict) -> None:
        events.append((kind, data))
        if kind == EventType.PROMPT_TRIMMED and data.get("trimmed_chars"):
            print(f"# question cut by {data['trimmed_chars']} characters to fit the context", file=sys.stderr)

    response = Response()
    try:
        await scheduler.start()
        # The volume the device starts with; a running daemon may have been set louder since.
        responder = build_responder(config, session, home=home, scheduler=scheduler, read_only_timers=True,
                                    volume=lambda: config.audio.volume)
        spoken = 0
        async for sentence in responder.sentences(question, cancel, response, emit, dry_run=args.dry_run):
            if not args.json:
                sys.stdout.write((" " if spoken else "") + sentence)
                sys.stdout.flush()
                spoken += 1
    finally:
        await scheduler.close()
        if home is not None:
            await home.aclose()
    return response, events


async def _start_home_for_cli(config, purpose: str):
    """The home for a one-off command, or None without MQTT or a reachable broker."""
    from .assembly import start_home
    from .broker import client_id

    # Its own client id, so a running assistant is not disconnected by the broker.
    home = await start_home(config, client_id=client_id(config.mqtt, config.device_id(), f"{purpose}-{os.getpid()}"))
    if home is None:
        return None
    if not home.connection.connects:
        logging.getLogger(__name__).warning(
            "home: the MQTT broker %s:%d cannot be reached; answering without devices",
            config.mqtt.host, config.mqtt.port)
        await home.aclose()
        return None
    return home


# --- speech: devices and say --------------------------------------------------------------


def cmd_devices(args: argparse.Namespace) -> int:
    from .audio.devices import format_devices, list_devices

    if args.json:
        print(json.dumps(list_devices(), indent=2))
    else:
        print(format_devices())
    return 0


def cmd_say(args: argparse.Namespace) -> int:
    from . import tts

    config = _load_config(args)
    text = _question(args)
    voice = models.resolve_voice(config.tts.voice, config.state_dir())
    return tts.say(text, config.tts, config.audio, out_path=args.out, voice_path=voice)


def _stt_model_path(config: Config) -> Path | None:
    return models.resolve_stt(config.stt.model, config.state_dir(), config.stt.engine)


def cmd_transcribe(args: argparse.Namespace) -> int:
    from .hearing import stt

    config = _load_config(args)
    transcript = stt.transcribe_file(args.file, config.stt, args.engine, model_path=_stt_model_path(config))
    if args.json:
        print(json.dumps(transcript.to_json_dict(), ensure_ascii=False))
    else:
        print(transcript.text)
    return 0


def cmd_listen(args: argparse.Namespace) -> int:
    import asyncio

    from .audio.microphone import MicrophoneSource
    from .audio.wav import WavSource
    from .hearing.listener import listen

    config = _load_config(args)
    if args.input:
        source = WavSource(args.input, frame_ms=config.audio.frame_ms, realtime=args.realtime)
    else:
        # Without a handler the microphone logs its failures itself, each one once in a while.
        source = MicrophoneSource(config.audio)

    from .events import Event, EventType

    def show(event) -> None:
        if args.json:
            print(json.dumps(event.to_json_dict(), ensure_ascii=False), flush=True)
        elif event.type == EventType.TRANSCRIPT:
            print(event.data.get("text", ""), flush=True)
        elif event.type != EventType.TRANSCRIPT_PARTIAL:
            print(f"# {event.type} {json.dumps(event.data, ensure_ascii=False)}", file=sys.stderr, flush=True)

    async def main() -> None:
        # What each transcript would do at home (intent and actions), acting on nothing.
        home = await _start_home_for_cli(config, "listen")
        pending: set[asyncio.Task] = set()

        async def show_intent(text: str, turn_id: str | None) -> None:
            result = await home.handle(text, dry_run=True)
            if result is not None and result.intent is not None:
                show(Event(EventType.INTENT, result.intent, turn_id=turn_id))
                for action in result.actions:
                    show(Event(EventType.ACTION, action, turn_id=turn_id))

        def emit(event) -> None:
            show(event)
            text = str(event.data.get("text", "")).strip()
            if home is not None and event.type == EventType.TRANSCRIPT and text:
                task = asyncio.ensure_future(show_intent(text, event.turn_id))
                pending.add(task)
                task.add_done_callback(pending.discard)

        try:
            await listen(config, source.frames(), emit, skip_wake=args.no_wake, max_turns=args.turns,
                         stt_model_path=_stt_model_path(config))
            await asyncio.gather(*pending)
        finally:
            if home is not None:
                await home.aclose()

    try:
        asyncio.run(main())
    finally:
        source.close()
    return 0


# --- the daemon ---------------------------------------------------------------------------


def cmd_run(args: argparse.Namespace) -> int:
    from .service import RunOptions, run_service

    config = config_module.load(args.config)  # fail fast, with the key, before loading models
    if args.log_level is None:
        logging.getLogger().setLevel(config.service.log_level.upper())
    options = RunOptions(
        input_wav=Path(args.input) if args.input else None,
        output_wav=Path(args.output) if args.output else None,
    )
    return run_service(args.config, options)


def cmd_doctor(args: argparse.Namespace) -> int:
    from .doctor import run_checks

    findings = run_checks(args.config)
    for finding in findings:
        print(finding.line())
    failed = sum(not finding.ok for finding in findings)
    print(f"{failed} problem(s) found" if failed else "all checks passed")
    return EXIT_FAILURE if failed else 0


def _socket_config(args: argparse.Namespace) -> Config:
    """The config, for finding the status socket (and the broker): --socket wins, and a config
    that no longer loads (the edit a reload is about to report) leaves the defaults."""
    try:
        config = _load_config(args)
    except ConfigError as error:
        # A user outside the group edge-assistant may not read the system config either: the
        # socket then says in one line what to do, without this line before it.
        path = getattr(args, "config", None) or next(
            (p for p in config_module.DEFAULT_CONFIG_PATHS if os.path.isfile(p)), None)
        log.log(logging.DEBUG if path is not None and _may_not_read(path) else logging.WARNING,
                "%s; looking for the service where it runs by default", error)
        config = Config()
    if args.socket:
        config = dataclasses.replace(config, service=dataclasses.replace(config.service, status_socket=args.socket))
    return config


def _may_not_read(path: str | Path) -> bool:
    try:
        with open(path, "rb"):
            return False
    except PermissionError:
        return True
    except OSError:
        return False


def cmd_status(args: argparse.Namespace) -> int:
    from . import status
    from .health import format_report

    config = _socket_config(args)
    problems = []
    report = None
    if not args.mqtt:
        try:
            report = status.ask(config)
        except status.NotAllowed as error:
            print(f"edge-assistant: {error}", file=sys.stderr)
            return EXIT_NOT_ALLOWED
        except status.ServiceUnreachable as error:
            problems.append(str(error))
    if report is None and config.mqtt.enabled and not args.socket:
        try:
            report = _status_from_broker(config)
        except Exception as error:  # MqttError, ConfigError: said, then the exit status
            problems.append(str(error))
    if report is None or not report.get("online", True):
        for problem in problems:
            print(f"edge-assistant: {problem}", file=sys.stderr)
        if report is not None:
            print(f"{report['device']}: offline (availability on the broker {report['broker']})")
        return EXIT_NOT_RUNNING
    if args.json:
        print(json.dumps(report, ensure_ascii=False))
    else:
        print("\n".join(format_report(report)))
        if "broker" in report:
            print(f"(from the retained topics on the broker {report['broker']}"
                  + ("; it holds no health: a version without it?)" if "parts" not in report else ")"))
    return EXIT_FAILURE if report.get("problem") else 0


def _status_from_broker(config: Config) -> dict:
    """The status a running service leaves on the broker: availability, state, health."""
    from .mqtt import Topics, read_retained

    topics = Topics.for_config(config.mqtt, config.device_id())
    retained = read_retained(config.mqtt, config.device_id(), [topics.availability, topics.state, topics.health])
    health = json.loads(retained.get(topics.health) or b"{}")
    return {"device": config.device_id(), "state": retained.get(topics.state, b"unknown").decode(),
            "online": retained.get(topics.availability) == b"online",
            "broker": f"{config.mqtt.host}:{config.mqtt.port}", **health}


def cmd_reload(args: argparse.Namespace) -> int:
    from . import status

    config = _socket_config(args)
    try:
        outcome = status.ask(config, "reload", timeout=args.timeout)
    except status.ServiceUnreachable as error:
        raise CliError(str(error)) from None
    except TimeoutError:
        raise CliError(f"no outcome within {args.timeout:g} s (--timeout); the reload may still be under way") from None
    if not outcome.get("ok"):
        raise CliError(f"reload failed: {outcome.get('error')}; the service goes on with the previous config")
    print("reloaded")
    return 0


def cmd_mqtt_unregister(args: argparse.Namespace) -> int:
    from . import mqtt

    config = _load_config(args)
    topics = mqtt.unregister(config.mqtt, config.device_id())
    for topic in topics:
        print(topic)
    return 0


# --- home ---------------------------------------------------------------------------------


def cmd_home(args: argparse.Namespace) -> int:
    import asyncio

    from .broker import client_id
    from .home.assistant import HomeControl

    config = _load_config(args)
    if not config.mqtt.enabled:
        raise CliError("the home is reached over MQTT, and mqtt.enabled is false")
    if not 0 < args.wait <= 60:
        raise CliError(f"--wait: must be between 0 and 60 seconds, got {args.wait}")
    # Its own client id, so a running assistant is not disconnected by the broker.
    control = HomeControl(config, client_id=client_id(config.mqtt, config.device_id(), f"home-cli-{os.getpid()}"))

    async def collect() -> bool:
        try:
            return await control.start(intents=False, settle_s=args.wait)
        finally:
            await control.aclose()

    settled = asyncio.run(collect())
    if not control.connection.connects:
        raise CliError(f"cannot reach the MQTT broker {config.mqtt.host}:{config.mqtt.port}")
    rows = control.snapshot()
    if args.json:
        print(json.dumps(rows, indent=2, ensure_ascii=False))
        return 0
    for row in rows:
        exposed = ("yes, with a spoken yes" if row["needs_confirmation"] else "yes") if row["exposed"] else "no"
        available = {True: "online", False: "offline", None: "-"}[row["available"]]
        print(f"{row['entity_id']}  \"{row['name']}\"  area={row['area'] or '-'}  {row['domain']}"
              f"  exposed={exposed}  state={row['state'].get('state', 'unknown')}  {available}")
        if row["read_only_reason"]:
            print(f"    read-only: {row['read_only_reason']}")
        for key, problem in row.get("template_problems", {}).items():
            print(f"    {key} not used: {problem}")
    for key, reason in control.home.rejected.items():
        print(f"not used: {key}: {reason}")
    exposed_count = sum(row["exposed"] for row in rows)
    print(f"# {len(rows)} entities, {exposed_count} exposed"
          + ("" if settled else f"; still arriving after {args.wait:g} s"), file=sys.stderr)
    return 0


# --- benchmark ----------------------------------------------------------------------------


def cmd_bench(args: argparse.Namespace) -> int:
    from . import bench

    config = _load_config(args)
    if args.model is not None:
        if not args.model.strip():
            raise CliError("--model: the model is empty")
        # As llm.model: a registry name, a GGUF path, or "embedded".
        config = dataclasses.replace(config, llm=dataclasses.replace(config.llm, model=args.model.strip()))
    sections = bench.SECTIONS
    if args.only is not None:
        sections = tuple(dict.fromkeys(name.strip() for name in args.only.split(",") if name.strip()))
        unknown = [name for name in sections if name not in bench.SECTIONS]
        if unknown or not sections:
            raise CliError(f"--only: unknown section {', '.join(unknown) or '(none given)'} "
                           f"(known: {','.join(bench.SECTIONS)})")
    if args.runs is not None and args.runs < 1:
        raise CliError(f"--runs: must be at least 1, got {args.runs}")
    if args.question is not None and not args.question.strip():
        raise CliError("--question: the question is empty")
    if args.plot:
        if "e2e" not in sections:
            raise CliError("--plot draws the turn the e2e section measures: add e2e to --only")
        try:
            bench.check_plotting()
        except bench.BenchError as error:
            raise CliError(str(error)) from None
    options = bench.BenchOptions(
        sections=sections,
        runs=args.runs or (bench.QUICK_RUNS if args.quick else bench.DEFAULT_RUNS),
        quick=args.quick,
        question=args.question or bench.DEFAULT_QUESTION,
        config_path=args.config,
    )
    report = bench.run(config, options, progress=lambda line: print(f"bench: {line}", file=sys.stderr, flush=True))
    print(bench.format_table(report))
    try:
        if args.json:
            bench.write_json(report, args.json)
        if args.plot:
            bench.write_plot(report, args.plot)
    except bench.BenchError as error:
        raise CliError(str(error)) from None
    return EXIT_FAILURE if report.errors else 0


# --- models -------------------------------------------------------------------------------


def cmd_models_list(args: argparse.Namespace) -> int:
    config = _load_config(args)
    rows = models.listing(config.state_dir())
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    for row in rows:
        mark = "*" if row["pulled"] else " "
        print(f"{mark} {row['name']:<28} {row['kind']:<6} {row['description']}")
    print("(* pulled; the embedded defaults need no pull)")
    return 0


def cmd_models_pull(args: argparse.Namespace) -> int:
    config = _load_config(args)
    for name in args.names:
        path = models.pull(name, config.state_dir(), progress=not args.quiet)
        print(path)
    return 0


def cmd_models_path(args: argparse.Namespace) -> int:
    config = _load_config(args)
    state_dir = config.state_dir()
    if args.name == models.EMBEDDED:
        print(models.resolve_llm("", state_dir))
        return 0
    found = models.path(args.name, state_dir)
    if found is None:
        raise CliError(f"{args.name} is not pulled; run: edge-assistant models pull {args.name}")
    print(found)
    return 0


def cmd_models_remove(args: argparse.Namespace) -> int:
    config = _load_config(args)
    if not models.remove(args.name, config.state_dir()):
        raise CliError(f"{args.name} is not pulled")
    return 0


# --- parser -------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="edge-assistant",
        description="Offline voice assistant: wake word, speech recognition, local LLM, speech, MQTT.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("-c", "--config", help="TOML config file (default: /etc/edge-assistant/edge-assistant.toml if present)")
    parser.add_argument("--log-level", default=None, choices=["debug", "info", "warning", "error"])
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    config_parser = commands.add_parser("config", help="check a config file")
    config_commands = config_parser.add_subparsers(dest="config_command", required=True)
    check = config_commands.add_parser("check", help="validate a config without starting anything")
    check.add_argument("file", nargs="?", help="the file to check (default: --config)")
    check.set_defaults(handler=cmd_config_check)

    prompt = commands.add_parser("prompt", help="print the exact prompt the model would get")
    prompt.add_argument("text", nargs="*", help="the user's message ('-' or none: stdin)")
    prompt.add_argument("--tokens", action="store_true", help="print token ids, special tokens marked")
    prompt.add_argument("--grammar", action="store_true",
                        help="also print the grammar the model's reply is bound to (with devices)")
    prompt.set_defaults(handler=cmd_prompt)

    ask = commands.add_parser("ask", help="answer a question in text, streaming the reply")
    ask.add_argument("text", nargs="*", help="the question ('-' or none: stdin)")
    ask.add_argument("--json", action="store_true",
                     help="print one JSON object: text, intent, actions, tokens and timings")
    ask.add_argument("--dry-run", action="store_true",
                     help="act on no device: show what would be published instead")
    ask.set_defaults(handler=cmd_ask)

    devices = commands.add_parser("devices", help="list audio input and output devices")
    devices.add_argument("--json", action="store_true")
    devices.set_defaults(handler=cmd_devices)

    say = commands.add_parser("say", help="speak a text (on the speaker, or into a WAV file)")
    say.add_argument("text", nargs="*", help="the text ('-' or none: stdin)")
    say.add_argument("--out", metavar="FILE.wav", help="write a WAV file instead of playing")
    say.set_defaults(handler=cmd_say)

    transcribe = commands.add_parser("transcribe", help="speech to text from a WAV file")
    transcribe.add_argument("file", metavar="FILE.wav")
    transcribe.add_argument("--engine", choices=["vosk", "whisper", "moonshine"], help="override stt.engine")
    transcribe.add_argument("--json", action="store_true", help="text, confidence, duration, latency")
    transcribe.set_defaults(handler=cmd_transcribe)

    listen = commands.add_parser("listen", help="wake word, VAD and speech recognition, as events")
    listen.add_argument("--input", metavar="FILE.wav", help="read this file instead of the microphone")
    listen.add_argument("--json", action="store_true", help="one JSON line per event")
    listen.add_argument("--no-wake", action="store_true", help="start listening without the wake word")
    listen.add_argument("--turns", type=int, default=None, help="stop after this many utterances")
    listen.add_argument("--realtime", action="store_true", help="pace --input at real time")
    listen.set_defaults(handler=cmd_listen)

    run = commands.add_parser("run", help="the voice assistant daemon")
    run.add_argument("--input", metavar="FILE.wav", help="microphone from a file; exit when it ends and the last reply is spoken")
    run.add_argument("--output", metavar="FILE.wav", help="speaker into a file")
    # Also after the command, as a unit's ExecStart= reads best; SUPPRESS keeps a --config
    # given before the command when this one is absent.
    run.add_argument("-c", "--config", default=argparse.SUPPRESS, help="TOML config file")
    run.set_defaults(handler=cmd_run)

    doctor = commands.add_parser("doctor", help="check config, models, audio devices and broker; say how to fix what is wrong")
    doctor.set_defaults(handler=cmd_doctor)

    status_parser = commands.add_parser(
        "status", help="ask the running service how it and each part are "
        "(exit 1: a part fails, 3: not running, 4: this user may not ask)")
    status_parser.add_argument("--json", action="store_true", help="the answer as one JSON object")
    status_parser.add_argument("--mqtt", action="store_true", help="ask the broker, not the local socket")
    status_parser.add_argument("--socket", metavar="PATH", help="the service's status socket (default: service.status_socket)")
    status_parser.set_defaults(handler=cmd_status)

    reload = commands.add_parser("reload", help="reload the running service's config and wait for the outcome (the unit's ExecReload=)")
    reload.add_argument("--socket", metavar="PATH", help="the service's status socket (default: service.status_socket)")
    reload.add_argument("--timeout", type=float, default=300.0, metavar="SECONDS", help="longest wait (default 300, as TimeoutStartSec=)")
    # After the command too, as ExecReload= reads best.
    reload.add_argument("-c", "--config", default=argparse.SUPPRESS, help="TOML config file")
    reload.set_defaults(handler=cmd_reload)

    bench_parser = commands.add_parser("bench", help="measure latency, throughput, CPU and memory on the configured models")
    bench_parser.add_argument("--runs", type=int, default=None, metavar="N", help="repetitions per figure, reported as median, min and max (default 5; 2 with --quick)")
    bench_parser.add_argument("--only", metavar="SECTIONS", help="comma-separated sections: llm,kv_reuse,stt,tts,wake,wake_accuracy,idle,endpoint,e2e,barge_in,stop,home,answers,memory (default: all)")
    bench_parser.add_argument("--quick", action="store_true", help="small workloads (fewer tokens, seconds and turns), for tests and smoke checks")
    bench_parser.add_argument("--json", metavar="FILE", help="write every figure, the machine and the models as flat JSON")
    bench_parser.add_argument("--plot", metavar="FILE.png", help="draw the e2e turn as a timeline, streaming above sequential")
    bench_parser.add_argument("--question", help="the spoken question of the stt and e2e sections (default: 'What is the capital of France?')")
    bench_parser.add_argument("--model", metavar="NAME_OR_PATH", help="the LLM to measure instead of llm.model: a registry name, a GGUF path, or 'embedded'")
    bench_parser.set_defaults(handler=cmd_bench)

    mqtt_parser = commands.add_parser("mqtt", help="MQTT housekeeping")
    mqtt_commands = mqtt_parser.add_subparsers(dest="mqtt_command", required=True)
    unregister = mqtt_commands.add_parser("unregister", help="remove this device from Home Assistant (empty discovery payloads)")
    unregister.set_defaults(handler=cmd_mqtt_unregister)

    home = commands.add_parser("home", help="the devices learnt from the broker: area, component, exposed, state")
    home.add_argument("--json", action="store_true", help="a JSON list of the entities")
    home.add_argument("--wait", type=float, default=3.0, metavar="SECONDS",
                      help="longest wait for the retained discovery configs and states (default 3)")
    home.set_defaults(handler=cmd_home)

    models_parser = commands.add_parser("models", help="list, pull and locate models")
    models_commands = models_parser.add_subparsers(dest="models_command", required=True)
    listing = models_commands.add_parser("list", help="known models and which are pulled")
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(handler=cmd_models_list)
    pull = models_commands.add_parser("pull", help="download and verify models")
    pull.add_argument("names", nargs="+", metavar="NAME")
    pull.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    pull.set_defaults(handler=cmd_models_pull)
    path = models_commands.add_parser("path", help="where a pulled model is ('embedded': the default LLM)")
    path.add_argument("name")
    path.set_defaults(handler=cmd_models_path)
    remove = models_commands.add_parser("remove", help="delete a pulled model")
    remove.add_argument("name")
    remove.set_defaults(handler=cmd_models_remove)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    _setup_logging(args.log_level or ("info" if args.command == "run" else "warning"))
    from .audio.devices import AudioDeviceError
    from .audio.wav import AudioFormatError
    from .thinking.chat import LlmError
    from .mqtt import MqttError
    from .thinking.prompt import PromptError
    from .hearing.stt import SttError
    from .tts import TtsError

    expected = (
        ConfigError, CliError, models.ModelError, LlmError, PromptError,
        TtsError, AudioDeviceError, AudioFormatError, SttError, MqttError,
    )
    try:
        return args.handler(args)
    except expected as error:
        print(journal.error_line(f"edge-assistant: {error}"), file=sys.stderr)
        return EXIT_FAILURE
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    sys.exit(main())
