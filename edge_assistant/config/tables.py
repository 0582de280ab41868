"""The config's tables for the voice pipeline and the service: [audio] to [service], and
[timers]. Each field has a default and, where a value can be wrong, the check it must pass."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from .rules import at_least, between, check, one_of, positive


@dataclass(frozen=True)
class AudioConfig:
    # Device name substring or PortAudio index; "" means the system default; an input of
    # "none" means no microphone (a device that only speaks, driven over MQTT).
    input_device: str | int = ""
    output_device: str | int = ""
    # 0 means the device's default rate; capture is resampled to 16 kHz either way.
    input_rate: int = field(default=0, metadata=at_least(0))
    output_rate: int = field(default=0, metadata=at_least(0))
    frame_ms: int = field(default=10, metadata=one_of(10, 20, 30))
    queue_frames: int = field(default=500, metadata=between(10, 100_000))
    volume: float = field(default=1.0, metadata=between(0.0, 2.0))
    reopen_backoff_max_s: float = field(default=30.0, metadata=positive())
    # Remove what the speaker plays from what the microphone hears (edge_assistant/audio/echo/):
    # the assistant then neither wakes itself nor hears its own reply in the next question.
    echo_cancellation: bool = True
    # "speex" (libspeexdsp) keeps a person's voice intact over the assistant's, so the wake
    # word still barges in; "webrtc" (AEC3, pip install pywebrtc-audio) removes more echo but
    # also cuts the person's voice while the assistant speaks (docs/performance.md).
    echo_canceller: str = field(default="speex", metadata=one_of("speex", "webrtc"))
    # Longest speaker-to-microphone delay the estimator looks for (device buffers included).
    echo_max_delay_ms: int = field(default=500, metadata=between(50, 2000))
    # From the same library as the canceller; off by default, since the wake word and speech
    # models were trained on unprocessed audio.
    noise_suppression: bool = False
    auto_gain: bool = False


@dataclass(frozen=True)
class WakeConfig:
    enabled: bool = True
    # openWakeWord hears "Hey Jarvis" from every voice `bench --only wake_accuracy` has (100%
    # clean), microWakeWord from a third of them, at a thirtieth of the CPU (docs/performance.md).
    engine: str = field(default="openwakeword", metadata=one_of("micro", "openwakeword"))
    # A shipped model name (hey_jarvis, okay_nabu, alexa, hey_mycroft) or a model file path.
    model: str = "hey_jarvis"
    # 0 keeps the model's own probability cutoff.
    threshold: float = field(default=0.0, metadata=between(0.0, 1.0))
    refractory_s: float = field(default=2.0, metadata=at_least(0.0))
    # While the assistant speaks, detections are ignored unless barge-in is on. They must then
    # clear barge_in_threshold; 0 means the normal threshold when echo cancellation is active,
    # and a stricter one otherwise, since the microphone also hears the assistant's own voice.
    barge_in: bool = True
    barge_in_threshold: float = field(default=0.0, metadata=between(0.0, 1.0))
    # "Stop" ends what the assistant says or rings, heard by a small model of its own
    # (stop_word.py) while it speaks; 0 keeps that model's cutoff. It needs echo cancellation
    # on a microphone (audio.echo_cancellation): the assistant's voice heard whole stops it.
    stop_word: bool = True
    stop_word_threshold: float = field(default=0.0, metadata=between(0.0, 1.0))


@dataclass(frozen=True)
class VadConfig:
    engine: str = field(default="silero", metadata=one_of("micro", "silero"))
    threshold: float = field(default=0.5, metadata=between(0.0, 1.0))
    silence_s: float = field(default=0.8, metadata=between(0.1, 10.0))
    min_speech_s: float = field(default=0.25, metadata=between(0.0, 10.0))
    max_utterance_s: float = field(default=15.0, metadata=between(1.0, 300.0))
    pre_roll_s: float = field(default=0.6, metadata=between(0.0, 5.0))
    no_speech_timeout_s: float = field(default=6.0, metadata=between(0.5, 120.0))
    # A pause this long is where the end-of-turn model is asked and Whisper transcribes what
    # was said so far; silence_s still ends any turn.
    pause_s: float = field(default=0.2, metadata=between(0.05, 10.0))
    # Smart Turn v3 decides at each pause whether the turn is over; false: silence_s alone.
    smart_turn: bool = True
    # "" (the embedded default, installed by scripts/setup.sh), a registry name or a .onnx path.
    smart_turn_model: str = ""
    # Probability of "complete" at or above which a pause ends the turn.
    smart_turn_threshold: float = field(default=0.5, metadata=between(0.0, 1.0))


@dataclass(frozen=True)
class SttConfig:
    # "auto": vosk or Moonshine for such a stt.model folder, else stt.DEFAULT_ENGINE.
    engine: str = field(default="auto", metadata=one_of("auto", "vosk", "whisper", "moonshine"))
    # A registry name, a model folder, or "" for the default of the engine.
    model: str = ""
    language: str = "en"
    # vosk only: restrict recognition to these phrases (plus "[unk]").
    grammar: tuple[str, ...] = ()
    beam_size: int = field(default=1, metadata=between(1, 10))
    # 0: Whisper takes the physical cores, Moonshine 2.
    n_threads: int = field(default=0, metadata=at_least(0))
    # Transcribe the utterance so far at each pause (vad.pause_s), while listening goes on:
    # if no speech follows, that is the final text (Whisper), and a turn whose words end
    # mid-phrase ("... the capital of") is not ended early.
    speculative: bool = True
    # "moonshine": at the end of an utterance Moonshine's text goes out first (a transcript with
    # "pass": "fast") and the LLM starts on it; Whisper's text follows, and the turn starts over
    # on it only where its words differ. Nothing is spoken, acted on or published before then.
    # "": off (one transcript, from stt.engine).
    first_pass: str = field(default="", metadata=one_of("", "moonshine"))


@dataclass(frozen=True)
class PromptConfig:
    # auto, chatml, zephyr, plain, gguf, or the path of a Jinja chat template file.
    template: str = "auto"
    system_prompt: str = (
        "You are a helpful voice assistant running offline on a small home device. "
        "Answer in one to three short spoken sentences. Do not use markdown, lists, code or emoji."
    )
    # Longest user message, in characters, before it is cut (with an event saying so).
    max_user_chars: int = field(default=2000, metadata=between(1, 1_000_000))


@dataclass(frozen=True)
class LlmConfig:
    # A registry name, a GGUF path, or "" for the embedded default model.
    model: str = ""
    n_ctx: int = field(default=2048, metadata=between(128, 1_048_576))
    # 0 means the number of physical cores.
    n_threads: int = field(default=0, metadata=at_least(0))
    n_batch: int = field(default=256, metadata=between(1, 65536))
    # 0 on a Pi (CPU only); -1 offloads every layer on a Jetson.
    n_gpu_layers: int = field(default=0, metadata=at_least(-1))
    use_mmap: bool = True
    use_mlock: bool = False
    temperature: float = field(default=0.7, metadata=between(0.0, 5.0))
    top_p: float = field(default=0.95, metadata=between(0.0, 1.0))
    top_k: int = field(default=40, metadata=at_least(0))
    min_p: float = field(default=0.05, metadata=between(0.0, 1.0))
    repeat_penalty: float = field(default=1.1, metadata=between(0.0, 5.0))
    max_tokens: int = field(default=160, metadata=between(1, 65536))
    # -1 picks a random seed per reply.
    seed: int = field(default=-1, metadata=at_least(-1))
    stop: tuple[str, ...] = ()
    # "openai": the reply comes from an OpenAI-compatible server (llama.cpp, Ollama, vLLM);
    # see docs/many-rooms.md.
    backend: str = field(default="local", metadata=one_of("local", "openai"))
    # Credentials in the URL would end up in logs; the key belongs in api_key_file.
    base_url: str = field(
        default="http://localhost:8080/v1",
        metadata=check(
            lambda v: re.fullmatch(r"https?://[^/@\s]+(/\S*)?", v) is not None,
            "must be an http:// or https:// URL without user:password@ (use llm.api_key_file)",
        ),
    )
    # "" sends no model name (servers with one model); Ollama and vLLM need it.
    remote_model: str = ""
    api_key_file: str = ""
    connect_timeout_s: float = field(default=3.0, metadata=between(0.1, 600.0))
    # Longest wait for the first token, and between two tokens.
    timeout_s: float = field(default=30.0, metadata=between(0.1, 3600.0))
    # Answer with the local model (llm.model) when the server fails before its first token.
    fallback_local: bool = False


@dataclass(frozen=True)
class TtsConfig:
    # A registry name, a .onnx voice path, or "" for the embedded default voice.
    voice: str = ""
    speaker_id: int = field(default=0, metadata=at_least(0))
    length_scale: float = field(default=1.0, metadata=between(0.1, 5.0))
    noise_scale: float = field(default=0.667, metadata=between(0.0, 2.0))
    noise_w_scale: float = field(default=0.8, metadata=between(0.0, 2.0))
    volume: float = field(default=1.0, metadata=between(0.0, 2.0))


@dataclass(frozen=True)
class MqttConfig:
    enabled: bool = True
    host: str = "localhost"
    port: int = field(default=1883, metadata=between(1, 65535))
    # "" means "edge-assistant-<device_id>".
    client_id: str = ""
    username: str = ""
    password: str = ""
    # Read the password from this file instead (systemd credentials, docker secrets).
    password_file: str = ""
    tls: bool = False
    ca_file: str = ""
    certfile: str = ""
    keyfile: str = ""
    tls_verify: bool = True
    qos: int = field(default=1, metadata=between(0, 2))
    keepalive: int = field(default=60, metadata=between(5, 3600))
    topic_prefix: str = "edge-assistant"
    # "" means the hostname, reduced to [a-zA-Z0-9_-].
    device_id: str = ""
    discovery: bool = True
    discovery_prefix: str = "homeassistant"
    hermes: bool = False
    # Also obey <topic_prefix>/all/cmd/... (one command for every device on the broker).
    broadcast_commands: bool = False
    # QoS >= 1 events kept while the broker is away; older ones are dropped and counted.
    offline_queue: int = field(default=1000, metadata=between(0, 1_000_000))
    max_payload_bytes: int = field(default=65536, metadata=between(64, 268_435_455))
    max_text_chars: int = field(default=2000, metadata=between(1, 1_000_000))
    command_queue: int = field(default=16, metadata=between(1, 10_000))
    reconnect_max_s: float = field(default=30.0, metadata=positive())
    metrics_interval_s: float = field(default=60.0, metadata=at_least(0.0))


@dataclass(frozen=True)
class ServiceConfig:
    # Models, history, pulled files and timers; "" means $STATE_DIRECTORY (systemd), else the
    # service's /var/lib/edge-assistant with the system config, else ~/.local/share/edge-assistant
    # with each device id's timers in its own <device_id>/ folder.
    state_dir: str = ""
    log_level: str = field(default="info", metadata=one_of("debug", "info", "warning", "error"))
    # Seconds after a reply during which the user may speak again without the wake word.
    follow_up_s: float = field(default=0.0, metadata=between(0.0, 120.0))
    # Idle seconds after which the conversation is forgotten.
    conversation_timeout_s: float = field(default=300.0, metadata=at_least(0.0))
    earcons: bool = True
    # WAV files; "" uses the built-in tones.
    wake_sound: str = ""
    error_sound: str = ""
    # The Unix socket `edge-assistant status` and `reload` ask; "" means status.sock in
    # $RUNTIME_DIRECTORY (systemd's /run/edge-assistant), else in the state directory.
    status_socket: str = ""


@dataclass(frozen=True)
class TimersConfig:
    # Timers and alarms set at once; one more is refused with an error.
    max_timers: int = field(default=50, metadata=between(1, 10_000))
    # A finished timer or alarm rings again every ring_interval_s until it is stopped, and at
    # most ring_max_s after it finished (0 rings once).
    ring_interval_s: float = field(default=10.0, metadata=between(1.0, 3600.0))
    ring_max_s: float = field(default=300.0, metadata=between(0.0, 86400.0))
