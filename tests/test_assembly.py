"""The composition root: the daemon, the commands and bench build the assistant one way
(`assembly.Assembly`), model settings become paths in one place, and what is built is closed."""

import argparse
import ast
import asyncio
from pathlib import Path

from edge_assistant.assembly import Assembly, model_paths
from edge_assistant.audio.wav import WavSource
from edge_assistant.config import from_mapping
from edge_assistant.hearing import turn_end
from edge_assistant.hearing.stt import transcriber as stt

PACKAGE = Path(__file__).resolve().parent.parent / "edge_assistant"


def calls_of(names: set[str]) -> dict[str, set[str]]:
    """File (relative to the package) -> which of `names` it calls, as `name(` or `x.name(`."""
    found: dict[str, set[str]] = {}
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call):
                func = node.func
                name = func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else ""
                if name in names:
                    found.setdefault(path.relative_to(PACKAGE).as_posix(), set()).add(name)
    return found


def test_only_the_assembly_builds_the_assistant_and_what_answers():
    built = calls_of({"Assistant", "build_responder", "TimerScheduler", "own_sound_for"})
    assert built == {
        "assembly/parts.py": {"Assistant", "build_responder"},
        "assembly/devices.py": {"own_sound_for"},
        "assembly/port.py": {"TimerScheduler"},
        # The stop section's room microphone, with its canceller and own sound as the daemon's.
        "bench/stop.py": {"own_sound_for"},
        # The answers section asks its question set of a responder without an assistant: one
        # with a simulated home, one as if the broker were away.
        "bench/answers.py": {"build_responder", "TimerScheduler"},
    }


def test_model_settings_become_paths_in_one_place():
    resolving = calls_of({"resolve_llm", "resolve_voice", "resolve_stt", "check_llm"})
    resolving.pop("models.py", None)
    assert resolving == {
        "assembly/loading.py": {"resolve_llm", "resolve_voice", "resolve_stt"},
        # `config check` checks without writing (the embedded LLM is assembled where it loads).
        "service.py": {"check_llm", "resolve_voice", "resolve_stt"},
        # The doctor reports each model's problem with its own fix.
        "doctor.py": {"resolve_llm", "resolve_voice", "resolve_stt"},
        # `models path embedded`: where the default LLM is, whatever llm.model says.
        "cli/model_commands.py": {"resolve_llm"},
        # A session loaded without a path handed in (tests, the remote backend's fallback).
        "thinking/llm.py": {"resolve_llm"},
    }


def test_model_paths_are_resolved_once(tmp_path, monkeypatch):
    from edge_assistant import models

    config = from_mapping({"service": {"state_dir": str(tmp_path)}})
    resolved = []
    real = models.resolve_voice
    monkeypatch.setattr(models, "resolve_voice", lambda *args: resolved.append(args) or real(*args))
    paths = model_paths(config)
    assert paths.voice == paths.voice == models.embedded_voice_path()
    assert len(resolved) == 1


def test_listen_closes_its_listener(tmp_path, make_speech_wav, monkeypatch):
    """`edge-assistant listen` lets go of the speech and end-of-turn models when it is done."""
    from edge_assistant.cli import speech

    clip = make_speech_wav("What is the capital of France?")
    config = from_mapping({"service": {"state_dir": str(tmp_path)}, "mqtt": {"enabled": False}})
    held_while_listening = []
    shown = []

    def show(event, as_json):
        held_while_listening.append((len(stt.shared_models), len(turn_end.shared_models)))
        shown.append(event.type)

    monkeypatch.setattr(speech, "show", show)

    def no_devices(*args, **kwargs):
        raise AssertionError("listen opened a microphone or speaker of its own beside its source")

    monkeypatch.setattr("edge_assistant.assembly.parts.build_sources", no_devices)
    before = (len(stt.shared_models), len(turn_end.shared_models))
    args = argparse.Namespace(no_wake=True, turns=1, json=True)
    asyncio.run(speech.listen(config, WavSource(clip, frame_ms=config.audio.frame_ms), args))
    assert "transcript" in shown
    assert held_while_listening[-1] > before
    assert (len(stt.shared_models), len(turn_end.shared_models)) == before


def answer(responder, question: str):
    """The responder's answer to `question`: (text, source)."""
    import threading

    from edge_assistant.respond import Response

    async def collect():
        response = Response()
        said = [s async for s in responder.sentences(question, threading.Event(), response, lambda *_: None)]
        return " ".join(said), response.source

    return collect()


def test_ask_and_the_daemon_answer_through_the_same_parts(tmp_path, tiny_gguf):
    """The same Assembly answers for `ask` and the daemon: the device's clock, then the timers;
    `ask` (read_only_timers) reads the daemon's timers and never sets one."""
    config = from_mapping({"llm": {"model": str(tiny_gguf), "n_ctx": 512, "max_tokens": 8},
                           "service": {"state_dir": str(tmp_path)}, "mqtt": {"enabled": False}})

    async def ask(question: str, **how):
        async with Assembly(config, **how) as parts:
            responder = await parts.responder()
            await parts.start()
            return await answer(responder, question)

    async def scenario():
        return [await ask("What time is it?", read_only_timers=True),
                await ask("Set a timer for 5 minutes", read_only_timers=True),
                await ask("Set a timer for 5 minutes"),
                await ask("How much time is left on my timer?", read_only_timers=True)]

    clock, refused, set_, left = asyncio.run(scenario())
    assert clock[0].startswith("It is ") and clock[1] == "device"
    assert "ask the running assistant" in refused[0]
    assert set_[1] == "timers" and "5 minutes" in set_[0]
    assert left[1] == "timers" and "minute" in left[0]
