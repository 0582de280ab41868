import asyncio
import json
import logging
import threading

import pytest

from edge_assistant import config as config_module
from edge_assistant.config import ConfigError, TimersConfig
from edge_assistant.timers.scheduler import (
    TIMER_EVENT_TYPES,
    InvalidTimerError,
    TimerLimitError,
    TimerNotFoundError,
    TimerScheduler,
)
from edge_assistant.timers.store import STATE_FILE, TimerStore
from tests.support.fake_clock import FakeClock, settle

CONFIG = TimersConfig(max_timers=50, ring_interval_s=10.0, ring_max_s=60.0)


class Recorder:
    """Everything a scheduler reports, in order."""

    def __init__(self) -> None:
        self.events: list[tuple[str, dict]] = []
        self.finished: list[str | None] = []
        self.rings: list[tuple[str | None, int]] = []

    def scheduler(self, state_dir, clock, config=CONFIG, store=None) -> TimerScheduler:
        return TimerScheduler(
            store or TimerStore.in_state_dir(state_dir), config, clock=clock,
            on_event=lambda event: self.events.append((event.type, event.data)),
            on_ring=self._ring,
        )

    def _ring(self, timer, number: int) -> None:
        self.rings.append((timer.name, number))
        if number == 1:
            self.finished.append(timer.name)

    def types(self) -> list[str]:
        return [kind for kind, _ in self.events]


def saved(state_dir) -> list[dict]:
    return json.loads((state_dir / STATE_FILE).read_text())["timers"]


def test_timers_finish_at_their_time_in_shortened_time(tmp_path):
    async def scenario():
        clock, seen = FakeClock(), Recorder()
        async with seen.scheduler(tmp_path, clock) as timers:
            pasta = timers.start_timer(8 * 60, "pasta")
            timers.start_timer(10 * 60)
            eggs = timers.start_timer(5 * 60, " Eggs ")
            assert eggs.name == "Eggs"
            assert [t.name for t in timers.timers()] == ["Eggs", "pasta", None]
            await clock.advance(299)
            assert seen.finished == []
            assert timers.get(pasta.id).remaining_s(clock.time()) == pytest.approx(181)
            await clock.advance(1)
            assert seen.finished == ["Eggs"]
            await clock.advance(180)
            assert seen.finished == ["Eggs", "pasta"]
            await clock.advance(120)
            assert seen.finished == ["Eggs", "pasta", None]
            assert timers.timers() == []
        assert seen.types() == ["timer_started"] * 3 + ["timer_finished"] * 3
        started = seen.events[0][1]
        assert started == {"id": pasta.id, "name": "pasta", "kind": "timer", "total_s": 480.0,
                           "remaining_s": 480.0, "ends_at": "2027-01-15T08:08:00+00:00",
                           "paused": False}
        assert seen.events[4][1]["remaining_s"] == 0 and seen.events[4][1]["missed"] is False
        assert set(seen.types()) <= set(TIMER_EVENT_TYPES)

    asyncio.run(scenario())


def test_changes_are_saved_and_reported(tmp_path):
    async def scenario():
        clock, seen = FakeClock(), Recorder()
        async with seen.scheduler(tmp_path, clock) as timers:
            pasta = timers.start_timer(600, "pasta")
            await clock.advance(100)
            timers.add_time(pasta.id, 120)
            assert timers.get(pasta.id).remaining_s(clock.time()) == pytest.approx(620)
            assert timers.get(pasta.id).total_s == 720 and timers.get(pasta.id).duration_s == 600
            timers.pause(pasta.id)
            await clock.advance(1000)
            assert seen.finished == []
            await timers.flush()
            assert saved(tmp_path)[0]["paused_remaining_s"] == pytest.approx(620)
            timers.resume(pasta.id)
            timers.add_time(pasta.id, -20)
            await clock.advance(599)
            assert seen.finished == []
            await clock.advance(1)
            assert seen.finished == ["pasta"]
            eggs = timers.start_timer(300, "eggs")
            timers.cancel(eggs.id)
            with pytest.raises(TimerNotFoundError):
                timers.cancel(eggs.id)
            await timers.flush()
            assert saved(tmp_path) == []
        assert seen.types() == ["timer_started"] + ["timer_updated"] * 4 + [
            "timer_finished", "timer_started", "timer_cancelled"]
        paused = seen.events[2][1]
        assert paused["paused"] is True and paused["ends_at"] is None

    asyncio.run(scenario())


