"""Adaptive rate limiting and the retry budget: back off on 429s, no retry storms."""

from __future__ import annotations

import bisect
import itertools

import anyio
import anyio.lowlevel
import httpx
import pytest

import xferkit
from xferkit._http import HttpResponse
from xferkit._ratelimit import RateLimiter
from xferkit.testing import FakeHTX, FakeTransport, FakeXT, Fault, FaultPlan, VirtualClock

from .conftest import MakeClient, transfer_args


async def test_a_429_halves_the_rate_and_waits_out_retry_after(clock: VirtualClock) -> None:
    """After throttled(2.0) nothing starts for 2 s, then requests are spaced at half the rate."""
    limiter = RateLimiter(10.0, clock)
    await limiter.acquire()
    limiter.throttled(2.0)
    assert limiter.rate == pytest.approx(limiter.configured_rate / 2)
    start = clock.monotonic()
    await limiter.acquire()
    await limiter.acquire()
    assert clock.monotonic() - start >= 2.0 + 1 / limiter.rate - 1e-9


async def test_the_rate_recovers_and_never_falls_below_the_floor(clock: VirtualClock) -> None:
    """Repeated 429s stop at 5% of the rate; quiet seconds bring it back to the ceiling."""
    limiter = RateLimiter(10.0, clock)
    for _ in range(20):  # a 429 every second
        limiter.throttled(None)
        clock.advance(1.0)
    assert limiter.rate == pytest.approx(limiter.configured_rate * 0.05)
    clock.advance(30)
    assert limiter.rate == limiter.configured_rate


async def test_a_burst_of_429s_halves_the_rate_once(clock: VirtualClock) -> None:
    """Answers to requests sent before the first 429 arrive together: one decrease, not five."""
    limiter = RateLimiter(10.0, clock)
    for _ in range(5):
        limiter.throttled(0.5)
    assert limiter.rate == pytest.approx(limiter.configured_rate / 2)


async def test_callers_already_waiting_are_held_by_a_later_429(clock: VirtualClock) -> None:
    """A hold-off reaches callers queued before it: none starts until Retry-After has passed."""
    limiter = RateLimiter(10.0, clock)
    origin = clock.monotonic()
    started: list[float] = []

    async def caller() -> None:
        await limiter.acquire()
        started.append(clock.monotonic() - origin)

    async with anyio.create_task_group() as tg:
        for _ in range(3):
            tg.start_soon(caller)
        await anyio.lowlevel.checkpoint()
        limiter.throttled(5.0)
    assert len(started) == 3
    # At most the caller that already held its slot went before; the queued ones waited.
    assert sum(t < 5.0 for t in started) <= 1, started


async def test_a_quota_pause_holds_every_caller(clock: VirtualClock) -> None:
    """pause_until(3) keeps the next request from starting for 3 s."""
    limiter = RateLimiter(100.0, clock)
    limiter.pause_until(3.0)
    start = clock.monotonic()
    await limiter.acquire()
    assert clock.monotonic() - start >= 3.0


def test_the_budget_spends_and_refunds_up_to_capacity() -> None:
    """Retries spend tokens, successes refund them, and the bucket never overflows."""
    budget = xferkit.RetryBudget(capacity=20, retry_cost=5, ambiguous_cost=10)
    assert budget.try_spend(10)
    assert budget.try_spend(10)
    assert not budget.try_spend(5)
    budget.refund(15)
    assert budget.tokens == 15
    budget.refund(100)
    assert budget.tokens == 20
    with pytest.raises(xferkit.InvalidRequestError):
        xferkit.RetryBudget(capacity=0)


