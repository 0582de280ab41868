from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from edge_assistant.timers.replies import (
    clock_phrase,
    duration_phrase,
    finished_announcement,
    missed_announcement,
    timer_label,
)
from edge_assistant.timers.timer import Timer

BERLIN = ZoneInfo("Europe/Berlin")
NOW = datetime(2027, 1, 15, 9, 0, tzinfo=BERLIN).timestamp()  # a Friday


@pytest.mark.parametrize("seconds, spoken, adjective", [
    (600, "10 minutes", "10 minute"),
    (61, "1 minute and 1 second", "1 minute 1 second"),
    (5430, "1 hour, 30 minutes and 30 seconds", "1 hour 30 minute 30 second"),
    (0.4, "0 seconds", "0 second"),
])
def test_durations_read_as_spoken(seconds, spoken, adjective):
    assert duration_phrase(seconds) == spoken
    assert duration_phrase(seconds, adjective=True) == adjective


@pytest.mark.parametrize("local, spoken", [
    (datetime(2027, 1, 15, 19, 5), "7:05 PM"),
    (datetime(2027, 1, 16, 0, 0), "12 AM tomorrow"),
    (datetime(2027, 1, 16, 12, 0), "12 PM tomorrow"),
    (datetime(2027, 1, 18, 6, 30), "6:30 AM on Monday"),
])
def test_clock_times_read_as_spoken(local, spoken):
    assert clock_phrase(local.replace(tzinfo=BERLIN).timestamp(), NOW, BERLIN) == spoken


def timer(**changes) -> Timer:
    fields = dict(id="t", kind="timer", name=None, duration_s=600.0, total_s=600.0, ends_at=NOW)
    return Timer(**(fields | changes))


def test_announcements_name_the_timer_or_alarm():
    assert timer_label(timer(name="pasta")) == "pasta timer"
    assert timer_label(timer(name="egg timer")) == "egg timer"
    assert finished_announcement(timer()) == "Your 10 minute timer is done."
    assert finished_announcement(timer(name="pasta")) == "Your pasta timer is done."
    assert missed_announcement(timer(name="pasta")) == "Your pasta timer finished while I was off."
    alarm = timer(kind="alarm", duration_s=3600.0, total_s=3600.0)
    assert finished_announcement(alarm, BERLIN) == "It's 9 AM. This is your alarm."
    assert missed_announcement(alarm, BERLIN) == "Your 9 AM alarm went off while I was off."
    assert finished_announcement(timer(kind="alarm", name="work"), BERLIN) == "Your work alarm is ringing."
