import asyncio
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from edge_assistant.config import TimersConfig
from edge_assistant.timers.intents import (
    HANDLED_INTENTS,
    SENTENCES_PATH,
    TimerIntentHandler,
    alarm_time,
    recognize,
    sentence_data,
)
from edge_assistant.timers.scheduler import TimerScheduler
from edge_assistant.timers.store import TimerStore
from tests.support.fake_clock import FakeClock

BERLIN = ZoneInfo("Europe/Berlin")
# Friday 2027-01-15, 09:00 in Berlin.
MORNING = datetime(2027, 1, 15, 9, 0, tzinfo=BERLIN).timestamp()


def local(epoch_s: float) -> datetime:
    return datetime.fromtimestamp(epoch_s, BERLIN)


def run_with_timers(tmp_path, scenario, wall=MORNING, config=TimersConfig()):
    async def main():
        clock = FakeClock(wall=wall)
        async with TimerScheduler(TimerStore.in_state_dir(tmp_path), config, clock=clock) as timers:
            await scenario(Speaker(TimerIntentHandler(timers, tz=BERLIN)), timers, clock)

    asyncio.run(main())


class Speaker:
    """Says a sentence: hassil recognizes it and the handler acts on it."""

    def __init__(self, handler: TimerIntentHandler) -> None:
        self.handler = handler
        self.heard: list[tuple[str, dict]] = []

    def say(self, text: str):
        recognized = recognize(text)
        assert recognized is not None, f"not recognized: {text!r}"
        self.heard.append(recognized)
        return self.handler.handle_intent(*recognized)


@pytest.mark.parametrize("text, intent, slots", [
    ("set a timer for ten minutes", "HassStartTimer", {"minutes": 10}),
    ("set a pasta timer for 8 minutes", "HassStartTimer", {"minutes": 8, "name": "pasta"}),
    ("how much time is left", "HassTimerStatus", {}),
    ("cancel the timer", "HassCancelTimer", {}),
    ("add two minutes", "HassIncreaseTimer", {"minutes": 2}),
    ("wake me up at 7", "EdgeSetAlarm", {"hour": 7}),
    ("set an alarm for 6:30 tomorrow", "EdgeSetAlarm", {"hour": 6, "minute": 30, "day": "tomorrow"}),
    ("set an alarm for 7 am", "EdgeSetAlarm", {"hour": 7, "period": "am"}),
    ("Set an alarm for 7:05 p.m.", "EdgeSetAlarm", {"hour": 7, "minute": 5, "period": "pm"}),
    ("wake me up tomorrow at half past six", "EdgeSetAlarm", {"hour": 6, "minute": 30, "day": "tomorrow"}),
    ("cancel the alarm", "EdgeCancelAlarm", {}),
    ("cancel all alarms", "EdgeCancelAlarm", {"all": True}),
    ("cancel the 7 am alarm", "EdgeCancelAlarm", {"hour": 7, "period": "am"}),
    ("what alarms do I have", "EdgeAlarmStatus", {}),
    ("stop", "EdgeStopRinging", {}),
    ("stop the timer", "HassCancelTimer", {}),
    ("cancel the pasta timer", "HassCancelTimer", {"name": "pasta"}),
    ("cancel all timers", "HassCancelAllTimers", {}),
    ("pause the timer", "HassPauseTimer", {}),
    ("resume the timer", "HassUnpauseTimer", {}),
    ("take two minutes off", "HassDecreaseTimer", {"minutes": 2}),
])
def test_sentences_are_recognized_with_their_slots(text, intent, slots):
    recognized = recognize(text)
    assert recognized is not None
    assert recognized[0] == intent and recognized[0] in HANDLED_INTENTS
    values = {name: value.strip() if isinstance(value, str) else value
              for name, value in recognized[1].items()}
    assert values == slots


def test_the_data_file_is_hassil_intents_for_english():
    data = sentence_data()
    assert SENTENCES_PATH.name == "timer_sentences_en.yaml" and data["language"] == "en"
    assert {"EdgeSetAlarm", "EdgeCancelAlarm"} <= set(data["intents"])
    assert recognize("what is the capital of France") is None


def test_set_a_timer_and_ask_how_much_is_left(tmp_path):
    async def scenario(speaker, timers, clock):
        reply = speaker.say("set a timer for ten minutes")
        assert reply.ok and reply.text == "Timer set for 10 minutes"
        [timer] = timers.timers()
        assert timer.duration_s == 600 and timer.name is None and reply.timers == (timer,)
        await clock.advance(150)
        assert speaker.say("how much time is left").text == "7 minutes and 30 seconds left."
        reply = speaker.say("set a pasta timer for 8 minutes")
        assert reply.text == "Timer set for 8 minutes named pasta"
        assert sorted((t.name or "", t.duration_s) for t in timers.timers()) == [("", 600), ("pasta", 480)]
        assert speaker.say("how much time is left").text == \
            "2 running timers. 7 minutes and 30 seconds left on 10 minute timer."
        assert speaker.say("how much time is left on the pasta timer").text == "8 minutes left."

    run_with_timers(tmp_path, scenario)