def test_taking_off_more_than_is_left_finishes_the_timer_now(tmp_path):
    async def scenario():
        clock, seen = FakeClock(), Recorder()
        async with seen.scheduler(tmp_path, clock) as timers:
            pasta = timers.start_timer(300, "pasta")
            timers.add_time(pasta.id, -600)
            await settle()
            assert seen.finished == ["pasta"]
            eggs = timers.start_timer(300, "eggs")
            timers.pause(eggs.id)
            timers.add_time(eggs.id, -300)
            await settle()
            assert seen.finished == ["pasta", "eggs"]

    asyncio.run(scenario())


def test_restart_in_the_middle_of_a_timer_goes_on_with_the_right_remaining_time(tmp_path):
    async def scenario():
        clock, seen = FakeClock(), Recorder()
        async with seen.scheduler(tmp_path, clock) as timers:
            pasta = timers.start_timer(600, "pasta")
            paused = timers.start_timer(900, "bread")
            timers.pause(paused.id)
            alarm = timers.set_alarm(clock.time() + 3600)
            await clock.advance(200)
        await clock.advance(100)  # the assistant is off for 100 s
        again = Recorder()
        async with again.scheduler(tmp_path, clock) as timers:
            assert [t.id for t in timers.timers()] == [pasta.id, alarm.id, paused.id]
            assert timers.get(pasta.id).remaining_s(clock.time()) == pytest.approx(300)
            assert timers.get(paused.id).remaining_s(clock.time()) == pytest.approx(900)
            await clock.advance(299)
            assert again.finished == []
            await clock.advance(1)
            assert again.finished == ["pasta"]
            await clock.advance(3300)
            assert again.finished == ["pasta", None]
            assert [t.id for t in timers.timers()] == [paused.id]

    asyncio.run(scenario())


def test_a_timer_that_finished_while_off_is_reported_missed(tmp_path):
    async def scenario():
        clock, seen = FakeClock(), Recorder()
        async with seen.scheduler(tmp_path, clock) as timers:
            pasta = timers.start_timer(60, "pasta")
            timers.start_timer(3600, "roast")
        await clock.advance(600)  # off for 10 minutes, far past ring_max_s
        again = Recorder()
        timers = again.scheduler(tmp_path, clock)
        missed = await timers.start()
        try:
            assert [t.id for t in missed] == [pasta.id]
            assert again.events == [("timer_finished", {
                "id": pasta.id, "name": "pasta", "kind": "timer", "total_s": 60.0,
                "remaining_s": 0.0, "ends_at": "2027-01-15T08:01:00+00:00", "paused": False,
                "missed": True})]
            assert again.finished == [] and timers.ringing == []
            assert [t.name for t in timers.timers()] == ["roast"]
            await timers.flush()
            assert [t["name"] for t in saved(tmp_path)] == ["roast"]
        finally:
            await timers.close()

    asyncio.run(scenario())


def test_the_first_ring_sounds_when_the_timer_ends_at_the_default_interval(tmp_path):
    # The default interval (10 s): a first ring left to the repeats would come 10 s late.
    async def scenario():
        clock, seen = FakeClock(), Recorder()
        async with seen.scheduler(tmp_path, clock, config=TimersConfig()) as timers:
            timers.start_timer(60, "pasta")
            await clock.advance(59)
            assert seen.rings == []
            await clock.advance(1)
            assert seen.rings == [("pasta", 1)]
            await clock.advance(9)
            assert seen.rings == [("pasta", 1)]
            await clock.advance(1)
            assert seen.rings == [("pasta", 1), ("pasta", 2)]

    asyncio.run(scenario())


def test_a_timer_restored_late_rings_at_once_at_the_default_interval(tmp_path):
    async def scenario():
        clock = FakeClock()
        async with Recorder().scheduler(tmp_path, clock, config=TimersConfig()) as timers:
            timers.start_timer(60, "pasta")
        await clock.advance(63)  # it ended while the assistant restarted
        again = Recorder()
        async with again.scheduler(tmp_path, clock, config=TimersConfig()):
            assert again.rings == [("pasta", 1)]
            await clock.advance(10)
            assert again.rings == [("pasta", 1), ("pasta", 2)]

    asyncio.run(scenario())


