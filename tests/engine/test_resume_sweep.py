"""resume() as a sweep on HTX (issue 16): settle waits overlap instead of holding the sweep's
slots, the settle window counts from the journal's bound on the last attempt's end, and
concurrent ledger lookups of one account and currency share one scan, never one that began
before they asked."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import anyio
import anyio.lowlevel
import httpx
import pytest
import trio
import trio.testing

import xferkit
from xferkit import TransferStatus
from xferkit._clock import ServerClock
from xferkit._transport import Transport
from xferkit.journal import Intent, Journal
from xferkit.settlement.ledger import Absent, Found, Reconciler
from xferkit.testing import FakeHTX, FakeTransport, FakeXT, Fault, FaultPlan, VirtualClock
from xferkit.venues._base import TransferSpec, fingerprint

from .conftest import API_KEY as XT_KEY
from .conftest import HTX_ACCESS_KEY as ACCESS_KEY
from .conftest import HTX_SECRET as SECRET
from .conftest import SECRET as XT_SECRET

SETTLE = 10.0  # HTX's default settle window
LEDGER = "/v2/account/ledger"


@pytest.fixture
def plan() -> FaultPlan:
    return FaultPlan(seed=16)


@pytest.fixture
def fake_htx(clock: VirtualClock, plan: FaultPlan) -> FakeHTX:
    return FakeHTX(access_key=ACCESS_KEY, secret=SECRET, clock=clock, faults=plan)


def htx() -> xferkit.HTX:
    """Default settle window; a rate limit high enough that resends are not the bottleneck."""
    return xferkit.HTX(ACCESS_KEY, SECRET, rate_limit=1000)


@asynccontextmanager
async def client_on(
    transport: httpx.AsyncBaseTransport,
    clock: VirtualClock,
    journal: Journal,
    *,
    lease_seconds: float = 60.0,
) -> AsyncIterator[xferkit.Client]:
    async with (
        httpx.AsyncClient(transport=transport) as http_client,
        xferkit.Client(
            htx(),
            journal=journal,
            http_client=http_client,
            clock=clock,
            retry=xferkit.RetryPolicy(deadline=8),
            lease_seconds=lease_seconds,
        ) as client,
    ):
        yield client


def args(amount: Decimal | str) -> dict[str, Any]:
    return {
        "currency": "usdt",
        "amount": str(amount),
        "from_account": "spot",
        "to_account": "usdt_futures",
    }


def ledger_reads(fake: FakeHTX) -> int:
    return sum(1 for r in fake.requests if r.request.path == LEDGER)


class Gate(httpx.AsyncBaseTransport):
    """The fake venue behind a gate: while ``hold`` is set, a request to ``path`` is
    answered by the venue at once but reaches the client only when ``hold`` is set (a slow
    network), or, with ``before=True``, reaches the venue only then."""

    def __init__(self, fake: FakeHTX, path: str, *, before: bool = False) -> None:
        self._inner = FakeTransport(fake)
        self._path = path
        self._before = before
        self.hold: anyio.Event | None = None
        self.entered = anyio.Event()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        hold = self.hold if request.url.path == self._path else None
        if hold is not None and self._before:
            self.entered.set()
            await hold.wait()
        response = await self._inner.handle_async_request(request)
        if hold is not None and not self._before:
            self.entered.set()
            await hold.wait()
        return response


async def test_fifty_absent_intents_settle_in_about_one_window_with_four_slots(
    fake_htx: FakeHTX, plan: FaultPlan, clock: VirtualClock, journal: Journal
) -> None:
    """50 HTX intents lost before processing, resumed with concurrency=4: the settle waits
    overlap (a waiting intent gives up its slot), so the sweep takes about one window, not
    13 rounds of one, and each transfer executes exactly once."""
    plan.force(Fault.DROP_BEFORE, times=50)
    amounts = [Decimal(100 + n) for n in range(50)]
    async with client_on(FakeTransport(fake_htx), clock, journal) as client:
        for n, amount in enumerate(amounts):
            with pytest.raises(xferkit.TransferOutcomeUnknownError):
                await client.transfer("htx", **args(amount), key=f"k{n}")
        start = clock.monotonic()
        receipts = await client.resume(concurrency=4)
        took = clock.monotonic() - start
    assert [r.status for r in receipts] == [TransferStatus.SUCCEEDED] * 50
    for amount in amounts:
        assert fake_htx.executions_matching("spot", "usdt_futures", "usdt", amount) == 1
    assert took < SETTLE + 3


async def test_an_intent_cancelled_long_ago_is_resent_without_waiting(
    fake_htx: FakeHTX, clock: VirtualClock, journal: Journal
) -> None:
    """A transfer cancelled before its request reached the venue, resumed 30 s later: the
    journal says its attempt ended then, so its settle window is over and resume() proves it
    absent and sends it at once, instead of waiting a window counted from now."""
    gate = Gate(fake_htx, "/v2/account/transfer", before=True)
    gate.hold = anyio.Event()  # never set: the request never reaches the venue
    async with client_on(gate, clock, journal) as client:
        async with anyio.create_task_group() as tasks:

            async def cancelled_transfer() -> None:
                await client.transfer("htx", **args("25"), key="k1")

            tasks.start_soon(cancelled_transfer)
            await gate.entered.wait()
            tasks.cancel_scope.cancel()
        gate.hold = None
        stored = await client.intent("htx", "k1")
        assert stored is not None
        assert stored.status is TransferStatus.IN_FLIGHT
        clock.advance(30)
        start = clock.monotonic()
        [receipt] = await client.resume()
        took = clock.monotonic() - start
    assert receipt.status is TransferStatus.SUCCEEDED
    assert fake_htx.executions_matching("spot", "usdt_futures", "usdt", Decimal(25)) == 1
    assert took < 1


class HostClock:
    """The test's clock, with this host's wall clock ``behind`` seconds behind (the venue and
    the other hosts keep the test's time)."""

    def __init__(self, inner: VirtualClock, behind: float) -> None:
        self._inner = inner
        self._behind = behind

    def time(self) -> float:
        return self._inner.time() - self._behind

    def monotonic(self) -> float:
        return self._inner.monotonic()

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


@pytest.mark.parametrize("behind", [0.0, 30.0])
async def test_a_crashed_workers_send_is_waited_for_until_its_latest_possible_end(
    fake_htx: FakeHTX, clock: VirtualClock, journal: Journal, behind: float
) -> None:
    """A worker dies mid-send and its lease expires; its request may still reach the venue
    until the lease's expiry plus the transport's timeouts (the journal's bound, in the
    venue's time, so a dead worker whose host clock was 30 s behind does not shorten it), and
    resume() on another host waits a settle window from that bound, not from now: the late
    commit, 25 s into the sweep, is found in the ledger and the transfer executes once."""
    lease = 30.0
    gate = Gate(fake_htx, "/v2/account/transfer", before=True)
    gate.hold = anyio.Event()  # the dying worker's request hangs on the wire
    dead_host = HostClock(clock, behind)
    async with (
        httpx.AsyncClient(transport=gate) as http_client,
        xferkit.Client(
            htx(), journal=journal, http_client=http_client, clock=dead_host, lease_seconds=lease
        ) as dying,
        anyio.create_task_group() as tasks,
    ):

        async def dying_worker() -> None:
            await dying.transfer("htx", **args("25"), key="k1")

        tasks.start_soon(dying_worker)
        await gate.entered.wait()
        crashed = await dying.intent("htx", "k1")  # the row as a crash now leaves it
        tasks.cancel_scope.cancel()
    gate.hold = None
    assert crashed is not None
    await journal.open()  # the dying client closed it
    # Put the crash's row back (the cancellation recorded the real end): leased, IN_FLIGHT.
    claim = await journal.claim(crashed, owner="dead", lease_seconds=lease)
    assert claim.owned
    await journal.save(crashed, owner="dead", lease_seconds=lease)
    clock.advance(lease + 1)  # the dead worker's lease has expired
    receipts: list[xferkit.Receipt] = []
    swept = anyio.Event()

    async def late_commit() -> None:
        """The dead worker's request reaches the venue late, before the bound."""
        commit_at = clock.monotonic() + 25
        # Time moves only with the sweep's sleeps, or once the sweep has ended.
        while clock.monotonic() < commit_at and not swept.is_set():
            await anyio.lowlevel.checkpoint()
        clock.advance(max(0.0, commit_at - clock.monotonic()))
        async with httpx.AsyncClient(transport=FakeTransport(fake_htx)) as raw:
            response = await Transport(raw).send(
                htx().transfer_request(crashed.body, int(clock.time() * 1000)), timeout=10
            )
        assert response.status == 200

    async with client_on(gate, clock, journal, lease_seconds=lease) as client:

        async def sweep() -> None:
            receipts.extend(await client.resume())
            swept.set()

        async with anyio.create_task_group() as tasks:
            tasks.start_soon(late_commit)
            tasks.start_soon(sweep)
    [receipt] = receipts
    assert receipt.status is TransferStatus.SUCCEEDED
    assert receipt.confirmed_by is xferkit.Confirmation.LEDGER
    assert fake_htx.executions_matching("spot", "usdt_futures", "usdt", Decimal(25)) == 1


# -- shared ledger reads (the reconciler on its own) ------------------------------------------


@asynccontextmanager
async def reconciler_on(
    transport: httpx.AsyncBaseTransport, clock: VirtualClock, journal: Journal
) -> AsyncIterator[tuple[Reconciler, ServerClock, Transport]]:
    venue = htx()
    async with httpx.AsyncClient(transport=transport) as http_client:
        sender = Transport(http_client)

        async def server_ms() -> int:
            return venue.parse_server_time(await sender.send(venue.time_request(), timeout=10))

        reconciler = Reconciler(journal=journal, transport=sender, clock=clock, timeout=10)
        yield reconciler, ServerClock(clock, server_ms), sender


def open_intent(
    venue: xferkit.HTX, amount: str, key: str, clock: VirtualClock
) -> tuple[Intent, TransferSpec]:
    spec = venue.validate(
        currency="usdt",
        amount=amount,
        from_account="spot",
        to_account="usdt_futures",
        symbol=None,
        margin_account=None,
    )
    params = spec.canonical_json()
    now = datetime.fromtimestamp(clock.time(), tz=timezone.utc)
    intent = Intent(
        key=key,
        venue="htx",
        account=venue.account,
        fingerprint=fingerprint(params),
        params=params,
        token=None,
        body=venue.transfer_body(spec, None),
        created_at=now,
        status=TransferStatus.UNKNOWN,
        attempts=1,
        first_sent_at=now,
        first_sent_venue_ms=int(clock.time() * 1000) - 1000,
        last_sent_at=now,
    )
    return intent, spec


async def find(
    reconciler: Reconciler, server_clock: ServerClock, intent: Intent, spec: TransferSpec
) -> Found | Any:
    long_ago = datetime.fromtimestamp(0, tz=timezone.utc)  # settle window long over
    return await reconciler.find(
        htx(),
        server_clock,
        intent,
        spec,
        owner="sweeper",
        lease_seconds=60,
        deadline_at=None,
        attempt_ended_at=long_ago,
    )


async def test_concurrent_lookups_of_one_account_and_currency_make_one_ledger_scan(
    fake_htx: FakeHTX, clock: VirtualClock, journal: Journal
) -> None:
    """Twenty lookups of one account and currency at once read the ledger once between them
    (each filtering the rows to its own window), and each finds its transfer absent."""
    venue = htx()
    clock.advance(5)
    async with reconciler_on(FakeTransport(fake_htx), clock, journal) as (rec, server, _):
        results: list[object] = []

        async def look(n: int) -> None:
            intent, spec = open_intent(venue, str(10 + n), f"k{n}", clock)
            results.append(await find(rec, server, intent, spec))

        async with anyio.create_task_group() as tasks:
            for n in range(20):
                tasks.start_soon(look, n)
    assert results == [Absent()] * 20
    assert ledger_reads(fake_htx) == 1


async def test_a_lookup_that_began_after_a_scan_started_does_not_reuse_it(
    fake_htx: FakeHTX, clock: VirtualClock, journal: Journal
) -> None:
    """A scan is under way when a transfer commits and two more lookups begin: they must not
    take that scan's rows (it was read before the commit, and would call the transfer absent:
    a second execution), so they share one new scan, which finds it."""
    venue = htx()
    clock.advance(5)
    gate = Gate(fake_htx, LEDGER)
    async with reconciler_on(gate, clock, journal) as (rec, server, sender):
        first, first_spec = open_intent(venue, "10", "first", clock)
        late, late_spec = open_intent(venue, "25", "late", clock)
        other, other_spec = open_intent(venue, "30", "other", clock)
        claim = await journal.claim(late, owner="sweeper", lease_seconds=60)
        assert claim.owned
        results: dict[str, object] = {}

        async def look(name: str, intent: Intent, spec: TransferSpec) -> None:
            results[name] = await find(rec, server, intent, spec)

        gate.hold = anyio.Event()
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(look, "first", first, first_spec)
            await gate.entered.wait()  # the first scan has read the ledger, answer not back
            response = await sender.send(
                venue.transfer_request(late.body, int(clock.time() * 1000)), timeout=10
            )
            assert response.status == 200  # the late transfer committed after that read
            tasks.start_soon(look, "late", late, late_spec)
            tasks.start_soon(look, "other", other, other_spec)
            await clock.sleep(0.1)
            hold, gate.hold = gate.hold, None
            hold.set()
    assert results["first"] == Absent()
    assert isinstance(results["late"], Found)
    assert results["other"] == Absent()
    assert ledger_reads(fake_htx) == 2


def test_the_htx_sweep_runs_under_trio(tmp_path: Path) -> None:
    """Under trio, ten absent HTX intents resumed with two slots share one settle window (the
    sweep's slots, context variable and shared ledger reads use no asyncio-only primitive),
    and each is sent once."""
    clock = VirtualClock()
    plan = FaultPlan()
    plan.force(Fault.DROP_BEFORE, times=10)
    fake = FakeHTX(access_key=ACCESS_KEY, secret=SECRET, clock=clock, faults=plan)
    took: list[float] = []

    async def main() -> None:
        journal = xferkit.SqliteJournal(tmp_path / "journal.sqlite3", clock=clock)
        async with client_on(FakeTransport(fake), clock, journal) as client:
            for n in range(10):
                with pytest.raises(xferkit.TransferOutcomeUnknownError):
                    await client.transfer("htx", **args(str(10 + n)), key=f"k{n}")
            start = clock.monotonic()
            receipts = await client.resume(concurrency=2)
            took.append(clock.monotonic() - start)
            assert [r.status for r in receipts] == [TransferStatus.SUCCEEDED] * 10

    trio.run(main)
    for n in range(10):
        assert fake.executions_matching("spot", "usdt_futures", "usdt", Decimal(10 + n)) == 1
    assert took[0] < SETTLE + 3


class TrioMockTime:
    """A `Clock` on trio's mock clock, whose time jumps only when every task is blocked: a
    task sleeping out a settle window does not move time while others have work to do, as
    `VirtualClock` would."""

    def time(self) -> float:
        return 1_700_000_000.0 + trio.current_time()

    def monotonic(self) -> float:
        return trio.current_time()

    async def sleep(self, seconds: float) -> None:
        await trio.sleep(max(seconds, 0.0))


class InFlight(httpx.AsyncBaseTransport):
    """The fake venues, counting the most XT transfer requests on the wire at once; each is
    on the wire for 10 ms."""

    def __init__(self, *fakes: FakeHTX | FakeXT, clock: TrioMockTime) -> None:
        self._inner = FakeTransport(*fakes)
        self._clock = clock
        self.now = 0
        self.most = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.host != "sapi.xt.com" or request.method != "POST":
            return await self._inner.handle_async_request(request)
        self.now += 1
        self.most = max(self.most, self.now)
        try:
            await self._clock.sleep(0.01)
            return await self._inner.handle_async_request(request)
        finally:
            self.now -= 1


def test_htx_intents_waiting_for_their_window_do_not_hold_back_xt_intents() -> None:
    """Four absent HTX intents (oldest first) and forty XT intents, resumed with two slots:
    the XT intents settle while the HTX ones wait out their window (not after two rounds of
    windows), with never more than two XT requests on the wire at once, and every transfer
    executes exactly once."""
    clock = TrioMockTime()
    plan = FaultPlan()
    fake_htx = FakeHTX(access_key=ACCESS_KEY, secret=SECRET, clock=clock, faults=plan)
    fake_xt = FakeXT(api_key=XT_KEY, secret=XT_SECRET, clock=clock, faults=plan)
    transport = InFlight(fake_htx, fake_xt, clock=clock)
    plan.force(Fault.DROP_BEFORE, times=4)
    plan.force(Fault.DROP_AFTER, times=40)
    xt_done: list[float] = []
    receipts: list[xferkit.Receipt] = []

    async def main() -> None:
        async with (
            httpx.AsyncClient(transport=transport) as http_client,
            xferkit.Client(
                htx(),
                xferkit.XT(XT_KEY, XT_SECRET, rate_limit=10_000),
                journal=xferkit.MemoryJournal(clock=clock),
                http_client=http_client,
                clock=clock,
                retry=xferkit.RetryPolicy(max_attempts=1, deadline=8),
            ) as client,
        ):
            for n in range(4):
                with pytest.raises(xferkit.TransferOutcomeUnknownError):
                    await client.transfer("htx", **args(str(10 + n)), key=f"h{n}")
            for n in range(40):
                with pytest.raises(xferkit.TransferOutcomeUnknownError):
                    await client.transfer("xt", **args("5"), key=f"x{n}")
            start = clock.monotonic()

            def progress(receipt: xferkit.Receipt) -> None:
                if receipt.venue == "xt":
                    xt_done.append(clock.monotonic() - start)

            receipts.extend(await client.resume(concurrency=2, on_receipt=progress))

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    assert [r.status for r in receipts] == [TransferStatus.SUCCEEDED] * 44
    for n in range(4):
        assert fake_htx.executions_matching("spot", "usdt_futures", "usdt", Decimal(10 + n)) == 1
    assert sorted(fake_xt.executions_by_token().values()) == [1] * 40
    assert len(xt_done) == 40
    assert max(xt_done) < 1  # 40 XT resends at 2 x 10 ms, during the HTX settle window
    assert transport.most <= 2
