"""PortAudio (sounddevice): the devices it sees, finding the one a config value names, and
opening and closing streams.

PortAudio enumerates devices only when it starts; ``rescan_devices()`` restarts it (when no stream
is open) so a device plugged in later is found. sounddevice is imported on first use: loading it
starts PortAudio, and file-only users need no sound stack.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import logging
import re
import threading
from typing import TYPE_CHECKING, Any, Callable

from ..health import Fault

if TYPE_CHECKING:
    import sounddevice

log = logging.getLogger(__name__)

# Serialises stream opening/closing with PortAudio restarts, which would kill open streams.
PORTAUDIO_LOCK = threading.RLock()
_open_streams = 0


class AudioDeviceError(Fault):
    """A sound device is missing, cannot be opened, or failed while running."""


class AudioDeviceMissing(AudioDeviceError):
    """A sound device is not there, or cannot be opened (unplugged, busy, misnamed)."""


def report_to(handler: Callable[[Any], None] | None, value: Any) -> None:
    """Tell an `on_error`/`on_open` handler of a microphone or speaker; a handler that fails is
    logged and does not take the device down with it."""
    if handler is not None:
        try:
            handler(value)
        except Exception:
            log.exception("audio device handler %r failed", handler)


def load_sounddevice() -> "sounddevice":
    import sounddevice

    return sounddevice


def rescan_devices() -> bool:
    """Restart PortAudio so it enumerates devices again; skipped (False) while a stream is open."""
    sd = load_sounddevice()
    with PORTAUDIO_LOCK:
        if _open_streams:
            return False
        sd._terminate()
        sd._initialize()
        return True


def _default_index(kind: str) -> int | None:
    try:
        return int(load_sounddevice().query_devices(kind=kind)["index"])
    except Exception:  # PortAudio raises when there is no default device
        return None


def list_devices() -> list[dict[str, Any]]:
    """The devices PortAudio sees, as plain dicts (for `edge-assistant devices`)."""
    sd = load_sounddevice()
    hostapis = sd.query_hostapis()
    default_in, default_out = _default_index("input"), _default_index("output")
    return [
        {
            "index": int(device["index"]),
            "name": device["name"],
            "hostapi": hostapis[device["hostapi"]]["name"],
            "max_input_channels": int(device["max_input_channels"]),
            "max_output_channels": int(device["max_output_channels"]),
            "default_samplerate": float(device["default_samplerate"]),
            "default_input": int(device["index"]) == default_in,
            "default_output": int(device["index"]) == default_out,
        }
        for device in sd.query_devices()
    ]


def format_devices(devices: list[dict[str, Any]] | None = None) -> str:
    """A table of `list_devices()`: `>` marks the default input, `<` the default output."""
    devices = list_devices() if devices is None else devices
    if not devices:
        return "No audio devices found."
    lines = [f"{'':2} {'#':>3}  {'in':>3} {'out':>3}  {'rate':>6}  name"]
    for device in devices:
        mark = (">" if device["default_input"] else " ") + (
            "<" if device["default_output"] else " "
        )
        lines.append(
            f"{mark} {device['index']:>3}  {device['max_input_channels']:>3} "
            f"{device['max_output_channels']:>3}  {device['default_samplerate']:>6.0f}  "
            f"{device['name']} ({device['hostapi']})"
        )
    lines.append("> default input, < default output")
    return "\n".join(lines)


def _match_device(spec: str | int, kind: str) -> dict[str, Any]:
    """The listed device for a config value (index, name substring, "" = default)."""
    channels_key = f"max_{kind}_channels"
    devices = list_devices()
    if isinstance(spec, str) and spec.strip().isdigit():
        spec = int(spec)
    if spec == "":
        index = _default_index(kind)
        if index is None:
            raise AudioDeviceMissing(f"no default {kind} device")
        candidates = [d for d in devices if d["index"] == index]
    elif isinstance(spec, int):
        candidates = [d for d in devices if d["index"] == spec]
    else:
        wanted = spec.lower()
        exact = [d for d in devices if d["name"].lower() == wanted and d[channels_key] > 0]
        candidates = exact or [
            d for d in devices if wanted in d["name"].lower() and d[channels_key] > 0
        ]
        if len(candidates) > 1:
            log.info(
                "%r matches %d %s devices; using %r",
                spec,
                len(candidates),
                kind,
                candidates[0]["name"],
            )
    candidates = [d for d in candidates if d[channels_key] > 0]
    if not candidates:
        raise AudioDeviceMissing(f"{kind} device {spec!r} not found (see `edge-assistant devices`)")
    return candidates[0]


def find_device(spec: str | int, kind: str) -> dict[str, Any]:
    """The device a config value names (index, name substring, "" = the default) that has
    `kind` ("input" or "output") channels; raises `AudioDeviceError`."""
    try:
        return _match_device(spec, kind)
    except AudioDeviceError:
        # Maybe it was plugged in after PortAudio started: look again after a restart.
        if not rescan_devices():
            raise
        return _match_device(spec, kind)


_ALSA_HARDWARE_NAME = re.compile(r"\((hw:\d+,\d+)\)$")
_SND_PCM_STREAM = {"output": 0, "input": 1}  # SND_PCM_STREAM_PLAYBACK, SND_PCM_STREAM_CAPTURE
_SND_PCM_NONBLOCK = 1


@functools.cache
def _libasound() -> Any:
    """ALSA's library, or None where there is none (not Linux, or another PortAudio host API)."""
    name = ctypes.util.find_library("asound")
    if name is None:
        return None
    try:
        library = ctypes.CDLL(name)
    except OSError:
        return None
    library.snd_pcm_open.argtypes = [ctypes.POINTER(ctypes.c_void_p), ctypes.c_char_p, ctypes.c_int, ctypes.c_int]
    library.snd_pcm_close.argtypes = [ctypes.c_void_p]
    library.snd_strerror.restype = ctypes.c_char_p
    return library


