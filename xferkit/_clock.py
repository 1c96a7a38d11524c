"""Time as xferkit sees it: an injectable clock, and each venue's measured clock offset.

Every wait, timestamp and deadline goes through a `Clock`, so tests can run the engine on
a virtual clock (``xferkit.testing.VirtualClock``) and never really sleep.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Protocol

import anyio

__all__ = ["SYSTEM_CLOCK", "Clock", "ServerClock", "SystemClock"]


class Clock(Protocol):
    """Wall time, monotonic time and sleeping, all in seconds."""

    def time(self) -> float:
        """Unix time (UTC) in seconds."""

    def monotonic(self) -> float:
        """A clock that never goes back, for deadlines and rate limits."""

    async def sleep(self, seconds: float) -> None:
        """Wait ``seconds``; cancellable."""


class SystemClock:
    """The real clock: ``time.time``, ``time.monotonic`` and ``anyio.sleep``."""

    def time(self) -> float:
        """Unix time (UTC) in seconds."""
        return time.time()

    def monotonic(self) -> float:
        """``time.monotonic()``."""
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        """``anyio.sleep(seconds)``."""
        await anyio.sleep(seconds)


SYSTEM_CLOCK = SystemClock()

# Sign a little early: a timestamp ahead of the venue's clock is refused sooner (XT: 1 s) than
# one behind it (the receive window, 5 s by default).
SIGN_EARLY_MS = 200

# How far the venue's clock may be from this host's when the offset was never measured (the
# time endpoint failed) yet a signed request was accepted: HTX accepts timestamps within
# 5 minutes, the widest window of the venues. A ledger window anchored on an unmeasured clock
# is widened by this much, so a transfer's row cannot fall outside it.
UNMEASURED_UNCERTAINTY_MS = 300_000.0
# How fast this host's monotonic clock may drift from the venue's (200 ppm, well above what
# quartz oscillators do), so the venue's time estimated from the last measurement is widened
# by the time elapsed since.
DRIFT_PER_MS = 2e-4


class ServerClock:
    """Tracks one venue's clock offset so request timestamps land inside its window.

    The offset is measured lazily before the first signed request and again whenever the venue
    refuses a timestamp; concurrent resyncs share one measurement.
    """

    def __init__(self, clock: Clock, fetch_server_ms: Callable[[], Awaitable[int]]) -> None:
        self._clock = clock
        self._fetch = fetch_server_ms
        self._offset_ms: float | None = None
        self._uncertainty_ms = 0.0
        # The venue's time (ms) at the measurement and this host's monotonic time then: the
        # venue's time later, counted on the monotonic clock, survives steps of the wall clock.
        self._server_ms_at_sync = 0.0
        self._monotonic_at_sync = 0.0
        self._generation = 0
        self._lock = anyio.Lock()

    @property
    def offset_ms(self) -> float | None:
        """Server time minus local time, in ms; ``None`` before the first measurement."""
        return self._offset_ms

    @property
    def uncertainty_ms(self) -> float:
        """How far off the offset may be: half the round trip of its measurement."""
        return self._uncertainty_ms

    def timestamp_ms(self) -> int:
        """A request timestamp in the venue's time, a little early."""
        offset = self._offset_ms or 0.0
        return int(self._clock.time() * 1000 + offset) - SIGN_EARLY_MS

    def bounds_ms(self) -> tuple[int, int]:
        """The venue's time now as an interval: no earlier than the first, no later than the
        second, given what the measurement could tell (used to search the venue's ledger).

        Two estimates, both kept: the wall clock plus the offset (wrong if this host's wall
        clock stepped or drifted since the measurement) and the measurement plus the
        monotonic time elapsed (wrong if the venue's clock moved), widened by the
        measurement's uncertainty and by drift over the time elapsed. Never measured: this
        host's clock, widened by `UNMEASURED_UNCERTAINTY_MS`.
        """
        wall = self._clock.time() * 1000
        if self._offset_ms is None:
            return int(wall - UNMEASURED_UNCERTAINTY_MS), int(wall + UNMEASURED_UNCERTAINTY_MS) + 1
        elapsed = (self._clock.monotonic() - self._monotonic_at_sync) * 1000
        by_wall = wall + self._offset_ms
        by_monotonic = self._server_ms_at_sync + elapsed
        spread = self._uncertainty_ms + abs(elapsed) * DRIFT_PER_MS
        low, high = min(by_wall, by_monotonic), max(by_wall, by_monotonic)
        return int(low - spread), int(high + spread) + 1

    async def ensure_synced(self) -> None:
        """Measure the offset once, if it was never measured."""
        if self._offset_ms is None:
            await self.resync(seen_generation=self._generation)

    @property
    def generation(self) -> int:
        """Increments on every completed measurement; pass it back to `resync`."""
        return self._generation

    async def resync(self, *, seen_generation: int) -> None:
        """Measure the offset again unless someone did since ``seen_generation``.

        Raises whatever the fetch raises; the offset is left unchanged then.
        """
        async with self._lock:
            if self._generation != seen_generation and self._offset_ms is not None:
                return
            before = self._clock.time() * 1000
            started = self._clock.monotonic()
            server_ms = await self._fetch()
            after = self._clock.time() * 1000
            ended = self._clock.monotonic()
            self._offset_ms = server_ms - (before + after) / 2
            # Half the round trip, on the monotonic clock (a wall step mid-call cannot shrink it).
            self._uncertainty_ms = (ended - started) * 1000 / 2
            self._server_ms_at_sync = server_ms
            self._monotonic_at_sync = (started + ended) / 2
            self._generation += 1
