"""HTX through the real engine: ambiguity is settled by the ledger, never by a blind resend."""

from __future__ import annotations

import itertools
import random
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from decimal import Decimal
from typing import Any

import anyio
import httpx
import pytest

import xferkit
from xferkit import TransferStatus
from xferkit.journal import Journal
from xferkit.testing import FakeHTX, FakeTransport, Fault, FaultPlan, VirtualClock
from xferkit.venues.htx import MIN_LEDGER_MARGIN_SECONDS, MIN_SETTLE_SECONDS

from .conftest import HTX_ACCESS_KEY as ACCESS_KEY
from .conftest import HTX_SECRET as SECRET
from .conftest import htx_id


@pytest.fixture
def fake_htx(clock: VirtualClock, plan: FaultPlan) -> FakeHTX:
    """The simulated HTX venue, on the test's virtual clock."""
    return FakeHTX(access_key=ACCESS_KEY, secret=SECRET, clock=clock, faults=plan)


@pytest.fixture
def plan() -> FaultPlan:
    """No random faults unless a test asks for them."""
    return FaultPlan(seed=2)


@asynccontextmanager
async def htx_client(
    fake: FakeHTX, clock: VirtualClock, journal: Journal, **overrides: Any
) -> AsyncIterator[xferkit.Client]:
    options: dict[str, Any] = {
        "journal": journal,
        "clock": clock,
        "retry": xferkit.RetryPolicy(max_attempts=6, deadline=None),
    }
    options.update(overrides)
    async with (
        httpx.AsyncClient(transport=FakeTransport(fake)) as http_client,
        xferkit.Client(xferkit.HTX(ACCESS_KEY, SECRET), http_client=http_client, **options) as c,
    ):
        yield c


def args(**overrides: Any) -> dict[str, Any]:
    values: dict[str, Any] = {
        "currency": "usdt",
        "amount": "25",
        "from_account": "spot",
        "to_account": "usdt_futures",
    }
    values.update(overrides)
    return values


def transfer_posts(fake: FakeHTX) -> int:
    return sum(1 for r in fake.requests if r.request.path == "/v2/account/transfer")


async def test_clean_transfer_executes_once_with_the_venue_id(
    fake_htx: FakeHTX, clock: VirtualClock, journal: Journal
) -> None:
    """Without faults the receipt carries HTX's transfer id and the money moves once."""
    async with htx_client(fake_htx, clock, journal) as client:
        receipt = await client.transfer("htx", **args(), key="h1")
    assert receipt.status is TransferStatus.SUCCEEDED
    assert receipt.transfer_id == fake_htx.audit[0].transfer_id
    assert fake_htx.executions_matching("spot", "linear-swap", "usdt", Decimal(25)) == 1


@pytest.mark.parametrize(
    "fault",
    [Fault.DROP_AFTER, Fault.ERROR_5XX_AFTER, Fault.SLOW_AFTER, Fault.TIMEOUT_CODE_AFTER],
)
async def test_lost_answer_after_commit_is_found_in_the_ledger_not_resent(
    fake_htx: FakeHTX, plan: FaultPlan, clock: VirtualClock, journal: Journal, fault: Fault
) -> None:
    """An executed transfer whose answer was lost is found in the ledger: one request only."""
    plan.force(fault)
    async with htx_client(fake_htx, clock, journal) as client:
        receipt = await client.transfer("htx", **args(), key="h1")
        stored = await journal.get(htx_id("h1"))
    assert receipt.status is TransferStatus.SUCCEEDED
    assert transfer_posts(fake_htx) == 1
    assert len(fake_htx.audit) == 1
    ledger_ids = {row.transact_id for row in fake_htx.ledger_rows()}
    assert receipt.transfer_id in {str(i) for i in ledger_ids}
    assert stored is not None
    assert stored.ledger_ref == receipt.transfer_id


@pytest.mark.parametrize("fault", [Fault.DROP_BEFORE, Fault.ERROR_5XX_BEFORE])
async def test_ambiguous_failure_before_processing_is_resent_only_after_the_ledger_says_absent(
    fake_htx: FakeHTX, plan: FaultPlan, clock: VirtualClock, journal: Journal, fault: Fault
) -> None:
    """When the ledger proves the attempt did not execute, it is sent again: one execution."""
    plan.force(fault)
    start = clock.monotonic()
    async with htx_client(fake_htx, clock, journal) as client:
        receipt = await client.transfer("htx", **args(), key="h1")
    assert receipt.status is TransferStatus.SUCCEEDED
    assert transfer_posts(fake_htx) == 2
    assert len(fake_htx.audit) == 1
    assert clock.monotonic() - start >= 10.0  # waited the settle window before deciding
    paths = [r.request.path for r in fake_htx.requests]
    second_post = [n for n, p in enumerate(paths) if p == "/v2/account/transfer"][1]
    assert "/v2/account/ledger" in paths[:second_post]  # read the ledger before resending


