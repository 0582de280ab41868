"""Models: the ones known by name and where each lives once pulled (`registry`), fetching them
with huggingface-hub and a checksum (`pulls`), the defaults used with none configured
(`embedded`), and what a model setting means (`resolving`). Every name is imported from here:
`from edge_assistant import models; models.resolve_llm(...)`.
"""

from __future__ import annotations

from . import embedded, pulls, registry, resolving
from .embedded import (
    EMBEDDED, MOONSHINE_DIR, MOONSHINE_FIX, MOONSHINE_WHEEL_FILES, SHARE_DIR, embedded_llm_path,
    embedded_moonshine_path, embedded_turn_end_path, embedded_voice_path, embedded_whisper_path,
    install_moonshine_from_wheels, install_turn_end_from_wheel,
)
from .pulls import pull, remove, sha256_of
from .registry import (
    REGISTRY, SMART_TURN_FILE, SMART_TURN_SHA256, ModelEntry, ModelError, entry, listing, models_dir, path,
)
from .resolving import (
    check_llm, pulled_vosk_model, resolve_llm, resolve_stt, resolve_turn_end, resolve_voice, template_hint,
)

__all__ = [
    "EMBEDDED", "MOONSHINE_DIR", "MOONSHINE_FIX", "MOONSHINE_WHEEL_FILES", "REGISTRY", "SHARE_DIR",
    "SMART_TURN_FILE", "SMART_TURN_SHA256", "ModelEntry", "ModelError", "check_llm", "embedded",
    "embedded_llm_path", "embedded_moonshine_path", "embedded_turn_end_path", "embedded_voice_path",
    "embedded_whisper_path", "entry", "install_moonshine_from_wheels", "install_turn_end_from_wheel",
    "listing", "models_dir", "path", "pull", "pulled_vosk_model", "pulls", "registry", "remove",
    "resolve_llm", "resolve_stt", "resolve_turn_end", "resolve_voice", "resolving", "sha256_of",
    "template_hint",
]
