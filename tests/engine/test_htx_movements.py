"""One unresolved identical HTX movement at a time across clients sharing a journal (issue 16):
the rule and the spacing between identical movements live in the journal, not in one engine."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from decimal import Decimal
from typing import Any

import anyio
import httpx
import pytest

import xferkit
from xferkit import TransferStatus
from xferkit.journal import Intent, Journal, MovementTurn
from xferkit.testing import FakeHTX, FakeTransport, Fault, FaultPlan, VirtualClock

from .conftest import HTX_ACCESS_KEY as ACCESS_KEY
from .conftest import HTX_SECRET as SECRET
from .conftest import htx_id

DEADLINE = 8.0  # shorter than HTX's default settle window: a lost answer ends UNKNOWN
# The least time between a transfer's last send and an identical one's first: twice HTX's
# default ledger margin (the clock uncertainty adds to it).
SPACING = timedelta(seconds=2 * xferkit.HTX(ACCESS_KEY, SECRET).ledger_margin_seconds)


@pytest.fixture
def plan() -> FaultPlan:
    return FaultPlan(seed=16)


@pytest.fixture
def fake_htx(clock: VirtualClock, plan: FaultPlan) -> FakeHTX:
    return FakeHTX(access_key=ACCESS_KEY, secret=SECRET, clock=clock, faults=plan)


class Gate(httpx.AsyncBaseTransport):
    """The fake venue's transport, holding a client's requests until ``wait_for`` is set, and
    setting ``on_transfer`` when the client sends a transfer."""

    def __init__(
        self,
        fake: FakeHTX,
        *,
        wait_for: anyio.Event | None = None,
        on_transfer: anyio.Event | None = None,
    ) -> None:
        self._inner = FakeTransport(fake)
        self._wait_for = wait_for
        self._on_transfer = on_transfer

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if self._wait_for is not None:
            await self._wait_for.wait()
        if self._on_transfer is not None and request.url.path == "/v2/account/transfer":
            self._on_transfer.set()
        return await self._inner.handle_async_request(request)


class Watched:
    """A journal whose refused movement turns set ``refused``; everything else as ``inner``."""

    def __init__(self, inner: Journal, refused: anyio.Event) -> None:
        self._inner = inner
        self._refused = refused
        # Since Python 3.12, isinstance(x, Journal) looks members up statically, never through
        # __getattr__: the inner journal's other methods are bound on the instance.
        for name in vars(Journal):
            if not name.startswith("_") and name not in vars(Watched):
                setattr(self, name, getattr(inner, name))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    async def take_movement(
        self, intent: Intent, *, owner: str, lease_seconds: float
    ) -> MovementTurn:
        turn = await self._inner.take_movement(intent, owner=owner, lease_seconds=lease_seconds)
        if not turn.taken:
            self._refused.set()
        return turn


@asynccontextmanager
async def client_on(
    fake: FakeHTX, clock: VirtualClock, journal: Journal | Watched, **gate: anyio.Event
) -> AsyncIterator[xferkit.Client]:
    async with (
        httpx.AsyncClient(transport=Gate(fake, **gate)) as http_client,
        xferkit.Client(
            xferkit.HTX(ACCESS_KEY, SECRET),
            journal=journal,
            http_client=http_client,
            clock=clock,
            retry=xferkit.RetryPolicy(deadline=DEADLINE),
        ) as client,
    ):
        yield client


ARGS: dict[str, Any] = {
    "currency": "usdt",
    "amount": "25",
    "from_account": "spot",
    "to_account": "usdt_futures",
}


async def test_a_second_client_waits_for_the_firsts_lost_identical_transfer_until_resume(
    fake_htx: FakeHTX, plan: FaultPlan, clock: VirtualClock, journal: Journal
) -> None:
    """Two clients on one journal start identical transfers at the same instant and the first's
    request is lost: the second is not sent until resume() of the first settles it, and both
    then execute once each."""
    plan.force(Fault.DROP_BEFORE)
    results: dict[str, Any] = {}
    first_ended = anyio.Event()
    # The same instant, made exact: the first client's first request (after it decided it
    # may send) waits until the second has decided too: sent, or been refused its turn.
    second_decided = anyio.Event()
    async with (
        client_on(fake_htx, clock, journal, wait_for=second_decided) as first,
        client_on(
            fake_htx, clock, Watched(journal, second_decided), on_transfer=second_decided
        ) as second,
    ):

        async def lost() -> None:
            try:
                await first.transfer("htx", **ARGS, key="x")
            except xferkit.TransferOutcomeUnknownError as exc:
                results["x"] = exc
            first_ended.set()

        async def identical() -> None:
            results["y"] = await second.transfer("htx", **ARGS, key="y", deadline=120)

        async def sweep() -> None:
            await first_ended.wait()
            results["resume"] = await first.resume()  # while y still waits

        async with anyio.create_task_group() as tasks:
            tasks.start_soon(lost)
            tasks.start_soon(identical)
            tasks.start_soon(sweep)
        x = await journal.get(htx_id("x"))
        y = await journal.get(htx_id("y"))
    assert isinstance(results.get("x"), xferkit.TransferOutcomeUnknownError)  # x went first
    assert [(r.key, r.status) for r in results["resume"]] == [("x", TransferStatus.SUCCEEDED)]
    assert results["y"].status is TransferStatus.SUCCEEDED
    assert fake_htx.executions_matching("spot", "linear-swap", "usdt", Decimal(25)) == 2
    assert x is not None
    assert x.last_sent_at is not None
    assert y is not None
    assert y.first_sent_at is not None
    # Not sent beside the unresolved x, nor within the spacing after its drive ended.
    assert y.first_sent_at - x.last_sent_at >= SPACING


async def test_identical_transfers_of_two_clients_are_spaced_in_the_journal(
    fake_htx: FakeHTX, clock: VirtualClock, journal: Journal
) -> None:
    """Right after one client's clean transfer, another client's identical transfer waits out
    the spacing that keeps the first one's ledger row out of its search window."""
    async with (
        client_on(fake_htx, clock, journal) as first,
        client_on(fake_htx, clock, journal) as second,
    ):
        await first.transfer("htx", **ARGS, key="x")
        await second.transfer("htx", **ARGS, key="y")
        x = await journal.get(htx_id("x"))
        y = await journal.get(htx_id("y"))
    assert x is not None
    assert x.last_sent_at is not None
    assert y is not None
    assert y.first_sent_at is not None
    assert y.first_sent_at - x.last_sent_at >= SPACING


