"""`edge-assistant doctor`: checks what a headless device needs, says what is wrong and how to
fix it. Each check is independent, so one failure does not hide the others. When the service
runs, what it says of its own parts (through its status socket) is one more finding."""

from __future__ import annotations

import os
import socket
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from . import config as config_module
from . import models
from .config import Config
from .health import BROKER_DOWN_FIX, BROKER_REFUSED_FIX, MODEL_FIX, PartState, device_fix

# Where glibc finds localhost; a root file system built by debootstrap (an SD card image, a
# chroot) has none.
HOSTS_FILE = Path("/etc/hosts")


@dataclass(frozen=True)
class Finding:
    ok: bool
    check: str
    detail: str
    fix: str = ""

    def line(self) -> str:
        text = f"{'OK  ' if self.ok else 'FAIL'}  {self.check:<11} {self.detail}"
        return text + (f"\n      fix: {self.fix}" if self.fix else "")


def run_checks(config_path: str | None) -> list[Finding]:
    try:
        config = config_module.load(config_path)
    except config_module.ConfigError as error:
        return [Finding(False, "config", str(error), "correct that key (edge-assistant config check FILE)")]
    findings = [Finding(True, "config", config.source)]
    checks: list[Callable[[Config], Finding | list[Finding]]] = [
        _state_dir, _llm, _voice, _speech_model, _microphone, _speaker, _echo, _broker, _service,
    ]
    for check in checks:
        try:
            found = check(config)
        except Exception as error:  # a check that breaks is itself a finding
            found = Finding(False, check.__name__.strip("_"), f"{type(error).__name__}: {error}")
        findings.extend(found if isinstance(found, list) else [found])
    return findings


def _state_dir(config: Config) -> Finding:
    state_dir = config.state_dir()
    try:
        state_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=state_dir):
            pass
    except OSError as error:
        return Finding(False, "state dir", f"{state_dir}: {error}",
                       "set service.state_dir to a writable folder (the unit sets StateDirectory=)")
    return Finding(True, "state dir", str(state_dir))


def _llm(config: Config) -> Finding:
    from .thinking.chat import LlmError
    from .thinking.llama_engine import check_gguf_file, file_quantization

    try:
        path = models.resolve_llm(config.llm.model, config.state_dir())
        check_gguf_file(path)
    except (models.ModelError, LlmError) as error:
        return Finding(False, "llm", str(error), MODEL_FIX)
    quantization = file_quantization(path)
    detail = f"{path} ({quantization}, {path.stat().st_size / 2**20:.0f} MiB)"
    if config.llm.n_gpu_layers:
        import llama_cpp

        if not llama_cpp.llama_supports_gpu_offload():
            return Finding(False, "llm", detail + f"; llm.n_gpu_layers = {config.llm.n_gpu_layers} but "
                           "llama-cpp-python was built without GPU support",
                           'reinstall it with CMAKE_ARGS="-DGGML_CUDA=on" (scripts/setup.sh does on a Jetson)')
    return Finding(True, "llm", detail)


def _voice(config: Config) -> Finding:
    try:
        path = models.resolve_voice(config.tts.voice, config.state_dir())
    except models.ModelError as error:
        return Finding(False, "voice", str(error), "edge-assistant models pull en_US-lessac-medium")
    if not Path(f"{path}.json").exists():
        return Finding(False, "voice", f"{path}: its {path.name}.json is missing", "pull the voice again")
    return Finding(True, "voice", str(path))


def _speech_model(config: Config) -> Finding:
    state_dir = config.state_dir()
    try:
        path = models.resolve_stt(config.stt.model, state_dir, config.stt.engine)
    except models.ModelError as error:
        return Finding(False, "speech", str(error), "edge-assistant models pull vosk-model-small-en-us")
    if path is None:
        if config.stt.engine == "vosk":
            return Finding(False, "speech", "stt.engine is vosk but no vosk model is configured or pulled",
                           "edge-assistant models pull vosk-model-small-en-us")
        from .hearing.stt import select_engine

        if select_engine(config.stt, None) == "moonshine":
            try:
                folder = models.embedded_moonshine_path(verify=True)
            except models.ModelError as error:
                return Finding(False, "speech", f"{error} (Whisper listens meanwhile)", models.MOONSHINE_FIX)
            return Finding(True, "speech", f"moonshine, {folder}")
        return Finding(True, "speech", f"whisper, {models.embedded_whisper_path()}")
    if any(part.name == "am" for part in path.iterdir()):
        try:
            import vosk  # noqa: F401  (its aarch64 wheel needs libatomic1)
        except OSError as error:
            return Finding(False, "speech", f"vosk does not load: {error}", "sudo apt-get install libatomic1")
    return Finding(True, "speech", str(path))


def _device(config: Config, kind: str) -> Finding:
    from .audio.devices import AudioDeviceError, find_device

    name = "microphone" if kind == "input" else "speaker"
    spec = config.audio.input_device if kind == "input" else config.audio.output_device
    if kind == "input" and spec == "none":
        return Finding(True, name, "none configured (driven over MQTT only)")
    try:
        device = find_device(spec, kind)
    except (AudioDeviceError, OSError) as error:
        return Finding(False, name, str(error), device_fix(kind))
    return Finding(True, name, f"{device['name']} ({device['default_samplerate']:.0f} Hz)")


def _microphone(config: Config) -> Finding:
    return _device(config, "input")


