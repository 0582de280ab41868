"""Backoff, pacing and the thread-to-async iterator, on their own."""

import asyncio
import contextlib
import threading
import time

import pytest

from edge_assistant.concurrency import Backoff, Pacer, iterate_in_thread
from edge_assistant.shared_models import SharedModels
from tests.support.held import cancel_while_held
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



def test_shared_models_load_no_second_copy_while_the_last_user_frees_the_first():
    # A reload lets go of its models while the next run (or `say`) asks for them again: the
    # new load waits for the old copy to be freed, so two never sit in memory together.
    freeing, may_free = threading.Event(), threading.Event()
    order = []

    def evict(model):
        freeing.set()
        may_free.wait(slack(10.0))
        order.append(f"freed {model}")

    def load_second():
        loading.set()
        order.append("loaded second")
        return "second"

    cache = SharedModels("model", on_evict=evict)
    lease = cache.acquire("a", lambda: "first")
    releasing = threading.Thread(target=lease.release)
    releasing.start()
    assert freeing.wait(slack(10.0))
    loading = threading.Event()
    acquiring = threading.Thread(target=cache.acquire, args=("a", load_second))
    acquiring.start()
    # Unguarded, the load starts at once; guarded, it cannot start before the free ends.
    loading.wait(0.5)
    may_free.set()
    releasing.join(slack(10.0))
    acquiring.join(slack(10.0))
    assert order == ["freed first", "loaded second"]
    assert len(cache) == 1


def test_shared_models_hold_at_most_one_copy_under_concurrent_acquire_and_release():
    live, most, loads = [0], [0], [0]
    count = threading.Lock()

    def load():
        with count:
            live[0] += 1
            loads[0] += 1
            most[0] = max(most[0], live[0])
        time.sleep(0.001)  # widens the windows a race needs
        return object()

    def evict(model):
        time.sleep(0.001)
        with count:
            live[0] -= 1

    cache = SharedModels("model", on_evict=evict)
    errors = []

    def user():
        try:
            for _ in range(200):
                lease = cache.acquire("a", load)
                lease.release()
        except Exception as error:  # pragma: no cover - reported below
            errors.append(error)

    threads = [threading.Thread(target=user) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(slack(60.0))
    assert not errors and not any(thread.is_alive() for thread in threads)
    assert most[0] == 1, f"{most[0]} copies of one model were in memory at once"
    assert live[0] == 0 and len(cache) == 0 and loads[0] >= 1


def test_to_thread_joined_outlasts_every_cancellation_of_its_caller():
    from edge_assistant.concurrency import to_thread_joined

    entered, may_go = threading.Event(), threading.Event()
    order = []

    def call():
        entered.set()
        may_go.wait(slack(10.0))
        order.append("call returned")
        return "result"

    async def scenario():
        assert await to_thread_joined(lambda: 42) == 42
        caller = asyncio.create_task(to_thread_joined(call))
        # A stop after a reload after a stop: each waits for the call.
        return await cancel_while_held(caller, entered, may_go, order, "caller ended", cancels=3)

    assert asyncio.run(scenario())
    assert order == ["call returned", "caller ended"]
