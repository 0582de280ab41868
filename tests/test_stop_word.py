"""The stop word model (edge_assistant/hearing/stop_word.py) on real speech, and the listener turning it
on only while the assistant speaks."""

from __future__ import annotations

import numpy as np
import pytest

from edge_assistant.audio.pcm import SAMPLE_RATE, frame_bytes
from edge_assistant.bench.clips import espeak_speech, in_room
from edge_assistant.bench.stop import held_out_espeak_voices
from edge_assistant.audio.microphone import MicrophoneSource
from edge_assistant.audio.wav import WavSource, write_wav
from edge_assistant.config import AudioConfig, Config, WakeConfig
from edge_assistant.audio.own_sound import AssistantSound
from edge_assistant.health import Health
from edge_assistant.hearing.listener import Listener
from edge_assistant.assembly import RunOptions, build_sources, own_sound_for
from edge_assistant.hearing.stop_listener import stop_word_wanted
from edge_assistant import models
from edge_assistant.hearing.stop_word import CheckedStopWord, StopWordDetector, StopWordModel, read_as_stop, says_stop
from edge_assistant.hearing.stt import MoonshineTranscriber
from edge_assistant.tts import spoken_samples
from tests.support.own_sound import listener_on
from tests.test_pipeline import listener_models, synthesizer  # noqa: F401  (fixtures)

FRAME = frame_bytes(10)


@pytest.fixture(scope="module")
def model() -> StopWordModel:
    return StopWordModel()


@pytest.fixture(scope="module")
def moonshine():
    reader = MoonshineTranscriber(models.embedded_moonshine_path())
    yield lambda audio: reader.transcribe(np.frombuffer(audio, dtype=np.int16)).text
    reader.close()


def detections(detector: StopWordDetector, samples: np.ndarray) -> list[float]:
    """The moments (seconds into `samples`) at which the detector fired, frame by frame."""
    data = samples.astype("<i2").tobytes()
    return [(at + FRAME) / 2 / SAMPLE_RATE for at in range(0, len(data), FRAME)
            if detector.process(data[at : at + FRAME]) is not None]


def spoken(synthesizer, text: str, lead_s: float = 1.5, tail_s: float = 1.0):
    """`text` in the assistant's voice (without piper's sampling noise, so the same every run),
    as a microphone in a quiet room hears it."""
    return in_room(spoken_samples(synthesizer, text, SAMPLE_RATE), lead_s, tail_s)


def test_the_stop_word_is_on_unless_turned_off():
    assert WakeConfig().stop_word is True


def test_a_microphone_that_hears_the_assistant_whole_gets_no_stop_word(tmp_path):
    class Sink:
        taps: list = []

    def kept(audio: AudioConfig) -> bool:
        config = Config(audio=audio)
        _, own_sound = own_sound_for(MicrophoneSource(audio), Sink(), config)
        return stop_word_wanted(config, own_sound)

    assert not kept(AudioConfig(echo_cancellation=False))
    assert not kept(AudioConfig(echo_cancellation=False, noise_suppression=True))
    assert kept(AudioConfig())
    # A file never hears the speaker.
    write_wav(tmp_path / "in.wav", np.zeros(SAMPLE_RATE, np.int16), SAMPLE_RATE)
    options = RunOptions(input_wav=tmp_path / "in.wav", output_wav=tmp_path / "out.wav")
    source, sink, own_sound = build_sources(Config(), options, Health())
    source.close()
    sink.close()
    assert isinstance(source, WavSource) and stop_word_wanted(Config(), own_sound)


def test_the_model_file_is_shipped_and_sane(model):
    assert model.frames >= 2 and 0.0 < model.cutoff < 1.0
    assert model.hidden.shape[0] == model.frames * 96 == model.mean.size
    windows = np.zeros((3, model.frames * 96), np.float32)
    assert model.probabilities(windows).shape == (3,)


def test_stop_is_heard_just_after_it_ends_in_voices_it_was_not_trained_on(model):
    voices = held_out_espeak_voices()
    heard = 0
    for voice in voices:
        clip = in_room(espeak_speech("Stop.", *voice), lead_s=1.5, tail_s=1.0)
        fired = detections(StopWordDetector(model), clip.samples)
        assert len(fired) <= 1, (voice, fired)
        if fired:
            heard += 1
            end = clip.speech_end / SAMPLE_RATE
            # At an 80 ms step just after the word: the model waits for its end, and no longer.
            assert end - 0.1 <= fired[0] <= end + 0.3, (voice, fired, end)
    # 34 of the 36 when the model was made (bench --only stop measures it).
    assert heard >= 0.9 * len(voices), f"{heard} of {len(voices)} held-out voices heard"


def test_stop_in_the_assistants_voice(model, synthesizer):
    clip = spoken(synthesizer, "Stop.")
    fired = detections(StopWordDetector(model), clip.samples)
    assert len(fired) == 1 and fired[0] <= clip.speech_end / SAMPLE_RATE + 0.3, fired


