"""HTX settlement with the settings users pick (issue 16): the default settle window (10 s) and
a trading engine's short deadline. A lost answer is settled by reading the ledger at once;
only absence waits, and resume() is a sweep with its own deadline, driving intents at once."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from decimal import Decimal
from typing import Any

import anyio
import httpx
import pytest

import xferkit
from xferkit import Confirmation, TransferStatus
from xferkit.journal import Journal
from xferkit.testing import FakeHTX, FakeTransport, Fault, FaultPlan, VirtualClock

from .conftest import HTX_ACCESS_KEY as ACCESS_KEY
from .conftest import HTX_SECRET as SECRET

DEADLINE = 8.0  # shorter than HTX's default settle window, as a trading engine sets it


@pytest.fixture
def plan() -> FaultPlan:
    return FaultPlan(seed=16)


@pytest.fixture
def fake_htx(clock: VirtualClock, plan: FaultPlan) -> FakeHTX:
    return FakeHTX(access_key=ACCESS_KEY, secret=SECRET, clock=clock, faults=plan)


@asynccontextmanager
async def client_on(
    fake: FakeHTX,
    clock: VirtualClock,
    journal: Journal,
    *,
    transport: httpx.AsyncBaseTransport | None = None,
    deadline: float | None = DEADLINE,
) -> AsyncIterator[xferkit.Client]:
    """A client with HTX's defaults on ``fake`` (through ``transport`` if given)."""
    async with (
        httpx.AsyncClient(transport=transport or FakeTransport(fake)) as http_client,
        xferkit.Client(
            xferkit.HTX(ACCESS_KEY, SECRET),  # default settle_seconds and rate limit
            journal=journal,
            http_client=http_client,
            clock=clock,
            retry=xferkit.RetryPolicy(deadline=deadline),
        ) as client,
    ):
        yield client


def args(amount: str) -> dict[str, Any]:
    return {
        "currency": "usdt",
        "amount": amount,
        "from_account": "spot",
        "to_account": "usdt_futures",
    }


async def test_a_lost_answer_is_settled_by_the_ledger_within_a_short_deadline(
    fake_htx: FakeHTX, plan: FaultPlan, clock: VirtualClock, journal: Journal
) -> None:
    """Executed, answer lost, deadline 8 s < settle window 10 s: the ledger already shows the
    row, so the call returns SUCCEEDED (LEDGER) instead of UNKNOWN, and nothing is resent."""
    plan.force(Fault.DROP_AFTER)
    start = clock.monotonic()
    async with client_on(fake_htx, clock, journal) as client:
        receipt = await client.transfer("htx", **args("25"), key="k1")
    assert receipt.status is TransferStatus.SUCCEEDED
    assert receipt.confirmed_by is Confirmation.LEDGER
    assert clock.monotonic() - start < DEADLINE
    assert fake_htx.executions_matching("spot", "usdt_futures", "usdt", Decimal(25)) == 1


async def test_resume_settles_what_a_short_deadline_left_open_concurrently_and_once(
    fake_htx: FakeHTX, plan: FaultPlan, clock: VirtualClock, journal: Journal
) -> None:
    """Twelve transfers lost before processing with deadline 8 s end UNKNOWN (absence needs the
    10 s window). resume(), bound by no call deadline, proves each absent and sends it once;
    the settle waits overlap, so the sweep takes about one window, not twelve."""
    plan.force(Fault.DROP_BEFORE, times=12)
    async with client_on(fake_htx, clock, journal) as client:
        for n in range(12):
            with pytest.raises(xferkit.TransferOutcomeUnknownError):
                await client.transfer("htx", **args(str(10 + n)), key=f"k{n}")
        start = clock.monotonic()
        receipts = await client.resume()
        took = clock.monotonic() - start
    assert [r.status for r in receipts] == [TransferStatus.SUCCEEDED] * 12
    for n in range(12):
        amount = Decimal(10 + n)
        assert fake_htx.executions_matching("spot", "usdt_futures", "usdt", amount) == 1
    # About one settle window (10 s) plus HTX's 1 transfer/s for the twelve resends; one
    # intent at a time, as before, took twelve windows (over 120 s).
    assert took < 2 * 10 + 12


