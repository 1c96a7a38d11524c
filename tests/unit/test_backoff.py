"""Backoff arithmetic, the deadline stop, the rate limiter and the server clock, on fake time."""

from __future__ import annotations

import asyncio
import heapq
import itertools
import random
from collections.abc import Coroutine
from types import SimpleNamespace
from typing import Any, TypeVar

import anyio
import pytest
import tenacity
from hypothesis import given
from hypothesis import strategies as st

from xferkit import RetryPolicy
from xferkit._clock import ServerClock
from xferkit._ratelimit import HEADROOM, RateLimiter
from xferkit._retry import backoff_delay, backoff_wait, deadline_stop

T = TypeVar("T")


class StepClock:
    """Time stands still until someone sleeps; a sleep moves it forward by that much."""

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self.wall = start
        self.mono = 0.0

    def time(self) -> float:
        return self.wall

    def monotonic(self) -> float:
        return self.mono

    def advance(self, seconds: float) -> None:
        self.wall += seconds
        self.mono += seconds

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(0)
        self.advance(max(seconds, 0.0))


class SchedulerClock:
    """Virtual time with real sleepers: time jumps to the earliest wake-up once all are waiting.

    Unlike StepClock, concurrent sleepers overlap: two tasks sleeping 1 s at once cost 1 s.
    """

    def __init__(self) -> None:
        self.now = 0.0
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._seq = itertools.count()

    def time(self) -> float:
        return 1_700_000_000.0 + self.now

    def monotonic(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (self.now + max(seconds, 0.0), next(self._seq), future))
        await future

    async def run(self, awaitable: Coroutine[Any, Any, T]) -> T:
        task = asyncio.ensure_future(awaitable)
        while not task.done():
            for _ in range(10):  # let every runnable task reach its next sleep
                await asyncio.sleep(0)
            while self._sleepers and not task.done():
                when, _, future = heapq.heappop(self._sleepers)
                if not future.done():
                    self.now = max(self.now, when)
                    future.set_result(None)
                    break
        return await task


# -- backoff_delay ------------------------------------------------------------------------------

POLICY = RetryPolicy(initial_backoff=0.5, max_backoff=8.0, max_retry_after=30.0)
# attempt -> cap of the wait after that attempt: 0.5 doubling, stopping at 8.
CAPS = {1: 0.5, 2: 1.0, 3: 2.0, 4: 4.0, 5: 8.0, 6: 8.0, 7: 8.0, 20: 8.0}


@pytest.mark.parametrize(("attempt", "cap"), CAPS.items())
def test_cap_doubles_per_attempt_then_stops_at_max_backoff(attempt: int, cap: float) -> None:
    """The wait's cap is initial_backoff doubled per attempt, never above max_backoff."""
    assert backoff_delay(POLICY, attempt, 0.5) == pytest.approx(cap / 2)
    assert backoff_delay(POLICY, attempt, 0.0) == 0.0
    assert backoff_delay(POLICY, attempt, 0.999999) == pytest.approx(cap, rel=1e-5)


@given(
    attempt=st.integers(min_value=1, max_value=60),
    draw=st.floats(min_value=0.0, max_value=1.0, exclude_max=True),
    initial=st.floats(min_value=0.001, max_value=10.0),
    maximum=st.floats(min_value=0.001, max_value=100.0),
)
def test_full_jitter_stays_within_zero_and_cap(
    attempt: int, draw: float, initial: float, maximum: float
) -> None:
    """Every wait lies in [0, cap], where cap never exceeds max_backoff."""
    policy = RetryPolicy(initial_backoff=initial, max_backoff=maximum)
    delay = backoff_delay(policy, attempt, draw)
    assert 0.0 <= delay <= maximum
    assert delay <= initial * 2.0 ** (attempt - 1) * (1 + 1e-12)


@given(attempt=st.integers(min_value=1, max_value=1_000_000))
def test_cap_stays_at_max_backoff_for_very_late_attempts(attempt: int) -> None:
    """However many attempts a policy allows, the wait stays a number within [0, max_backoff]."""
    policy = RetryPolicy(max_attempts=2_000_000, deadline=None)
    delay = backoff_delay(policy, attempt, 0.5)
    assert 0.0 <= delay <= policy.max_backoff


def test_jitter_is_linear_in_the_draw() -> None:
    """Within one attempt the wait is the draw's share of the cap (full jitter, not equal)."""
    delays = [backoff_delay(POLICY, 3, d) for d in (0.0, 0.25, 0.5, 0.75)]
    assert delays == pytest.approx([0.0, 0.5, 1.0, 1.5])


def test_retry_after_is_a_floor() -> None:
    """A Retry-After longer than the jittered wait replaces it."""
    assert backoff_delay(POLICY, 1, 0.1, retry_after=3.0) == 3.0


def test_jitter_above_retry_after_is_kept() -> None:
    """A jittered wait already longer than Retry-After is not shortened."""
    assert backoff_delay(POLICY, 5, 0.9, retry_after=1.0) == pytest.approx(7.2)


