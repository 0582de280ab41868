"""The models we know by name (`REGISTRY`), where each lives once pulled, and what is on disk.

Pulled files live in `<state_dir>/models/<name>/` (on a service: /var/lib/edge-assistant),
with a `.verified` marker written once every file passed its checksum.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

# Smart Turn v3.2 (BSD 2-Clause, Copyright (c) 2024-2026 Daily): the end-of-turn model. The
# pipecat-ai wheel ships it (pipecat/audio/turn/smart_turn/data/); scripts/setup.sh extracts that
# one file to SHARE_DIR, with no pipecat runtime dependency.
SMART_TURN_FILE = "smart-turn-v3.2-cpu.onnx"
SMART_TURN_SHA256 = "2bb026316b14a660486a75b1733cd3fbab8c2fd0314dc9af7be49f8cca967e4f"


class ModelError(RuntimeError):
    """A model is missing, unknown, or failed its checksum."""


@dataclass(frozen=True)
class ModelEntry:
    name: str
    kind: str  # "llm", "voice", "stt" or "turn" (end of turn)
    repo_id: str
    files: tuple[str, ...]  # the first is the model itself; the rest travel with it
    description: str
    # sha256 per file, where known; the hub's own sha256 is checked for every file regardless.
    sha256: tuple[tuple[str, str], ...] = ()
    # For an LLM: the prompt format it was trained on (prompt.template "auto" reads the GGUF).
    template: str = "auto"
    # A zip holding a model folder (vosk): extracted after download.
    archive: bool = False
    revision: str = "main"
    # The model is the folder of all its files (Moonshine: encoder, decoder, tokenizer).
    folder: bool = False
    # Files that come from another repository than `repo_id`: (file, repo_id).
    file_repos: tuple[tuple[str, str], ...] = ()

    def repo_of(self, filename: str) -> str:
        return dict(self.file_repos).get(filename, self.repo_id)

    @property
    def main_file(self) -> str:
        return self.files[0]


def _voice(name: str, language_dir: str, description: str) -> ModelEntry:
    # rhasspy/piper-voices lays voices out as <lang>/<locale>/<speaker>/<quality>/<name>.onnx
    locale, speaker, quality = name.split("-")
    base = f"{language_dir}/{locale}/{speaker}/{quality}/{name}"
    return ModelEntry(
        name=name,
        kind="voice",
        repo_id="rhasspy/piper-voices",
        files=(f"{base}.onnx", f"{base}.onnx.json"),
        description=description,
        revision="main",
    )


REGISTRY: dict[str, ModelEntry] = {
    entry.name: entry
    for entry in (
        ModelEntry(
            name="tinyllama-1.1b-chat-q4",
            kind="llm",
            repo_id="TheBloke/TinyLlama-1.1B-Chat-v1.0-GGUF",
            files=("tinyllama-1.1b-chat-v1.0.Q4_K_M.gguf",),
            description="TinyLlama 1.1B Chat v1.0, Q4_K_M (669 MB): the Pi default; Zephyr format",
            sha256=(
                (
                    "tinyllama-1.1b-chat-v1.0.Q4_K_M.gguf",
                    "9fecc3b3cd76bba89d504f29b616eedf7da85b96540e490ca5824d3f7d2776a0",
                ),
            ),
            template="zephyr",
        ),
        ModelEntry(
            name="tinyllama-1.1b-chat-q8",
            kind="llm",
            repo_id="TheBloke/TinyLlama-1.1B-Chat-v1.0-GGUF",
            files=("tinyllama-1.1b-chat-v1.0.Q8_0.gguf",),
            description="TinyLlama 1.1B Chat v1.0, Q8_0 (1.17 GB): better answers, half the speed",
            template="zephyr",
        ),
        ModelEntry(
            name="qwen2.5-0.5b-instruct-q4",
            kind="llm",
            repo_id="Qwen/Qwen2.5-0.5B-Instruct-GGUF",
            files=("qwen2.5-0.5b-instruct-q4_k_m.gguf",),
            description="Qwen2.5 0.5B Instruct, Q4_K_M (491 MB): fastest, ChatML",
            template="chatml",
        ),
        ModelEntry(
            name="qwen2.5-1.5b-instruct-q4",
            kind="llm",
            repo_id="Qwen/Qwen2.5-1.5B-Instruct-GGUF",
            files=("qwen2.5-1.5b-instruct-q4_k_m.gguf",),
            description="Qwen2.5 1.5B Instruct, Q4_K_M (1.12 GB): best answers on a Pi 5, ChatML",
            template="chatml",
        ),
        ModelEntry(
            name="smollm2-360m-instruct-q8",
            kind="llm",
            repo_id="HuggingFaceTB/SmolLM2-360M-Instruct-GGUF",
            files=("smollm2-360m-instruct-q8_0.gguf",),
            description="SmolLM2 360M Instruct, Q8_0 (386 MB): for a Pi 4 or smaller, ChatML",
            template="chatml",
        ),
        _voice("en_US-lessac-medium", "en", "Piper voice, US English, female, medium quality"),
        _voice("en_US-ryan-medium", "en", "Piper voice, US English, male, medium quality"),
        _voice("en_GB-alan-medium", "en", "Piper voice, British English, male, medium quality"),
        _voice("de_DE-thorsten-medium", "de", "Piper voice, German, male, medium quality"),
        ModelEntry(
            name="vosk-model-small-en-us",
            kind="stt",
            repo_id="rhasspy/vosk-models",
            files=("en/vosk-model-small-en-us-0.15.zip",),
            description="vosk small US English (40 MB): streaming recognition for a Pi",
            archive=True,
        ),
        ModelEntry(
            name="moonshine-tiny-en",
            kind="stt",
            repo_id="UsefulSensors/moonshine",
            files=(
                "onnx/merged/tiny/float/encoder_model.onnx",
                "onnx/merged/tiny/float/decoder_model_merged.onnx",
                "tokenizer.json",
            ),
            description="Moonshine tiny, English (MIT), float weights: fast English speech "
                        "recognition (setup installs a smaller copy as stt.engine moonshine's default)",
            folder=True,
            file_repos=(("tokenizer.json", "UsefulSensors/moonshine-tiny"),),
        ),
        ModelEntry(
            name="smart-turn-v3",
            kind="turn",
            repo_id="pipecat-ai/smart-turn-v3",
            files=(SMART_TURN_FILE,),
            description="Smart Turn v3.2 CPU (8.7 MB, BSD-2, (c) Daily): end of turn; the embedded default",
            sha256=((SMART_TURN_FILE, SMART_TURN_SHA256),),
            # The commit that added v3.2: the file the pipecat-ai 1.14.0 wheel ships.
            revision="f766f81d3cfdf7737ac64aad813d91bbfd56bf93",
        ),
    )
}


def models_dir(state_dir: Path) -> Path:
    return Path(state_dir) / "models"


def entry(name: str) -> ModelEntry:
    try:
        return REGISTRY[name]
    except KeyError:
        raise ModelError(
            f"unknown model {name!r} (known: {', '.join(sorted(REGISTRY))})"
        ) from None


def installed_path(model: ModelEntry, state_dir: Path) -> Path:
    folder = models_dir(state_dir) / model.name
    if model.archive:
        return folder / "model"
    if model.folder:
        return folder
    return folder / model.main_file


def path(name: str, state_dir: Path) -> Path | None:
    """Where a registry model lives once pulled, or None if it is not there (complete)."""
    model = entry(name)
    installed = installed_path(model, state_dir)
    marker = models_dir(state_dir) / model.name / ".verified"
    return installed if installed.exists() and marker.exists() else None


def listing(state_dir: Path) -> list[dict]:
    rows = []
    for name, model in REGISTRY.items():
        found = path(name, state_dir)
        rows.append(
            {
                "name": name,
                "kind": model.kind,
                "pulled": found is not None,
                "path": str(found) if found else "",
                "repo": model.repo_id,
                "description": model.description,
            }
        )
    return rows
