"""Audio files, conversions, earcons, and real PortAudio devices backed by files (see speech_fixtures)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import struct
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
import soundfile

from edge_assistant.audio.devices import (
    PORTAUDIO_LOCK,
    AudioDeviceError,
    AudioDeviceMissing,
    alsa_pcm_name,
    format_devices,
    list_devices,
    open_stream,
    rescan_devices,
)
from edge_assistant.audio.earcons import earcon
from edge_assistant.audio.microphone import MicrophoneSource
from edge_assistant.audio.pcm import SAMPLE_RATE, as_int16, frame_bytes
from edge_assistant.audio.speaker import SpeakerSink
from edge_assistant.audio.wav import AudioFormatError, WavSink, WavSource, read_wav, write_wav

RNG = np.random.default_rng(1234)


def sine(frequency: float, seconds: float, rate: int, amplitude: float = 0.5) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return amplitude * np.sin(2 * np.pi * frequency * t)


def dominant_frequency(samples: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(samples.astype(np.float64) * np.hanning(len(samples))))
    return float(np.argmax(spectrum)) * rate / len(samples)


def rms(samples: np.ndarray) -> float:
    return float(np.sqrt(np.mean(samples.astype(np.float64) ** 2)))


def noise_pcm(seconds: float, rate: int = SAMPLE_RATE) -> np.ndarray:
    # No zeros, so that silence added by a device could never pass for the signal.
    values = RNG.integers(-20000, 20000, int(seconds * rate), dtype=np.int16)
    values[values == 0] = 1
    return values


def wav_bytes(
    signal: np.ndarray,
    rate: int,
    encoding: str,
    width: int,
    channels: int = 1,
    extensible: bool = False,
) -> bytes:
    """A WAV file, written by hand so every layout can be produced. `signal` is float in [-1, 1]."""
    frames = np.repeat(signal[:, None], channels, axis=1)
    if encoding == "float":
        data = frames.astype("<f4" if width == 4 else "<f8").tobytes()
        tag = 3
    elif width == 1:
        data = np.clip(np.rint(frames * 127 + 128), 0, 255).astype(np.uint8).tobytes()
        tag = 1
    elif width == 3:
        ints = np.clip(np.rint(frames * 8388607), -8388608, 8388607).astype("<i4")
        data = ints.view(np.uint8).reshape(-1, 4)[:, :3].tobytes()
        tag = 1
    else:
        dtype, scale = {2: ("<i2", 32767), 4: ("<i4", 2147483647)}[width]
        data = np.rint(frames * scale).astype(dtype).tobytes()
        tag = 1
    block = width * channels
    if extensible:
        guid = struct.pack("<H", tag) + b"\x00\x00\x00\x00\x10\x00\x80\x00\x00\xaa\x00\x38\x9b\x71"
        fmt = (
            struct.pack(
                "<HHIIHHHHI",
                0xFFFE,
                channels,
                rate,
                rate * block,
                block,
                width * 8,
                22,
                width * 8,
                0,
            )
            + guid
        )
    else:
        fmt = struct.pack("<HHIIHH", tag, channels, rate, rate * block, block, width * 8)
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt
    body += b"LIST" + struct.pack("<I", 4) + b"INFO"  # a chunk to skip
    body += b"data" + struct.pack("<I", len(data)) + data
    return b"RIFF" + struct.pack("<I", len(body)) + body


async def take(source, count: int, timeout_s: float = 30.0) -> list[bytes]:
    """`count` frames, then close() and read on: frames() must end by itself, with no more."""
    frames = []

    async def read() -> None:
        async for frame in source.frames():
            frames.append(frame)
            if len(frames) == count:
                source.close()

    try:
        await asyncio.wait_for(read(), timeout_s)
    except asyncio.TimeoutError:
        pytest.fail(f"frames() did not end within {timeout_s} s of close()")
    assert len(frames) == count, "frames() went on after close()"
    return frames


async def drain(source) -> list[bytes]:
    return await drain_iterator(source.frames())


async def drain_iterator(frames) -> list[bytes]:
    return [frame async for frame in frames]


@contextlib.contextmanager
def portaudio_busy(hold_s: float = 5.0):
    """PortAudio's lock held by another thread, as during a device rescan, until the test sets
    the event it gets. A test whose event loop blocks on the lock cannot: the thread then lets
    go by itself after `hold_s`, and the test fails."""
    held, release = threading.Event(), threading.Event()
    released_by_test: list[bool] = []

    def rescan() -> None:
        with PORTAUDIO_LOCK:
            held.set()
            released_by_test.append(release.wait(hold_s))

    thread = threading.Thread(target=rescan)
    thread.start()
    held.wait()
    try:
        yield release
    finally:
        release.set()
        thread.join()
    assert released_by_test == [True], "the event loop blocked while PortAudio was busy"


# ---------------------------------------------------------------------------------------------
# WAV files and conversions


def test_native_wav_passes_through_exactly(tmp_path):
    samples = noise_pcm(0.7)
    write_wav(tmp_path / "a.wav", samples, SAMPLE_RATE)
    assert np.array_equal(read_wav(tmp_path / "a.wav"), samples)


@pytest.mark.parametrize(
    "rate, encoding, width, channels, extensible",
    [
        (8000, "int", 1, 1, False),
        (16000, "int", 2, 2, False),
        (22050, "int", 2, 1, False),
        (44100, "int", 3, 2, False),
        (48000, "int", 4, 1, False),
        (48000, "int", 3, 2, True),
        (32000, "float", 4, 1, False),
        (16000, "float", 8, 1, True),
    ],
)
def test_wav_formats_are_converted_to_16k_mono(
    tmp_path, rate, encoding, width, channels, extensible
):
    path = tmp_path / "in.wav"
    path.write_bytes(wav_bytes(sine(440.0, 1.0, rate), rate, encoding, width, channels, extensible))
    samples = read_wav(path)
    assert samples.dtype == np.int16
    assert abs(len(samples) - SAMPLE_RATE) <= 2
    assert dominant_frequency(samples, SAMPLE_RATE) == pytest.approx(440.0, abs=3.0)
    # A 0.5 sine has an RMS of 0.5 / sqrt(2) of full scale; 8-bit is coarse but not that coarse.
    assert rms(samples[1000:-1000]) == pytest.approx(0.5 / np.sqrt(2) * 32767, rel=0.03)


def test_read_wav_at_another_rate(tmp_path):
    path = tmp_path / "in.wav"
    path.write_bytes(wav_bytes(sine(300.0, 1.0, 16000), 16000, "int", 2))
    samples = read_wav(path, sample_rate=22050)
    assert abs(len(samples) - 22050) <= 2
    assert dominant_frequency(samples, 22050) == pytest.approx(300.0, abs=3.0)


@pytest.mark.parametrize(
    "subtype, name",
    [
        ("ULAW", "mu-law"),
        ("ALAW", "A-law"),
        ("IMA_ADPCM", "IMA ADPCM"),
        ("MS_ADPCM", "Microsoft ADPCM"),
        ("GSM610", "GSM 6.10"),
    ],
)
def test_compressed_wav_is_rejected_naming_the_file_and_the_codec(tmp_path, subtype, name):
    path = tmp_path / "compressed.wav"
    soundfile.write(path, sine(440.0, 0.2, 8000), 8000, subtype=subtype, format="WAV")
    with pytest.raises(AudioFormatError) as caught:
        read_wav(path)
    assert str(path) in str(caught.value)
    assert "compressed" in str(caught.value) and name in str(caught.value)
    with pytest.raises(AudioFormatError):
        WavSource(path)


# Codecs libsndfile cannot read in a WAV (MP3), or a header it cannot make sense of (ADPCM
# without its extra fields): rejected with libsndfile's reason.
@pytest.mark.parametrize("tag, reason", [(2, "ADPCM"), (0x55, "'fmt '")])
def test_undecodable_wav_is_rejected_naming_the_file(tmp_path, tag, reason):
    path = tmp_path / "compressed.wav"
    fmt = struct.pack("<HHIIHH", tag, 1, 8000, 8000, 1, 8)
    body = (
        b"WAVE"
        + b"fmt "
        + struct.pack("<I", len(fmt))
        + fmt
        + b"data"
        + struct.pack("<I", 4)
        + b"\x01\x02\x03\x04"
    )
    path.write_bytes(b"RIFF" + struct.pack("<I", len(body)) + body)
    with pytest.raises(AudioFormatError, match=reason) as caught:
        read_wav(path)
    assert str(path) in str(caught.value)


@pytest.mark.parametrize(
    "content, reason",
    [
        (b"ID3\x03\x00 this is an mp3", "not a WAV file"),
        (b"", "not a WAV file"),
        (b"RIFF\x10\x00\x00\x00WAVEfmt ", "'data'"),
        (b"RIFX\x10\x00\x00\x00WAVE", "'data'"),
    ],
)
def test_non_wav_is_rejected_with_a_clear_message(tmp_path, content, reason):
    path = tmp_path / "thing.wav"
    path.write_bytes(content)
    with pytest.raises(AudioFormatError, match=reason) as caught:
        read_wav(path)
    assert str(path) in str(caught.value)


def test_flac_is_not_taken_for_a_wav(tmp_path):
    path = tmp_path / "speech.wav"
    soundfile.write(path, sine(440.0, 0.2, SAMPLE_RATE), SAMPLE_RATE, format="FLAC")
    with pytest.raises(AudioFormatError, match="not a WAV file.*FLAC") as caught:
        read_wav(path)
    assert str(path) in str(caught.value)


def test_big_endian_wav_is_read(tmp_path):
    samples = noise_pcm(0.3)
    path = tmp_path / "rifx.wav"
    soundfile.write(path, samples, SAMPLE_RATE, subtype="PCM_16", format="WAV", endian="BIG")
    assert path.read_bytes()[:4] == b"RIFX"
    assert np.array_equal(read_wav(path), samples)


def test_missing_wav_is_reported_naming_the_file(tmp_path):
    with pytest.raises(AudioFormatError, match="cannot open") as caught:
        read_wav(tmp_path / "nope.wav")
    assert "nope.wav" in str(caught.value)


def test_truncated_wav_is_read_up_to_where_it_ends_with_a_warning(tmp_path, caplog):
    samples = noise_pcm(1.0)
    path = tmp_path / "cut.wav"
    write_wav(path, samples, SAMPLE_RATE)
    content = path.read_bytes()
    # Cut in the middle of a sample, as an interrupted copy would.
    path.write_bytes(content[: 44 + 2 * 6000 + 1])
    with caplog.at_level(logging.WARNING, logger="edge_assistant.audio.wav"):
        read = read_wav(path)
    assert np.array_equal(read, samples[:6000])
    assert "truncated" in caplog.text and str(path) in caplog.text


def test_silence_only_wav(tmp_path):
    path = tmp_path / "silence.wav"
    path.write_bytes(wav_bytes(np.zeros(44100), 44100, "int", 2, 2))
    samples = read_wav(path)
    assert abs(len(samples) - SAMPLE_RATE) <= 2
    assert not samples.any()


def test_empty_wav(tmp_path):
    path = tmp_path / "empty.wav"
    write_wav(path, np.zeros(0, dtype=np.int16), 22050)
    assert read_wav(path).size == 0
    assert asyncio.run(drain(WavSource(path))) == []


def test_as_int16_accepts_bytes_and_floats():
    assert np.array_equal(as_int16(b"\x01\x00\xff\xff"), [1, -1])
    assert np.array_equal(
        as_int16(np.array([0.0, 0.5, -1.0, 2.0])), [0, 16384, -32768, 32767]
    )
    with pytest.raises(ValueError):
        as_int16(b"\x01")
    with pytest.raises(ValueError):
        as_int16(np.zeros((2, 2), dtype=np.int16))


def test_the_format_module_loads_no_resampler_or_sound_stack():
    # The stage modules import it for SAMPLE_RATE: it must stay that light.
    probe = (
        "import sys, edge_assistant.audio, edge_assistant.audio.pcm; "
        "print(sorted(m for m in ('soxr', 'sounddevice', 'soundfile') if m in sys.modules))"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert loaded == "[]"


# ---------------------------------------------------------------------------------------------
# File sources


@pytest.mark.parametrize("frame_ms", [10, 20, 30])
def test_wav_source_frames_are_fixed_and_exact(tmp_path, frame_ms):
    samples = noise_pcm(0.255)
    path = tmp_path / "a.wav"
    write_wav(path, samples, SAMPLE_RATE)
    frames = asyncio.run(drain(WavSource(path, frame_ms=frame_ms)))
    size = frame_bytes(frame_ms)
    assert all(len(frame) == size for frame in frames)
    joined = np.frombuffer(b"".join(frames), dtype="<i2")
    assert len(frames) == -(-len(samples) * 2 // size)
    # The last partial frame is padded with silence.
    assert np.array_equal(joined[: len(samples)], samples)
    assert not joined[len(samples) :].any()


def test_wav_source_converts_like_read_wav(tmp_path):
    path = tmp_path / "in.wav"
    path.write_bytes(wav_bytes(sine(500.0, 0.5, 44100), 44100, "int", 2, 2))
    frames = asyncio.run(drain(WavSource(path)))
    joined = np.frombuffer(b"".join(frames), dtype="<i2")
    expected = read_wav(path)
    assert np.array_equal(joined[: len(expected)], expected)


def test_wav_source_in_real_time_delivers_the_same_frames_no_faster(tmp_path):
    samples = noise_pcm(0.3)
    path = tmp_path / "a.wav"
    write_wav(path, samples, SAMPLE_RATE)
    started = time.monotonic()
    frames = asyncio.run(drain(WavSource(path, realtime=True)))
    # The last frame is due 0.3 s after the start; a loaded machine may only be later.
    assert time.monotonic() - started >= 0.29
    assert np.array_equal(np.frombuffer(b"".join(frames), dtype="<i2"), samples)


def test_closing_a_source_ends_its_frames(tmp_path):
    path = tmp_path / "a.wav"
    write_wav(path, noise_pcm(1.0), SAMPLE_RATE)
    assert len(asyncio.run(take(WavSource(path), 3))) == 3


# ---------------------------------------------------------------------------------------------
# File sinks


def test_wav_sink_appends_plays_and_resamples(tmp_path):
    path = tmp_path / "out.wav"
    first = noise_pcm(0.2)
    second = as_int16(sine(1000.0, 0.5, 22050))

    async def run():
        sink = WavSink(path, sample_rate=SAMPLE_RATE)
        assert await sink.play(first, SAMPLE_RATE)
        assert await sink.play(second.tobytes(), 22050)
        await sink.aclose()

    asyncio.run(run())
    written = read_wav(path)
    assert np.array_equal(written[: len(first)], first)
    rest = written[len(first) :]
    assert abs(len(rest) - 8000) <= 2
    assert dominant_frequency(rest, SAMPLE_RATE) == pytest.approx(1000.0, abs=3.0)


def test_wav_sink_takes_the_first_rate_and_applies_volume(tmp_path):
    path = tmp_path / "out.wav"
    samples = as_int16(sine(440.0, 0.2, 22050))

    async def run():
        sink = WavSink(path)
        sink.set_volume(0.5)
        await sink.play(samples, 22050)
        sink.close()

    asyncio.run(run())
    assert read_wav(path, sample_rate=22050) == pytest.approx(samples * 0.5, abs=1)


def test_wav_sink_in_real_time_takes_as_long_as_the_audio_and_stops_there(tmp_path):
    path = tmp_path / "out.wav"
    samples = noise_pcm(0.3)

    async def run():
        sink = WavSink(path, realtime=True)
        started = time.monotonic()
        assert await sink.play(samples, SAMPLE_RATE)
        # Its last block is due 0.3 s after the start; a loaded machine may only be later.
        assert time.monotonic() - started >= 0.29
        interrupted = asyncio.create_task(sink.play(noise_pcm(60.0), SAMPLE_RATE))
        await asyncio.sleep(0.1)
        sink.stop()
        assert await asyncio.wait_for(interrupted, 10) is False
        await sink.aclose()

    asyncio.run(run())
    written = read_wav(path)
    assert np.array_equal(written[: len(samples)], samples)
    # Cut off where stop() came, not written ahead of time.
    assert 0 < len(written) - len(samples) < 30 * SAMPLE_RATE


def test_volume_is_checked(tmp_path):
    sink = WavSink(tmp_path / "out.wav")
    with pytest.raises(ValueError):
        sink.set_volume(2.5)
    with pytest.raises(ValueError):
        sink.set_volume(float("nan"))
    sink.set_volume(0.0)
    assert sink.volume == 0.0
    sink.close()


# ---------------------------------------------------------------------------------------------
# Earcons


def test_wake_earcon_rises_and_error_earcon_is_low():
    wake = earcon("wake")
    error = earcon("error")
    for sound in (wake, error):
        assert sound.sample_rate == SAMPLE_RATE and sound.samples.dtype == np.int16
        assert 0.05 * SAMPLE_RATE < len(sound.samples) < 1.0 * SAMPLE_RATE
        assert rms(sound.samples) > 1000
    half = len(wake.samples) // 2
    assert dominant_frequency(wake.samples[:half], SAMPLE_RATE) < dominant_frequency(
        wake.samples[half:], SAMPLE_RATE
    )
    assert dominant_frequency(error.samples, SAMPLE_RATE) < 300


def test_earcon_from_a_configured_wav(tmp_path):
    path = tmp_path / "ding.wav"
    path.write_bytes(wav_bytes(sine(1200.0, 0.3, 48000), 48000, "int", 2))
    sound = earcon("wake", path)
    assert dominant_frequency(sound.samples, sound.sample_rate) == pytest.approx(1200.0, abs=5.0)
    with pytest.raises(ValueError):
        earcon("applause")


def test_format_devices_marks_defaults():
    devices = [
        {
            "index": 0,
            "name": "USB mic",
            "hostapi": "ALSA",
            "max_input_channels": 1,
            "max_output_channels": 0,
            "default_samplerate": 48000.0,
            "default_input": True,
            "default_output": False,
        },
        {
            "index": 3,
            "name": "HDMI",
            "hostapi": "ALSA",
            "max_input_channels": 0,
            "max_output_channels": 2,
            "default_samplerate": 44100.0,
            "default_input": False,
            "default_output": True,
        },
    ]
    lines = format_devices(devices).splitlines()
    assert lines[1].startswith(">") and "USB mic" in lines[1] and "48000" in lines[1]
    assert lines[2].startswith(" <") and "HDMI" in lines[2]
    assert format_devices([]) == "No audio devices found."


# ---------------------------------------------------------------------------------------------
# Real PortAudio devices backed by files


def test_list_devices_shows_the_file_devices(alsa_devices):
    devices = {device["name"]: device for device in list_devices()}
    assert devices["testmic"]["max_input_channels"] > 0
    assert devices["testspk"]["max_output_channels"] > 0
    assert devices["testmic"]["default_samplerate"] > 0
    assert "testmic" in format_devices()


def test_alsa_pcm_names_behind_portaudio_devices():
    assert alsa_pcm_name({"name": "USB PnP Sound Device: Audio (hw:1,0)", "hostapi": "ALSA"}) == "hw:1,0"
    assert alsa_pcm_name({"name": "default", "hostapi": "ALSA"}) == "default"
    assert alsa_pcm_name({"name": "system", "hostapi": "JACK Audio Connection Kit"}) is None


def test_a_vanished_device_is_refused_before_portaudio_is_asked(alsa_devices):
    """PortAudio's ALSA code can take a failed open for a success while another stream's callback
    runs, and abort the whole process: a device ALSA cannot open never reaches it."""
    listed = {device["name"]: device for device in list_devices()}
    asked = []

    def factory(**kwargs):
        asked.append(kwargs)
        raise AssertionError("PortAudio was asked to open a device that is gone")

    alsa_devices.remove_device("testspk")
    alsa_devices.remove_input()
    for name, kind in (("testspk", "output"), ("testmic", "input")):
        with pytest.raises(AudioDeviceMissing, match=name):
            open_stream(factory, listed[name], 16000, kind)
    assert asked == []


@pytest.mark.parametrize("frame_ms", [10, 30])
def test_microphone_passes_samples_through_exactly(alsa_devices, frame_ms):
    samples = noise_pcm(0.6)
    alsa_devices.write_input(samples)
    source = MicrophoneSource(
        alsa_devices.audio_config(input_rate=16000, frame_ms=frame_ms, queue_frames=1000)
    )
    count = len(samples) * 2 // frame_bytes(frame_ms)
    frames = asyncio.run(take(source, count))
    assert all(len(frame) == frame_bytes(frame_ms) for frame in frames)
    captured = np.frombuffer(b"".join(frames), dtype="<i2")
    assert np.array_equal(captured, samples[: len(captured)])
    assert source.device_name == "testmic" and source.device_rate == 16000


@pytest.mark.parametrize("input_rate, device_rate", [(48000, 48000), (0, None)])
def test_microphone_resamples_to_16k(alsa_devices, input_rate, device_rate):
    if device_rate is None:
        # 0 means the device's own default rate.
        device_rate = int(
            next(d for d in list_devices() if d["name"] == "testmic")["default_samplerate"]
        )
    alsa_devices.write_input(as_int16(sine(1000.0, 1.2, device_rate, amplitude=0.4)))
    source = MicrophoneSource(alsa_devices.audio_config(input_rate=input_rate, queue_frames=1000))
    frames = asyncio.run(take(source, 100))
    assert source.device_rate == device_rate
    captured = np.frombuffer(b"".join(frames), dtype="<i2")[1600:]  # past the resampler's start-up
    assert dominant_frequency(captured, SAMPLE_RATE) == pytest.approx(1000.0, abs=5.0)
    assert rms(captured) == pytest.approx(0.4 / np.sqrt(2) * 32767, rel=0.03)


def test_microphone_counts_and_logs_overflows(alsa_devices, caplog):
    samples = noise_pcm(1.0)
    alsa_devices.write_input(samples)
    source = MicrophoneSource(alsa_devices.audio_config(input_rate=16000, queue_frames=10))

    async def slow_consumer():
        frames = []
        async for frame in source.frames():
            frames.append(frame)
            if len(frames) == 12:
                break
            # The file device delivers faster than real time: the queue is full by now.
            await asyncio.sleep(0.05)
        source.close()
        return frames

    with caplog.at_level(logging.WARNING, logger="edge_assistant.audio.microphone"):
        frames = asyncio.run(slow_consumer())
    assert source.dropped_frames > 0
    assert source.overflows >= source.dropped_frames
    # What was kept is the start of the signal, in order: drops take the newest frames.
    captured = np.frombuffer(b"".join(frames[:10]), dtype="<i2")
    assert np.array_equal(captured, samples[: len(captured)])
    assert "frames dropped" in caplog.text


def test_microphone_says_how_much_sound_waits_for_its_consumer(alsa_devices):
    alsa_devices.write_input(noise_pcm(1.0))
    source = MicrophoneSource(alsa_devices.audio_config(input_rate=16000, queue_frames=20))

    async def late_consumer():
        frames = source.frames()
        await anext(frames)
        # The file device delivers faster than real time: the queue is full by now.
        await asyncio.sleep(0.2)
        waiting = source.queued_s
        await frames.aclose()
        return waiting

    assert source.queued_s == 0.0
    assert asyncio.run(late_consumer()) == pytest.approx(20 * 0.010)


def test_microphone_missing_at_start_is_reported_and_reopened(alsa_devices):
    samples = noise_pcm(0.5)
    alsa_devices.remove_input()
    errors: list[Exception] = []

    def on_error(error: Exception) -> None:
        errors.append(error)
        if len(errors) == 2:
            # The device appears while the source keeps retrying.
            alsa_devices.write_input(samples)

    source = MicrophoneSource(
        alsa_devices.audio_config(input_rate=16000, queue_frames=1000, reopen_backoff_max_s=0.2),
        on_error=on_error,
        backoff_initial_s=0.05,
    )
    frames = asyncio.run(asyncio.wait_for(take(source, 10), 30))
    assert len(errors) == 2
    assert all(isinstance(error, AudioDeviceError) and "testmic" in str(error) for error in errors)
    captured = np.frombuffer(b"".join(frames), dtype="<i2")
    assert np.array_equal(captured, samples[: len(captured)])


def test_microphone_stream_that_stops_is_reported_and_reopened(alsa_devices):
    samples = noise_pcm(0.5)
    alsa_devices.write_input(samples)
    first_frame = samples[:160].tobytes()
    errors: list[Exception] = []
    source = MicrophoneSource(
        alsa_devices.audio_config(input_rate=16000, queue_frames=10),
        on_error=errors.append,
        backoff_initial_s=0.05,
    )

    async def run():
        frames = []
        async for frame in source.frames():
            frames.append(frame)
            if len(frames) == 1:
                # PortAudio ends the stream, as when a USB microphone is pulled out.
                source._stream.abort()
            elif len(frames) > 1 and frame == first_frame:
                break  # a reopened device starts its file again
            assert len(frames) < 1000
        source.close()
        return frames

    frames = asyncio.run(asyncio.wait_for(run(), 30))
    assert frames[-1] == first_frame and len(frames) > 1
    assert len(errors) == 1 and "stopped unexpectedly" in str(errors[0])
    # The echo canceller learns from this that its timeline broke.
    assert source.openings == 2


def test_microphone_close_ends_frames_during_backoff(alsa_devices):
    errors: list[Exception] = []
    # A 30 s wait before the next try: only close() can end frames() within the test's limit.
    source = MicrophoneSource(
        alsa_devices.audio_config(input_device="no such microphone", reopen_backoff_max_s=30.0),
        on_error=errors.append,
        backoff_initial_s=30.0,
    )

    async def run():
        task = asyncio.create_task(drain(source))
        while not errors:
            await asyncio.sleep(0.01)
        await source.aclose()
        return await task

    assert asyncio.run(asyncio.wait_for(run(), 10)) == []
    assert "no such microphone" in str(errors[0])


def test_microphone_aclose_stops_at_once_and_waits_for_portaudio_off_the_loop(alsa_devices):
    alsa_devices.write_input(noise_pcm(1.0))
    source = MicrophoneSource(alsa_devices.audio_config(input_rate=16000, queue_frames=1000))

    async def run():
        frames = source.frames()
        await anext(frames)  # the device is open and frames are queued
        with portaudio_busy() as release:
            closing = asyncio.create_task(source.aclose())
            rest = asyncio.create_task(drain_iterator(frames))
            await asyncio.sleep(0.2)
            # Closing the device waits for the lock, in a worker thread.
            assert not closing.done()
            release.set()
            await asyncio.wait_for(closing, 10)
            # The stop took effect at once: none of the queued frames came after it.
            assert await asyncio.wait_for(rest, 10) == []
        assert rescan_devices(), "the microphone is still open"

    asyncio.run(run())


def test_speaker_passes_samples_through_exactly(alsa_devices):
    samples = noise_pcm(0.5)

    async def run():
        sink = SpeakerSink(alsa_devices.audio_config(output_rate=16000, volume=1.0))
        assert await sink.play(samples, SAMPLE_RATE)
        assert await sink.play(samples[:1000].tobytes(), SAMPLE_RATE)
        await sink.aclose()

    asyncio.run(run())
    assert np.array_equal(alsa_devices.output(), np.concatenate([samples, samples[:1000]]))


def test_speaker_volume_and_run_time_change(alsa_devices):
    samples = noise_pcm(0.2)

    async def run():
        sink = SpeakerSink(alsa_devices.audio_config(output_rate=16000, volume=0.5))
        await sink.play(samples, SAMPLE_RATE)
        sink.set_volume(0.25)
        await sink.play(samples, SAMPLE_RATE)
        sink.close()

    asyncio.run(run())
    out = alsa_devices.output().astype(np.int32)
    assert len(out) == 2 * len(samples)
    assert np.abs(out[: len(samples)] - samples * 0.5).max() <= 1
    assert np.abs(out[len(samples) :] - samples * 0.25).max() <= 1


def test_speaker_resamples_to_the_device_rate(alsa_devices):
    device_rate = int(
        next(d for d in list_devices() if d["name"] == "testspk")["default_samplerate"]
    )
    voice_like = as_int16(sine(500.0, 1.0, 22050))

    async def run():
        sink = SpeakerSink(alsa_devices.audio_config(output_rate=0))
        await sink.play(voice_like, 22050)
        sink.close()

    asyncio.run(run())
    out = alsa_devices.output()
    assert abs(len(out) - device_rate) <= 2
    assert dominant_frequency(out, device_rate) == pytest.approx(500.0, abs=3.0)


@pytest.mark.parametrize("how", ["stop", "cancel"])
def test_speaker_stops_mid_play(alsa_devices, how):
    long = noise_pcm(600.0)

    async def run():
        sink = SpeakerSink(alsa_devices.audio_config(output_rate=16000))
        task = asyncio.create_task(sink.play(long, SAMPLE_RATE))
        while not any(path.stat().st_size for path in alsa_devices.output_files()):
            assert not task.done()
            await asyncio.sleep(0.001)
        if how == "stop":
            sink.stop()
            assert await task is False
        else:
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
        # The sink still works after an interruption.
        assert await sink.play(long[:1600], SAMPLE_RATE)
        sink.close()

    asyncio.run(asyncio.wait_for(run(), 60))
    files = alsa_devices.output_files()
    assert len(files) == 2
    first = np.frombuffer(files[0].read_bytes(), dtype="<i2")
    assert 0 < len(first) < len(long)
    assert np.array_equal(first, long[: len(first)])
    assert np.array_equal(np.frombuffer(files[1].read_bytes(), dtype="<i2"), long[:1600])


def test_overlapping_plays_keep_the_speaker_open_until_the_last_ends(alsa_devices):
    idle_close_s = 1.0
    tone = earcon("wake").samples
    sentence = noise_pcm(0.05)

    async def run():
        loop = asyncio.get_running_loop()
        sink = SpeakerSink(alsa_devices.audio_config(output_rate=16000), idle_close_s=idle_close_s)
        earcon_ended: float | None = None
        last_ended = 0.0
        sentences = 0

        async def play_earcon() -> None:
            nonlocal earcon_ended
            await sink.play(tone, SAMPLE_RATE)
            earcon_ended = loop.time()

        async def reply() -> None:
            # Sentences with short gaps, going on well past idle_close_s after the earcon.
            nonlocal sentences, last_ended
            while earcon_ended is None or loop.time() < earcon_ended + 1.5 * idle_close_s:
                assert await sink.play(sentence, SAMPLE_RATE)
                last_ended = loop.time()
                sentences += 1
                await asyncio.sleep(0.05)

        # The earcon is asked for with the reply's first sentence, as when a turn starts.
        await asyncio.gather(play_earcon(), reply())
        # Each opening of the device writes a file: one means it stayed open throughout.
        assert len(alsa_devices.output_files()) == 1, "the speaker was closed during the reply"
        assert not rescan_devices(), "the speaker closed right after the last play"
        while not rescan_devices():
            assert loop.time() - last_ended < idle_close_s + 10, "the speaker never closed"
            await asyncio.sleep(0.02)
        assert loop.time() - last_ended >= idle_close_s * 0.95
        await sink.aclose()
        return sentences

    sentences = asyncio.run(run())
    # Everything played, in the order asked for.
    assert np.array_equal(alsa_devices.output(), np.concatenate([tone] + [sentence] * sentences))


def test_speaker_aclose_waits_for_portaudio_off_the_loop(alsa_devices):
    async def run():
        sink = SpeakerSink(alsa_devices.audio_config(output_rate=16000))
        await sink.play(noise_pcm(0.1), SAMPLE_RATE)  # the stream stays open for a while
        with portaudio_busy() as release:
            closing = asyncio.create_task(sink.aclose())
            await asyncio.sleep(0.2)
            # Closing the stream waits for the lock, in a worker thread.
            assert not closing.done()
            release.set()
            await asyncio.wait_for(closing, 10)
        assert rescan_devices(), "the speaker is still open"

    asyncio.run(run())


def test_missing_speaker_raises_a_device_error(alsa_devices):
    async def run():
        sink = SpeakerSink(alsa_devices.audio_config(output_device="no such speaker"))
        try:
            await sink.play(noise_pcm(0.1), SAMPLE_RATE)
        finally:
            sink.close()

    with pytest.raises(AudioDeviceError, match="no such speaker"):
        asyncio.run(run())


def test_earcon_plays_on_the_speaker(alsa_devices):
    async def run():
        sink = SpeakerSink(alsa_devices.audio_config(output_rate=16000))
        sound = earcon("wake")
        await sink.play(sound.samples, sound.sample_rate)
        sink.close()
        return sound

    sound = asyncio.run(run())
    assert np.array_equal(alsa_devices.output(), sound.samples)
