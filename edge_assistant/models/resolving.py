"""What a model setting (`llm.model`, `tts.voice`, `stt.model`, `vad.smart_turn_model`) means:
the embedded default, a pulled registry model, or a file; a wrong one is a `ModelError` that
names the key."""

from __future__ import annotations

from pathlib import Path

from .embedded import (
    EMBEDDED, embedded_llm_package, embedded_llm_path, embedded_turn_end_path, embedded_voice_path,
)
from .registry import REGISTRY, ModelError, models_dir, path


def _resolve(setting: str, key: str, kind: str, state_dir: Path) -> Path:
    if setting in REGISTRY:
        model = REGISTRY[setting]
        if model.kind != kind:
            raise ModelError(f"{key}: {setting!r} is a {model.kind} model, not a {kind} model")
        found = path(setting, state_dir)
        if found is None:
            raise ModelError(
                f"{key}: model {setting!r} is not pulled yet; run: edge-assistant models pull {setting}"
            )
        return found
    candidate = Path(setting).expanduser()
    if not candidate.exists():
        raise ModelError(
            f"{key}: {setting!r} is neither a file nor a known model "
            f"(see edge-assistant models list)"
        )
    return candidate


def resolve_llm(setting: str, state_dir: Path) -> Path:
    if not setting or setting == EMBEDDED:
        return embedded_llm_path(models_dir(state_dir) / EMBEDDED)
    return _resolve(setting, "llm.model", "llm", state_dir)


def check_llm(setting: str, state_dir: Path) -> None:
    """What `resolve_llm` checks, writing nothing (`config check`): the embedded default is
    installed (it is assembled where it is first used), a named model is on disk."""
    if not setting or setting == EMBEDDED:
        embedded_llm_package()
    else:
        _resolve(setting, "llm.model", "llm", state_dir)


def resolve_voice(setting: str, state_dir: Path) -> Path:
    if not setting or setting == EMBEDDED:
        return embedded_voice_path()
    return _resolve(setting, "tts.voice", "voice", state_dir)


def resolve_stt(setting: str, state_dir: Path, engine: str) -> Path | None:
    """The vosk, Whisper or Moonshine model folder for `stt.model` and `stt.engine`; None means
    the engine's embedded default. With no model set, "auto" and "vosk" take a pulled vosk model."""
    if setting and setting != EMBEDDED:
        return _resolve(setting, "stt.model", "stt", state_dir)
    return pulled_vosk_model(state_dir) if engine in ("auto", "vosk") else None


def resolve_turn_end(setting: str, state_dir: Path) -> Path:
    """The end-of-turn model file for `vad.smart_turn_model`."""
    if not setting or setting == EMBEDDED:
        return embedded_turn_end_path()
    return _resolve(setting, "vad.smart_turn_model", "turn", state_dir)


def pulled_vosk_model(state_dir: Path) -> Path | None:
    """The first pulled vosk model, which `stt.engine = "auto"` prefers over Whisper."""
    for name, model in REGISTRY.items():
        if model.kind == "stt" and model.archive:
            found = path(name, state_dir)
            if found is not None:
                return found
    return None


def template_hint(setting: str) -> str:
    """The prompt format a registry LLM was trained on ("auto" for files and unknowns)."""
    model = REGISTRY.get(setting)
    return model.template if model is not None and model.kind == "llm" else "auto"
