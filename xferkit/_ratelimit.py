"""Client-side rate limiting: one limiter per venue and endpoint, adaptive on 429.

A virtual-scheduling token bucket (GCRA) with a burst of one: request *n* may start no earlier
than ``1/rate`` seconds after request *n-1*'s slot. Hand-written because the state is a few
numbers and it must run on the injected clock (rate-limit libraries sleep on the real one).

Adaptive (AIMD): a 429 halves the allowed rate (down to a floor) and holds every caller back
for the venue's ``Retry-After``; each second without a 429 then restores a tenth of the
configured rate, so the limiter finds the venue's real ceiling and climbs back when it lifts.
A hold-off is capped (the retry policy's ``max_retry_after``, passed by the engine): a venue
that answers ``Retry-After: 86400`` must not stop every caller for a day.

A caller with a deadline never waits past it: `acquire` refuses at once (taking no slot) when
its slot would start later, as a backoff that would outlast the deadline is not slept.
"""

from __future__ import annotations

import math

import anyio

from ._clock import Clock

__all__ = ["RateLimiter"]

_DECREASE = 0.5  # multiplicative decrease on a 429
_RECOVERY_PER_SECOND = 0.1  # share of the configured rate regained per 429-free second
_FLOOR = 0.05  # never below 5% of the configured rate
# Slots are spaced exactly, but a venue counts arrivals in a sliding window: a request delayed
# on its way lets the next ones bunch up behind it. Aiming 3% under the ceiling leaves ~30 ms a
# second for that jitter, so the venue never sees more than it allows.
HEADROOM = 0.97


class RateLimiter:
    """Spaces calls to `acquire` at most ``rate`` per second, in arrival order."""

    def __init__(self, rate: float, clock: Clock) -> None:
        self._configured = rate * HEADROOM
        self._rate = self._configured
        self._clock = clock
        self._next_slot = float("-inf")
        self._hold_until = float("-inf")
        self._last_change = clock.monotonic()
        self._last_decrease = float("-inf")
        # Callers take their slot at the head of this (FIFO) queue, not when they join it, so
        # a slowdown or a hold-off reaches every caller still waiting. ``fast_acquire``: a free
        # queue is taken without a trip through the event loop (a cancelled caller is still
        # refused first), which was a tenth of a transfer's engine CPU.
        self._queue = anyio.Lock(fast_acquire=True)
        self._waiting = 0  # callers queued for the head, not counting the one holding it

    @property
    def rate(self) -> float:
        """The rate allowed right now (below the configured one after a 429)."""
        self._recover()
        return self._rate

    @property
    def configured_rate(self) -> float:
        """The ceiling the limiter aims at: the venue's ``rate_limit`` less the headroom."""
        return self._configured

    async def acquire(self, deadline_at: float | None = None) -> bool:
        """Wait for this caller's slot; ``True`` once it is taken.

        With ``deadline_at`` (on the limiter's clock), a caller whose slot would start after it
        does not wait: ``False``, and no slot is taken. Judged on arrival (from the callers
        queued ahead) and again at the head of the queue, where a hold-off that began in the
        meantime counts too. A cancelled waiter takes no slot.
        """
        if deadline_at is not None and self._arrival_slot() > deadline_at:
            return False
        self._waiting += 1
        try:
            await self._queue.acquire()
        finally:
            self._waiting -= 1
        try:
            self._recover()
            slot = max(self._clock.monotonic(), self._next_slot)
            while True:  # a hold-off may begin while we wait: honour it too
                slot = max(slot, self._hold_until)
                wait = slot - self._clock.monotonic()
                if wait <= 0:
                    break
                if deadline_at is not None and slot > deadline_at:
                    return False
                await self._clock.sleep(wait)
            # Spaced from the slot, not from when we woke, so wake-up lag does not add up.
            self._next_slot = slot + 1.0 / self._rate
            return True
        finally:
            self._queue.release()

    def _arrival_slot(self) -> float:
        """The slot a caller arriving now would get, after every caller queued ahead of it."""
        self._recover()
        ahead = self._waiting + (1 if self._queue.locked() else 0)
        start = max(self._clock.monotonic(), self._next_slot, self._hold_until)
        return start + ahead / self._rate

    def throttled(self, retry_after: float | None, *, cap: float | None = None) -> None:
        """The venue answered 429: slow down, and hold everyone for its ``Retry-After``.

        Answers to requests sent before the first 429 arrive together; the rate is halved at
        most once a second, so one episode does not drive it to the floor. The hold-off is at
        most ``cap`` seconds; a ``Retry-After`` that is nan, negative, or infinite without a
        cap counts as absent (one slot's spacing).
        """
        now = self._clock.monotonic()
        if now - self._last_decrease >= 1.0:
            self._rate = max(self._configured * _FLOOR, self._rate * _DECREASE)
            self._last_decrease = now
        pause = _pause(retry_after, cap)
        if pause is None:
            pause = 1.0 / self._rate
        self._hold_until = max(self._hold_until, now + pause)
        self._last_change = now + pause  # quiet seconds count from the end of the hold-off

    def pause_until(self, seconds_from_now: float, *, cap: float | None = None) -> None:
        """The venue says its quota is spent for now: start nothing before it refills.

        At most ``cap`` seconds; nan, a negative value, or infinity without a cap is ignored.
        """
        pause = _pause(seconds_from_now, cap)
        if pause is not None:
            self._hold_until = max(self._hold_until, self._clock.monotonic() + pause)

    def _recover(self) -> None:
        if self._rate >= self._configured:
            return
        now = self._clock.monotonic()
        elapsed = now - self._last_change
        if elapsed >= 1.0:
            regained = self._configured * _RECOVERY_PER_SECOND * int(elapsed)
            self._rate = min(self._configured, self._rate + regained)
            self._last_change = now


def _pause(seconds: float | None, cap: float | None) -> float | None:
    """``seconds`` as a hold-off of at most ``cap``; ``None`` for nan, a negative number, or
    infinity without a cap (the backoff, too, honours a huge value only up to its cap)."""
    if seconds is None or math.isnan(seconds) or seconds < 0:
        return None
    if cap is not None:
        seconds = min(seconds, cap)
    return seconds if math.isfinite(seconds) else None
