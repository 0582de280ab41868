"""What every sink (speaker, WAV file) has in common: volume, barge-in and closing."""

from __future__ import annotations

from typing import Callable

import numpy as np

from .pcm import check_volume

# Called with each block (int16 mono, at the rate it is played) as it is handed to the device.
BlockTap = Callable[[np.ndarray, int], None]


class Sink:
    """Plays audio; `stop()` interrupts the current play, `aclose()`/`close()` release it."""

    def __init__(self, volume: float = 1.0):
        self._volume = check_volume(volume)
        # A play notes the generation it started in; stop() moves on, and the play sees it.
        self._generation = 0
        # What the speaker plays, block by block, for whoever needs it: the echo canceller's
        # reference. Taps run in the thread that writes to the device and must not block.
        self.taps: list[BlockTap] = []

    @property
    def volume(self) -> float:
        return self._volume

    def set_volume(self, volume: float) -> None:
        """0.0 (silent) to 2.0; takes effect on the next block played."""
        self._volume = check_volume(volume)

    async def play(self, samples: np.ndarray | bytes, sample_rate: int) -> bool:
        """Play to the end (True) or until `stop()` (False)."""
        raise NotImplementedError

    def _hand_over(self, block: np.ndarray, rate: int) -> None:
        """Give `block` to the taps, just before it goes to the device."""
        for tap in self.taps:
            tap(block, rate)

    def stop(self) -> None:
        """Interrupt the current play (barge-in)."""
        self._generation += 1

    def close(self) -> None:
        """Release the device or file (for callers outside an event loop)."""

    async def aclose(self) -> None:
        """Release the device or file without blocking the event loop."""
        self.close()