async def test_resume_has_its_own_deadline(
    fake_htx: FakeHTX, plan: FaultPlan, clock: VirtualClock, journal: Journal
) -> None:
    plan.force(Fault.DROP_BEFORE)
    async with client_on(fake_htx, clock, journal) as client:
        with pytest.raises(xferkit.TransferOutcomeUnknownError):
            await client.transfer("htx", **args("25"), key="k1")
        [early] = await client.resume(deadline=1)
        [later] = await client.resume()
        with pytest.raises(xferkit.InvalidRequestError):
            await client.resume(concurrency=0)
    assert early.status is TransferStatus.UNKNOWN  # absence not provable within 1 s
    assert later.status is TransferStatus.SUCCEEDED
    assert fake_htx.executions_matching("spot", "usdt_futures", "usdt", Decimal(25)) == 1


class SteppedWallClock:
    """The test's clock, except that this host's wall clock can be stepped (NTP, a VM
    resume) while the monotonic clock and the venue's clock go on as they were."""

    def __init__(self, inner: VirtualClock) -> None:
        self._inner = inner
        self.step = 0.0

    def time(self) -> float:
        return self._inner.time() + self.step

    def monotonic(self) -> float:
        return self._inner.monotonic()

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


@pytest.mark.parametrize("step", [5.0, -5.0])
async def test_a_host_clock_step_after_the_measurement_never_causes_a_second_send(
    fake_htx: FakeHTX, plan: FaultPlan, clock: VirtualClock, journal: Journal, step: float
) -> None:
    """The offset is measured, then the host's wall clock steps 5 s: a lost answer's ledger
    row must still fall inside the search window (counted on the monotonic clock too), so it
    is found, not judged absent and sent again."""
    host = SteppedWallClock(clock)
    async with (
        httpx.AsyncClient(transport=FakeTransport(fake_htx)) as http_client,
        xferkit.Client(
            xferkit.HTX(ACCESS_KEY, SECRET),
            journal=journal,
            http_client=http_client,
            clock=host,
            retry=xferkit.RetryPolicy(deadline=None),
        ) as client,
    ):
        await client.transfer("htx", **args("10"), key="warm-up")  # measures the offset
        host.step = step
        plan.force(Fault.DROP_AFTER)
        receipt = await client.transfer("htx", **args("25"), key="k1")
    assert receipt.status is TransferStatus.SUCCEEDED
    assert receipt.confirmed_by is Confirmation.LEDGER
    assert fake_htx.executions_matching("spot", "usdt_futures", "usdt", Decimal(25)) == 1


async def test_a_new_identical_transfer_and_resume_of_the_open_one_both_finish(
    fake_htx: FakeHTX, plan: FaultPlan, clock: VirtualClock, journal: Journal
) -> None:
    """X (25 usdt) is left open; a new identical Y waits for it while resume() settles X. Y
    used to hold the movement's lock while waiting, which X's own drive needed: neither ended
    until Y's deadline."""
    plan.force(Fault.DROP_BEFORE)
    async with client_on(fake_htx, clock, journal) as client:
        with pytest.raises(xferkit.TransferOutcomeUnknownError):
            await client.transfer("htx", **args("25"), key="x")
        results: dict[str, Any] = {}

        async def new_identical() -> None:
            results["y"] = await client.transfer("htx", **args("25"), key="y", deadline=60)

        async def sweep() -> None:
            await clock.sleep(0.5)  # y is waiting by now
            results["resume"] = await client.resume()

        async with anyio.create_task_group() as tasks:
            tasks.start_soon(new_identical)
            tasks.start_soon(sweep)
    [x] = results["resume"]
    assert x.status is TransferStatus.SUCCEEDED
    assert results["y"].status is TransferStatus.SUCCEEDED
    assert fake_htx.executions_matching("spot", "usdt_futures", "usdt", Decimal(25)) == 2