def test_a_timer_that_finished_during_a_quick_restart_rings_late(tmp_path):
    async def scenario():
        clock, seen = FakeClock(), Recorder()
        async with seen.scheduler(tmp_path, clock) as timers:
            timers.start_timer(60, "pasta")
        await clock.advance(75)  # finished 15 s before the restart; rings until 60 s after it
        again = Recorder()
        async with again.scheduler(tmp_path, clock) as timers:
            assert again.finished == ["pasta"] and [t.name for t in timers.ringing] == ["pasta"]
            await clock.advance(100)
            assert again.rings == [("pasta", n) for n in range(1, 6)]

    asyncio.run(scenario())


def test_a_corrupt_state_file_starts_empty_with_a_warning(tmp_path, caplog):
    async def scenario():
        (tmp_path / STATE_FILE).write_text('{"version": 1, "timers": [{"id": ')
        async with Recorder().scheduler(tmp_path, FakeClock()) as timers:
            assert timers.timers() == []
            timers.start_timer(60)
        assert len(saved(tmp_path)) == 1

    with caplog.at_level(logging.WARNING):
        asyncio.run(scenario())
    assert "corrupt" in caplog.text
    assert len(list(tmp_path.glob(f"{STATE_FILE}.corrupt-*"))) == 1


class CountingStore(TimerStore):
    def __init__(self, path) -> None:
        super().__init__(path)
        self.saves = 0

    def save(self, timers) -> None:
        self.saves += 1
        super().save(timers)


def test_a_thousand_starts_are_bounded_by_max_timers(tmp_path):
    async def scenario():
        store = CountingStore(tmp_path / STATE_FILE)
        async with Recorder().scheduler(tmp_path, FakeClock(), store=store) as timers:
            started, refused = [], []
            for number in range(1000):
                try:
                    started.append(timers.start_timer(60 + number, f"timer {number}"))
                except TimerLimitError as error:
                    refused.append(error)
            assert len(started) == 50 and len(refused) == 950
            assert refused[0].code == "timer_limit" and "timers.max_timers = 50" in str(refused[0])
            alarm_refused = pytest.raises(TimerLimitError, timers.set_alarm, timers.now() + 60)
            assert alarm_refused.value.code == "timer_limit"
            timers.cancel(started[0].id)
            timers.start_timer(10)
            await timers.flush()
            assert len(saved(tmp_path)) == 50
            # Writes are coalesced: a burst of changes is not a write each.
            assert store.saves <= 5

    asyncio.run(scenario())


class BlockedStore(TimerStore):
    """A disk that takes as long as the test wants to write."""

    def __init__(self, path) -> None:
        super().__init__(path)
        self.release = threading.Event()

    def save(self, timers) -> None:
        assert self.release.wait(10)
        super().save(timers)


def test_a_slow_disk_does_not_block_the_loop(tmp_path):
    async def scenario():
        store = BlockedStore(tmp_path / STATE_FILE)
        clock, seen = FakeClock(), Recorder()
        async with seen.scheduler(tmp_path, clock, store=store) as timers:
            timers.start_timer(30, "tea")
            await clock.advance(30)  # the loop runs while the write waits for the disk
            assert seen.finished == ["tea"]
            store.release.set()
            await timers.flush()
        assert saved(tmp_path) == []

    asyncio.run(scenario())


def test_ringing_repeats_until_stopped_or_ring_max(tmp_path):
    async def scenario():
        clock, seen = FakeClock(), Recorder()
        async with seen.scheduler(tmp_path, clock) as timers:
            pasta = timers.start_timer(60, "pasta")
            timers.start_timer(65, "eggs")
            await clock.advance(60)
            assert seen.finished == ["pasta"]
            await clock.advance(25)
            assert seen.rings == [("pasta", 1), ("eggs", 1), ("pasta", 2), ("eggs", 2), ("pasta", 3), ("eggs", 3)]
            assert timers.stop_ringing(pasta.id) == [pasta]
            await clock.advance(200)
            # eggs: rang at 65, then 75 ... 115; 125 is 60 s (ring_max_s) after it finished.
            assert seen.rings[6:] == [("eggs", n) for n in range(4, 7)]
            assert timers.ringing == []

    asyncio.run(scenario())