@pytest.mark.parametrize("fault", [Fault.CONNECT_REFUSED, Fault.RATE_LIMIT, Fault.CLOCK_SKEW])
async def test_not_processed_answers_are_resent_without_reconciling(
    fake_htx: FakeHTX, plan: FaultPlan, clock: VirtualClock, journal: Journal, fault: Fault
) -> None:
    """Provably unprocessed attempts are simply sent again; the ledger is not needed."""
    plan.force(fault)
    async with htx_client(fake_htx, clock, journal) as client:
        receipt = await client.transfer("htx", **args(), key="h1")
    assert receipt.status is TransferStatus.SUCCEEDED
    assert len(fake_htx.audit) == 1
    assert not [r for r in fake_htx.requests if r.request.path == "/v2/account/ledger"]


async def test_older_chinese_clock_message_resyncs_and_succeeds(
    plan: FaultPlan, clock: VirtualClock, journal: Journal
) -> None:
    """A venue answering clock skew in the older Chinese-only wording gets a resync and a
    re-signed resend, and the transfer succeeds instead of ending FAILED."""
    fake = FakeHTX(
        access_key=ACCESS_KEY, secret=SECRET, clock=clock, faults=plan, time_message="chinese"
    )
    plan.force(Fault.CLOCK_SKEW)
    async with htx_client(fake, clock, journal) as client:
        receipt = await client.transfer("htx", **args(), key="zh")
    assert receipt.status is TransferStatus.SUCCEEDED
    assert len(fake.audit) == 1
    paths = [r.request.path for r in fake.requests]
    assert "/v1/common/timestamp" in paths[paths.index("/v2/account/transfer") :]


async def test_identical_intents_never_claim_one_ledger_row(
    fake_htx: FakeHTX, plan: FaultPlan, clock: VirtualClock, journal: Journal
) -> None:
    """Two identical transfers, both with lost answers: two executions, two distinct rows."""
    plan.force(Fault.DROP_AFTER, times=2)
    receipts: list[xferkit.Receipt] = []
    async with htx_client(fake_htx, clock, journal) as client:

        async def one(key: str) -> None:
            receipts.append(await client.transfer("htx", **args(), key=key))

        async with anyio.create_task_group() as tg:
            tg.start_soon(one, "same-1")
            tg.start_soon(one, "same-2")
        refs = [i.ledger_ref for i in await journal.list()]
    assert [r.status for r in receipts] == [TransferStatus.SUCCEEDED] * 2
    assert len({r.transfer_id for r in receipts}) == 2
    assert len(set(refs)) == 2
    assert None not in refs
    assert fake_htx.executions_matching("spot", "linear-swap", "usdt", Decimal(25)) == 2


async def test_an_earlier_identical_success_is_not_mistaken_for_a_later_attempt(
    fake_htx: FakeHTX, plan: FaultPlan, clock: VirtualClock, journal: Journal
) -> None:
    """A later identical transfer that did not execute does not take an earlier one's row."""
    async with htx_client(fake_htx, clock, journal) as client:
        first = await client.transfer("htx", **args(), key="first")
        plan.force(Fault.DROP_BEFORE)  # the second's first attempt never executes
        second = await client.transfer("htx", **args(), key="second")
    assert first.transfer_id == fake_htx.audit[0].transfer_id
    assert second.status is TransferStatus.SUCCEEDED
    assert fake_htx.executions_matching("spot", "linear-swap", "usdt", Decimal(25)) == 2


async def test_a_ledger_row_in_an_unknown_spelling_stays_unknown_and_is_never_resent(
    fake_htx: FakeHTX, plan: FaultPlan, clock: VirtualClock, journal: Journal
) -> None:
    """The venue writes the executed transfer's row with a transferType xferkit does not
    know (HTX's list is open): that means "cannot tell", never "absent", so the transfer
    stays UNKNOWN with one request, also on resume()."""
    fake_htx.transfer_types[("spot", "linear-swap")] = "spot-to-linear-swap-unified"
    plan.force(Fault.DROP_AFTER)
    async with htx_client(fake_htx, clock, journal) as client:
        with pytest.raises(xferkit.TransferOutcomeUnknownError):
            await client.transfer("htx", **args(), key="contract")
        resumed = await client.resume()
    assert [(r.key, r.status) for r in resumed] == [("contract", TransferStatus.UNKNOWN)]
    assert transfer_posts(fake_htx) == 1
    assert len(fake_htx.audit) == 1


