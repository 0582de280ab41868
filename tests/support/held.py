"""Cancelling a task while the worker thread it started is held: does the task wait for it?"""

from __future__ import annotations

import asyncio
import threading

from tests.support.timing import slack


async def cancel_while_held(task: asyncio.Task, entered: threading.Event, may_go: threading.Event,
                            order: list[str], ended: str, *, cancels: int = 1, wait_s: float = 10.0) -> bool:
    """Once the held call has `entered`, cancel `task` (`cancels` times), then let the call go
    (`may_go`); `ended` joins `order` when the task ends. Whether it ended cancelled."""
    assert await asyncio.to_thread(entered.wait, slack(wait_s))
    task.add_done_callback(lambda _: order.append(ended))
    for _ in range(cancels):
        task.cancel()
        await asyncio.sleep(0.1)
    may_go.set()
    await asyncio.gather(task, return_exceptions=True)
    return task.cancelled()
