import asyncio
from datetime import datetime, time, timezone
from zoneinfo import ZoneInfo

import pytest

from edge_assistant.config import TimersConfig
from edge_assistant.timers.commands import (
    TimerCommand,
    TimerCommandError,
    parse_timer_command,
    run_timer_command,
)
from edge_assistant.timers.scheduler import TimerScheduler
from edge_assistant.timers.store import TimerStore
from tests.support.fake_clock import FakeClock

BERLIN = ZoneInfo("Europe/Berlin")


@pytest.mark.parametrize("payload, command", [
    ('{"action": "start", "seconds": 90, "name": "pasta"}', TimerCommand("start", 90.0, "pasta")),
    (b'{"action": "start", "seconds": 0.5, "id": "request-1"}', TimerCommand("start", 0.5)),
    ({"action": "cancel", "timer_id": "abc"}, TimerCommand("cancel", timer_id="abc")),
    ({"action": "cancel", "name": " pasta "}, TimerCommand("cancel", name="pasta")),
    ({"action": "cancel", "all": True}, TimerCommand("cancel", all=True)),
    ({"action": "add", "name": "pasta", "seconds": 120}, TimerCommand("add", 120.0, "pasta")),
    ({"action": "add", "timer_id": "abc", "seconds": -30}, TimerCommand("add", -30.0, timer_id="abc")),
    ({"action": "pause", "name": "pasta"}, TimerCommand("pause", name="pasta")),
    ({"action": "resume", "timer_id": "abc"}, TimerCommand("resume", timer_id="abc")),
    ({"action": "stop"}, TimerCommand("stop")),
    ({"action": "alarm", "at": "7:30"}, TimerCommand("alarm", at=time(7, 30))),
    ({"action": "alarm", "at": "2027-01-16T07:30:00+01:00", "name": "work"},
     TimerCommand("alarm", name="work", at=datetime(2027, 1, 16, 6, 30, tzinfo=timezone.utc))),
])
def test_valid_payloads_become_typed_commands(payload, command):
    assert parse_timer_command(payload) == command


@pytest.mark.parametrize("payload, message", [
    ("not json", "JSON object"),
    ("[1, 2]", "JSON object"),
    ({"seconds": 90}, "'action' must be one of"),
    ({"action": "explode"}, "'action' must be one of"),
    ({"action": "start"}, "'seconds' must be"),
    ({"action": "start", "seconds": 0}, "'seconds' must be"),
    ({"action": "start", "seconds": -5}, "'seconds' must be"),
    ({"action": "start", "seconds": "90"}, "'seconds' must be"),
    ({"action": "start", "seconds": True}, "'seconds' must be"),
    ({"action": "start", "seconds": 1e300}, "'seconds' must be"),
    ({"action": "start", "seconds": 90, "name": ""}, "'name' must be a string"),
    ({"action": "start", "seconds": 90, "name": "x" * 101}, "'name' must be a string"),
    ({"action": "cancel"}, "cancel needs either 'timer_id' or 'name'"),
    ({"action": "cancel", "timer_id": "a", "name": "b"}, "cancel needs either"),
    ({"action": "cancel", "timer_id": 5}, "'timer_id' must be a string"),
    ({"action": "add", "name": "pasta"}, "'seconds' must be a non-zero number"),
    ({"action": "add", "name": "pasta", "seconds": 0}, "'seconds' must be a non-zero number"),
    ({"action": "start", "seconds": 9, "all": True}, "'all' is true or false, and only for cancel"),
    ({"action": "alarm"}, "'at' must be a time of day"),
    ({"action": "alarm", "at": "25:00"}, "'at' must be a time of day"),
    ({"action": "alarm", "at": "2027-01-16T07:30:00"}, "UTC offset"),
])
def test_invalid_payloads_are_rejected_with_a_clear_message(payload, message):
    with pytest.raises(TimerCommandError, match=message) as rejected:
        parse_timer_command(payload)
    assert rejected.value.code == "bad_request"