def test_retry_after_is_capped_by_max_retry_after() -> None:
    """A huge Retry-After is honoured only up to max_retry_after."""
    assert backoff_delay(POLICY, 1, 0.0, retry_after=3600.0) == 30.0
    assert backoff_delay(POLICY, 1, 0.0, retry_after=float("inf")) == 30.0


def test_zero_retry_after_changes_nothing() -> None:
    """Retry-After: 0 leaves the jittered wait as it was."""
    assert backoff_delay(POLICY, 2, 0.5, retry_after=0.0) == backoff_delay(POLICY, 2, 0.5)


def test_backoff_wait_feeds_attempt_draw_and_retry_after() -> None:
    """The tenacity wait uses the state's attempt number, the rng's draw and the Retry-After."""

    class FixedDraw(random.Random):
        def random(self) -> float:
            return 0.5

    wait = backoff_wait(POLICY, FixedDraw(), lambda state: state.retry_after)
    assert wait(SimpleNamespace(attempt_number=4, retry_after=None)) == pytest.approx(2.0)  # type: ignore[arg-type]
    assert wait(SimpleNamespace(attempt_number=4, retry_after=9.0)) == 9.0  # type: ignore[arg-type]


# -- deadline_stop ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("now", "upcoming", "stops"),
    [
        (0.0, 1.0, False),
        (5.0, 4.9, False),
        (5.0, 5.0, True),  # the wait would end exactly at the deadline
        (5.0, 6.0, True),
        (10.0, 0.0, True),  # already at the deadline
        (11.0, None, True),  # past it, no sleep scheduled
        (9.0, None, False),
    ],
)
def test_deadline_stop(now: float, upcoming: float | None, stops: bool) -> None:
    """It stops when now plus the upcoming sleep reaches the deadline (10 s here)."""
    clock = StepClock()
    clock.mono = now
    stop = deadline_stop(clock, 10.0)
    assert stop(SimpleNamespace(upcoming_sleep=upcoming)) is stops  # type: ignore[arg-type]


def test_no_deadline_never_stops() -> None:
    """Without a deadline the stop never fires, however late or long the wait."""
    clock = StepClock()
    clock.mono = 1e12
    stop = deadline_stop(clock, None)
    assert stop(SimpleNamespace(upcoming_sleep=1e9)) is False  # type: ignore[arg-type]


async def test_deadline_stop_bounds_a_real_tenacity_loop() -> None:
    """In tenacity with 1 s waits and a 3.5 s deadline, the call makes 4 attempts then stops."""
    clock = StepClock()
    attempts: list[float] = []

    async def fail() -> None:
        attempts.append(clock.monotonic())
        raise ValueError("again")

    retrying = tenacity.AsyncRetrying(
        stop=deadline_stop(clock, clock.monotonic() + 3.5),
        wait=tenacity.wait_fixed(1.0),
        retry=tenacity.retry_if_exception_type(ValueError),
        sleep=clock.sleep,
    )
    with pytest.raises(tenacity.RetryError):
        await retrying(fail)
    assert attempts == [0.0, 1.0, 2.0, 3.0]
    assert clock.monotonic() == 3.0  # it did not sleep past the deadline


# -- RateLimiter --------------------------------------------------------------------------------


async def test_sequential_acquires_are_spaced_by_the_rate() -> None:
    """Ten back-to-back acquires at 5/s span at least 1.8 s, each 0.2 s after the previous."""
    clock = StepClock()
    limiter = RateLimiter(5.0, clock)
    times = []
    for _ in range(10):
        await limiter.acquire()
        times.append(clock.monotonic())
    assert times[-1] - times[0] >= 1.8 - 1e-9
    assert all(b - a >= 0.2 - 1e-9 for a, b in itertools.pairwise(times))
    assert times[0] == 0.0  # the first caller does not wait


async def test_concurrent_acquires_are_spaced_by_the_rate() -> None:
    """Ten concurrent acquires at 5/s (less the headroom) never start closer than one slot."""
    clock = SchedulerClock()
    limiter = RateLimiter(5.0, clock)
    times: list[float] = []

    async def one() -> None:
        await limiter.acquire()
        times.append(clock.monotonic())

    async def all_of_them() -> None:
        await asyncio.gather(*(one() for _ in range(10)))

    await clock.run(all_of_them())
    times.sort()
    slot = 1 / (5.0 * HEADROOM)
    assert len(times) == 10
    assert all(b - a >= slot - 1e-9 for a, b in itertools.pairwise(times))
    assert times[-1] == pytest.approx(9 * slot)  # and no slower than the rate allows
    assert slot <= 1 / (5.0 * 0.95)  # the headroom keeps utilisation at 95% or more


async def test_idle_time_does_not_build_a_burst() -> None:
    """After a long idle spell only one caller passes at once: the burst is one."""
    clock = StepClock()
    limiter = RateLimiter(5.0, clock)
    await limiter.acquire()
    clock.advance(60.0)
    times = []
    for _ in range(3):
        await limiter.acquire()
        times.append(clock.monotonic())
    slot = 1 / (5.0 * HEADROOM)
    assert times == pytest.approx([60.0, 60.0 + slot, 60.0 + 2 * slot])


