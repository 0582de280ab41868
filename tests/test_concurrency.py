"""Backoff, pacing and the thread-to-async iterator, on their own."""

import asyncio
import contextlib
import threading
import time

import pytest

from edge_assistant.concurrency import Backoff, Pacer, iterate_in_thread
from edge_assistant.shared_models import SharedModels
from tests.support.timing import slack


def test_backoff_grows_to_its_cap_and_starts_again_after_a_healthy_run():
    now = [0.0]
    backoff = Backoff((0.5, 1.0, 2.0), healthy_after_s=60.0, clock=lambda: now[0])
    assert [backoff.next() for _ in range(5)] == [0.5, 1.0, 2.0, 2.0, 2.0]
    now[0] += 61.0
    assert backoff.next() == 0.5
    backoff.reset()
    assert backoff.next() == 0.5
    assert Backoff.exponential(0.5, 4.0).delays == (0.5, 1.0, 2.0, 4.0)
    with pytest.raises(ValueError):
        Backoff(())


def test_pacer_waits_until_each_offset_and_never_for_a_missed_one():
    async def scenario():
        pacer = Pacer()
        await pacer.wait(0.2)
        reached = time.monotonic() - pacer.start
        before = time.monotonic()
        await pacer.wait(0.0)  # long past: returns at once
        return reached, time.monotonic() - before

    reached, late_wait = asyncio.run(scenario())
    assert reached >= 0.2
    assert late_wait < slack(0.1)


def test_iterate_in_thread_holds_a_fast_producer_back():
    produced = []

    def numbers():
        for number in range(1000):
            produced.append(number)
            yield number

    async def scenario():
        cancel = threading.Event()
        async with contextlib.aclosing(iterate_in_thread(numbers(), cancel, ahead=3)) as stream:
            first = await anext(stream)
            await asyncio.sleep(0.3)  # a slow consumer: the producer must wait, not run ahead
            ahead = len(produced)
        return first, ahead, cancel.is_set()

    first, ahead, cancelled = asyncio.run(scenario())
    assert first == 0
    assert ahead <= 5  # the one read, `ahead` waiting, one being handed over
    assert cancelled  # left early: the producer was told to stop


def test_iterate_in_thread_raises_the_producers_error_and_ends_cleanly():
    def failing():
        yield 1
        raise ValueError("broken model")

    async def scenario():
        items = []
        with pytest.raises(ValueError, match="broken model"):
            async for item in iterate_in_thread(failing(), threading.Event()):
                items.append(item)
        return items

    assert asyncio.run(scenario()) == [1]


def test_iterate_in_thread_ends_when_the_producer_stops_on_cancel():
    cancel = threading.Event()

    def until_cancelled():
        number = 0
        while not cancel.is_set():
            yield number
            number += 1

    async def scenario():
        seen = 0
        async for _ in iterate_in_thread(until_cancelled(), cancel, ahead=1):
            seen += 1
            if seen == 3:
                cancel.set()  # cancelled from outside (barge-in): the loop still ends
        return seen

    assert asyncio.run(asyncio.wait_for(scenario(), slack(5.0))) >= 3


def test_shared_models_load_once_and_are_freed_with_the_last_user():
    loads, freed = [], []
    cache = SharedModels("model", on_evict=freed.append)
    first = cache.acquire("a", lambda: loads.append("a") or "model a")
    second = cache.acquire("a", lambda: loads.append("a again") or "other")
    assert first.model == second.model == "model a" and loads == ["a"]
    assert first.lock is second.lock
    first.release()
    first.release()  # a second release of one lease counts once
    assert "a" in cache and not freed
    second.release()
    assert "a" not in cache and freed == ["model a"] and len(cache) == 0
