"""Client-side rate limiting: one limiter per venue and endpoint.

A virtual-scheduling token bucket (GCRA) with a burst of one: request *n* may start no earlier
than ``1/rate`` seconds after request *n-1*'s slot. Hand-written because the state is two
numbers and it must run on the injected clock (rate-limit libraries sleep on the real one).
"""

from __future__ import annotations

from ._clock import Clock

__all__ = ["RateLimiter"]


class RateLimiter:
    """Spaces calls to `acquire` at most ``rate`` per second, in arrival order."""

    def __init__(self, rate: float, clock: Clock) -> None:
        self._interval = 1.0 / rate
        self._clock = clock
        self._next_slot = float("-inf")

    @property
    def rate(self) -> float:
        """Allowed requests per second."""
        return 1.0 / self._interval

    async def acquire(self) -> None:
        """Wait for this caller's slot. A cancelled waiter's slot is simply skipped."""
        now = self._clock.monotonic()
        slot = max(now, self._next_slot)
        self._next_slot = slot + self._interval
        if slot > now:
            await self._clock.sleep(slot - now)