def test_cancel_the_timer_asks_which_when_several_could_be_meant(tmp_path):
    async def scenario(speaker, timers, clock):
        speaker.say("set a timer for ten minutes")
        speaker.say("set a pasta timer for 8 minutes")
        reply = speaker.say("cancel the timer")
        assert not reply.ok and reply.follow_up and reply.code == "multiple_timers_matched"
        assert reply.text == "Which timer? You have the pasta timer and the 10 minute timer."
        assert len(timers.timers()) == 2
        reply = speaker.say("cancel the pasta timer")
        assert reply.ok and reply.text == "Timer cancelled"
        assert [t.duration_s for t in timers.timers()] == [600]
        assert speaker.say("cancel the timer").text == "Timer cancelled"
        assert timers.timers() == []
        reply = speaker.say("cancel the timer")
        assert not reply.ok and reply.code == "timer_not_found"
        assert reply.text == "Sorry, I couldn't find that timer"

    run_with_timers(tmp_path, scenario)


def test_cancel_the_timer_stops_the_one_ringing_before_cancelling_another(tmp_path):
    async def scenario(speaker, timers, clock):
        speaker.say("set a timer for 1 minute")
        speaker.say("set a timer for 20 minutes")
        await clock.advance(60)
        assert [t.duration_s for t in timers.ringing] == [60]
        reply = speaker.say("stop the timer")
        assert reply.ok and reply.text == "Timer stopped." and timers.ringing == []
        assert [t.duration_s for t in timers.timers()] == [1200]

    run_with_timers(tmp_path, scenario)


def test_add_and_take_off_time_pause_and_resume(tmp_path):
    async def scenario(speaker, timers, clock):
        speaker.say("set a pasta timer for 8 minutes")
        assert speaker.say("add two minutes").text == "2 minutes added to timer"
        [timer] = timers.timers()
        assert timer.remaining_s(clock.time()) == 600
        assert speaker.say("add 30 seconds to the pasta timer").text == "30 seconds added to timer named pasta"
        assert speaker.say("take two minutes off").text == "2 minutes removed from timer"
        assert speaker.say("pause the timer").text == "Timer paused"
        await clock.advance(3600)
        assert timers.timers()[0].remaining_s(clock.time()) == 510
        assert speaker.say("how much time is left").text == "Timer is paused. 8 minutes and 30 seconds left."
        # Only a running timer can be paused, only a paused one resumed.
        assert speaker.say("pause the timer").code == "timer_not_found"
        assert speaker.say("resume the timer").text == "Timer resumed"
        await clock.advance(510)
        assert timers.timers() == [] and len(timers.ringing) == 1

    run_with_timers(tmp_path, scenario)


def test_wake_me_up_at_7_is_the_next_7_am(tmp_path):
    async def scenario(speaker, timers, clock):
        reply = speaker.say("wake me up at 7")  # it is 09:00: 7:00 today has passed
        assert reply.ok and reply.text == "Alarm set for 7 AM tomorrow."
        [alarm] = timers.timers("alarm")
        assert local(alarm.ends_at) == datetime(2027, 1, 16, 7, 0, tzinfo=BERLIN)
        assert speaker.say("set an alarm for 7 am").text == "Alarm set for 7 AM tomorrow."
        assert speaker.say("set an alarm for 7:05 pm").text == "Alarm set for 7:05 PM."
        assert speaker.say("set an alarm for 9:30").text == "Alarm set for 9:30 AM."
        assert [local(a.ends_at).strftime("%d %H:%M") for a in timers.timers("alarm")] == [
            "15 09:30", "15 19:05", "16 07:00", "16 07:00"]

    run_with_timers(tmp_path, scenario)


def test_tomorrow_forces_the_next_day(tmp_path):
    async def scenario(speaker, timers, clock):
        # At 05:00, 6:30 is still to come today; "tomorrow" means the day after.
        assert speaker.say("set an alarm for 6:30 tomorrow").text == "Alarm set for 6:30 AM tomorrow."
        assert speaker.say("set an alarm for 6:30").text == "Alarm set for 6:30 AM."
        assert [local(a.ends_at) for a in timers.timers("alarm")] == [
            datetime(2027, 1, 15, 6, 30, tzinfo=BERLIN), datetime(2027, 1, 16, 6, 30, tzinfo=BERLIN)]
        await clock.advance(5400)
        assert [t.kind for t in timers.ringing] == ["alarm"]
        assert speaker.say("stop").text == "Stopped."
        assert speaker.say("stop").code == "nothing_ringing"

    run_with_timers(tmp_path, scenario, wall=datetime(2027, 1, 15, 5, 0, tzinfo=BERLIN).timestamp())


