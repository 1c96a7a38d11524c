"""Retry-After as a number: finite or ignored, capped, and never waited for past a deadline."""

from __future__ import annotations

import anyio
import pytest

from xferkit._http import HttpResponse
from xferkit._ratelimit import RateLimiter
from xferkit.testing import VirtualClock


def answer(retry_after: str) -> HttpResponse:
    return HttpResponse(status=429, headers={"retry-after": retry_after})


async def acquire(limiter: RateLimiter, deadline_at: float | None = None) -> bool:
    """`RateLimiter.acquire`, failing (in real seconds) rather than spinning for ever."""
    with anyio.fail_after(5):
        if deadline_at is None:
            return await limiter.acquire() is not False
        return await limiter.acquire(deadline_at)


@pytest.mark.parametrize("value", ["inf", "Infinity", "-inf", "nan", "1e999", "-1"])
def test_a_retry_after_that_is_not_a_finite_non_negative_number_is_none(value: str) -> None:
    """inf, nan, an overflowing or a negative Retry-After is no Retry-After at all."""
    assert answer(value).retry_after() is None


@pytest.mark.parametrize(("value", "seconds"), [("0", 0.0), ("2.5", 2.5), ("86400", 86400.0)])
def test_a_finite_retry_after_is_read_as_seconds(value: str, seconds: float) -> None:
    """A plain number of seconds is read as given (the policy caps it later)."""
    assert answer(value).retry_after() == seconds


async def test_an_infinite_throttle_hold_is_capped_too(clock: VirtualClock) -> None:
    """throttled(inf, cap=30) holds for 30 s, as the backoff honours a huge value up to its cap."""
    limiter = RateLimiter(10.0, clock)
    limiter.throttled(float("inf"), cap=30.0)
    start = clock.monotonic()
    assert await acquire(limiter)
    assert clock.monotonic() - start == pytest.approx(30.0)


async def test_a_throttle_hold_is_capped(clock: VirtualClock) -> None:
    """throttled(86400, cap=30) holds the next caller for 30 s, not a day."""
    limiter = RateLimiter(10.0, clock)
    limiter.throttled(86400.0, cap=30.0)
    start = clock.monotonic()
    assert await acquire(limiter)
    assert clock.monotonic() - start == pytest.approx(30.0)


@pytest.mark.parametrize("value", [float("inf"), float("nan"), -5.0])
async def test_a_non_finite_throttle_hold_counts_as_none(clock: VirtualClock, value: float) -> None:
    """throttled(inf) without a cap (or nan, or negative) holds for one slot's spacing, as
    without a Retry-After."""
    limiter = RateLimiter(10.0, clock)
    limiter.throttled(value)
    start = clock.monotonic()
    assert await acquire(limiter)
    assert clock.monotonic() - start < 1.0


async def test_a_quota_pause_is_capped_and_a_non_finite_one_ignored(clock: VirtualClock) -> None:
    """pause_until(86400, cap=5) holds for 5 s; pause_until(inf) holds no one."""
    limiter = RateLimiter(100.0, clock)
    limiter.pause_until(float("inf"))
    limiter.pause_until(86400.0, cap=5.0)
    start = clock.monotonic()
    assert await acquire(limiter)
    assert clock.monotonic() - start == pytest.approx(5.0)


async def test_acquire_refuses_at_once_a_slot_past_the_deadline(clock: VirtualClock) -> None:
    """Held for 20 s, a caller with 5 s left gets False at once and takes no slot."""
    limiter = RateLimiter(10.0, clock)
    limiter.throttled(20.0, cap=30.0)
    start = clock.monotonic()
    assert not await acquire(limiter, start + 5.0)
    assert clock.monotonic() == start  # no wait at all
    assert await acquire(limiter, start + 25.0)
    assert clock.monotonic() - start == pytest.approx(20.0)  # its slot was still free


async def test_acquire_without_a_wait_ignores_a_passed_deadline(clock: VirtualClock) -> None:
    """Only a wait is bounded: a free slot is taken even at the deadline itself."""
    limiter = RateLimiter(10.0, clock)
    assert await acquire(limiter, clock.monotonic())


async def test_queued_callers_whose_turn_comes_after_their_deadline_are_refused(
    clock: VirtualClock,
) -> None:
    """At ~1/s, of six callers with 2.5 s each, three get a slot in time; the others are
    refused without waiting, and nobody's slot starts after the deadline."""
    limiter = RateLimiter(1.0, clock)
    deadline_at = clock.monotonic() + 2.5
    granted: list[float] = []
    refused: list[float] = []

    async def one() -> None:
        ok = await acquire(limiter, deadline_at)
        (granted if ok else refused).append(clock.monotonic())

    async with anyio.create_task_group() as tg:
        for _ in range(6):
            tg.start_soon(one)
    assert len(granted) == 3
    assert len(refused) == 3
    assert max(granted) <= deadline_at
    assert max(refused) <= deadline_at
