"""How a request for the home went: each action (`StepOutcome`, in `action` events) and the
request as a whole (`HomeResult.outcome`: the steps' common outcome or a `HomeOutcome`).

On its own, with nothing else imported, so that answering (respond.py) can tell them apart
without loading the home.
"""

from __future__ import annotations

from enum import StrEnum


class StepOutcome(StrEnum):
    """One action on one entity (home.actions.Executor)."""

    DONE = "done"  # the state topic confirmed it
    SENT = "sent"  # published; the device has no state to confirm it with (a scene, a button)
    NO_ANSWER = "no_answer"  # published; no confirming state within confirm_timeout_s
    OFFLINE = "offline"  # its availability topic says offline, or the broker is unreachable
    NOT_EXPOSED = "not_exposed"  # home.expose does not allow it
    READ_ONLY = "read_only"  # its config cannot be acted on safely (entity.read_only_reason)
    UNSUPPORTED = "unsupported"  # it cannot do that action
    RATE_LIMITED = "rate_limited"  # another command reached it less than min_command_interval_s ago
    NOT_FOUND = "not_found"  # no such entity
    DRY_RUN = "dry_run"  # would have been published


class HomeOutcome(StrEnum):
    """A request as a whole, where no single step outcome says it (home.assistant.HomeControl)."""

    PARTIAL = "partial"  # some steps worked, some did not
    FAILED = "failed"  # no step worked, for different reasons (or there was none)
    ANSWERED = "answered"  # a question (a state, the time) answered, nothing done
    NEEDS_CONFIRMATION = "needs_confirmation"  # a yes/no is asked before acting
    CANCELLED = "cancelled"  # the answer to that question was no
    EXPIRED = "expired"  # the answer came too late
    NOTHING_PENDING = "nothing_pending"  # no question waits: the text is a new request
    ROUTED = "routed"  # an intent for someone else (a timer): `HomeResult.match`