async def test_an_outage_cannot_become_a_retry_storm(
    make_client: MakeClient, fake_xt: FakeXT, plan: FaultPlan
) -> None:
    """With every request failing, total requests stay within one each plus what the budget
    allows, instead of one per attempt for every transfer."""
    plan.rate = 1.0
    plan.kinds = (Fault.ERROR_5XX_BEFORE,)
    budget = xferkit.RetryBudget(capacity=50, ambiguous_cost=10)
    outcomes: list[Exception] = []
    async with make_client(retry_budget=budget) as client:

        async def one(n: int) -> None:
            try:
                await client.transfer("xt", **transfer_args(), key=f"outage-{n}")
            except xferkit.TransferOutcomeUnknownError as exc:
                outcomes.append(exc)

        async with anyio.create_task_group() as tg:
            for n in range(40):
                tg.start_soon(one, n)
    posts = [r for r in fake_xt.requests if r.request.path == "/v4/balance/transfer"]
    assert len(outcomes) == 40  # each one reported, settled later by resume()
    assert len(posts) <= 40 + 50 // 10
    assert budget.tokens < 10


async def test_after_a_429_requests_are_spaced_wider(
    make_client: MakeClient, fake_xt: FakeXT, plan: FaultPlan, xt: xferkit.XT
) -> None:
    """A venue 429 slows this client's later requests to the venue (on the virtual clock)."""
    plan.force(Fault.RATE_LIMIT)
    slow_xt = xferkit.XT(xt.api_key, xt.secret, rate_limit=10.0)
    async with make_client() as client:
        client._runtimes["xt"].venue = slow_xt  # the venue's own 10/s ceiling
        client._runtimes["xt"].limiter = RateLimiter(10.0, client._clock)
        for n in range(4):
            await client.transfer("xt", **transfer_args(), key=f"spaced-{n}")
    times = [r.clock_time for r in fake_xt.requests if r.request.path == "/v4/balance/transfer"]
    gaps = [later - earlier for earlier, later in itertools.pairwise(times)]
    assert gaps[0] >= 1.0  # the 429's Retry-After
    assert all(gap >= 0.2 - 1e-6 for gap in gaps[1:]), gaps  # at most half of 10/s


def test_htx_quota_headers_pause_until_the_window_ends() -> None:
    """Remain 0 with an expiry gives a pause; anything else, none."""
    htx = xferkit.HTX("k", "s")
    spent = HttpResponse(
        status=200,
        headers={
            "x-hb-ratelimit-requests-remain": "0",
            "x-hb-ratelimit-requests-expire": "1500",
        },
    )
    assert htx.quota_pause(spent) == 1.5
    assert htx.quota_pause(HttpResponse(status=200, headers={})) is None
    left = HttpResponse(status=200, headers={"x-hb-ratelimit-requests-remain": "3"})
    assert htx.quota_pause(left) is None


def test_the_limiter_aims_a_little_under_the_venues_ceiling(clock: VirtualClock) -> None:
    """Headroom for network jitter: the limiter targets 97% of rate_limit, above the 95% goal."""
    limiter = RateLimiter(10.0, clock)
    assert 0.95 * 10.0 <= limiter.configured_rate < 10.0


@pytest.mark.slow
async def test_a_batch_never_exceeds_the_venues_rate_limit() -> None:
    """On real time, a concurrent batch meets HTX's sliding-window limit: zero 429s, and no
    second of the fake's request log holds more than the allowed rate."""
    rate = 40
    fake = FakeHTX(access_key="k", secret="s", rate_limit=float(rate))
    requests = [
        xferkit.TransferRequest(
            venue="htx", currency="usdt", amount=n + 1, from_account="spot",
            to_account="otc", key=f"rate-{n}",
        )
        for n in range(120)
    ]  # fmt: skip
    async with (
        httpx.AsyncClient(transport=FakeTransport(fake)) as http_client,
        xferkit.Client(
            xferkit.HTX("k", "s", rate_limit=float(rate)),
            journal=xferkit.MemoryJournal(),
            http_client=http_client,
        ) as client,
    ):
        outcomes = [o async for o in client.transfer_many(requests, concurrency=16)]
    assert all(isinstance(o, xferkit.Receipt) for o in outcomes)
    assert fake.rate_limited == 0
    times = sorted(r.clock_time for r in fake.requests if r.request.path == "/v2/account/transfer")
    busiest = max(bisect.bisect_right(times, t + 1.0) - i for i, t in enumerate(times))
    assert busiest <= rate
    elapsed = times[-1] - times[0]
    assert len(times) / elapsed >= 0.9 * rate  # and it does use the rate it is given
