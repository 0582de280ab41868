"""A clock for tests: time passes only when the test advances it, in no real time at all."""

from __future__ import annotations

import asyncio

# 2027-01-15 08:00:00 UTC: a fixed, unremarkable wall time.
DEFAULT_WALL = 1_800_000_000.0


class FakeClock:
    def __init__(self, wall: float = DEFAULT_WALL, monotonic: float = 1_000.0) -> None:
        self.wall = wall
        self.mono = monotonic
        self._sleepers: list[tuple[float, asyncio.Future]] = []

    def time(self) -> float:
        return self.wall

    def monotonic(self) -> float:
        return self.mono

    async def sleep(self, seconds: float) -> None:
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        future = asyncio.get_running_loop().create_future()
        self._sleepers.append((self.mono + seconds, future))
        await future

    async def advance(self, seconds: float) -> None:
        """Let `seconds` pass, waking each sleeper at its own time and letting it run."""
        target = self.mono + seconds
        while True:
            await settle()
            self._sleepers = [(at, f) for at, f in self._sleepers if not f.done()]
            due = [at for at, _ in self._sleepers if at <= target]
            now = min(due) if due else target
            self.wall += now - self.mono
            self.mono = now
            for at, future in self._sleepers:
                if at <= now and not future.done():
                    future.set_result(None)
            if not due:
                break
        await settle()

    def set_wall(self, delta_s: float) -> None:
        """The wall clock is set (as NTP does after boot); monotonic time goes on."""
        self.wall += delta_s


async def settle(rounds: int = 50) -> None:
    """Let every task that can run do so (no threads involved)."""
    for _ in range(rounds):
        await asyncio.sleep(0)