def _speaker(config: Config) -> Finding:
    return _device(config, "output")


def _echo(config: Config) -> Finding:
    from .audio import echo

    audio = config.audio
    if audio.input_device == "none":
        return Finding(True, "echo", "no microphone, nothing to cancel")
    if not audio.echo_cancellation:
        return Finding(True, "echo", "cancellation off (audio.echo_cancellation): the wake word "
                       "interrupts a reply only at the stricter barge-in threshold")
    try:
        echo.ENGINES[audio.echo_canceller](True, audio.noise_suppression, audio.auto_gain)
    except echo.EchoCancellerError as error:
        return Finding(False, "echo", f"{audio.echo_canceller}: {error}",
                       "sudo apt-get install libspeexdsp1 (speex) or pip install pywebrtc-audio "
                       "(webrtc), or set audio.echo_cancellation = false")
    detail = f"cancellation active ({audio.echo_canceller})"
    status = echo.read_status(echo.status_file(config.state_dir()))
    if status is None or status.get("delay_ms") is None:
        return Finding(True, "echo", detail + "; echo path delay not measured yet (the service "
                       "measures it while the assistant speaks)")
    age_s = max(0.0, time.time() - float(status.get("measured_at", 0.0)))
    return Finding(True, "echo", f"{detail}; echo path delay {status['delay_ms']:.1f} ms, "
                   f"measured by the service {_age(age_s)} ago")


def _age(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.0f} h"


def _broker(config: Config) -> Finding:
    mqtt = config.mqtt
    if not mqtt.enabled:
        return Finding(True, "mqtt", "disabled")
    where = f"{mqtt.host}:{mqtt.port}"
    try:
        socket.create_connection((mqtt.host, mqtt.port), timeout=5).close()
    except socket.gaierror as error:
        return Finding(False, "mqtt", f"{where}: {mqtt.host} does not resolve: {error.strerror or error}",
                       name_fix(mqtt.host))
    except OSError as error:
        return Finding(False, "mqtt", f"{where}: {error}", BROKER_DOWN_FIX)
    from .broker import client_id, make_client

    answered = threading.Event()
    outcome: list[str] = []

    def on_connect(client, userdata, flags, reason_code, properties) -> None:
        outcome.append("" if not reason_code.is_failure else str(reason_code))
        answered.set()

    client = make_client(mqtt, client_id(mqtt, config.device_id(), f"doctor-{os.getpid()}"))
    client.on_connect = on_connect
    try:
        client.connect(mqtt.host, mqtt.port, keepalive=10)
        client.loop_start()
        answered.wait(10)
    except Exception as error:
        return Finding(False, "mqtt", f"{where}: {error}", "check mqtt.tls, mqtt.ca_file and the broker's TLS listener")
    finally:
        client.loop_stop()
        client.disconnect()
    if not outcome:
        return Finding(False, "mqtt", f"{where}: no answer to CONNECT", "is this port an MQTT listener?")
    if outcome[0]:
        return Finding(False, "mqtt", f"{where}: refused: {outcome[0]}", BROKER_REFUSED_FIX)
    return Finding(True, "mqtt", f"{where} as device {config.device_id()}")


def name_fix(host: str, hosts_file: Path | None = None) -> str:
    """The fix for a broker name that does not resolve; for localhost, usually a missing
    /etc/hosts or one without localhost in it."""
    hosts_file = HOSTS_FILE if hosts_file is None else hosts_file
    instead = 'or set mqtt.host = "127.0.0.1"'
    if host.lower().rstrip(".") == "localhost":
        try:
            names = {name.lower() for line in hosts_file.read_text(errors="replace").splitlines()
                     for name in line.split("#")[0].split()[1:]}
        except FileNotFoundError:
            return (f"{hosts_file} is missing (a root file system built by debootstrap has none): create it "
                    f"with the lines '127.0.0.1 localhost' and '::1 localhost', {instead}")
        except OSError as error:
            return f"{hosts_file} cannot be read ({error.strerror}): make it readable to all, {instead}"
        if "localhost" not in names:
            return f"{hosts_file} does not name localhost: add the line '127.0.0.1 localhost', {instead}"
        return f"localhost is in {hosts_file}: check the hosts line of /etc/nsswitch.conf, {instead}"
    return f"check the name (DNS, {hosts_file}), or set mqtt.host to the broker's IP address"


def _service(config: Config) -> list[Finding]:
    """The running service's own view: a failing part, one finding each."""
    from . import status

    try:
        report = status.ask(config, timeout=3)
    except status.NotAllowed as error:
        return [Finding(False, "service", error.problem, error.fix)]
    except status.ServiceUnreachable:
        paths = ", ".join(map(str, status.client_paths(config)))
        return [Finding(True, "service", f"not running (nothing answers on {paths})")]
    except TimeoutError:
        return [Finding(False, "service", "runs but does not answer on its status socket",
                        "see journalctl -u edge-assistant; sudo systemctl restart edge-assistant")]
    parts = report.get("parts", {})
    failing = [(name, part) for name, part in parts.items() if part.get("state") == PartState.FAILED]
    if not failing:
        return [Finding(True, "service", f"running (pid {report.get('pid')}), {report.get('state')}; every part works")]
    return [Finding(False, "service", f"{name} {part.get('summary')}: {part.get('detail')}", part.get("fix", ""))
            for name, part in failing]
