"""`ServerClock.bounds_ms`: where a ledger search for a transfer starts and ends. Too narrow an
interval drops a transfer's row from the search, which reads as "absent" and sends it again."""

from __future__ import annotations

import pytest

from xferkit._clock import DRIFT_PER_MS, UNMEASURED_UNCERTAINTY_MS, ServerClock
from xferkit.testing import VirtualClock


class Venue:
    """A venue whose clock runs ``ahead_ms`` ahead of the test's; each read takes 40 ms."""

    def __init__(self, clock: VirtualClock, ahead_ms: float) -> None:
        self.clock = clock
        self.ahead_ms = ahead_ms

    async def read(self) -> int:
        await self.clock.sleep(0.02)
        now = int(self.clock.time() * 1000 + self.ahead_ms)
        await self.clock.sleep(0.02)
        return now


def test_never_measured_it_covers_any_clock_the_venue_would_accept() -> None:
    clock = VirtualClock()
    server = ServerClock(clock, Venue(clock, 0).read)
    low, high = server.bounds_ms()
    now = clock.time() * 1000
    assert low <= now - UNMEASURED_UNCERTAINTY_MS
    assert high >= now + UNMEASURED_UNCERTAINTY_MS


async def test_measured_it_holds_the_venues_time_within_the_round_trip() -> None:
    clock = VirtualClock()
    venue = Venue(clock, 1_500)
    server = ServerClock(clock, venue.read)
    await server.ensure_synced()
    low, high = server.bounds_ms()
    truth = clock.time() * 1000 + venue.ahead_ms
    assert low <= truth <= high
    assert high - low <= 2 * 20 + 2  # half the 40 ms round trip either side


@pytest.mark.parametrize("step_ms", [-7_000, 7_000])
async def test_a_wall_clock_step_after_the_measurement_stays_covered(step_ms: float) -> None:
    """This host's wall clock steps while the venue's does not: the interval, counted on the
    monotonic clock as well, still holds the venue's true time."""
    inner = VirtualClock()
    venue = Venue(inner, 300)

    class Host:
        step = 0.0

        def time(self) -> float:
            return inner.time() + self.step / 1000

        def monotonic(self) -> float:
            return inner.monotonic()

        async def sleep(self, seconds: float) -> None:
            await inner.sleep(seconds)

    host = Host()
    server = ServerClock(host, venue.read)
    await server.ensure_synced()
    await inner.sleep(60)
    host.step = step_ms
    low, high = server.bounds_ms()
    truth = inner.time() * 1000 + venue.ahead_ms
    assert low <= truth <= high
    assert high - low <= abs(step_ms) + 2 * (20 + 60_000 * DRIFT_PER_MS) + 2
