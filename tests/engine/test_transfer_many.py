"""transfer_many: one outcome per request, never stopped by one failure, streamed lazily."""

from __future__ import annotations

import bisect
import contextlib
from collections.abc import AsyncIterator, Iterator
from decimal import Decimal
from typing import Any

import httpx
import pytest

import xferkit
from xferkit import TransferRequest, TransferStatus
from xferkit.journal import Journal
from xferkit.testing import FakeHTX, FakeTransport, FakeXT, Fault, FaultPlan, VirtualClock
from xferkit.venues.htx import MIN_SETTLE_SECONDS

from .conftest import API_KEY, SECRET, MakeClient, request_biz_id


def request(n: int, **overrides: Any) -> TransferRequest:
    fields: dict[str, Any] = {
        "venue": "xt",
        "currency": "usdt",
        "amount": Decimal(n + 1),
        "from_account": "spot",
        "to_account": "usdt_futures",
        "key": f"many-{n}",
    }
    fields.update(overrides)
    return TransferRequest(**fields)


@pytest.mark.slow
async def test_a_thousand_requests_across_both_venues_each_yield_once_and_execute_once(
    clock: VirtualClock, journal: Journal
) -> None:
    """1000 faulted requests over XT and HTX: 1000 outcomes, and the audits show exactly once."""
    plan = FaultPlan(rate=0.3, seed=4)
    fake_xt = FakeXT(api_key=API_KEY, secret=SECRET, clock=clock, faults=plan)
    fake_htx = FakeHTX(access_key=API_KEY, secret=SECRET, clock=clock, faults=plan)
    requests = [
        request(n, venue="htx", amount=Decimal(n + 1) / 1000) if n % 4 == 0 else request(n)
        for n in range(1000)
    ]
    async with (
        httpx.AsyncClient(transport=FakeTransport(fake_xt, fake_htx)) as http_client,
        xferkit.Client(
            xferkit.XT(API_KEY, SECRET, rate_limit=10_000),
            xferkit.HTX(API_KEY, SECRET, rate_limit=10_000),
            journal=journal,
            http_client=http_client,
            clock=clock,
            retry=xferkit.RetryPolicy(max_attempts=4, deadline=None),
        ) as client,
    ):
        outcomes = [o async for o in client.transfer_many(requests, concurrency=32)]
        plan.enabled = False
        await client.resume()
        settled = [o async for o in client.transfer_many(requests, concurrency=32)]

    keys = [o.key if isinstance(o, xferkit.Receipt) else o.request.key for o in outcomes]  # type: ignore[union-attr]
    assert sorted(keys) == sorted(r.key for r in requests)  # exactly one outcome per request
    final = {o.key if isinstance(o, xferkit.Receipt) else o.request.key: o for o in settled}  # type: ignore[union-attr]
    per_token = fake_xt.executions_by_token()
    xt = xferkit.XT(API_KEY, SECRET)
    for r in requests:
        if r.venue == "xt":
            executed = per_token[request_biz_id(xt, r)]
        else:
            executed = fake_htx.executions_matching("spot", "linear-swap", "usdt", r.amount)
        outcome = final[r.key]
        if isinstance(outcome, xferkit.Receipt):
            assert outcome.status is TransferStatus.SUCCEEDED
            assert executed == 1, r.key
        else:  # every attempt provably unprocessed (e.g. refused connections): nothing moved
            assert isinstance(outcome, xferkit.VenueError), (r.key, outcome)
            assert executed == 0, r.key


async def test_one_failure_does_not_stop_the_batch(
    make_client: MakeClient, fake_xt: FakeXT
) -> None:
    """A bad request yields its typed error, carrying the request, and the rest still run."""
    bad = request(1, amount=1.5)  # a float amount
    requests = [request(0), bad, request(2)]
    async with make_client() as client:
        outcomes = [o async for o in client.transfer_many(requests, concurrency=2)]
    errors = [o for o in outcomes if isinstance(o, Exception)]
    assert len(outcomes) == 3
    assert len(errors) == 1
    assert isinstance(errors[0], xferkit.InvalidRequestError)
    assert errors[0].request is bad
    assert len(fake_xt.audit) == 2


async def test_requests_are_pulled_lazily(make_client: MakeClient) -> None:
    """The batch reads requests only as capacity frees up: memory stays flat in their number."""
    pulled = 0

    def endless() -> Iterator[TransferRequest]:
        nonlocal pulled
        n = 0
        while True:
            pulled += 1
            yield request(n)
            n += 1

    async with make_client() as client:
        seen = 0
        async for outcome in client.transfer_many(endless(), concurrency=4):
            assert isinstance(outcome, xferkit.Receipt)
            seen += 1
            if seen == 10:
                break
    assert pulled <= 10 + 2 * 4 + 1  # what was consumed, plus the slots and the buffer


