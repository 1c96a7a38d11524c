"""When the journal fails, the caller is never told "nothing moved" unless that is provable."""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime, timezone
from typing import Any

import httpx
import pytest

import xferkit
from xferkit import TransferStatus
from xferkit.journal import Claim, Intent, IntentId, MovementTurn
from xferkit.testing import FakeTransport, FakeXT, Fault, FaultPlan, VirtualClock

from .conftest import API_KEY, SECRET, transfer_args, xt_id


class FlakyJournal:
    """A MemoryJournal whose writes fail from the N-th save on, until healed."""

    def __init__(self, clock: VirtualClock, *, fail_claims: bool = False) -> None:
        self.inner = xferkit.MemoryJournal(clock=clock)
        self.fail_claims = fail_claims
        self.fail_saves_from: int | None = None
        self.saves = 0

    async def open(self) -> None:
        await self.inner.open()

    async def aclose(self) -> None:
        await self.inner.aclose()

    async def claim(self, intent: Intent, *, owner: str, lease_seconds: float) -> Claim:
        if self.fail_claims:
            raise xferkit.JournalError("disk full")
        return await self.inner.claim(intent, owner=owner, lease_seconds=lease_seconds)

    async def save(self, intent: Intent, *, owner: str, lease_seconds: float | None) -> None:
        self.saves += 1
        if self.fail_saves_from is not None and self.saves >= self.fail_saves_from:
            raise xferkit.JournalError("disk full")
        await self.inner.save(intent, owner=owner, lease_seconds=lease_seconds)

    async def release(self, intent_id: IntentId, *, owner: str) -> None:
        await self.inner.release(intent_id, owner=owner)

    async def reopen(
        self, intent_id: IntentId, *, owner: str, lease_seconds: float
    ) -> Intent | None:
        return await self.inner.reopen(intent_id, owner=owner, lease_seconds=lease_seconds)

    async def claim_ledger_ref(self, intent_id: IntentId, *, owner: str, ref: str) -> bool:
        return await self.inner.claim_ledger_ref(intent_id, owner=owner, ref=ref)

    async def adopt(self, intent_id: IntentId, *, account: str) -> Intent | None:
        return await self.inner.adopt(intent_id, account=account)

    async def take_movement(
        self, intent: Intent, *, owner: str, lease_seconds: float
    ) -> MovementTurn:
        return await self.inner.take_movement(intent, owner=owner, lease_seconds=lease_seconds)

    async def free_movement(self, intent: Intent, *, owner: str, spacing_seconds: float) -> None:
        await self.inner.free_movement(intent, owner=owner, spacing_seconds=spacing_seconds)

    async def get(self, intent_id: IntentId) -> Intent | None:
        return await self.inner.get(intent_id)

    async def find(self, key: str) -> list[Intent]:
        return await self.inner.find(key)

    async def prune(self, *, finished_before: datetime) -> int:
        return await self.inner.prune(finished_before=finished_before)

    async def list(
        self,
        *,
        statuses: Collection[TransferStatus] | None = None,
        accounts: Collection[tuple[str, str]] | None = None,
        limit: int | None = None,
    ) -> list[Intent]:
        return await self.inner.list(statuses=statuses, accounts=accounts, limit=limit)


async def run(
    journal: FlakyJournal, fake: FakeXT, clock: VirtualClock, **args: Any
) -> xferkit.Receipt:
    async with (
        httpx.AsyncClient(transport=FakeTransport(fake)) as http_client,
        xferkit.Client(
            xferkit.XT(API_KEY, SECRET, rate_limit=10_000),
            journal=journal,
            http_client=http_client,
            clock=clock,
        ) as client,
    ):
        return await client.transfer("xt", **transfer_args(**args), key="k1")


def new_fake(clock: VirtualClock, plan: FaultPlan | None = None) -> FakeXT:
    return FakeXT(api_key=API_KEY, secret=SECRET, clock=clock, faults=plan)


async def test_a_failed_claim_sends_nothing(clock: VirtualClock) -> None:
    """If the intent cannot be recorded, JournalError is raised and no request is made."""
    fake = new_fake(clock)
    with pytest.raises(xferkit.JournalError):
        await run(FlakyJournal(clock, fail_claims=True), fake, clock)
    assert not fake.requests


async def test_a_refusal_that_cannot_be_recorded_is_reported_unknown(clock: VirtualClock) -> None:
    """A refusal whose FAILED record is lost is not final: resume() could still send it."""
    fake = new_fake(clock)
    journal = FlakyJournal(clock)
    journal.fail_saves_from = 1  # the claim records IN_FLIGHT; the FAILED write fails
    with pytest.raises(xferkit.TransferOutcomeUnknownError) as raised:
        await run(journal, fake, clock, amount="999999999")
    assert isinstance(raised.value.__cause__, xferkit.InsufficientBalanceError)
    stored = await journal.get(xt_id("k1"))
    assert stored is not None
    assert stored.status is TransferStatus.IN_FLIGHT


async def test_a_journal_failure_after_an_ambiguous_send_is_unknown(clock: VirtualClock) -> None:
    """Once a send may have executed, a journal failure is reported as an unknown outcome."""
    plan = FaultPlan()
    plan.force(Fault.DROP_AFTER)
    fake = new_fake(clock, plan)
    journal = FlakyJournal(clock)
    journal.fail_saves_from = 1  # the write before the resend fails
    with pytest.raises(xferkit.TransferOutcomeUnknownError):
        await run(journal, fake, clock)
    assert len(fake.audit) == 1


async def test_a_success_that_cannot_be_recorded_is_still_returned(clock: VirtualClock) -> None:
    """The caller learns the money moved even if the SUCCEEDED record is lost."""
    fake = new_fake(clock)
    journal = FlakyJournal(clock)
    journal.fail_saves_from = 1  # the SUCCEEDED write (the claim recorded IN_FLIGHT)
    receipt = await run(journal, fake, clock)
    assert receipt.status is TransferStatus.SUCCEEDED
    assert len(fake.audit) == 1
    journal.fail_saves_from = None
    clock.advance(61)  # the lost write could not release the lease either: let it expire
    async with (
        httpx.AsyncClient(transport=FakeTransport(fake)) as http_client,
        xferkit.Client(
            xferkit.XT(API_KEY, SECRET), journal=journal, http_client=http_client, clock=clock
        ) as client,
    ):
        resumed = await client.resume()
    assert [(r.key, r.status) for r in resumed] == [("k1", TransferStatus.SUCCEEDED)]
    assert len(fake.audit) == 1  # settled by the duplicate answer, not a second execution


async def test_resume_skips_intents_leased_by_a_live_worker(clock: VirtualClock) -> None:
    """resume() leaves an intent alone while another worker's lease on it is live."""
    fake = new_fake(clock)
    journal = FlakyJournal(clock)
    await journal.open()
    xt = xferkit.XT(API_KEY, SECRET)
    spec = xt.validate(**transfer_args())
    intent = Intent(
        key="held",
        venue="xt",
        account=xt.account,
        fingerprint=spec.fingerprint(),
        params=spec.canonical_json(),
        token=xt.idempotency_token("held", spec.fingerprint()),
        body=xt.transfer_body(spec, xt.idempotency_token("held", spec.fingerprint())),
        created_at=datetime.now(timezone.utc),
    )
    await journal.claim(intent, owner="other-worker", lease_seconds=600)
    async with (
        httpx.AsyncClient(transport=FakeTransport(fake)) as http_client,
        xferkit.Client(xt, journal=journal, http_client=http_client, clock=clock) as client,
    ):
        assert await client.resume() == []
    assert not fake.requests
