"""The assistant's own sound (edge_assistant/audio/own_sound.py): the one object that says which
of what the microphone hears is the assistant itself.

A simulated room, driven 10 ms at a time on a manual clock (no waiting): the speaker's sound
comes back into the microphone, the real echo canceller cleans it in its worker thread, and
its own-voice ear (the wake word model) hears what was played.
"""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from edge_assistant.audio.echo import BLOCK, CaptureClock, CaptureProcessor, EchoCancellingSource, PlaybackReference
from edge_assistant.audio.own_sound import OWN_STOP_TAIL_S, AssistantSound
from edge_assistant.audio.pcm import SAMPLE_RATE
from edge_assistant.bench.room import ManualClock, SimulatedRoom
from edge_assistant.config import AudioConfig, WakeConfig
from edge_assistant.hearing.wake import OwnVoiceDetector


class _RoomFrames:
    """The room's microphone, a frame each 10 ms of the manual clock, while the speaker plays
    `played` from the start (each block handed to the room and to the canceller's reference)."""

    frame_ms = 10
    queued_s = 0.0

    def __init__(self, room: SimulatedRoom, clock: ManualClock, reference: PlaybackReference,
                 played: np.ndarray, steps: int) -> None:
        self.room, self.clock, self.reference = room, clock, reference
        self.played, self.steps = played, steps

    async def frames(self):
        for step in range(self.steps):
            index = step * BLOCK
            self.clock.time = self.room.origin + index / SAMPLE_RATE
            block = self.played[index : index + BLOCK]
            if block.size:
                self.room.speaker_tap(block, SAMPLE_RATE)
                self.reference.tap(block, SAMPLE_RATE)
            self.clock.time = self.room.origin + (index + BLOCK) / SAMPLE_RATE
            yield self.room.capture(index, BLOCK).astype("<i2").tobytes()

    async def aclose(self) -> None:
        pass


def heard_in_room(played: np.ndarray, said: np.ndarray | None = None):
    """What the own sound says at each frame while the speaker plays `played` and a person says
    `said`, from the start: its `hears_own_sound`, `said_wake_word()` and whether it knows
    something audible was played over that frame's samples; the own sound; the room."""
    clock = ManualClock()
    length = max(played.size, 0 if said is None else said.size)
    room = SimulatedRoom(0.05, noise_rms=3.0, duration_s=length / SAMPLE_RATE + 2.0, now=clock)
    if said is not None:
        room.say(said, 0)
    capture = CaptureClock()
    reference = PlaybackReference(capture, now=clock)
    own_voice = OwnVoiceDetector(WakeConfig(), now=clock)
    processor = CaptureProcessor(AudioConfig(), reference, hear_played=own_voice.hear)
    source = EchoCancellingSource(_RoomFrames(room, clock, reference, played, length // BLOCK),
                                  processor, capture, now=clock)
    own = AssistantSound(capture=source, canceller=source, own_voice=own_voice, hears_speaker=True, now=clock)

    async def listen() -> list[tuple[bool, bool, bool]]:
        heard = []
        async for _ in source.frames():
            over_frame = own.played(len(heard) * BLOCK, BLOCK)
            heard.append((own.hears_own_sound, own.said_wake_word(), bool(np.abs(over_frame).max() >= 100)))
        return heard

    return asyncio.run(listen()), own, room


def test_what_the_speaker_plays_is_the_assistants_own_and_what_a_person_says_is_not(speech):
    words = speech("Hey Jarvis, that is my name.", lead_s=0.5, tail_s=1.0)
    assert words.size > 2 * SAMPLE_RATE

    frames, own, room = heard_in_room(played=words)
    assert own.cancels_echo and own.hears_speaker
    sounding = slice(int(0.6 * SAMPLE_RATE) // BLOCK, int(1.5 * SAMPLE_RATE) // BLOCK)
    assert all(own_sound for own_sound, _, _ in frames[sounding]), "the speaker's sound was not its own"
    assert any(said for _, said, _ in frames), "the assistant's own wake word was taken for a person's"
    # What played is known on the microphone's timeline (from the second block: the clock
    # starts with the first frame), and when each sample was captured.
    audible = [bool(np.abs(words[at : at + BLOCK]).max() >= 100) for at in range(0, words.size, BLOCK)]
    assert [played for _, _, played in frames][1:] == audible[1 : len(frames)]
    assert own.captured_at(SAMPLE_RATE) == pytest.approx(room.origin + 1.0, abs=0.002)

    frames, own, _ = heard_in_room(played=np.zeros(0, np.int16), said=words)
    assert not any(own_sound for own_sound, _, _ in frames), "a person's voice was taken for the assistant's"
    assert not any(said for _, said, _ in frames), "a person's wake word was taken for the assistant's"
    assert not any(played for _, _, played in frames)


def test_the_stop_word_is_held_while_the_assistant_says_stop_and_its_echo_lasts():
    clock = ManualClock(100.0)
    own = AssistantSound(now=clock)
    assert not own.stop_word_held(100.0)
    own.hold_stop_word(0.8)  # about to say "Stop." for 0.8 s
    clock.time = 100.9
    own.hold_stop_word(0.0)  # said: the device's buffer and the room's echo come after
    assert own.stop_word_held(100.5)  # while it said it
    assert own.stop_word_held(100.9 + OWN_STOP_TAIL_S - 0.01)  # its echo
    # A person's "stop" captured after that is theirs.
    assert not own.stop_word_held(100.9 + OWN_STOP_TAIL_S)


def test_a_microphone_without_a_canceller_hears_the_assistant_whole():
    whole = AssistantSound(hears_speaker=True)
    assert whole.hears_speaker and not whole.cancels_echo
    # Nothing to wait for, and nothing known of what played or of its own wake word.
    assert whole.settled and not whole.said_wake_word() and not whole.hears_own_sound
    assert not whole.played(0, 160).any() and whole.queued_s == 0.0
    # A file never hears the speaker.
    assert not AssistantSound().hears_speaker


def test_the_daemon_builds_the_microphone_and_its_own_sound_together(tmp_path):
    from edge_assistant.audio.echo import EchoCancellingSource
    from edge_assistant.config import Config, ServiceConfig
    from edge_assistant.health import Health
    from edge_assistant.assembly import RunOptions, build_sources

    config = Config(service=ServiceConfig(state_dir=str(tmp_path)))
    source, sink, own = build_sources(config, RunOptions(output_wav=tmp_path / "out.wav"), Health())
    try:
        assert isinstance(source, EchoCancellingSource) and sink.taps  # the reference hears the sink
        assert own.cancels_echo and own.hears_speaker and not own.settled  # nothing played yet
        assert own.queued_s == source.queued_s == 0.0
    finally:
        source.close()
        sink.close()
