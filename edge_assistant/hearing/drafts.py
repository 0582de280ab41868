"""Speculative transcripts (`stt.speculative`): the utterance so far, transcribed at each pause
in a background thread, so that the transcript is often ready when the turn is known to be over;
the first pass's text at a pause judged complete and at the end (`FirstPassText`,
stt.first_pass); and how the current turn's end was found (`TurnTiming`), for the bench and logs."""

from __future__ import annotations

import concurrent.futures
import logging
import time
from dataclasses import dataclass, field
from typing import Callable

from ..config import Config
from .stt import Transcript, Transcriber
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


def words_may_end_turn(text: str, language: str) -> bool:
    """Whether a turn whose words so far are `text` may end: not where they stop mid-phrase
    ("... the capital of"). Only English words are known; in other languages any may."""
    return not (language.startswith("en") and ends_mid_phrase(text))


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
        return words_may_end_turn(draft.future.result().text, self._language)

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


class FirstPassText:
    """stt.first_pass: the fast recognizer's text of an utterance. At a pause that the
    end-of-turn model judges complete it hears what was said so far (about 0.07 s): its words
    say at once whether the turn may end there, where the slow recognizer's draft takes 0.4 to
    0.6 s; if nobody speaks again, that is the utterance's fast text (no second decoding)."""

    def __init__(self, first_pass: Transcriber | None, config: Config) -> None:
        self._first_pass = first_pass  # None: no first pass, nothing heard
        self._language = config.stt.language
        self._complete_from = config.vad.smart_turn_threshold
        self.forget()

    def forget(self) -> None:
        self._position: int | None = None  # where speech ended at the pause heard
        self._transcript: Transcript | None = None

    def hear_pause(self, probability: float | None, position: int) -> None:
        """A pause, judged complete with `probability`; speech ended at `position`
        (Endpointer.speech_end_position)."""
        if self._first_pass is None or probability is None or probability < self._complete_from:
            return
        self.forget()
        try:
            self._transcript = self._first_pass.draft()()
        except Exception:  # without these words, the draft's decide
            log.exception("the first-pass recognizer failed at a pause")
            return
        self._position = position

    def words_allow_end(self, position: int) -> bool | None:
        """Whether the words of the pause where speech ended at `position` let the turn end
        there; None where they do not say (not heard there, or no words)."""
        if position != self._position or self._transcript is None:
            return None
        text = self._transcript.text.strip()
        return words_may_end_turn(text, self._language) if text else None

    def at_end(self, position: int, final_known: bool) -> Transcript | None:
        """The utterance ended, speech last at `position`: its fast text, or None where the
        final text is as soon known (`final_known`) or there are no words. The next utterance
        starts afresh."""
        heard = self._transcript if position == self._position else None
        self.forget()
        if self._first_pass is None:
            return None
        if final_known or heard is not None:
            self._first_pass.start()  # nothing more to decode of this utterance
            if final_known:
                return None
        else:
            try:
                heard = self._first_pass.finish()
            except Exception:  # no fast text only means waiting for the final one
                log.exception("the first-pass recognizer failed")
                return None
        return heard if heard.text.strip() else None  # no words: the final text decides
