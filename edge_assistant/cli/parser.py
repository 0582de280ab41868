"""The command line's grammar: every command, its help and its arguments, as a table read by
`build_parser`."""

from __future__ import annotations

import argparse
from typing import Any, Callable

from .. import __version__
from .bench import cmd_bench
from .daemon import cmd_doctor, cmd_mqtt_unregister, cmd_reload, cmd_run, cmd_status
from .home import cmd_home
from .model_commands import cmd_models_list, cmd_models_path, cmd_models_pull, cmd_models_remove
from .speech import cmd_devices, cmd_listen, cmd_say, cmd_transcribe
from .text import cmd_ask, cmd_config_check, cmd_prompt

Argument = tuple[tuple[str, ...], dict[str, Any]]
Command = tuple[tuple[str, ...], Callable[[argparse.Namespace], int], str, tuple[Argument, ...]]

SOCKET: Argument = (("--socket",), {"metavar": "PATH", "help": "the service's status socket (default: service.status_socket)"})
# Also after the command, as a unit's ExecStart= and ExecReload= read best; SUPPRESS keeps a
# --config given before the command when this one is absent.
CONFIG_AFTER: Argument = (("-c", "--config"), {"default": argparse.SUPPRESS, "help": "TOML config file"})
JSON: Argument = (("--json",), {"action": "store_true"})

# Commands with subcommands: their help and the attribute naming the subcommand.
GROUPS = {
    "config": ("check a config file", "config_command"),
    "mqtt": ("MQTT housekeeping", "mqtt_command"),
    "models": ("list, pull and locate models", "models_command"),
}

