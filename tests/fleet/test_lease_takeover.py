"""Two workers, one HTX intent: the lease passes to the second while the first reconciles.

A lease only bounds how long a worker may go without renewing it; a worker waiting out HTX's
settle window renews nothing, so a second worker may take the intent over. Whatever the first
then says must stay true: it sent a transfer that may have executed, so "nothing was sent"
(`JournalError`) is never its answer.
"""

from __future__ import annotations

from typing import Any

import anyio
import httpx
import pytest

import xferkit
from xferkit import TransferStatus
from xferkit.testing import FakeHTX, FakeTransport, Fault, FaultPlan
from xferkit.venues.htx import MIN_LEDGER_MARGIN_SECONDS, MIN_SETTLE_SECONDS

from ..postgres import drop_schema, require_postgres, unique_schema

pytestmark = pytest.mark.slow

SETTLE_SECONDS = MIN_SETTLE_SECONDS
LEASE_SECONDS = 0.3  # above the 0.1 s timeout, as Client requires; below the settle window
TAKEOVER_AFTER = 0.6  # the second worker arrives once the first one's lease has lapsed
TRANSFER: dict[str, Any] = {
    "currency": "usdt",
    "amount": "12.5",
    "from_account": "spot",
    "to_account": "usdt_futures",
    "key": "takeover-1",
}


async def test_lease_lost_mid_reconciliation_is_never_reported_as_unsent() -> None:
    """Lease taken over during HTX's settle wait: the first worker answers "maybe", not "unsent".

    Worker A's transfer executes and its answer is lost; A waits for the ledger to settle.
    Its lease lapses, worker B takes the intent over, finds the transfer in the ledger and
    claims the row. A then finds the row claimed and must not conclude the transfer is absent:
    its answer is the receipt or `TransferOutcomeUnknownError`, never a `JournalError`.
    """
    dsn = await require_postgres()
    schema = unique_schema()
    plan = FaultPlan()
    plan.force(Fault.DROP_AFTER)
    fake = FakeHTX(access_key="k", secret="s", faults=plan)

    def worker() -> xferkit.Client:
        htx = xferkit.HTX(
            "k",
            "s",
            settle_seconds=SETTLE_SECONDS,
            ledger_margin_seconds=MIN_LEDGER_MARGIN_SECONDS,
            rate_limit=100,
        )
        return xferkit.Client(
            htx,
            journal=xferkit.PostgresJournal(dsn, schema=schema),
            http_client=httpx.AsyncClient(transport=FakeTransport(fake)),
            timeout=0.1,
            lease_seconds=LEASE_SECONDS,
        )

    answers: dict[str, xferkit.Receipt | xferkit.XferError] = {}

    async def transfer(name: str, client: xferkit.Client, delay: float) -> None:
        await anyio.sleep(delay)
        try:
            answers[name] = await client.transfer("htx", **TRANSFER)
        except xferkit.XferError as exc:
            answers[name] = exc

    try:
        async with worker() as a, worker() as b:
            async with anyio.create_task_group() as tg:
                tg.start_soon(transfer, "a", a, 0.0)
                tg.start_soon(transfer, "b", b, TAKEOVER_AFTER)
            intent = await a.intent("htx", TRANSFER["key"])
    finally:
        await drop_schema(dsn, schema)

    assert len(fake.audit) == 1
    assert intent is not None
    assert intent.status is TransferStatus.SUCCEEDED
    settled = answers["b"]
    assert isinstance(settled, xferkit.Receipt)
    assert (settled.status, settled.transfer_id) == (intent.status, intent.transfer_id)
    first = answers["a"]
    if isinstance(first, xferkit.Receipt):
        assert (first.status, first.transfer_id) == (intent.status, intent.transfer_id)
    else:
        assert isinstance(first, xferkit.TransferOutcomeUnknownError), repr(first)
