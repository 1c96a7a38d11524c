"""What only a person can settle (issue 15): `Client.settle` records who, when and why, and is
refused for a settled intent; `Client.abandon` closes a never-sent intent so that resume()
never executes it."""

from __future__ import annotations

import pytest

import xferkit
from xferkit import Confirmation, TransferStatus
from xferkit.journal import Journal
from xferkit.testing import FakeXT, Fault, FaultPlan, VirtualClock

from .conftest import MakeClient, transfer_args
from .test_concurrency import seed_stuck_intent


def transfer_requests(fake: FakeXT) -> int:
    return sum(1 for r in fake.requests if r.request.path == "/v4/balance/transfer")


async def test_an_unknown_transfer_settled_as_succeeded_records_who_when_and_why(
    make_client: MakeClient, fake_xt: FakeXT, plan: FaultPlan, clock: VirtualClock
) -> None:
    plan.force(Fault.DROP_AFTER)
    async with make_client(retry=xferkit.RetryPolicy(max_attempts=1, deadline=None)) as client:
        with pytest.raises(xferkit.TransferOutcomeUnknownError):
            await client.transfer("xt", **transfer_args(), key="k1")
        receipt = await client.settle(
            "k1",
            status=TransferStatus.SUCCEEDED,
            transfer_id="7001",
            reason="seen in XT's transfer history",
            by="alice@ops",
        )
        stored = await client.intent("xt", "k1")
        assert await client.resume() == []  # settled: nothing left to send
        replay = await client.transfer("xt", **transfer_args(), key="k1")
    assert receipt.status is TransferStatus.SUCCEEDED
    assert receipt.transfer_id == "7001"
    assert receipt.confirmed_by is Confirmation.OPERATOR
    assert stored is not None
    assert stored.settlement is not None
    assert stored.settlement.by == "alice@ops"
    assert stored.settlement.reason == "seen in XT's transfer history"
    assert stored.settlement.at.timestamp() == pytest.approx(clock.time())
    assert replay.replayed
    assert replay.confirmed_by is Confirmation.OPERATOR
    assert len(fake_xt.audit) == 1
    assert transfer_requests(fake_xt) == 1  # settling sent nothing


async def test_settling_a_settled_intent_is_refused_and_changes_nothing(
    make_client: MakeClient, journal: Journal
) -> None:
    async with make_client() as client:
        done = await client.transfer("xt", **transfer_args(), key="k1")
        with pytest.raises(xferkit.SettlementRefusedError, match="settled already"):
            await client.settle("k1", status=TransferStatus.FAILED, reason="changed my mind")
        stored = await client.intent("xt", "k1")
    assert stored is not None
    assert stored.status is TransferStatus.SUCCEEDED
    assert stored.transfer_id == done.transfer_id
    assert stored.settlement is None


async def test_settling_as_failed_needs_a_reason(make_client: MakeClient, plan: FaultPlan) -> None:
    plan.force(Fault.DROP_AFTER)
    async with make_client(retry=xferkit.RetryPolicy(max_attempts=1, deadline=None)) as client:
        with pytest.raises(xferkit.TransferOutcomeUnknownError):
            await client.transfer("xt", **transfer_args(), key="k1")
        with pytest.raises(xferkit.SettlementRefusedError, match="why"):
            await client.settle("k1", status=TransferStatus.FAILED)
        stored = await client.intent("xt", "k1")
    assert stored is not None
    assert stored.status is TransferStatus.UNKNOWN


async def test_an_open_status_is_refused_by_its_name_on_every_python(
    make_client: MakeClient, plan: FaultPlan
) -> None:
    """Settling as ``UNKNOWN`` is refused naming ``UNKNOWN``, the same on 3.10 as on 3.11+."""
    # f"{member}" of a str-mixin enum is its value before 3.11 and "Class.MEMBER" since.
    plan.force(Fault.DROP_AFTER)
    async with make_client(retry=xferkit.RetryPolicy(max_attempts=1, deadline=None)) as client:
        with pytest.raises(xferkit.TransferOutcomeUnknownError):
            await client.transfer("xt", **transfer_args(), key="k1")
        with pytest.raises(xferkit.SettlementRefusedError) as refused:
            await client.settle("k1", status=TransferStatus.UNKNOWN)
    assert str(refused.value).endswith("SUCCEEDED or FAILED, not UNKNOWN")


async def test_an_intent_another_worker_is_driving_cannot_be_settled(
    make_client: MakeClient, journal: Journal, xt: xferkit.XT, clock: VirtualClock
) -> None:
    """Settling under a live lease would race that worker's own answer from the venue."""
    await seed_stuck_intent(journal, xt, clock)
    async with make_client() as client:
        with pytest.raises(xferkit.SettlementRefusedError, match="driven"):
            await client.settle("stuck", status=TransferStatus.SUCCEEDED)
        stored = await client.intent("xt", "stuck")
    assert stored is not None
    assert stored.status is TransferStatus.IN_FLIGHT
    assert stored.lease_owner == "crashed-worker"


async def test_an_abandoned_call_is_never_executed_by_resume(
    make_client: MakeClient, fake_xt: FakeXT, plan: FaultPlan
) -> None:
    """Every attempt provably never reached the venue (connection refused), the caller made
    good another way and abandons the key: FAILED for good, resume() and the same call
    never send it."""
    plan.force(Fault.CONNECT_REFUSED, times=2)
    async with make_client(retry=xferkit.RetryPolicy(max_attempts=2, deadline=None)) as client:
        with pytest.raises(xferkit.VenueError) as refused:
            await client.transfer("xt", **transfer_args(), key="k1")
        assert refused.value.key_reusable
        abandoned = await client.abandon("k1", reason="paid by wire instead", by="bob@ops")
        assert await client.resume() == []
        with pytest.raises(xferkit.TransferRejectedError, match="abandoned by bob@ops"):
            await client.transfer("xt", **transfer_args(), key="k1")
    assert abandoned.status is TransferStatus.FAILED
    assert not fake_xt.audit
    assert transfer_requests(fake_xt) == 0


async def test_an_intent_that_may_have_been_sent_cannot_be_abandoned(
    make_client: MakeClient, fake_xt: FakeXT, plan: FaultPlan
) -> None:
    plan.force(Fault.DROP_AFTER)
    async with make_client(retry=xferkit.RetryPolicy(max_attempts=1, deadline=None)) as client:
        with pytest.raises(xferkit.TransferOutcomeUnknownError):
            await client.transfer("xt", **transfer_args(), key="k1")
        with pytest.raises(xferkit.SettlementRefusedError, match="may have been sent"):
            await client.abandon("k1", reason="oops")
        [receipt] = await client.resume()
    assert receipt.status is TransferStatus.SUCCEEDED  # it had executed: resume settles it
    assert len(fake_xt.audit) == 1
