import pytest

from edge_assistant.timers.ringer import Ringer
from edge_assistant.timers.timer import Timer

PASTA = Timer(id="p", kind="timer", name="pasta", duration_s=60, total_s=60, ends_at=100.0)
EGGS = Timer(id="e", kind="timer", name="eggs", duration_s=60, total_s=60, ends_at=100.0)


def rings_until(ringer: Ringer, end: float, step: float = 0.5, start: float = 0.0) -> list[tuple[float, str, int]]:
    heard = []
    now = start
    while now <= end:
        heard += [(now, timer.name, number) for timer, number in ringer.due(now)]
        now += step
    return heard


def test_rings_repeat_every_interval_until_max_passes():
    ringer = Ringer(interval_s=10, max_s=35)
    assert ringer.start(PASTA, now=0.0)
    assert ringer.next_at() == 10.0
    assert rings_until(ringer, 100) == [(10.0, "pasta", 2), (20.0, "pasta", 3), (30.0, "pasta", 4)]
    assert ringer.ringing == [] and ringer.next_at() is None


def test_a_ring_due_exactly_at_max_does_not_sound():
    ringer = Ringer(interval_s=10, max_s=30)
    ringer.start(PASTA, now=0.0)
    assert [number for _, _, number in rings_until(ringer, 100)] == [2, 3]


def test_stop_ends_one_timer_ringing_and_not_the_others():
    ringer = Ringer(interval_s=10, max_s=300)
    ringer.start(PASTA, now=0.0)
    ringer.start(EGGS, now=5.0)
    assert rings_until(ringer, 15) == [(10.0, "pasta", 2), (15.0, "eggs", 2)]
    assert ringer.stop("p") == [PASTA]
    assert rings_until(ringer, 40, start=15.5) == [(25.0, "eggs", 3), (35.0, "eggs", 4)]
    assert ringer.stop() == [EGGS]
    assert ringer.stop() == [] and ringer.next_at() is None
    assert rings_until(ringer, 400, start=40) == []


def test_a_late_look_rings_once_not_once_per_missed_interval():
    ringer = Ringer(interval_s=10, max_s=300)
    ringer.start(PASTA, now=0.0)
    assert ringer.due(55.0) == [(PASTA, 2)]
    assert ringer.due(55.0) == []
    assert ringer.next_at() == 65.0


def test_ringing_that_would_already_be_over_does_not_start():
    ringer = Ringer(interval_s=10, max_s=70)
    assert not ringer.start(PASTA, now=100.0, finished_at=25.0)
    assert ringer.start(EGGS, now=100.0, finished_at=45.0)
    # Ring 1 is the late one at start; the ringing still ends 70 s after it finished (115).
    assert rings_until(ringer, 200, start=100) == [(110.0, "eggs", 2)]


def test_max_zero_rings_once():
    ringer = Ringer(interval_s=10, max_s=0)
    assert ringer.start(PASTA, now=0.0)
    assert rings_until(ringer, 100) == [] and ringer.ringing == []


def test_bad_settings_are_refused():
    with pytest.raises(ValueError):
        Ringer(interval_s=0, max_s=10)