async def test_a_cancelled_caller_takes_no_slot() -> None:
    """A caller cancelled before its turn takes nothing: the next caller goes at once. (The
    queue is taken without a trip through the event loop when free, but never by a caller
    whose cancellation is pending.)"""
    clock = StepClock()
    limiter = RateLimiter(5.0, clock)
    await limiter.acquire()
    clock.advance(1.0)
    with anyio.CancelScope() as scope:
        scope.cancel()
        await limiter.acquire()
    assert scope.cancelled_caught
    await limiter.acquire()
    assert clock.monotonic() == 1.0  # the slot the cancelled caller did not take


def test_rate_property_reports_the_rate() -> None:
    """The limiter reports the rate it aims at: the one it was built with, less the headroom."""
    assert RateLimiter(2.5, StepClock()).rate == pytest.approx(2.5 * HEADROOM)


# -- ServerClock --------------------------------------------------------------------------------


def fetcher(clock: StepClock, server_ms: int, takes: float = 0.0) -> tuple[list[int], Any]:
    calls: list[int] = []

    async def fetch() -> int:
        calls.append(1)
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        clock.advance(takes)  # the round trip takes `takes` seconds of local time
        return server_ms

    return calls, fetch


async def test_offset_is_server_time_minus_the_midpoint() -> None:
    """The offset is the server's time minus the midpoint of the local send and receive times."""
    clock = StepClock(start=1_000.0)  # 1_000_000 ms
    _, fetch = fetcher(clock, server_ms=1_002_000, takes=0.3)
    server = ServerClock(clock, fetch)
    assert server.offset_ms is None
    await server.ensure_synced()
    # sent at 1_000_000 ms, answered at 1_000_300 ms: midpoint 1_000_150 ms.
    assert server.offset_ms == pytest.approx(1_850.0)


async def test_timestamp_lands_inside_the_venue_window() -> None:
    """After a sync, request timestamps are not ahead of the server and well inside 5 s."""
    clock = StepClock(start=1_000.0)
    _, fetch = fetcher(clock, server_ms=1_002_000, takes=0.3)
    server = ServerClock(clock, fetch)
    await server.ensure_synced()
    server_now_ms = clock.time() * 1000 + 1_850.0  # the server's clock, as measured
    ts = server.timestamp_ms()
    assert server_now_ms - 1_000 <= ts <= server_now_ms


async def test_unsynced_timestamp_uses_local_time() -> None:
    """Before any measurement the timestamp follows the local clock (never ahead of it)."""
    clock = StepClock(start=1_000.0)
    server = ServerClock(clock, fetcher(clock, 0)[1])
    assert 1_000_000 - 1_000 <= server.timestamp_ms() <= 1_000_000


async def test_concurrent_resyncs_with_the_same_generation_fetch_once() -> None:
    """Many tasks resyncing after seeing the same generation share one measurement."""
    clock = StepClock()
    calls, fetch = fetcher(clock, server_ms=5_000_000)
    server = ServerClock(clock, fetch)
    await server.ensure_synced()
    assert len(calls) == 1
    seen = server.generation
    await asyncio.gather(*(server.resync(seen_generation=seen) for _ in range(8)))
    assert len(calls) == 2
    assert server.generation == seen + 1


async def test_concurrent_first_syncs_fetch_once() -> None:
    """Concurrent first uses measure the offset once."""
    clock = StepClock()
    calls, fetch = fetcher(clock, server_ms=5_000_000)
    server = ServerClock(clock, fetch)
    await asyncio.gather(*(server.ensure_synced() for _ in range(8)))
    assert len(calls) == 1
    await server.ensure_synced()
    assert len(calls) == 1


async def test_stale_generation_does_not_refetch() -> None:
    """A resync asked with an old generation, after a newer measurement, fetches nothing."""
    clock = StepClock()
    calls, fetch = fetcher(clock, server_ms=5_000_000)
    server = ServerClock(clock, fetch)
    await server.ensure_synced()
    old = server.generation
    await server.resync(seen_generation=old)
    assert len(calls) == 2
    await server.resync(seen_generation=old)
    assert len(calls) == 2


async def test_failed_fetch_keeps_the_offset_and_allows_a_retry() -> None:
    """A fetch that raises leaves offset and generation as they were; the next resync fetches."""
    clock = StepClock(start=1_000.0)
    calls: list[int] = []
    results: list[int | Exception] = [1_000_500, ValueError("bad time"), 1_000_900]

    async def fetch() -> int:
        answer = results[len(calls)]
        calls.append(1)
        if isinstance(answer, Exception):
            raise answer
        return answer

    server = ServerClock(clock, fetch)
    await server.ensure_synced()
    assert server.offset_ms == pytest.approx(500.0)
    generation = server.generation
    with pytest.raises(ValueError, match="bad time"):
        await server.resync(seen_generation=generation)
    assert server.offset_ms == pytest.approx(500.0)
    assert server.generation == generation
    await server.resync(seen_generation=generation)
    assert server.offset_ms == pytest.approx(900.0)
    assert len(calls) == 3