def alsa_pcm_name(device: dict[str, Any]) -> str | None:
    """The ALSA PCM behind a PortAudio ALSA device: "hw:1,0" for a card ("USB Audio: - (hw:1,0)"),
    the name itself for a configured PCM ("default", "dmix", a `pcm.x` of asound.conf); None for
    another host API."""
    if device.get("hostapi", "ALSA") != "ALSA":
        return None
    hardware = _ALSA_HARDWARE_NAME.search(device["name"])
    return hardware.group(1) if hardware else device["name"]


def check_alsa_openable(device: dict[str, Any], kind: str) -> None:
    """Raise `AudioDeviceMissing` if ALSA cannot open the device's PCM now (unplugged, or gone
    from the configuration since PortAudio listed it).

    Asked of ALSA directly, because PortAudio must never be asked: its ALSA code keeps the error
    of a failed open in a process-wide variable that a running stream's callback thread also
    writes, so a failed open can be taken for a success and abort the process on an assertion
    (PortAudio issue #278). A device gone in the microseconds between this check and the open
    remains a (much smaller) risk.
    """
    library, name = _libasound(), alsa_pcm_name(device)
    if library is None or name is None:
        return
    handle = ctypes.c_void_p()
    error = library.snd_pcm_open(ctypes.byref(handle), name.encode(), _SND_PCM_STREAM[kind], _SND_PCM_NONBLOCK)
    if error < 0:
        reason = library.snd_strerror(error).decode(errors="replace")
        raise AudioDeviceMissing(f"cannot open {kind} device {device['name']!r}: {reason}")
    library.snd_pcm_close(handle)


def open_stream(
    factory: Callable[..., Any], device: dict[str, Any], rate: int, kind: str, *, start: bool = True,
    **kwargs: Any,
) -> tuple[Any, int]:
    """Open and start (unless `start` is false) a mono stream, or a stereo one if the device
    refuses mono. Raises `AudioDeviceMissing`.

    Call with `PORTAUDIO_LOCK` held, so that no restart comes between finding and opening.
    """
    global _open_streams
    sd = load_sounddevice()
    check_alsa_openable(device, kind)
    error: Exception | None = None
    for channels in (1, 2):
        if channels > device[f"max_{kind}_channels"]:
            break
        try:
            stream = factory(
                device=device["index"], samplerate=rate, channels=channels, dtype="int16", **kwargs
            )
        except sd.PortAudioError as failure:
            error = failure
            continue
        try:
            if start:
                stream.start()
        except sd.PortAudioError as failure:
            stream.close(ignore_errors=True)
            error = failure
            continue
        _open_streams += 1
        return stream, channels
    raise AudioDeviceMissing(f"cannot open {kind} device {device['name']!r} at {rate} Hz: {error}")


def probe_device(spec: str | int, kind: str, rate: int = 0) -> dict[str, Any]:
    """Check that the device a config value names can be opened: open it without starting it
    (so nothing is played or recorded) and close it again. Returns the device; raises
    `AudioDeviceMissing`. Blocking: not for the event loop's thread."""
    sd = load_sounddevice()
    factory = sd.InputStream if kind == "input" else sd.OutputStream
    with PORTAUDIO_LOCK:
        device = find_device(spec, kind)
        stream, _ = open_stream(factory, device, rate or int(device["default_samplerate"]), kind, start=False)
        close_stream(stream)
    return device


def close_stream(stream: Any, drain: bool = False) -> None:
    """Close a stream; `drain` lets an output stream play what it has buffered first.

    Waits for `PORTAUDIO_LOCK`, which a rescan may hold for long: not for the event loop's thread.
    """
    global _open_streams
    with PORTAUDIO_LOCK:
        try:
            if drain:
                stream.stop(ignore_errors=True)
            else:
                stream.abort(ignore_errors=True)
            stream.close(ignore_errors=True)
        finally:
            _open_streams -= 1
