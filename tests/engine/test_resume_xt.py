"""resume() of open XT intents: one journal write before each resend, the journal in pages."""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import httpx
import pytest

import xferkit
import xferkit._client
from xferkit import TransferStatus
from xferkit.journal import Journal
from xferkit.testing import FakeTransport, FakeXT, Fault, FaultPlan, VirtualClock

from .conftest import MakeClient, transfer_args, xt_id


def transfer_requests(fake: FakeXT) -> int:
    return sum(1 for r in fake.requests if r.request.path == "/v4/balance/transfer")


async def leave_open(make_client: MakeClient, plan: FaultPlan, keys: list[str]) -> None:
    """Transfers that execute at the venue and lose their answer: ``UNKNOWN`` in the journal."""
    plan.force(Fault.DROP_AFTER, times=len(keys))
    async with make_client(retry=xferkit.RetryPolicy(max_attempts=1, deadline=None)) as client:
        for key in keys:
            with pytest.raises(xferkit.TransferOutcomeUnknownError):
                await client.transfer("xt", **transfer_args(), key=key)


def log_writes(
    monkeypatch: pytest.MonkeyPatch, journal: Journal, fake: FakeXT
) -> list[tuple[str, int]]:
    """Log each journal write as it starts, with the transfer requests the venue had by then."""
    log: list[tuple[str, int]] = []
    for name in ("claim", "save", "take", "release", "reopen", "claim_ledger_ref"):
        method = getattr(journal, name, None)
        if method is None:
            continue

        def logged(
            method: Callable[..., Awaitable[Any]], name: str
        ) -> Callable[..., Awaitable[Any]]:
            async def write(*args: Any, **kwargs: Any) -> Any:
                log.append((name, transfer_requests(fake)))
                return await method(*args, **kwargs)

            return write

        monkeypatch.setattr(journal, name, logged(method, name))
    return log


async def test_a_resumed_xt_intent_costs_one_journal_write_before_its_resend(
    make_client: MakeClient,
    fake_xt: FakeXT,
    plan: FaultPlan,
    journal: Journal,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Resuming an XT intent leases it and records the resend in one write, then sends it
    once, as a forward transfer folds its first attempt into its claim."""
    await leave_open(make_client, plan, ["k1"])
    sent_before = transfer_requests(fake_xt)
    await journal.open()  # the client closed it
    writes = log_writes(monkeypatch, journal, fake_xt)
    async with make_client() as client:
        (receipt,) = await client.resume()
    assert [name for name, seen in writes if seen == sent_before] == ["take"]
    assert transfer_requests(fake_xt) == sent_before + 1
    assert (receipt.status, receipt.attempts) == (TransferStatus.SUCCEEDED, 2)
    assert list(fake_xt.executions_by_token().values()) == [1]


async def test_resume_reads_the_journal_in_pages_and_keeps_its_order(
    make_client: MakeClient,
    fake_xt: FakeXT,
    plan: FaultPlan,
    journal: Journal,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A sweep never reads more than a page of intents at once, yet settles every one once
    and returns the receipts oldest first."""
    keys = [f"k{n}" for n in range(7)]
    await leave_open(make_client, plan, keys)
    await journal.open()  # the client closed it
    monkeypatch.setattr(xferkit._client, "SWEEP_PAGE", 3)
    read: list[int] = []
    for name in ("list", "list_page"):
        method = getattr(journal, name)

        def counted(method: Callable[..., Awaitable[list[Any]]]) -> Callable[..., Awaitable[Any]]:
            async def read_rows(*args: Any, **kwargs: Any) -> list[Any]:
                rows = await method(*args, **kwargs)
                read.append(len(rows))
                return rows

            return read_rows

        monkeypatch.setattr(journal, name, counted(method))
    async with make_client() as client:
        receipts = await client.resume(concurrency=2)
    assert max(read) <= 3
    assert [r.key for r in receipts] == keys
    assert {r.status for r in receipts} == {TransferStatus.SUCCEEDED}
    assert sorted(fake_xt.executions_by_token().values()) == [1] * 7


class _Stalled(httpx.AsyncBaseTransport):
    """The fake venue, except that transfer requests hang (until cancelled) once it is set."""

    def __init__(self, fake: FakeXT) -> None:
        self._inner = FakeTransport(fake)
        self.sending = anyio.Event()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v4/balance/transfer":
            self.sending.set()
            await anyio.Event().wait()
        return await self._inner.handle_async_request(request)


async def test_an_intent_waiting_for_a_slot_is_taken_ahead_and_given_back_on_cancel(
    make_client: MakeClient,
    fake_xt: FakeXT,
    plan: FaultPlan,
    journal: Journal,
    *,
    xt: xferkit.XT,
    clock: VirtualClock,
) -> None:
    """While one intent is being resent, the next has its resend recorded and its lease
    taken already (its slot then goes straight to the send); a sweep cancelled before its
    turn leaves it in the journal exactly as it was listed, lease free, nothing sent."""
    await leave_open(make_client, plan, ["k1", "k2"])
    await journal.open()  # the client closed it
    listed = await journal.get(xt_id("k2"))
    assert listed is not None
    sent_before = transfer_requests(fake_xt)
    stalled = _Stalled(fake_xt)
    async with (
        httpx.AsyncClient(transport=stalled) as http_client,
        xferkit.Client(xt, journal=journal, http_client=http_client, clock=clock) as client,
    ):
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(functools.partial(client.resume, concurrency=1))
            await stalled.sending.wait()
            for _ in range(400):  # the take of k2 commits on the journal's own thread
                waiting = await journal.get(xt_id("k2"))
                assert waiting is not None
                if waiting.lease_owner is not None:
                    break
                await anyio.sleep(0.005)
            assert (waiting.attempts, waiting.status) == (listed.attempts + 1, listed.status)
            assert waiting.lease_owner is not None
            tasks.cancel_scope.cancel()
        assert await journal.get(xt_id("k2")) == listed
    assert transfer_requests(fake_xt) == sent_before  # k1's request hung before the venue had it