def test_talk_and_sound_alikes_are_not_stop(model, synthesizer):
    talk = spoken(synthesizer, "The top shelf is in the shop. Turn on the kitchen light, please. Set a timer "
                  "for ten minutes. The bus was late again, so I missed the start of the film. Scott has "
                  "a new job.")
    assert detections(StopWordDetector(model), talk.samples) == []
    # "Stock" ending a sentence in the assistant's voice is heard as "stop": when the assistant
    # says it, the listener is told to hold the stop word, as for "stop" itself.
    assert detections(StopWordDetector(model), spoken(synthesizer, "Scott bought some stock.").samples)
    assert says_stop("Scott bought some stock.")
    fired = [(word, voice) for voice in held_out_espeak_voices()[::4]
             for word in ("Top.", "Shop.", "Spot.", "Start.", "Stock.", "Step.")
             if detections(StopWordDetector(model), in_room(espeak_speech(word, *voice)).samples)]
    # 0 of these 54 when measured; "Stopped." and "Stuff." come closer (docs/performance.md).
    assert len(fired) <= 2, fired


def test_one_detection_per_word_and_a_reset_forgets(model, synthesizer):
    once = spoken(synthesizer, "Stop.", tail_s=1.0).samples
    twice = spoken(synthesizer, "Stop, stop!").samples
    detector = StopWordDetector(model)
    # "Stop, stop!": inside the refractory second, one detection.
    assert len(detections(detector, twice)) == 1
    detector.reset()
    assert len(detections(detector, once)) == 1


def test_a_detection_counts_only_when_the_recognizer_reads_stop(model, synthesizer, moonshine):
    # The model takes "stock" ending a sentence for "stop"; read back, it is "stock".
    stock = spoken(synthesizer, "Scott bought some stock.").samples
    assert detections(StopWordDetector(model), stock)
    checked = CheckedStopWord(StopWordDetector(model), moonshine)
    assert detections(checked, stock) == [] and checked.vetoed == 1
    checked.reset()
    clip = spoken(synthesizer, "Stop.")
    fired = detections(checked, clip.samples)
    assert len(fired) == 1 and fired[0] <= clip.speech_end / SAMPLE_RATE + 0.3, fired
    assert read_as_stop("Stop.") and read_as_stop("stop it") and read_as_stop("Stopped")
    assert not read_as_stop("But some stock.") and not read_as_stop("nonstop")


def test_read_back_still_hears_stop_in_voices_it_was_not_trained_on(model, moonshine):
    voices = held_out_espeak_voices()
    heard = sum(bool(detections(CheckedStopWord(StopWordDetector(model), moonshine),
                                in_room(espeak_speech("Stop.", *voice), lead_s=1.5, tail_s=1.0).samples))
                for voice in voices)
    # 35 of the 36 when the check was added (the model alone: 35).
    assert heard >= 0.9 * len(voices), f"{heard} of {len(voices)} held-out voices heard"


def test_what_the_assistant_says_that_sounds_like_stop():
    assert says_stop("Stir it, then stop.") and says_stop("The bus stopped.") and says_stop("STOP!")
    assert says_stop("Enough of that stuff.") and says_stop("Stock prices rose.")
    assert not says_stop("Nonstop music, on top of the shop.")


def listener_events(listener: Listener, samples: np.ndarray) -> list:
    data = samples.astype("<i2").tobytes()
    events = []
    for at in range(0, len(data), FRAME * 10):
        events += listener.process([data[at + i : at + i + FRAME] for i in range(0, FRAME * 10, FRAME)])
    return events


class Canceller:
    """What the listener reads of an echo canceller: whether it has learnt the room yet (a
    real one needs seconds of the assistant's voice in a room to)."""

    cancels_echo = True
    hears_own_sound = False
    queued_s = 0.0
    settled = True


def test_the_listener_hears_stop_only_while_the_assistant_speaks(synthesizer, listener_models):
    canceller = Canceller()
    own_sound = AssistantSound(capture=canceller, canceller=canceller, hears_speaker=True)
    listener = listener_on(listener_models, Config(), own_sound)
    assert listener.stop_word is not None  # `wake.stop_word` is on by default
    samples = spoken(synthesizer, "Stop.").samples
    listener.begin()
    assert [e for e in listener_events(listener, samples) if e.type == "stop_word"] == []
    listener.set_speaking(True)
    heard = [e for e in listener_events(listener, samples) if e.type == "stop_word"]
    assert len(heard) == 1 and heard[0].data["score"] >= listener.stop_word.detector.cutoff
    # The echo canceller still learning the room: what it leaves may sound like "stop".
    canceller.settled = False
    assert [e for e in listener_events(listener, samples) if e.type == "stop_word"] == []
    canceller.settled = True
    assert len([e for e in listener_events(listener, samples) if e.type == "stop_word"]) == 1
    # A sound-alike the model takes for "stop" is read back by the recognizer: not "stop".
    stock = spoken(synthesizer, "Scott bought some stock.").samples
    assert [e for e in listener_events(listener, stock) if e.type == "stop_word"] == []
    # The assistant saying "stop" itself: held for as long as it says it, and its echo.
    own_sound.hold_stop_word(0.5)
    assert [e for e in listener_events(listener, samples) if e.type == "stop_word"] == []
    listener.set_speaking(False)
    assert [e for e in listener_events(listener, samples) if e.type == "stop_word"] == []