# In the order `--help` lists them.
COMMANDS: tuple[Command, ...] = (
    (("config", "check"), cmd_config_check, "validate a config without starting anything", (
        (("file",), {"nargs": "?", "help": "the file to check (default: --config)"}),)),
    (("prompt",), cmd_prompt, "print the exact prompt the model would get", (
        (("text",), {"nargs": "*", "help": "the user's message ('-' or none: stdin)"}),
        (("--tokens",), {"action": "store_true", "help": "print token ids, special tokens marked"}),
        (("--grammar",), {"action": "store_true",
                          "help": "also print the grammar the model's reply is bound to (with devices)"}))),
    (("ask",), cmd_ask, "answer a question in text, streaming the reply", (
        (("text",), {"nargs": "*", "help": "the question ('-' or none: stdin)"}),
        (("--json",), {"action": "store_true",
                       "help": "print one JSON object: text, intent, actions, tokens and timings"}),
        (("--dry-run",), {"action": "store_true", "help": "act on no device: show what would be published instead"}))),
    (("devices",), cmd_devices, "list audio input and output devices", (JSON,)),
    (("say",), cmd_say, "speak a text (on the speaker, or into a WAV file)", (
        (("text",), {"nargs": "*", "help": "the text ('-' or none: stdin)"}),
        (("--out",), {"metavar": "FILE.wav", "help": "write a WAV file instead of playing"}))),
    (("transcribe",), cmd_transcribe, "speech to text from a WAV file", (
        (("file",), {"metavar": "FILE.wav"}),
        (("--engine",), {"choices": ["vosk", "whisper", "moonshine"], "help": "override stt.engine"}),
        (("--json",), {"action": "store_true", "help": "text, confidence, duration, latency"}))),
    (("listen",), cmd_listen, "wake word, VAD and speech recognition, as events", (
        (("--input",), {"metavar": "FILE.wav", "help": "read this file instead of the microphone"}),
        (("--json",), {"action": "store_true", "help": "one JSON line per event"}),
        (("--no-wake",), {"action": "store_true", "help": "start listening without the wake word"}),
        (("--turns",), {"type": int, "default": None, "help": "stop after this many utterances"}),
        (("--realtime",), {"action": "store_true", "help": "pace --input at real time"}))),
    (("run",), cmd_run, "the voice assistant daemon", (
        (("--input",), {"metavar": "FILE.wav",
                        "help": "microphone from a file; exit when it ends and the last reply is spoken"}),
        (("--output",), {"metavar": "FILE.wav", "help": "speaker into a file"}),
        CONFIG_AFTER)),
    (("doctor",), cmd_doctor, "check config, models, audio devices and broker; say how to fix what is wrong", ()),
    (("status",), cmd_status, "ask the running service how it and each part are "
                              "(exit 1: a part fails, 3: not running, 4: this user may not ask)", (
        (("--json",), {"action": "store_true", "help": "the answer as one JSON object"}),
        (("--mqtt",), {"action": "store_true", "help": "ask the broker, not the local socket"}),
        SOCKET)),
    (("reload",), cmd_reload,
     "reload the running service's config and wait for the outcome (the unit's ExecReload=)", (
        SOCKET,
        (("--timeout",), {"type": float, "default": 300.0, "metavar": "SECONDS",
                          "help": "longest wait (default 300, as TimeoutStartSec=)"}),
        CONFIG_AFTER)),
    (("bench",), cmd_bench, "measure latency, throughput, CPU and memory on the configured models", (
        (("--runs",), {"type": int, "default": None, "metavar": "N",
                       "help": "repetitions per figure, reported as median, min and max (default 5; 2 with --quick)"}),
        (("--only",), {"metavar": "SECTIONS",
                       "help": "comma-separated sections: llm,kv_reuse,stt,tts,wake,wake_accuracy,idle,endpoint,"
                               "e2e,barge_in,stop,home,answers,memory (default: all)"}),
        (("--quick",), {"action": "store_true",
                        "help": "small workloads (fewer tokens, seconds and turns), for tests and smoke checks"}),
        (("--json",), {"metavar": "FILE", "help": "write every figure, the machine and the models as flat JSON"}),
        (("--plot",), {"metavar": "FILE.png", "help": "draw the e2e turn as a timeline, streaming above sequential"}),
        (("--question",), {"help": "the spoken question of the stt and e2e sections "
                                   "(default: 'What is the capital of France?')"}),
        (("--model",), {"metavar": "NAME_OR_PATH", "help": "the LLM to measure instead of llm.model: "
                                                            "a registry name, a GGUF path, or 'embedded'"}))),
    (("mqtt", "unregister"), cmd_mqtt_unregister,
     "remove this device from Home Assistant (empty discovery payloads)", ()),
    (("home",), cmd_home, "the devices learnt from the broker: area, component, exposed, state", (
        (("--json",), {"action": "store_true", "help": "a JSON list of the entities"}),
        (("--wait",), {"type": float, "default": 3.0, "metavar": "SECONDS",
                       "help": "longest wait for the retained discovery configs and states (default 3)"}))),
    (("models", "list"), cmd_models_list, "known models and which are pulled", (JSON,)),
    (("models", "pull"), cmd_models_pull, "download and verify models", (
        (("names",), {"nargs": "+", "metavar": "NAME"}),
        (("-q", "--quiet"), {"action": "store_true", "help": "no progress bar"}))),
    (("models", "path"), cmd_models_path, "where a pulled model is ('embedded': the default LLM)", (
        (("name",), {}),)),
    (("models", "remove"), cmd_models_remove, "delete a pulled model", ((("name",), {}),)),
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="edge-assistant",
        description="Offline voice assistant: wake word, speech recognition, local LLM, speech, MQTT.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("-c", "--config", help="TOML config file (default: /etc/edge-assistant/edge-assistant.toml if present)")
    parser.add_argument("--log-level", default=None, choices=["debug", "info", "warning", "error"])
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    groups: dict[str, Any] = {}
    for words, handler, help_text, arguments in COMMANDS:
        under = commands
        if len(words) == 2:
            if words[0] not in groups:
                group_help, dest = GROUPS[words[0]]
                group = commands.add_parser(words[0], help=group_help)
                groups[words[0]] = group.add_subparsers(dest=dest, required=True)
            under = groups[words[0]]
        command = under.add_parser(words[-1], help=help_text)
        for flags, options in arguments:
            command.add_argument(*flags, **options)
        command.set_defaults(handler=handler)
    return parser
