"""A virtual clock, so tests of backoff, deadlines and clock skew never really wait.

It implements `xferkit._clock.Clock`. Sleeping yields to the event loop once (so other
tasks still interleave and cancellation still lands) and then jumps virtual time forward.
"""

from __future__ import annotations

import anyio.lowlevel

__all__ = ["DEFAULT_VIRTUAL_START", "VirtualClock"]

DEFAULT_VIRTUAL_START = 1_700_000_000.0
"""2023-11-14T22:13:20Z: a fixed, recent Unix time, so runs are reproducible."""


class VirtualClock:
    """Wall and monotonic time that only move when slept on or advanced.

    Args:
        start: the Unix time (seconds) that `time` reports before anything moved it.
    """

    def __init__(self, start: float = DEFAULT_VIRTUAL_START) -> None:
        self._start = start
        self._elapsed = 0.0

    def __repr__(self) -> str:
        return f"VirtualClock(time={self.time()!r})"

    def time(self) -> float:
        """Return virtual Unix time in seconds."""
        return self._start + self._elapsed

    def monotonic(self) -> float:
        """Return the virtual seconds elapsed since the clock was made; never goes back."""
        return self._elapsed

    async def sleep(self, seconds: float) -> None:
        """Yield once, then move time to at least ``seconds`` after the call.

        The target is taken before yielding and applied with ``max`` afterwards, so concurrent
        sleepers that another task already carried past their target do not move time again:
        two tasks sleeping 1 s at once cost 1 virtual second, not 2.
        """
        target = self._elapsed + max(seconds, 0.0)
        await anyio.lowlevel.checkpoint()
        self._elapsed = max(self._elapsed, target)

    def advance(self, seconds: float) -> None:
        """Move time forward by ``seconds`` without yielding; negative values are refused."""
        if seconds < 0:
            raise ValueError(f"a clock cannot go back; got advance({seconds})")
        self._elapsed += seconds