class LedgerOutage(httpx.AsyncBaseTransport):
    """Fails every ledger read while ``down`` is set; everything else reaches the fake."""

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self.inner = inner
        self.down = True

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if self.down and request.url.path == "/v2/account/ledger":
            return httpx.Response(502, text="bad gateway")
        return await self.inner.handle_async_request(request)


async def test_unreadable_ledger_leaves_unknown_and_resume_settles_it_later(
    fake_htx: FakeHTX, plan: FaultPlan, clock: VirtualClock, journal: Journal
) -> None:
    """With the ledger down the intent stays UNKNOWN; once it is back resume() finds it."""
    plan.force(Fault.DROP_AFTER)
    outage = LedgerOutage(FakeTransport(fake_htx))
    async with (
        httpx.AsyncClient(transport=outage) as http_client,
        xferkit.Client(
            xferkit.HTX(ACCESS_KEY, SECRET), journal=journal, http_client=http_client, clock=clock
        ) as client,
    ):
        with pytest.raises(xferkit.TransferOutcomeUnknownError):
            await client.transfer("htx", **args(), key="h1")
        outage.down = False
        resumed = await client.resume()
    assert [(r.key, r.status) for r in resumed] == [("h1", TransferStatus.SUCCEEDED)]
    assert transfer_posts(fake_htx) == 1
    assert len(fake_htx.audit) == 1


async def test_htx_bad_inputs_send_nothing(
    fake_htx: FakeHTX, clock: VirtualClock, journal: Journal
) -> None:
    """9 decimals, a bad margin account and an unsupported pair: typed errors, zero requests."""
    async with htx_client(fake_htx, clock, journal) as client:
        for bad in (
            args(amount="1.123456789"),
            args(margin_account="BTC_USDT!"),
            args(from_account="otc", to_account="usdt_futures"),
        ):
            with pytest.raises(xferkit.InvalidRequestError):
                await client.transfer("htx", **bad)
        assert await journal.list() == []
    assert not fake_htx.requests


@pytest.mark.slow
async def test_htx_exactly_once_under_faults(
    fake_htx: FakeHTX, plan: FaultPlan, clock: VirtualClock, journal: Journal
) -> None:
    """300 HTX transfers with ~30% mixed faults, then resume: each executed exactly once."""
    rng = random.Random(8)
    pairs = [("spot", "usdt_futures"), ("usdt_futures", "spot"), ("spot", "coin_futures"),
             ("coin_futures", "spot"), ("spot", "otc"), ("otc", "spot")]  # fmt: skip
    requests = []
    for n in range(300):
        source, target = rng.choice(pairs)
        # Oversized ones are refused; every amount is unique so executions map to keys.
        amount = Decimal(10**12 + n) if rng.random() < 0.05 else Decimal(n + 1) / 100
        requests.append(
            (f"htx-{n:03d}", args(amount=amount, from_account=source, to_account=target))
        )
    plan.rate = 0.3
    outcomes: dict[str, xferkit.Receipt | Exception] = {}
    async with htx_client(fake_htx, clock, journal) as client:
        limiter = anyio.CapacityLimiter(16)

        async def one(key: str, values: dict[str, Any]) -> None:
            async with limiter:
                try:
                    outcomes[key] = await client.transfer("htx", key=key, **values)
                except xferkit.XferError as exc:
                    outcomes[key] = exc

        async with anyio.create_task_group() as tg:
            for key, values in requests:
                tg.start_soon(one, key, values)
        assert sum(plan.injected.values()) >= 60
        plan.enabled = False
        await client.resume()
        outcomes.clear()
        async with anyio.create_task_group() as tg:
            for key, values in requests:
                tg.start_soon(one, key, values)

    native = {"spot": "spot", "usdt_futures": "linear-swap", "coin_futures": "swap", "otc": "otc"}
    for key, values in requests:
        executed = fake_htx.executions_matching(
            native[values["from_account"]], native[values["to_account"]], "usdt", values["amount"]
        )
        outcome = outcomes[key]
        if isinstance(outcome, xferkit.Receipt):
            assert outcome.status is TransferStatus.SUCCEEDED, key
            assert executed == 1, f"{key} succeeded but executed {executed} times"
        else:
            assert isinstance(outcome, xferkit.VenueError), (key, outcome)
            assert executed == 0, f"{key} failed but executed {executed} times"


