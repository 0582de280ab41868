"""What was measured on: the machine (CPU, memory, OS, library versions) and the models."""

from __future__ import annotations

import os
import platform
from pathlib import Path
from typing import Any

from .. import models
from ..config import Config
from .loaded import LoadedModels


def load_average() -> float:
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:
        return -1.0


def _cpu_model() -> str:
    try:
        model = Path("/proc/device-tree/model").read_bytes().rstrip(b"\0").decode()
        if model:
            return model  # a Raspberry Pi or a Jetson names the board here
    except OSError:
        pass
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() in ("model name", "Model", "Hardware") and value.strip():
                return value.strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _os_name() -> str:
    try:
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                return line.split("=", 1)[1].strip().strip('"')
    except OSError:
        pass
    return platform.platform()


def _version(package: str) -> str:
    from importlib import metadata

    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def _llama_features() -> str:
    """The instruction sets llama.cpp was built for (AVX2, NEON, CUDA, ...)."""
    try:
        import llama_cpp

        return " ".join(llama_cpp.llama_print_system_info().decode().split())
    except Exception as error:  # a broken build must not cost the other figures
        return f"unavailable: {error}"


def machine_info() -> dict[str, Any]:
    import psutil

    return {
        "machine.cpu": _cpu_model(),
        "machine.arch": platform.machine(),
        "machine.cores_physical": psutil.cpu_count(logical=False) or os.cpu_count(),
        "machine.cores_logical": os.cpu_count(),
        "machine.ram_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "machine.os": _os_name(),
        "machine.kernel": platform.release(),
        "machine.python": platform.python_version(),
        "machine.llama_cpp_python": _version("llama-cpp-python"),
        "machine.llama_cpp_features": _llama_features(),
        "machine.onnxruntime": _version("onnxruntime"),
        "machine.faster_whisper": _version("faster-whisper"),
        "machine.piper_tts": _version("piper-tts"),
        "machine.load_avg_start": load_average(),
    }


def _gguf_summary(path: Path) -> tuple[str, str]:
    """The model's name and quantization from its GGUF header, without loading it."""
    from gguf import GGUFReader

    from ..thinking.llama_engine import file_quantization

    fields = GGUFReader(str(path)).fields
    name = fields["general.name"].contents() if "general.name" in fields else path.stem
    return str(name), file_quantization(path)


def model_info(config: Config, loaded: LoadedModels) -> dict[str, Any]:
    info: dict[str, Any] = {}
    try:
        session = loaded.loaded_session
        if session is not None:
            engine = session.engine
            info.update({
                "models.llm": engine.info.path,
                "models.llm_name": engine.info.name,
                "models.llm_quantization": engine.info.quantization,
                "models.llm_threads": engine.threads,
                "models.prompt_format": session.builder.format.name,
            })
        else:
            path = loaded.paths.llm
            name, quantization = _gguf_summary(path)
            info.update({"models.llm": str(path), "models.llm_name": name,
                         "models.llm_quantization": quantization})
        info["models.llm_size_mb"] = round(Path(info["models.llm"]).stat().st_size / 2**20, 1)
    except Exception as error:  # the model info must never cost the results
        info["models.llm"] = f"unavailable: {error}"
    info["models.llm_n_ctx"] = config.llm.n_ctx
    try:
        info["models.voice"] = str(loaded.paths.voice)
    except Exception as error:
        info["models.voice"] = f"unavailable: {error}"
    try:
        from ..hearing import stt

        folder = loaded.paths.stt
        engine_name = stt.select_engine(config.stt, folder)
        if engine_name == "whisper" and (folder is None or not stt.is_whisper_model(folder)):
            folder = models.embedded_whisper_path()
        elif engine_name == "moonshine" and folder is None:
            folder = models.embedded_moonshine_path()
        info["models.stt_engine"] = engine_name
        info["models.stt"] = str(folder)
    except Exception as error:
        info["models.stt"] = f"unavailable: {error}"
    info["models.wake"] = f"{config.wake.engine}:{config.wake.model}" if config.wake.enabled else "off"
    info["models.vad"] = config.vad.engine
    return info