async def test_a_waiting_identical_transfer_ends_unsent_at_its_deadline_and_resume_sends_it_after(
    fake_htx: FakeHTX, plan: FaultPlan, clock: VirtualClock, journal: Journal
) -> None:
    """Started at the same instant as another client's identical transfer whose request is
    lost, a transfer whose deadline ends while it waits is reported "not sent yet" and stays
    unsent; resume() then settles the lost one first and sends the waiting one after it."""
    plan.force(Fault.DROP_BEFORE)
    results: dict[str, Any] = {}
    second_decided = anyio.Event()
    async with (
        client_on(fake_htx, clock, journal, wait_for=second_decided) as first,
        client_on(
            fake_htx, clock, Watched(journal, second_decided), on_transfer=second_decided
        ) as second,
    ):

        async def call(client: xferkit.Client, key: str, deadline: float) -> None:
            try:
                results[key] = await client.transfer("htx", **ARGS, key=key, deadline=deadline)
            except xferkit.TransferOutcomeUnknownError as exc:
                results[key] = exc

        async with anyio.create_task_group() as tasks:
            tasks.start_soon(call, first, "x", DEADLINE)
            tasks.start_soon(call, second, "y", 3.0)
        unsent = await journal.get(htx_id("y"))
        posts = sum(1 for r in fake_htx.requests if r.request.path == "/v2/account/transfer")
        resumed = {r.key: r for r in await first.resume()}
        x, y = await journal.get(htx_id("x")), await journal.get(htx_id("y"))
    assert isinstance(results.get("x"), xferkit.TransferOutcomeUnknownError)
    assert isinstance(results.get("y"), xferkit.TransferOutcomeUnknownError)
    assert "not sent yet" in str(results["y"])
    assert unsent is not None
    assert (unsent.status, unsent.attempts) == (TransferStatus.PENDING, 0)
    assert posts == 1  # x's lost request only
    assert {key: r.status for key, r in resumed.items()} == {
        "x": TransferStatus.SUCCEEDED,
        "y": TransferStatus.SUCCEEDED,
    }
    assert fake_htx.executions_matching("spot", "linear-swap", "usdt", Decimal(25)) == 2
    assert x is not None
    assert x.last_sent_at is not None
    assert y is not None
    assert y.first_sent_at is not None
    assert y.first_sent_at - x.last_sent_at >= SPACING
