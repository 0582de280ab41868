"""Speculative transcripts (`stt.speculative`): the utterance so far, transcribed at each pause
in a background thread, so that the transcript is often ready when the turn is known to be over;
and how the current turn's end was found (`TurnTiming`), for the bench and logs."""

from __future__ import annotations

import concurrent.futures
import logging
import time
from dataclasses import dataclass, field
from typing import Callable

from .stt import Transcriber
from .turn_end import TurnEndModel, ends_mid_phrase

log = logging.getLogger(__name__)


@dataclass
class Draft:
    """A transcript of the utterance so far, started at a pause (times: time.monotonic())."""

    # Endpointer.speech_end_position when it started: it is final if speech ended there.
    speech_end: int
    started_at: float
    future: concurrent.futures.Future | None = None
    finished_at: float | None = None
    final: bool = False  # it became the transcript


@dataclass
class TurnTiming:
    """How the current (or last) turn's end was found, for the bench and logs."""

    # Each end-of-turn model call: (start, end, probability), in time.monotonic() seconds.
    turn_end_calls: list[tuple[float, float, float]] = field(default_factory=list)
    drafts: list[Draft] = field(default_factory=list)
    # stt.first_pass: whether the final text had the fast text's words (None: no fast text).
    first_pass_agreed: bool | None = None


class TimedJudge:
    """The end-of-turn model, with each call noted in the turn's timing."""

    def __init__(self, model: TurnEndModel, timing: Callable[[], TurnTiming]) -> None:
        self.model = model
        self._timing = timing

    def probability(self, samples) -> float:
        began = time.monotonic()
        probability = self.model.probability(samples)
        self._timing().turn_end_calls.append((began, time.monotonic(), probability))
        return probability


class Drafter:
    """One speculative transcript at a time, off the listening thread."""

    def __init__(self, transcriber: Transcriber, language: str, timing: Callable[[], TurnTiming]) -> None:
        self._transcriber = transcriber
        self._language = language
        self._timing = timing
        self._executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="stt-draft")
        self._draft: Draft | None = None

    def start(self, speech_end: int) -> None:
        """A pause where speech ended at `speech_end`: transcribe the utterance so far in the
        background."""
        if self._draft is not None:
            # Still queued behind an older one (a slow device): this one covers more speech.
            self._draft.future.cancel()
        try:
            work = self._transcriber.draft()
        except Exception:  # no draft only means no early transcript
            log.exception("speech recognition failed at a pause")
            self._draft = None
            return
        draft = Draft(speech_end, time.monotonic())

        def run():
            try:
                return work()
            finally:
                draft.finished_at = time.monotonic()

        draft.future = self._executor.submit(run)
        self._timing().drafts.append(draft)
        self._draft = draft

    def words_allow_end(self) -> bool | None:
        """Whether the words of this pause let the end-of-turn model end the turn; None while
        they are being transcribed."""
        draft = self._draft
        if draft is None:
            return True
        if not draft.future.done():
            return None
        if draft.future.exception() is not None:
            return True
        if not self._language.startswith("en"):
            return True  # only English words are known
        return not ends_mid_phrase(draft.future.result().text)

    def take_final(self, speech_end: int) -> Draft | None:
        """The draft of the last pause if speech ended there (then it is the transcript)."""
        draft, self._draft = self._draft, None
        if draft is None or draft.speech_end != speech_end:
            return None
        return draft

    def forget(self) -> None:
        """A new turn: the last one's draft is no longer about it."""
        self._draft = None

    def close(self) -> None:
        """Wait for a draft still running."""
        self._executor.shutdown(wait=True)