async def test_default_rate_limit_keeps_under_htx_one_per_second(
    clock: VirtualClock, journal: Journal
) -> None:
    """HTX's default rate_limit spaces transfer requests 1 s apart: the venue's limit never trips.

    Sequential on purpose: the virtual clock wakes concurrent sleepers together, so it cannot
    measure spacing under concurrency.
    """
    fake = FakeHTX(access_key=ACCESS_KEY, secret=SECRET, clock=clock, rate_limit=1.0)
    async with htx_client(fake, clock, journal) as client:
        for n in range(10):
            await client.transfer("htx", **args(amount=n + 1), key=f"r{n}")
    posts = [r.clock_time for r in fake.requests if r.request.path == "/v2/account/transfer"]
    assert fake.rate_limited == 0
    assert len(fake.audit) == 10
    assert all(later - earlier >= 0.999 for earlier, later in itertools.pairwise(posts))


class CommitThenHang(httpx.AsyncBaseTransport):
    """Delivers transfer requests (the venue commits), then never answers them."""

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self.inner = inner

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self.inner.handle_async_request(request)
        if request.url.path == "/v2/account/transfer":
            await anyio.sleep_forever()
        return response


async def test_a_crash_during_the_first_send_is_found_in_the_ledger_on_resume(
    fake_htx: FakeHTX, clock: VirtualClock
) -> None:
    """Killed mid-send (no write after the send lands): resume() finds the row, never resends."""
    from .test_journal_failures import FlakyJournal  # noqa: PLC0415 - shared test double

    journal = FlakyJournal(clock)
    journal.fail_saves_from = 2  # save 1 is the pre-send write; nothing after it lands
    async with (
        httpx.AsyncClient(transport=CommitThenHang(FakeTransport(fake_htx))) as http_client,
        xferkit.Client(
            xferkit.HTX(ACCESS_KEY, SECRET), journal=journal, http_client=http_client, clock=clock
        ) as client,
    ):
        with anyio.move_on_after(0.2):
            await client.transfer("htx", **args(), key="crash")
    stored = await journal.get(htx_id("crash"))
    assert stored is not None
    assert stored.status is TransferStatus.IN_FLIGHT  # what a killed process leaves
    assert len(fake_htx.audit) == 1

    journal.fail_saves_from = None
    clock.advance(61)  # the dead worker's lease runs out
    async with htx_client(fake_htx, clock, journal) as client:
        receipts = await client.resume()
    assert [(r.key, r.status) for r in receipts] == [("crash", TransferStatus.SUCCEEDED)]
    assert transfer_posts(fake_htx) == 1
    assert len(fake_htx.audit) == 1


@pytest.mark.slow
async def test_a_lease_lost_while_waiting_for_the_rate_limit_means_no_send() -> None:
    """Worker A records transfer b, then waits longer than its lease for a rate-limit slot;
    worker B takes b over (resume: ledger absent, sends it). A must not send b too."""
    fake = FakeHTX(access_key=ACCESS_KEY, secret=SECRET)
    journal = xferkit.MemoryJournal()

    def client(rate: float) -> xferkit.Client:
        return xferkit.Client(
            xferkit.HTX(ACCESS_KEY, SECRET, rate_limit=rate, settle_seconds=MIN_SETTLE_SECONDS,
                        ledger_margin_seconds=MIN_LEDGER_MARGIN_SECONDS),
            journal=journal,
            http_client=httpx.AsyncClient(transport=FakeTransport(fake)),
            timeout=0.2,
            lease_seconds=0.3,
        )  # fmt: skip

    answers: dict[str, object] = {}
    async with client(rate=2.0) as a, client(rate=100.0) as b:

        async def worker_a(key: str, amount: str) -> None:
            try:
                answers[key] = await a.transfer("htx", **args(amount=amount), key=key)
            except xferkit.XferError as exc:
                answers[key] = exc

        async def worker_b() -> None:
            await anyio.sleep(0.35)  # b's lease (0.3 s) has lapsed; A still waits for its slot
            answers["resumed"] = await b.resume()

        async with anyio.create_task_group() as tg:
            tg.start_soon(worker_a, "a", "1")
            tg.start_soon(worker_a, "b", "2")
            tg.start_soon(worker_b)
    assert fake.executions_matching("spot", "linear-swap", "usdt", Decimal(2)) == 1, answers
    assert fake.executions_matching("spot", "linear-swap", "usdt", Decimal(1)) == 1
