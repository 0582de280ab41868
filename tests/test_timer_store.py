import json
import logging
import os

import pytest

from edge_assistant.timers.store import STATE_FILE, TimerStore
from edge_assistant.timers.timer import Timer


def a_timer(**changes) -> Timer:
    fields = dict(id="t1", kind="timer", name="pasta", duration_s=480.0, total_s=480.0,
                  ends_at=1_800_000_480.0, created_at=1_800_000_000.0)
    fields.update(changes)
    return Timer(**fields)


def test_round_trip_keeps_every_field(tmp_path):
    store = TimerStore.in_state_dir(tmp_path / "state")
    timers = [
        a_timer(),
        a_timer(id="t2", name=None, ends_at=None, paused_remaining_s=42.5, command="turn off the light"),
        a_timer(id="a1", kind="alarm", name=None, duration_s=3600.0, total_s=3600.0),
    ]
    store.save(timers)
    assert (tmp_path / "state" / STATE_FILE).is_file()
    assert TimerStore(tmp_path / "state" / STATE_FILE).load() == timers


def test_save_replaces_the_file_whole_and_leaves_no_temporary(tmp_path):
    store = TimerStore.in_state_dir(tmp_path)
    store.save([a_timer()])
    store.save([a_timer(id="t2")])
    assert [t.id for t in store.load()] == ["t2"]
    assert sorted(os.listdir(tmp_path)) == [STATE_FILE]


def test_missing_file_is_no_timers(tmp_path):
    assert TimerStore.in_state_dir(tmp_path).load() == []


@pytest.mark.parametrize("content", [
    b"",  # what a power cut can leave on a file system that lost the data
    b"{\"version\": 1, \"timers\": [",
    b"\xff\xfe not text",
    b"[]",
    b"{\"version\": 99, \"timers\": []}",
    b"{\"version\": 1, \"timers\": [{\"id\": \"t1\"}]}",
    json.dumps({"version": 1, "timers": [dict(a_timer().to_record(), ends_at="soon")]}).encode(),
    json.dumps({"version": 1, "timers": [a_timer().to_record(), a_timer().to_record()]}).encode(),
])
def test_corrupt_file_is_set_aside_with_a_warning(tmp_path, caplog, content):
    path = tmp_path / STATE_FILE
    path.write_bytes(content)
    with caplog.at_level(logging.WARNING, logger="edge_assistant.timers.store"):
        assert TimerStore(path).load() == []
    assert "corrupt" in caplog.text
    aside = [p for p in tmp_path.iterdir() if p.name.startswith(f"{STATE_FILE}.corrupt-")]
    assert len(aside) == 1 and aside[0].read_bytes() == content
    assert not path.exists()
    # The next corrupt file is set aside too, without replacing the first.
    path.write_bytes(b"garbage")
    assert TimerStore(path).load() == []
    assert len([p for p in tmp_path.iterdir() if ".corrupt-" in p.name]) == 2


def test_from_record_rejects_a_timer_both_paused_and_running():
    with pytest.raises(ValueError):
        Timer.from_record(dict(a_timer().to_record(), paused_remaining_s=3.0))


def _device(device_id: str, state_dir: str = ""):
    from edge_assistant import config as config_module

    return config_module.from_mapping({"mqtt": {"device_id": device_id},
                                       "service": {"state_dir": state_dir}})


def test_two_device_ids_keep_their_timers_apart(tmp_path, monkeypatch, caplog):
    """Two daemons run by one user without a state dir: the daemon's own timer wiring."""
    import asyncio

    from edge_assistant.assembly import AssistantPort, timer_scheduler

    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("STATE_DIRECTORY", raising=False)
    shared = tmp_path / ".local" / "share" / "edge-assistant"
    # Kept by an earlier version for whichever daemon ran: nobody's now, and said so.
    TimerStore.in_state_dir(shared).save([a_timer(id="old", name="unknown")])

    async def set_and_list(config, name):
        scheduler = timer_scheduler(config, AssistantPort())
        async with scheduler:
            seen = [timer.name for timer in scheduler.timers()]
            if name:
                scheduler.start_timer(600, name)
        return seen

    kitchen, office = _device("kitchen"), _device("office")
    with caplog.at_level(logging.WARNING):
        assert asyncio.run(set_and_list(kitchen, "pasta")) == []
    assert str(shared / STATE_FILE) in caplog.text and str(shared / "kitchen" / STATE_FILE) in caplog.text
    assert asyncio.run(set_and_list(office, "laundry")) == []
    assert asyncio.run(set_and_list(kitchen, None)) == ["pasta"]
    assert asyncio.run(set_and_list(office, None)) == ["laundry"]
    assert kitchen.device_state_dir() == shared / "kitchen"
    assert TimerStore.in_state_dir(shared).load()[0].name == "unknown"  # left as it was


def test_a_state_dir_set_holds_the_timers_whatever_the_device_id(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("STATE_DIRECTORY", raising=False)
    assert _device("kitchen", str(tmp_path / "state")).device_state_dir() == tmp_path / "state"
    monkeypatch.setenv("STATE_DIRECTORY", str(tmp_path / "systemd"))
    assert _device("kitchen").device_state_dir() == tmp_path / "systemd"
    assert TimerStore.of_device(_device("kitchen")).path == tmp_path / "systemd" / STATE_FILE