async def test_stopping_early_cancels_the_rest_and_leaves_them_resumable(
    make_client: MakeClient, journal: Journal, fake_xt: FakeXT
) -> None:
    """Closing the iterator early stops the batch; what it started is left free for resume()."""
    unresolved = [TransferStatus.PENDING, TransferStatus.IN_FLIGHT, TransferStatus.UNKNOWN]
    async with make_client() as client:
        batch = client.transfer_many([request(n) for n in range(50)], concurrency=8)
        async with contextlib.aclosing(batch):
            async for _ in batch:
                break
        executed_when_stopped = len(fake_xt.audit)
        for receipt in await client.resume():
            assert receipt.status is TransferStatus.SUCCEEDED
        left = await journal.list(statuses=unresolved)
    assert executed_when_stopped < 50  # the rest of the batch really was stopped
    assert left == []  # and nothing it started was left unsettled
    assert all(count == 1 for count in fake_xt.executions_by_token().values())


async def test_async_iterables_and_a_failing_source(make_client: MakeClient) -> None:
    """Async iterables are accepted; an error raised by the source itself ends the batch."""

    async def source() -> AsyncIterator[TransferRequest]:
        yield request(0)
        yield request(1)
        raise RuntimeError("plan file unreadable")

    outcomes: list[object] = []

    async def consume(client: xferkit.Client) -> None:
        async for outcome in client.transfer_many(source(), concurrency=1):
            outcomes.append(outcome)

    async with make_client() as client:
        with pytest.raises(RuntimeError, match="plan file unreadable"):
            await consume(client)
    assert len(outcomes) <= 2


async def test_concurrency_must_be_positive(make_client: MakeClient) -> None:
    """A concurrency below one is refused before anything runs."""
    async with make_client() as client:
        with pytest.raises(xferkit.InvalidRequestError):
            async for _ in client.transfer_many([request(0)], concurrency=0):
                pass


def busiest_second(times: list[float]) -> int:
    """The most requests any one-second window of the log holds."""
    times = sorted(times)
    return max((bisect.bisect_right(times, t + 1.0) - i for i, t in enumerate(times)), default=0)


@pytest.mark.slow
async def test_a_thousand_faulted_requests_on_real_time_keep_under_each_venues_rate() -> None:
    """1000 faulted requests over XT and HTX on the real clock: one outcome each, exactly once,
    and no second of either fake's request log holds more than that venue's rate_limit."""
    xt_rate, htx_rate = 300, 200
    # Every fault but injected 429s: each of those (rightly) halves the rate and holds the
    # venue for its Retry-After, which would make this a test of patience, not of the ceiling.
    plan = FaultPlan(rate=0.2, seed=6, kinds=[f for f in Fault if f is not Fault.RATE_LIMIT])
    fake_xt = FakeXT(api_key=API_KEY, secret=SECRET, faults=plan)
    fake_htx = FakeHTX(access_key=API_KEY, secret=SECRET, faults=plan, rate_limit=htx_rate)
    requests = [
        request(n, venue="htx", amount=Decimal(n + 1) / 1000) if n % 5 < 2 else request(n)
        for n in range(1000)
    ]
    policy = xferkit.RetryPolicy(max_attempts=6, initial_backoff=0.01, max_backoff=0.1, deadline=30)
    async with (
        httpx.AsyncClient(transport=FakeTransport(fake_xt, fake_htx)) as http_client,
        xferkit.Client(
            xferkit.XT(API_KEY, SECRET, rate_limit=xt_rate),
            # The shortest settle window: this test is about the rate ceiling on the real
            # clock, and the exactly-once suites run with the default window.
            xferkit.HTX(API_KEY, SECRET, rate_limit=htx_rate, settle_seconds=MIN_SETTLE_SECONDS),
            journal=xferkit.MemoryJournal(),
            http_client=http_client,
            timeout=0.5,
            retry=policy,
        ) as client,
    ):  # fmt: skip
        outcomes = [o async for o in client.transfer_many(requests, concurrency=64)]
        plan.enabled = False
        await client.resume()
        settled = [o async for o in client.transfer_many(requests, concurrency=64)]

    def key_of(outcome: object) -> str | None:
        if isinstance(outcome, xferkit.Receipt):
            return outcome.key
        assert isinstance(outcome, xferkit.XferError), outcome
        assert outcome.request is not None
        return outcome.request.key

    assert sorted(map(key_of, outcomes)) == sorted(r.key for r in requests)  # type: ignore[type-var]
    per_token = fake_xt.executions_by_token()
    xt = xferkit.XT(API_KEY, SECRET)
    final = {key_of(o): o for o in settled}
    for r in requests:
        outcome = final[r.key]
        executed = (
            per_token[request_biz_id(xt, r)]
            if r.venue == "xt"
            else fake_htx.executions_matching("spot", "linear-swap", "usdt", r.amount)
        )
        assert executed == (1 if isinstance(outcome, xferkit.Receipt) else 0), r.key
    posts = "/v4/balance/transfer", "/v2/account/transfer"
    xt_times = [q.real_time for q in fake_xt.requests if q.request.path == posts[0]]
    htx_times = [q.real_time for q in fake_htx.requests if q.request.path == posts[1]]
    assert busiest_second(xt_times) <= xt_rate
    assert busiest_second(htx_times) <= htx_rate
    assert fake_htx.rate_limited == 0
