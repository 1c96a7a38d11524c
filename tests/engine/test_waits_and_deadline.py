"""Every wait is bounded: a venue's Retry-After is capped, and no wait outlasts the deadline.

A venue that answers ``Retry-After: 86400`` (or ``inf``) must neither stop the venue's rate
limiter for a day nor keep a call with a deadline waiting past it. Time is virtual throughout.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import anyio
import httpx
import pytest

import xferkit
from xferkit import TransferStatus
from xferkit.journal import Journal
from xferkit.testing import FakeTransport, FakeXT, Fault, FaultPlan, VirtualClock

from .conftest import API_KEY, SECRET, transfer_args

TRANSFER_PATH = "/v4/balance/transfer"


def transfer_requests(fake: FakeXT) -> int:
    return sum(1 for r in fake.requests if r.request.path == TRANSFER_PATH)


class Venue(httpx.AsyncBaseTransport):
    """The fake venue's transport, with a chosen Retry-After on every 429 and an optional gate.

    `hold` keeps transfer requests from reaching the venue until `release`: a drive stuck
    mid-send, holding its lease. ``after_transfer``, if set, runs once a transfer request
    has been answered (or failed).
    """

    def __init__(self, fake: FakeXT, *, retry_after: str | None = None) -> None:
        self._inner = FakeTransport(fake)
        self._retry_after = retry_after
        self._gate: anyio.Event | None = None
        self.held = anyio.Event()  # set when a transfer request reaches a closed gate
        self.after_transfer: Callable[[], None] | None = None

    def hold(self) -> None:
        self._gate = anyio.Event()

    def release(self) -> None:
        if self._gate is not None:
            self._gate.set()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if self._gate is not None and request.url.path == TRANSFER_PATH:
            self.held.set()
            await self._gate.wait()
        try:
            response = await self._inner.handle_async_request(request)
        finally:
            if self.after_transfer is not None and request.url.path == TRANSFER_PATH:
                self.after_transfer()
        if response.status_code == 429 and self._retry_after is not None:
            response.headers["retry-after"] = self._retry_after
        return response


ClientOn = Callable[..., Any]


@pytest.fixture
def client_on(fake_xt: FakeXT, clock: VirtualClock, journal: Journal) -> Callable[..., Any]:
    """Build a Client on ``transport`` (a `Venue`); keyword arguments go to the Client."""

    @asynccontextmanager
    async def make(
        transport: Venue, *, rate_limit: float = 10_000, **options: Any
    ) -> AsyncIterator[xferkit.Client]:
        options.setdefault("retry", xferkit.RetryPolicy(max_attempts=8, deadline=None))
        xt = xferkit.XT(API_KEY, SECRET, rate_limit=rate_limit)
        async with (
            httpx.AsyncClient(transport=transport) as http_client,
            xferkit.Client(
                xt, journal=journal, clock=clock, http_client=http_client, **options
            ) as client,
        ):
            yield client

    return make


async def test_a_day_long_retry_after_ends_the_call_at_its_deadline_and_blocks_no_one(
    client_on: ClientOn, fake_xt: FakeXT, plan: FaultPlan, clock: VirtualClock
) -> None:
    """Retry-After 86400 with deadline=5: the call ends within 5 virtual seconds, nothing
    moved and the key is not spent; the next calls wait at most max_retry_after, not a day."""
    plan.force(Fault.RATE_LIMIT)
    async with client_on(Venue(fake_xt, retry_after="86400")) as client:
        start = clock.monotonic()
        with pytest.raises(xferkit.RateLimitError) as refused:
            await client.transfer("xt", **transfer_args(), key="k1", deadline=5.0)
        assert clock.monotonic() - start <= 5.0
        assert refused.value.key_reusable
        assert not fake_xt.audit

        again = clock.monotonic()
        receipt = await client.transfer("xt", **transfer_args(), key="k1")
        other = await client.transfer("xt", **transfer_args(), key="k2")
        waited = clock.monotonic() - again
    assert receipt.status is TransferStatus.SUCCEEDED
    assert other.status is TransferStatus.SUCCEEDED
    assert waited <= xferkit.RetryPolicy().max_retry_after + 1.0  # not a day, not for ever
    assert list(fake_xt.executions_by_token().values()) == [1, 1]


@pytest.mark.parametrize("retry_after", ["inf", "nan", "1e999"])
async def test_a_retry_after_that_is_not_a_finite_number_is_ignored(
    client_on: ClientOn, fake_xt: FakeXT, plan: FaultPlan, clock: VirtualClock, retry_after: str
) -> None:
    """Retry-After inf: ignored, so the policy's short backoff applies; the call with
    deadline=5 resends and succeeds in time, and the limiter holds no one for ever."""
    plan.force(Fault.RATE_LIMIT)
    async with client_on(Venue(fake_xt, retry_after=retry_after)) as client:
        start = clock.monotonic()
        receipt = await client.transfer("xt", **transfer_args(), key="k1", deadline=5.0)
        later = await client.transfer("xt", **transfer_args(), key="k2", deadline=5.0)
    assert (receipt.status, later.status) == (TransferStatus.SUCCEEDED,) * 2
    assert clock.monotonic() - start <= 5.0
    assert transfer_requests(fake_xt) == 3
    assert list(fake_xt.executions_by_token().values()) == [1, 1]


async def test_the_limiters_hold_is_capped_by_max_retry_after(
    client_on: ClientOn, fake_xt: FakeXT, plan: FaultPlan, clock: VirtualClock
) -> None:
    """With max_retry_after=2, a 429 saying 86400 s delays the resend by about 2 s, no more."""
    plan.force(Fault.RATE_LIMIT)
    policy = xferkit.RetryPolicy(max_attempts=4, max_retry_after=2.0, deadline=None)
    async with client_on(Venue(fake_xt, retry_after="86400"), retry=policy) as client:
        start = clock.monotonic()
        receipt = await client.transfer("xt", **transfer_args(), key="k1")
    assert receipt.status is TransferStatus.SUCCEEDED
    assert 2.0 <= clock.monotonic() - start <= 3.0
    assert transfer_requests(fake_xt) == 2


async def test_a_hold_past_the_deadline_ends_the_call_before_anything_is_sent(
    client_on: ClientOn,
    fake_xt: FakeXT,
    plan: FaultPlan,
    clock: VirtualClock,
    journal: Journal,
) -> None:
    """Another call's 429 holds the venue for 20 s; a call with deadline=5 does not wait: it
    fails at once, unsent, key not spent, and the same key later executes once."""
    plan.force(Fault.RATE_LIMIT)
    policy = xferkit.RetryPolicy(max_attempts=1, deadline=None)
    async with client_on(Venue(fake_xt, retry_after="20"), retry=policy) as client:
        with pytest.raises(xferkit.RateLimitError):
            await client.transfer("xt", **transfer_args(), key="first")
        sent = transfer_requests(fake_xt)
        start = clock.monotonic()
        with pytest.raises(xferkit.RateLimitError) as refused:
            await client.transfer("xt", **transfer_args(), key="k2", deadline=5.0)
        assert clock.monotonic() - start <= 5.0
        assert refused.value.key_reusable
        assert transfer_requests(fake_xt) == sent  # nothing sent for k2
        (stored,) = [i for i in await journal.list() if i.key == "k2"]
        assert (stored.status, stored.attempts) == (TransferStatus.FAILED, 0)

        receipt = await client.transfer("xt", **transfer_args(), key="k2")
    assert receipt.status is TransferStatus.SUCCEEDED
    assert clock.monotonic() - start >= 20.0 - 1e-6  # the capped hold itself is honoured
    assert list(fake_xt.executions_by_token().values()) == [1]


async def test_a_hold_past_the_deadline_after_a_lost_answer_leaves_it_unknown(
    client_on: ClientOn,
    fake_xt: FakeXT,
    plan: FaultPlan,
    clock: VirtualClock,
    journal: Journal,
) -> None:
    """Attempt 1 executes and its answer is lost; the resend would wait past the deadline for
    the limiter: the call ends UNKNOWN at once, without a resend, and resume() settles it."""
    plan.force(Fault.DROP_AFTER)
    transport = Venue(fake_xt)
    async with client_on(transport) as client:
        limiter = client._runtimes["xt"].limiter
        # Once attempt 1 is answered, the venue is held for 20 s, as another caller's 429
        # would hold it.
        transport.after_transfer = lambda: limiter.pause_until(20.0)
        start = clock.monotonic()
        with pytest.raises(xferkit.TransferOutcomeUnknownError):
            await client.transfer("xt", **transfer_args(), key="k1", deadline=5.0)
        assert clock.monotonic() - start <= 5.0
        assert transfer_requests(fake_xt) == 1
        (stored,) = [i for i in await journal.list() if i.key == "k1"]
        assert (stored.status, stored.attempts) == (TransferStatus.UNKNOWN, 1)

        transport.after_transfer = None
        receipts = await client.resume()
    assert [(r.key, r.status) for r in receipts] == [("k1", TransferStatus.SUCCEEDED)]
    assert list(fake_xt.executions_by_token().values()) == [1]


async def test_callers_queued_past_their_deadline_are_refused_not_delayed(
    client_on: ClientOn, fake_xt: FakeXT, clock: VirtualClock
) -> None:
    """At 1 request/s, six concurrent calls with deadline=3: those whose slot would come
    after their deadline fail unsent (key not spent); nobody is sent late; all execute once
    when called again."""
    outcomes: dict[str, xferkit.Receipt | xferkit.XferError] = {}
    async with client_on(Venue(fake_xt), rate_limit=1.0) as client:

        async def one(key: str) -> None:
            try:
                outcomes[key] = await client.transfer(
                    "xt", **transfer_args(), key=key, deadline=3.0
                )
            except xferkit.XferError as exc:
                outcomes[key] = exc

        start = clock.monotonic()
        async with anyio.create_task_group() as tg:
            for n in range(6):
                tg.start_soon(one, f"k{n}")
        sends = [r.clock_time for r in fake_xt.requests if r.request.path == TRANSFER_PATH]
        refused = [k for k, o in outcomes.items() if isinstance(o, xferkit.XferError)]
        assert all(isinstance(outcomes[k], xferkit.RateLimitError) for k in refused)
        assert all(o.key_reusable for o in outcomes.values() if isinstance(o, xferkit.VenueError))
        assert len(refused) >= 3  # slots come every ~1.03 s: at most 3 fit in 3 s
        assert len(sends) == 6 - len(refused)  # a refused call sent nothing
        assert all(t - fake_xt.requests[0].clock_time <= 3.0 for t in sends)
        assert clock.monotonic() - start <= 3.0

        for key in refused:
            receipt = await client.transfer("xt", **transfer_args(), key=key)
            assert receipt.status is TransferStatus.SUCCEEDED
    assert list(fake_xt.executions_by_token().values()) == [1] * 6


@pytest.mark.parametrize("driver", ["same client", "another client"])
async def test_waiting_for_another_drive_of_the_key_ends_at_the_deadline(
    client_on: ClientOn, fake_xt: FakeXT, clock: VirtualClock, driver: str
) -> None:
    """A drive of the key (no deadline) is stuck mid-send: a second call of the key with
    deadline=2.5 gives up at 2.5 virtual seconds (outcome unknown), not when the drive ends."""
    transport = Venue(fake_xt)
    transport.hold()
    joined: list[BaseException | xferkit.Receipt] = []
    finished = anyio.Event()
    async with client_on(transport) as first, client_on(Venue(fake_xt)) as other:
        joiner = first if driver == "same client" else other
        driven: list[xferkit.Receipt] = []

        async def drive() -> None:
            driven.append(await first.transfer("xt", **transfer_args(), key="shared"))

        async def join() -> None:
            try:
                joined.append(
                    await joiner.transfer("xt", **transfer_args(), key="shared", deadline=2.5)
                )
            except xferkit.XferError as exc:
                joined.append(exc)
            finished.set()

        async with anyio.create_task_group() as tg:
            tg.start_soon(drive)
            await transport.held.wait()  # the drive holds the lease, stuck mid-send
            start = clock.monotonic()
            tg.start_soon(join)
            with anyio.move_on_after(5):  # real seconds: only a joiner that ignores its
                await finished.wait()  # deadline (waiting for the drive) gets this far
            ended = clock.monotonic()
            transport.release()
    assert len(joined) == 1
    assert isinstance(joined[0], xferkit.TransferOutcomeUnknownError)
    assert ended - start <= 2.5 + 1e-6
    assert driven[0].status is TransferStatus.SUCCEEDED
    assert list(fake_xt.executions_by_token().values()) == [1]