async def test_a_clean_success_owns_its_ledger_row_across_clients(
    fake_htx: FakeHTX, plan: FaultPlan, clock: VirtualClock, journal: Journal
) -> None:
    """Client 1 moves 25 usdt cleanly (the endpoint's id, no ledger row claimed). A second
    later client 2 moves the same 25 usdt under another key and its request is lost before
    processing: the ledger's one matching row is client 1's, so client 2's transfer is absent
    and is sent again; claiming that row would record SUCCEEDED for money that never moved."""
    async with client_on(fake_htx, clock, journal) as first:
        clean = await first.transfer("htx", **args("25"), key="one")
    await clock.sleep(1)
    await journal.open()  # the first client closed it
    plan.force(Fault.DROP_BEFORE)
    async with client_on(fake_htx, clock, journal) as second:
        with pytest.raises(xferkit.TransferOutcomeUnknownError):
            await second.transfer("htx", **args("25"), key="two")  # absence needs the window
        [two] = await second.resume()
    assert clean.confirmed_by is Confirmation.VENUE
    assert two.status is TransferStatus.SUCCEEDED
    assert two.confirmed_by is Confirmation.VENUE  # sent again, not matched to "one"'s row
    assert fake_htx.executions_matching("spot", "usdt_futures", "usdt", Decimal(25)) == 2


class LateAnswers(httpx.AsyncBaseTransport):
    """Delivers each transfer answer ``seconds`` of virtual time after the venue committed."""

    def __init__(self, fake: FakeHTX, clock: VirtualClock, seconds: float) -> None:
        self.inner = FakeTransport(fake)
        self.clock = clock
        self.seconds = seconds

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self.inner.handle_async_request(request)
        if request.url.path == "/v2/account/transfer":
            self.clock.advance(self.seconds)
        return response


async def test_a_lost_answer_right_after_an_identical_clean_success_settles_by_the_ledger(
    fake_htx: FakeHTX, plan: FaultPlan, clock: VirtualClock, journal: Journal
) -> None:
    """Client 1 moves 25 usdt cleanly, its answer arriving 3 s after the commit; a second
    later client 2 moves the same 25 usdt, which executes but whose answer is lost. Client
    1's row may lie before client 2's search window or inside it: the window reaches back to
    hold it whole, counts it as client 1's, and client 2's own row settles it at once.
    Before, that doubt left client 2's transfer UNKNOWN for good."""
    async with client_on(
        fake_htx, clock, journal, transport=LateAnswers(fake_htx, clock, 3.0)
    ) as first:
        await first.transfer("htx", **args("25"), key="one")
    await clock.sleep(1)
    await journal.open()  # the first client closed it
    plan.force(Fault.DROP_AFTER)
    async with client_on(fake_htx, clock, journal) as second:
        two = await second.transfer("htx", **args("25"), key="two")
    assert two.status is TransferStatus.SUCCEEDED
    assert two.confirmed_by is Confirmation.LEDGER
    assert fake_htx.executions_matching("spot", "usdt_futures", "usdt", Decimal(25)) == 2


async def test_resume_does_not_wait_forever_behind_an_intent_it_cannot_settle(
    fake_htx: FakeHTX, plan: FaultPlan, clock: VirtualClock, journal: Journal
) -> None:
    """X (25 usdt) executed, its answer lost, and its ledger row carries a transferType xferkit
    does not know: it stays UNKNOWN. Y, identical, gave up waiting for it unsent. A sweep with
    no deadline settles what it can and returns, leaving Y unsent (PENDING) behind X, instead
    of waiting for X forever."""
    fake_htx.transfer_types[("spot", "linear-swap")] = "spot-to-unified-account"
    plan.force(Fault.DROP_AFTER)
    async with client_on(fake_htx, clock, journal) as client:
        with pytest.raises(xferkit.TransferOutcomeUnknownError):
            await client.transfer("htx", **args("25"), key="x")
        with pytest.raises(xferkit.TransferOutcomeUnknownError, match="not sent yet"):
            await client.transfer("htx", **args("25"), key="y")
        with anyio.fail_after(30):  # real seconds
            receipts = await client.resume()
    assert {r.key: r.status for r in receipts} == {
        "x": TransferStatus.UNKNOWN,
        "y": TransferStatus.PENDING,
    }
    assert len(fake_htx.audit) == 1


