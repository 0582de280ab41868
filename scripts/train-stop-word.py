#!/usr/bin/env python3
"""Make edge_assistant/data/stop_word.npz, the "stop" detector's weights (edge_assistant/hearing/stop_word.py).

    .venv/bin/python scripts/train-stop-word.py [--out FILE] [--seed N]

Offline; about 45 minutes on 2 cores, most of it computing embeddings (`--features FILE` keeps
them, to try other training settings in minutes). espeak-ng's clips and the training follow
`--seed`; piper's sampling noise makes its clips differ from run to run.
The voices are the ones this machine has: the configured piper voice at several speeds and
sampling noises, and espeak-ng's English dialects with its voice variants, speeds and pitches.
The voices of `bench --only stop` (espeak-ng's Scottish English and variants f5, m7; piper at
other settings: `edge_assistant/bench/stop.py`) are left out, so the bench measures voices the
model never heard.

Positives: the 80 ms steps just after "stop" ends (so it fires at once, not later), the word
said alone, in a quiet room or pink noise, at several levels, sometimes over the assistant's own
voice faintly, and said over a reply of the assistant's as the echo canceller leaves it.
Negatives: everything else, including the steps inside the word (it must wait for the end:
"stopwatch" is not "stop"), sound-alike words ("top", "shop", "stock", "stopped"), everyday talk
and licence text (Apache, MPL) read by every voice, a quiet room and noise, and the assistant's
own talk as the microphone hears it through a simulated room (edge_assistant/bench/room.py), before
and after the echo canceller: what the stop word hears while the assistant speaks.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import re
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from edge_assistant import models  # noqa: E402
from edge_assistant.audio import pcm  # noqa: E402
from edge_assistant.bench.clips import SPEECH_LEVEL, espeak_speech, room_noise  # noqa: E402
from edge_assistant.bench.stop import HELD_OUT_PIPER_STYLES, held_out_espeak_voices  # noqa: E402
from edge_assistant.bench.wake_accuracy import VARIED_TEXT, pink_noise  # noqa: E402
from edge_assistant.config import Config  # noqa: E402
from edge_assistant.hearing.stop_word import EMBEDDING_SIZE, EmbeddingStream  # noqa: E402

FRAMES = 4  # embeddings per window: 0.78 s + 3 x 80 ms of audio
HIDDEN = 64
STEP_BYTES = 1280 * pcm.SAMPLE_WIDTH
RATE = pcm.SAMPLE_RATE

TRAIN_DIALECTS = ("en-us", "en-gb", "en-gb-x-rp", "en-gb-x-gbclan", "en-gb-x-gbcwmd", "en-029", "en-us-nyc")
TRAIN_VARIANTS = ("", "m1", "m2", "m3", "m4", "m5", "m6", "f1", "f2", "f3", "f4", "Alex", "Annie",
                  "belinda", "benjamin", "david", "Andy", "edward", "grandma", "grandpa")
SPEEDS = (120, 150, 180, 210)
PITCHES = (30, 50, 70)
PIPER_STYLES = [(length, noise) for length in (0.7, 0.85, 1.0, 1.15, 1.3) for noise in (0.3, 0.667, 0.9)]

STOP_TEXTS = ("Stop.", "Stop!", "stop")
SOUND_ALIKES = ("Top.", "Shop.", "Stock.", "Spot.", "Step.", "Stuff.", "Stopped.", "Stopping.", "Stopwatch.",
                "Scott.", "Start.", "Store.", "Stomp.", "Sock.", "Stay.", "Pop.", "Hot.", "Not.", "Box.",
                "Don't.", "Okay.", "Yes.", "No.", "Thanks.", "Hey.", "What?", "Stuart.", "Storm.", "Staff.")

# Where the word counts as just said: its end up to this much later (the steps that fire).
POSITIVE_AFTER_S = (0.04, 0.24)
# Around the word, steps are neither (the model may fire a little early or late there).
IGNORE_BEFORE_S = 0.12
IGNORE_AFTER_S = 1.1


def espeak_voices(dialects, variants):
    for dialect in dialects:
        for variant in variants:
            yield dialect + (f"+{variant}" if variant else "")


def speech_span(samples: np.ndarray) -> tuple[int, int]:
    loud = np.flatnonzero(np.abs(samples.astype(np.int32)) > SPEECH_LEVEL)
    return (int(loud[0]), int(loud[-1]) + 1) if loud.size else (0, samples.size)


def level(samples: np.ndarray) -> float:
    start, end = speech_span(samples)
    part = samples[start:end].astype(np.float64)
    return float(np.sqrt(np.mean(part**2))) if part.size else 1.0


class Scene:
    """Speech put in a room: lead and tail, room noise, sometimes pink noise, a level, and
    sometimes a faint other voice underneath (the assistant's echo, cancelled)."""

    def __init__(self, rng: np.random.Generator, underneath: list[np.ndarray]) -> None:
        self.rng = rng
        self.underneath = underneath

    def place(self, speech: np.ndarray, lead_s: float, tail_s: float) -> tuple[np.ndarray, int, int]:
        rng = self.rng
        gain = 10 ** (rng.uniform(-18, 3) / 20) * 3000 / max(level(speech), 1.0)
        lead, tail = int(lead_s * RATE), int(tail_s * RATE)
        signal = np.concatenate([np.zeros(lead), speech.astype(np.float64) * gain, np.zeros(tail)])
        start, end = speech_span(speech)
        signal += room_noise(signal.size, seed=int(rng.integers(1 << 30)))
        speech_level = 3000.0
        if rng.random() < 0.5:
            snr = rng.choice([20.0, 10.0, 5.0])
            signal += pink_noise(signal.size, int(rng.integers(1 << 30))) * gain * level(speech) / 10 ** (snr / 20)
        if self.underneath and rng.random() < 0.3:
            other = self.underneath[int(rng.integers(len(self.underneath)))].astype(np.float64)
            other = np.resize(other, signal.size) * speech_level / max(level(other), 1.0)
            signal += other * 10 ** (rng.uniform(-35, -20) / 20)
        return np.clip(signal, -32768, 32767).astype(np.int16), lead + start, lead + end


def stream_embeddings(samples: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The embeddings of `samples` streamed as a microphone's, with the sample position each
    ends at (past the 8 s of silence openWakeWord starts with)."""
    rows, ends = [], []
    for row, position in EmbeddingStream().feed(samples.astype("<i2").tobytes()):
        rows.append(row)
        ends.append(position // pcm.SAMPLE_WIDTH)
    return np.asarray(rows, dtype=np.float32), np.asarray(ends)


def embed(clips: list[tuple[np.ndarray, tuple[int, int] | None]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The clips one after the other as streams (one per core): embeddings, where each ends,
    and where each "stop" is, all in one sample timeline."""
    halves = [clips[: len(clips) // 2], clips[len(clips) // 2:]]
    streams = [np.concatenate([clip for clip, _ in half]) for half in halves]
    with concurrent.futures.ProcessPoolExecutor(len(streams)) as pool:
        results = list(pool.map(stream_embeddings, streams))
    rows, ends, words, offset = [], [], [], 0
    for half, stream, (half_rows, half_ends) in zip(halves, streams, results):
        rows.append(half_rows)
        ends.append(half_ends + offset)
        position = offset
        for clip, word in half:
            if word is not None:
                words.append((position + word[0], position + word[1]))
            position += clip.size
        # A gap between the streams: no window spans it.
        offset += stream.size + 10 * RATE
    return np.concatenate(rows), np.concatenate(ends), np.asarray(words).reshape(-1, 2)


def windows_and_labels(rows: np.ndarray, ends: np.ndarray, words: np.ndarray, frames: int,
                       positive_after_s: tuple[float, float]) -> tuple[np.ndarray, np.ndarray]:
    """Windows of `frames` embeddings, labelled 1 just after a "stop" (`positive_after_s`
    after its end), 0 away from one; those around one, or spanning two streams, are left out."""
    windows = np.lib.stride_tricks.sliding_window_view(rows, (frames, EMBEDDING_SIZE))[:, 0]
    windows = windows.reshape(len(windows), -1)
    window_ends, window_starts = ends[frames - 1:], ends[: len(ends) - frames + 1]
    labels = np.zeros(len(window_ends), dtype=np.int8)
    for start, end in words:
        after = (window_ends - end) / RATE
        labels[(window_ends > start - IGNORE_BEFORE_S * RATE) & (after < IGNORE_AFTER_S)] = -1
        labels[(after >= positive_after_s[0]) & (after <= positive_after_s[1])] = 1
    contiguous = (window_ends - window_starts) == (frames - 1) * 1280
    keep = contiguous & (window_starts > 0) & (labels >= 0)
    return windows[keep], labels[keep].astype(np.float32)


def piper_speaker(config: Config):
    from edge_assistant.tts import Synthesizer, spoken_samples

    voice = models.resolve_voice(config.tts.voice, config.state_dir())

    def say(text: str, length: float, noise: float) -> np.ndarray:
        synthesizer = Synthesizer(replace(config.tts, length_scale=length, noise_scale=noise), voice)
        try:
            return spoken_samples(synthesizer, text, RATE)
        finally:
            synthesizer.close()

    return say


def everyday_sentences() -> list[str]:
    text = " ".join(VARIED_TEXT.split())
    return [s.strip() + "." for s in text.split(".") if s.strip()]


def other_sentences() -> list[str]:
    """Long, varied talk: the Apache and MPL licences (the bench reads the GPL, not these),
    without the word."""
    text = " ".join(Path(f"/usr/share/common-licenses/{name}").read_text(errors="replace")
                    for name in ("Apache-2.0", "MPL-2.0") if Path(f"/usr/share/common-licenses/{name}").is_file())
    sentences = [" ".join(s.split()) for s in re.split(r"(?<=[.;:])\s+", text)]
    return [s for s in sentences if 20 < len(s) < 200 and "stop" not in s.lower() and re.search("[a-z]", s)]


def echo_clips(rng: np.random.Generator, piper, talk: list[str], stop_voices: list, count: int
               ) -> list[tuple[np.ndarray, tuple[int, int] | None]]:
    """The assistant's talk (piper, in training styles) played into a simulated room and
    cleaned by the default canceller (speexdsp) from its first sample, so that the canceller is
    sometimes still learning the room; every other clip has a person saying "stop" over it."""
    from edge_assistant.bench.room import play_through_room

    clips = []
    for index in range(count):
        length, noise = PIPER_STYLES[int(rng.integers(len(PIPER_STYLES)))]
        played = piper(" ".join(rng.choice(talk, size=3, replace=False)), length, noise)
        played = np.concatenate([played, np.zeros(RATE // 2, dtype=np.int16)])
        word, voice, at_s = None, None, 0.0
        if index % 2:
            voice = stop_voices[int(rng.integers(len(stop_voices)))]()
            voice = (voice.astype(np.float64) * 3000 / max(level(voice), 1.0)
                     * 10 ** (rng.uniform(-12, 3) / 20)).astype(np.int16)
            at_s = float(rng.uniform(0.5, max(0.6, played.size / RATE - 1.5)))
            start, end = speech_span(voice)
            word = (int(at_s * RATE) + start, int(at_s * RATE) + end)
        _, _, cleaned, _ = play_through_room(
            played, delay_s=float(rng.uniform(0.03, 0.3)), voice=voice, voice_at_s=at_s,
            noise_rms=float(rng.choice([3.0, 30.0])), seed=int(rng.integers(1 << 30)))
        clips.append((cleaned, word))
    return clips


def build_dataset(rng: np.random.Generator, quick: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Embeddings of every clip, where each ends, and where each "stop" is."""
    config = Config()
    piper = piper_speaker(config)
    variants = TRAIN_VARIANTS[:4] if quick else TRAIN_VARIANTS
    voices = list(espeak_voices(TRAIN_DIALECTS, variants))
    # The bench measures voices the model never heard.
    assert not set(voices) & {voice for voice, _, _ in held_out_espeak_voices()}
    assert not set(PIPER_STYLES) & set(HELD_OUT_PIPER_STYLES)
    sentences, other = everyday_sentences(), other_sentences()
    underneath = [piper(" ".join(sentences[i:i + 3]), 1.0, 0.667) for i in range(0, 12, 3)]
    scene = Scene(rng, underneath)
    clips: list[tuple[np.ndarray, tuple[int, int] | None]] = []

    def add(speech: np.ndarray, is_stop: bool, short: bool = False) -> None:
        # A word that is not "stop" needs no silence after it to be learnt from.
        lead, tail = (rng.uniform(0.2, 0.5), 0.2) if short else (rng.uniform(0.3, 1.2), 1.3)
        clip, start, end = scene.place(speech, lead, tail)
        clips.append((clip, (start, end) if is_stop else None))

    started = time.monotonic()

    def espeak(text: str, voice: str) -> np.ndarray:
        return espeak_speech(text, voice, int(rng.choice(SPEEDS)), int(rng.choice(PITCHES)))

    for voice in voices:
        for text in STOP_TEXTS:
            add(espeak(text, voice), True)
        # Every sound-alike from every voice: they are what the model must learn to refuse.
        for word in SOUND_ALIKES:
            add(espeak(word, voice), False, short=True)
        add(espeak(" ".join(rng.choice(sentences, size=3, replace=False)), voice), False)
        for _ in range(2):
            add(espeak(" ".join(rng.choice(other, size=3, replace=False)), voice), False)
    print(f"espeak-ng: {len(voices)} voices in {time.monotonic() - started:.0f} s", flush=True)
    for length, noise in PIPER_STYLES[::3] if quick else PIPER_STYLES:
        for text in STOP_TEXTS:
            for _ in range(2):
                add(piper(text, length, noise), True)
        for word in SOUND_ALIKES:
            add(piper(word, length, noise), False, short=True)
        add(piper(" ".join(rng.choice(sentences, size=4, replace=False)), length, noise), False)
    # A long stretch of the assistant's own kind of talk, and a quiet room.
    add(piper(" ".join(sentences), 1.0, 0.667), False)
    stop_voices = [lambda voice=voice: espeak(str(rng.choice(STOP_TEXTS)), voice) for voice in voices]
    stop_voices += [lambda style=style: piper(str(rng.choice(STOP_TEXTS)), *style) for style in PIPER_STYLES]
    clips += echo_clips(rng, piper, sentences + other, stop_voices, 40 if quick else 460)
    clips.append((room_noise(RATE * 30, seed=1), None))
    print(f"all clips in {time.monotonic() - started:.0f} s", flush=True)
    embedded = embed(clips)
    print(f"embeddings in {time.monotonic() - started:.0f} s", flush=True)
    return embedded


def train(windows: np.ndarray, labels: np.ndarray, rng: np.random.Generator, epochs: int, hidden: int) -> dict:
    """One hidden layer, Adam on class-balanced cross-entropy with weight decay."""
    mean = windows.mean(axis=0)
    scale = windows.std(axis=0) + 1e-3
    x = (windows - mean) / scale
    y = labels
    inputs = x.shape[1]
    params = {
        "hidden": rng.normal(0, np.sqrt(2 / inputs), (inputs, hidden)).astype(np.float32),
        "hidden_bias": np.zeros(hidden, np.float32),
        "output": rng.normal(0, np.sqrt(1 / hidden), hidden).astype(np.float32),
        "output_bias": np.zeros((), np.float32),
    }
    moments = {k: (np.zeros_like(v), np.zeros_like(v)) for k, v in params.items()}
    # Half way (geometrically) to balancing the classes: false stops matter as much as misses.
    positive_weight = np.sqrt((y == 0).sum() / max((y == 1).sum(), 1))
    weights = np.where(y == 1, positive_weight, 1.0).astype(np.float32)
    weights /= weights.mean()
    rate, beta1, beta2, decay, batch = 5e-4, 0.9, 0.999, 1e-4, 256
    step = 0
    for epoch in range(epochs):
        order = rng.permutation(len(x))
        for begin in range(0, len(x), batch):
            index = order[begin:begin + batch]
            xb, yb, wb = x[index], y[index], weights[index]
            pre = xb @ params["hidden"] + params["hidden_bias"]
            hidden = np.maximum(pre, 0)
            p = 1 / (1 + np.exp(-(hidden @ params["output"] + params["output_bias"])))
            delta = (p - yb) * wb / len(index)
            grads = {
                "output": hidden.T @ delta + decay * params["output"],
                "output_bias": delta.sum(),
            }
            back = np.outer(delta, params["output"]) * (pre > 0)
            grads["hidden"] = xb.T @ back + decay * params["hidden"]
            grads["hidden_bias"] = back.sum(axis=0)
            step += 1
            for key, grad in grads.items():
                m, v = moments[key]
                m[...] = beta1 * m + (1 - beta1) * grad
                v[...] = beta2 * v + (1 - beta2) * grad**2
                params[key] = (params[key] - rate * (m / (1 - beta1**step)) /
                               (np.sqrt(v / (1 - beta2**step)) + 1e-8)).astype(np.float32)
        if epoch % 10 == 9 or epoch == epochs - 1:
            pre = np.maximum(x @ params["hidden"] + params["hidden_bias"], 0)
            p = 1 / (1 + np.exp(-(pre @ params["output"] + params["output_bias"])))
            print(f"epoch {epoch + 1}: positives >= 0.5: {(p[y == 1] >= 0.5).mean():.3f}, "
                  f"negatives >= 0.5: {(p[y == 0] >= 0.5).sum()} of {(y == 0).sum()}", flush=True)
    return {"mean": mean.astype(np.float32), "scale": scale.astype(np.float32), **params}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "edge_assistant" / "data" / "stop_word.npz")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--hidden", type=int, default=HIDDEN)
    parser.add_argument("--frames", type=int, default=FRAMES, help="embeddings (80 ms apart) per window")
    parser.add_argument("--positive-from", type=float, default=POSITIVE_AFTER_S[0],
                        help="seconds after the word's end where the model should fire")
    parser.add_argument("--positive-to", type=float, default=POSITIVE_AFTER_S[1])
    parser.add_argument("--cutoff", type=float, default=0.8,
                        help="the model's cutoff: 0.8 makes a third of the false stops in talk "
                        "that 0.7 does, for 5 of 72 more misses over the assistant's voice")
    parser.add_argument("--consecutive", type=int, default=2,
                        help="steps in a row at or above the cutoff for a detection: one more step "
                        "(80 ms) to wait, and a third of the false stops in talk")
    parser.add_argument("--quick", action="store_true", help="a few voices: to try the script")
    parser.add_argument("--features", type=Path, help="keep the training windows in this file, and "
                        "train from it when it exists (to try training settings)")
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    if args.features and args.features.is_file():
        with np.load(args.features) as cached:
            rows, ends, words = cached["rows"], cached["ends"], cached["words"]
    else:
        rows, ends, words = build_dataset(rng, args.quick)
        if args.features:
            np.savez(args.features, rows=rows, ends=ends, words=words)
    windows, labels = windows_and_labels(rows, ends, words, args.frames, (args.positive_from, args.positive_to))
    print(f"{int(labels.sum())} positive and {int((labels == 0).sum())} negative windows", flush=True)
    params = train(windows, labels, rng, args.epochs, args.hidden)
    np.savez_compressed(args.out, frames=np.int32(args.frames), cutoff=np.float32(args.cutoff),
                        consecutive=np.int32(args.consecutive), **params)
    print(f"wrote {args.out} ({args.out.stat().st_size // 1024} KiB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