def test_alarms_are_cancelled_by_time_or_all_at_once(tmp_path):
    async def scenario(speaker, timers, clock):
        assert speaker.say("cancel the alarm").text == "You have no alarms."
        assert speaker.say("what alarms do I have").text == "You have no alarms."
        speaker.say("wake me up at 7")
        assert speaker.say("when is my alarm").text == "Your alarm is set for 7 AM tomorrow."
        speaker.say("set an alarm for 6:30 pm")
        reply = speaker.say("cancel the alarm")
        assert reply.follow_up and reply.text == \
            "Which alarm? You have the 6:30 PM alarm and the 7 AM alarm."
        assert speaker.say("cancel the 7 am alarm").text == "Alarm for 7 AM tomorrow cancelled."
        assert speaker.say("cancel the alarm for 7").code == "timer_not_found"
        speaker.say("set an alarm for 8 am")
        assert speaker.say("what alarms do I have").text == \
            "You have 2 alarms: 6:30 PM and 8 AM tomorrow."
        assert speaker.say("cancel all alarms").text == "2 alarms cancelled."
        assert timers.timers("alarm") == []

    run_with_timers(tmp_path, scenario)


def test_cancel_all_timers_leaves_alarms(tmp_path):
    async def scenario(speaker, timers, clock):
        speaker.say("set a timer for 5 minutes")
        speaker.say("set a timer for 6 minutes")
        speaker.say("wake me up at 7")
        assert speaker.say("cancel all timers").text == "Canceled 2 timers."
        assert [t.kind for t in timers.timers()] == ["alarm"]

    run_with_timers(tmp_path, scenario)


def test_past_max_timers_the_reply_is_a_clear_refusal(tmp_path):
    async def scenario(speaker, timers, clock):
        speaker.say("set a timer for 5 minutes")
        speaker.say("wake me up at 7")
        reply = speaker.say("set a timer for 6 minutes")
        assert not reply.ok and reply.code == "timer_limit"
        assert reply.text == "Sorry, I can keep at most 2 timers and alarms."

    run_with_timers(tmp_path, scenario, config=TimersConfig(max_timers=2))


def test_a_command_for_later_is_kept_with_its_timer(tmp_path):
    async def scenario(speaker, timers, clock):
        reply = speaker.say("turn off the kitchen light in 5 minutes")
        assert reply.text == "Command will be executed in 5 minutes"
        assert timers.timers()[0].command == "turn off the kitchen light"

    run_with_timers(tmp_path, scenario)


def test_unknown_intents_are_refused(tmp_path):
    async def scenario(speaker, timers, clock):
        with pytest.raises(ValueError):
            speaker.handler.handle_intent("HassTurnOn", {})

    run_with_timers(tmp_path, scenario)


@pytest.mark.parametrize("hour, minute, period, day, expected", [
    (7, 0, None, None, datetime(2027, 1, 16, 7, 0)),
    (10, 0, None, None, datetime(2027, 1, 15, 10, 0)),
    (9, 0, None, None, datetime(2027, 1, 16, 9, 0)),  # exactly now: the next one
    (10, 0, None, "tomorrow", datetime(2027, 1, 16, 10, 0)),
    (10, 0, None, "today", datetime(2027, 1, 15, 10, 0)),
    (7, 30, "pm", None, datetime(2027, 1, 15, 19, 30)),
    (12, 0, "am", None, datetime(2027, 1, 16, 0, 0)),
    (12, 15, "pm", None, datetime(2027, 1, 15, 12, 15)),
    (19, 0, "pm", None, datetime(2027, 1, 15, 19, 0)),
])
def test_alarm_time_is_the_next_occurrence_in_local_time(hour, minute, period, day, expected):
    at = alarm_time(MORNING, hour, minute, period, day, BERLIN)
    assert local(at) == expected.replace(tzinfo=BERLIN)


def test_alarm_time_across_a_daylight_saving_change():
    # Saturday 2027-03-27 22:00 in Berlin; the clocks go forward at 02:00 that night.
    evening = datetime(2027, 3, 27, 22, 0, tzinfo=BERLIN).timestamp()
    at = alarm_time(evening, 7, 0, tz=BERLIN)
    assert local(at) == datetime(2027, 3, 28, 7, 0, tzinfo=BERLIN)
    assert at - evening == 8 * 3600  # nine hours on the wall, eight elapsed


def test_alarm_time_refuses_what_is_not_a_time():
    with pytest.raises(ValueError):
        alarm_time(MORNING, 8, 0, None, "today", BERLIN)
    with pytest.raises(ValueError):
        alarm_time(MORNING, 7, 60, None, None, BERLIN)