def test_commands_act_on_the_scheduler_and_the_list_follows(tmp_path):
    async def scenario():
        clock = FakeClock(wall=datetime(2027, 1, 15, 9, 0, tzinfo=BERLIN).timestamp())
        async with TimerScheduler(TimerStore.in_state_dir(tmp_path), TimersConfig(), clock=clock) as timers:
            def run(payload):
                return run_timer_command(timers, parse_timer_command(payload), tz=BERLIN)

            [pasta] = run({"action": "start", "seconds": 90, "name": "pasta"})
            [alarm] = run({"action": "alarm", "at": "07:30"})
            assert datetime.fromtimestamp(alarm.ends_at, BERLIN) == datetime(2027, 1, 16, 7, 30, tzinfo=BERLIN)
            [added] = run({"action": "add", "name": "PASTA", "seconds": 30})
            assert added.id == pasta.id and added.remaining_s(clock.time()) == 120
            run({"action": "pause", "timer_id": pasta.id})
            await clock.advance(10)
            listing = [timers.event_data(timer) for timer in timers.timers()]
            # Running ones first, the soonest first; paused ones last.
            assert [(t["name"], t["kind"], t["remaining_s"], t["paused"]) for t in listing] == [
                (None, "alarm", 80990.0, False), ("pasta", "timer", 120.0, True)]
            assert listing[0]["ends_at"] == "2027-01-16T06:30:00+00:00"
            run({"action": "resume", "name": "pasta"})
            run({"action": "start", "seconds": 60, "name": "pasta"})
            with pytest.raises(Exception) as ambiguous:
                run({"action": "cancel", "name": "pasta"})
            assert ambiguous.value.code == "multiple_timers_matched"
            with pytest.raises(Exception) as missing:
                run({"action": "cancel", "name": "soup"})
            assert missing.value.code == "timer_not_found"
            await clock.advance(60)
            assert [t.name for t in timers.ringing] == ["pasta"]
            assert len(run({"action": "stop", "name": "pasta"})) == 1 and timers.ringing == []
            assert len(run({"action": "cancel", "all": True})) == 2 and timers.timers() == []

    asyncio.run(scenario())


def test_the_events_a_command_causes_carry_its_request_id_and_only_those(tmp_path):
    async def scenario():
        events = []
        clock = FakeClock(wall=datetime(2027, 1, 15, 9, 0, tzinfo=BERLIN).timestamp())
        async with TimerScheduler(TimerStore.in_state_dir(tmp_path), TimersConfig(), clock=clock,
                                  on_event=events.append) as timers:
            def run(payload, request_id):
                return run_timer_command(timers, parse_timer_command(payload), tz=BERLIN, request_id=request_id)

            run({"action": "start", "seconds": 90, "name": "pasta"}, "r-start")
            run({"action": "alarm", "at": "07:30"}, "r-alarm")
            run({"action": "add", "name": "pasta", "seconds": 30}, "r-add")
            run({"action": "pause", "name": "pasta"}, "r-pause")
            run({"action": "resume", "name": "pasta"}, None)
            timers.start_timer(5, "tea")  # as a spoken request does: no request id
            await clock.advance(5)
            run({"action": "cancel", "all": True}, "r-all")
        assert [(e.type, e.data["name"], e.request_id) for e in events] == [
            ("timer_started", "pasta", "r-start"), ("timer_started", None, "r-alarm"),
            ("timer_updated", "pasta", "r-add"), ("timer_updated", "pasta", "r-pause"),
            ("timer_updated", "pasta", None), ("timer_started", "tea", None),
            ("timer_finished", "tea", None),
            ("timer_cancelled", "pasta", "r-all"), ("timer_cancelled", None, "r-all")]
        # On the wire the timer's id stays `id` and the request's goes beside it.
        payload = events[0].to_json_dict()
        assert payload["request_id"] == "r-start" and payload["id"] == events[0].data["id"]

    asyncio.run(scenario())