class SlowWireLaggingLedger(httpx.AsyncBaseTransport):
    """The transfer POST travels ``wire`` virtual seconds before the venue commits it, and its
    answer never arrives (the attempt times out ``timeout`` seconds after it began); ledger
    rows show only ``lag`` seconds after their transactTime."""

    def __init__(
        self, fake: FakeHTX, clock: VirtualClock, *, wire: float, timeout: float, lag: float
    ) -> None:
        self.inner = FakeTransport(fake)
        self.fake, self.clock = fake, clock
        self.wire, self.timeout, self.lag = wire, timeout, lag

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v2/account/transfer":
            self.clock.advance(self.wire)
            await self.inner.handle_async_request(request)  # committed late in the attempt
            self.clock.advance(self.timeout - self.wire)
            raise httpx.ReadTimeout("no answer", request=request)
        response = await self.inner.handle_async_request(request)
        if request.url.path != "/v2/account/ledger":
            return response
        page = response.json()
        shown = self.fake.server_time_ms() - self.lag * 1000
        page["data"] = [row for row in page["data"] if row["transactTime"] <= shown]
        return httpx.Response(response.status_code, json=page)


async def test_the_settle_window_counts_from_the_end_of_an_attempt_that_timed_out(
    fake_htx: FakeHTX, clock: VirtualClock, journal: Journal
) -> None:
    """With the defaults (timeout 10 s, settle window 10 s), HTX commits the transfer 9.9 s
    into the attempt and shows it in its ledger 2 s later. Counted from the attempt's start,
    the window would end before the row shows and the transfer would be sent again; counted
    from the attempt's end, the row is found: one execution, SUCCEEDED by the ledger."""
    transport = SlowWireLaggingLedger(fake_htx, clock, wire=9.9, timeout=10.0, lag=2.0)
    async with client_on(fake_htx, clock, journal, transport=transport, deadline=None) as client:
        receipt = await client.transfer("htx", **args("25"), key="late")
    assert receipt.status is TransferStatus.SUCCEEDED
    assert receipt.confirmed_by is Confirmation.LEDGER
    assert len(fake_htx.audit) == 1


class TimeEndpointDownUntilATransfer(httpx.AsyncBaseTransport):
    """HTX's time endpoint fails until a transfer request has gone through; everything else
    reaches the fake."""

    def __init__(self, fake: FakeHTX) -> None:
        self.inner = FakeTransport(fake)
        self.transferred = False

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/common/timestamp" and not self.transferred:
            return httpx.Response(503, text="unavailable")
        self.transferred |= request.url.path == "/v2/account/transfer"
        return await self.inner.handle_async_request(request)


async def test_a_lost_answer_is_found_when_the_clock_was_never_measured(
    fake_htx: FakeHTX, plan: FaultPlan, clock: VirtualClock, journal: Journal
) -> None:
    """The time endpoint fails at first, so xferkit signs on this host's clock, 60 s ahead of
    HTX's (HTX accepts 5 minutes), and records the send's venue time from it. The executed
    transfer's row lies a minute before that: the window, widened for the unmeasured offset,
    still holds it. Not widened, the row is missed, judged absent, and sent a second time."""
    fake_htx.skew_ms = -60_000
    plan.force(Fault.DROP_AFTER)
    async with client_on(
        fake_htx, clock, journal, transport=TimeEndpointDownUntilATransfer(fake_htx), deadline=None
    ) as client:
        receipt = await client.transfer("htx", **args("25"), key="unmeasured")
    assert receipt.status is TransferStatus.SUCCEEDED
    assert receipt.confirmed_by is Confirmation.LEDGER
    assert len(fake_htx.audit) == 1