def test_alarms_follow_the_wall_clock_and_timers_keep_their_duration(tmp_path):
    async def scenario():
        clock, seen = FakeClock(), Recorder()
        async with seen.scheduler(tmp_path, clock) as timers:
            timer = timers.start_timer(600, "pasta")
            timers.set_alarm(clock.time() + 3600, "meeting")
            await clock.advance(100)
            clock.set_wall(+1800)  # NTP sets the clock half an hour forward
            await clock.advance(40)  # the loop looks at least every 30 s
            assert seen.finished == []
            updated = timers.get(timer.id)
            assert updated.remaining_s(clock.time()) == pytest.approx(460)
            assert seen.events[-1][0] == "timer_updated"
            # A timer started right after a jump the loop has not seen yet runs its full time.
            clock.set_wall(-600)
            tea = timers.start_timer(300, "tea")
            await clock.advance(299)
            assert timers.get(tea.id).remaining_s(clock.time()) == pytest.approx(1)
            await clock.advance(1)
            assert seen.finished == ["tea"]
            await clock.advance(159)
            assert seen.finished == ["tea"]
            await clock.advance(1)
            assert seen.finished == ["tea", "pasta"]
            await clock.advance(1799)  # the wall clock was set back 600 s
            assert seen.finished == ["tea", "pasta"]
            await clock.advance(1)  # 3600 s of wall time after the alarm was set
            assert seen.finished == ["tea", "pasta", "meeting"]

    asyncio.run(scenario())


def test_invalid_requests_are_refused_with_a_code(tmp_path):
    async def scenario():
        clock = FakeClock()
        async with Recorder().scheduler(tmp_path, clock) as timers:
            for seconds in (0, -5, float("nan"), float("inf"), True, "60", 8 * 24 * 3600):
                with pytest.raises(InvalidTimerError) as refused:
                    timers.start_timer(seconds)
                assert refused.value.code == "timer_invalid"
            with pytest.raises(InvalidTimerError):
                timers.start_timer(60, "x" * 101)
            with pytest.raises(InvalidTimerError):
                timers.set_alarm(clock.time() - 1)
            alarm = timers.set_alarm(clock.time() + 60)
            with pytest.raises(InvalidTimerError):
                timers.pause(alarm.id)
            with pytest.raises(TimerNotFoundError):
                timers.add_time("nope", 60)
            assert timers.timers() == [alarm]

    asyncio.run(scenario())


def test_changes_before_start_are_refused_so_saved_timers_are_not_overwritten(tmp_path):
    timers = Recorder().scheduler(tmp_path, FakeClock())
    with pytest.raises(RuntimeError):
        timers.start_timer(60)


def test_a_failing_callback_does_not_stop_the_timers(tmp_path, caplog):
    async def scenario():
        clock = FakeClock()
        finished = []

        def explode(timer, number):
            finished.append((timer.name, number))
            raise RuntimeError("speaker on fire")

        timers = TimerScheduler(TimerStore.in_state_dir(tmp_path), CONFIG, clock=clock,
                                on_ring=explode)
        async with timers:
            timers.start_timer(10, "one")
            timers.start_timer(20, "two")
            await clock.advance(20)
        assert finished == [("one", 1), ("two", 1), ("one", 2)]

    with caplog.at_level(logging.ERROR):
        asyncio.run(scenario())
    assert "speaker on fire" in caplog.text


@pytest.mark.parametrize("table, key", [
    ({"max_timers": 0}, "timers.max_timers"),
    ({"ring_interval_s": 0}, "timers.ring_interval_s"),
    ({"ring_max_s": -1}, "timers.ring_max_s"),
])
def test_bad_timers_settings_name_their_key(table, key):
    with pytest.raises(ConfigError, match=key):
        config_module.from_mapping({"timers": table})
    assert config_module.from_mapping({"timers": {"max_timers": 3}}).timers.max_timers == 3


def test_the_real_clock_rings_a_short_timer(tmp_path):
    async def scenario():
        finished = asyncio.Event()
        timers = TimerScheduler(TimerStore.in_state_dir(tmp_path), CONFIG,
                                on_ring=lambda timer, number: finished.set())
        async with timers:
            timers.start_timer(0.2, "quick")
            await asyncio.wait_for(finished.wait(), timeout=10)
            assert [t.name for t in timers.ringing] == ["quick"]

    asyncio.run(scenario())
