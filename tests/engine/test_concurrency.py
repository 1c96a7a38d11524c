"""One key, many callers: one execution, one answer; a stuck worker's lease runs out."""

from __future__ import annotations

from datetime import datetime, timezone
from decimal import Decimal

import anyio
import attrs
import httpx
import pytest

import xferkit
from xferkit import TransferStatus
from xferkit.journal import Intent, Journal
from xferkit.testing import FakeHTX, FakeTransport, FakeXT, Fault, FaultPlan, VirtualClock

from .conftest import API_KEY, SECRET, MakeClient, transfer_args


@pytest.mark.parametrize("fault", [None, Fault.DROP_AFTER, Fault.RATE_LIMIT])
async def test_twenty_concurrent_calls_with_one_key_execute_once(
    make_client: MakeClient, fake_xt: FakeXT, plan: FaultPlan, fault: Fault | None
) -> None:
    """The same key from 20 tasks: one execution and 20 equal receipts."""
    if fault is not None:
        plan.force(fault)
    receipts: list[xferkit.Receipt] = []
    async with make_client() as client:

        async def call() -> None:
            receipts.append(await client.transfer("xt", **transfer_args(), key="shared"))

        async with anyio.create_task_group() as tg:
            for _ in range(20):
                tg.start_soon(call)
    assert len(receipts) == 20
    assert all(r == receipts[0] for r in receipts)
    assert receipts[0].status is TransferStatus.SUCCEEDED
    assert list(fake_xt.executions_by_token().values()) == [1]
    transfers = [r for r in fake_xt.requests if r.request.path == "/v4/balance/transfer"]
    assert len(transfers) == (1 if fault is None else 2)


async def test_twenty_concurrent_calls_with_one_key_execute_once_on_htx(
    clock: VirtualClock, journal: Journal
) -> None:
    """On HTX too (no server key): 20 callers of one key, one execution, equal receipts."""
    plan = FaultPlan()
    plan.force(Fault.DROP_AFTER)
    fake = FakeHTX(access_key=API_KEY, secret=SECRET, clock=clock, faults=plan)
    receipts: list[xferkit.Receipt] = []
    async with (
        httpx.AsyncClient(transport=FakeTransport(fake)) as http_client,
        xferkit.Client(
            xferkit.HTX(API_KEY, SECRET), journal=journal, http_client=http_client, clock=clock
        ) as client,
    ):

        async def call() -> None:
            receipts.append(await client.transfer("htx", **transfer_args(), key="shared"))

        async with anyio.create_task_group() as tg:
            for _ in range(20):
                tg.start_soon(call)
    assert all(r == receipts[0] for r in receipts)
    assert len(fake.audit) == 1


async def test_a_later_call_replays_what_a_finished_call_settled(make_client: MakeClient) -> None:
    """After the drive has finished, the same key is a replay (replayed=True), equal otherwise."""
    async with make_client() as client:
        first = await client.transfer("xt", **transfer_args(), key="k")
        later = await client.transfer("xt", **transfer_args(), key="k")
    assert later == attrs.evolve(first, replayed=True)


async def seed_stuck_intent(journal: Journal, xt: xferkit.XT, clock: VirtualClock) -> None:
    """Record what a worker that crashed mid-send leaves: IN_FLIGHT under a live lease."""
    await journal.open()
    spec = xt.validate(**transfer_args())
    token = xt.idempotency_token("stuck", spec.fingerprint())
    claim = await journal.claim(
        Intent(
            key="stuck",
            venue="xt",
            account=xt.account,
            fingerprint=spec.fingerprint(),
            params=spec.canonical_json(),
            token=token,
            body=xt.transfer_body(spec, token),
            created_at=datetime.fromtimestamp(clock.time(), tz=timezone.utc),
        ),
        owner="crashed-worker",
        lease_seconds=30,
    )
    await journal.save(
        attrs.evolve(claim.intent, status=TransferStatus.IN_FLIGHT, attempts=1),
        owner="crashed-worker",
        lease_seconds=30,
    )


async def test_a_stuck_owners_lease_expires_and_another_client_completes_it(
    make_client: MakeClient,
    fake_xt: FakeXT,
    journal: Journal,
    xt: xferkit.XT,
    clock: VirtualClock,
) -> None:
    """A caller waits out a dead worker's lease, then takes the intent over and settles it."""
    await seed_stuck_intent(journal, xt, clock)
    start = clock.monotonic()
    async with make_client() as client:
        assert await client.resume() == []  # the lease is live: resume leaves it alone
        receipt = await client.transfer("xt", **transfer_args(), key="stuck")
    assert clock.monotonic() - start >= 30  # it did wait for the lease to run out
    assert receipt.status is TransferStatus.SUCCEEDED
    assert list(fake_xt.executions_by_token().values()) == [1]


async def test_resume_takes_over_an_expired_lease(
    make_client: MakeClient,
    fake_xt: FakeXT,
    journal: Journal,
    xt: xferkit.XT,
    clock: VirtualClock,
) -> None:
    """Once the dead worker's lease has expired, resume() settles its intent."""
    await seed_stuck_intent(journal, xt, clock)
    clock.advance(31)
    async with make_client() as client:
        receipts = await client.resume()
    assert [(r.key, r.status) for r in receipts] == [("stuck", TransferStatus.SUCCEEDED)]
    assert receipts[0].amount == Decimal(10)
    assert list(fake_xt.executions_by_token().values()) == [1]
