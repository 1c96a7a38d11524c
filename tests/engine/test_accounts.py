"""Intents belong to an account (issue 15): (venue, account, key) is an intent's identity, so
two API keys sharing a journal never see, send or replay each other's transfers, and XT's
bizId names (account, key, parameters), so a lost journal cannot double-execute."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import pytest

import xferkit
from xferkit import Confirmation, TransferStatus
from xferkit.journal import Journal, MemoryJournal
from xferkit.testing import FakeTransport, FakeXT, Fault, FaultPlan, VirtualClock

from .conftest import API_KEY, SECRET, transfer_args

OTHER_KEY = "test-api-key-0002"
OTHER_SECRET = "test-secret-of-account-b-3a9f"
OTHER_HOST = "sapi-b.xt.test"


@pytest.fixture
def fake_b(clock: VirtualClock) -> FakeXT:
    """A second XT account, served on its own host (the fake knows one API key)."""
    return FakeXT(api_key=OTHER_KEY, secret=OTHER_SECRET, clock=clock, host=OTHER_HOST)


@asynccontextmanager
async def client_for(
    xt: xferkit.XT, fakes: tuple[FakeXT, ...], journal: Journal, clock: VirtualClock
) -> AsyncIterator[xferkit.Client]:
    async with (
        httpx.AsyncClient(transport=FakeTransport(*fakes)) as http_client,
        xferkit.Client(
            xt,
            journal=journal,
            http_client=http_client,
            clock=clock,
            retry=xferkit.RetryPolicy(max_attempts=1, deadline=None),
        ) as client,
    ):
        yield client


def account_b() -> xferkit.XT:
    return xferkit.XT(OTHER_KEY, OTHER_SECRET, base_url=f"https://{OTHER_HOST}", rate_limit=10_000)


def account_a() -> xferkit.XT:
    return xferkit.XT(API_KEY, SECRET, rate_limit=10_000)


async def test_resume_never_sends_another_accounts_intent(
    fake_xt: FakeXT, fake_b: FakeXT, plan: FaultPlan, journal: Journal, clock: VirtualClock
) -> None:
    """A's transfer under K is left open; a client holding only B's credentials resumes the
    shared journal: it must not send A's body signed with B's key (money would move in B's
    account), and B's own transfer under K is a transfer of its own, not A's receipt."""
    plan.force(Fault.DROP_AFTER)
    async with client_for(account_a(), (fake_xt, fake_b), journal, clock) as client:
        with pytest.raises(xferkit.TransferOutcomeUnknownError):
            await client.transfer("xt", **transfer_args(), key="K")
    async with client_for(account_b(), (fake_xt, fake_b), journal, clock) as client:
        assert await client.resume() == []
        assert not fake_b.audit
        own = await client.transfer("xt", **transfer_args(), key="K")
        assert await client.intent("xt", "K") is not None
    assert own.status is TransferStatus.SUCCEEDED
    assert not own.replayed
    assert len(fake_b.audit) == 1
    async with client_for(account_a(), (fake_xt, fake_b), journal, clock) as client:
        [settled] = await client.resume()
    assert settled.status is TransferStatus.SUCCEEDED
    assert len(fake_xt.audit) == 1  # A's moved once, in A's account
    assert {i.account for i in await reopen_and_find(journal, "K")} == {
        account_a().account,
        account_b().account,
    }


async def reopen_and_find(journal: Journal, key: str) -> list[xferkit.journal.Intent]:
    await journal.open()  # the client closed it
    return await journal.find(key)


def test_the_account_is_a_fingerprint_that_never_shows_the_key() -> None:
    a, b = account_a(), account_b()
    assert a.account != b.account
    assert API_KEY not in a.account
    assert SECRET not in a.account
    assert xferkit.XT(API_KEY, "another-secret").account == a.account  # the key names it


async def test_a_lost_journal_replays_a_keyed_transfer_as_succeeded_by_the_duplicate_answer(
    fake_xt: FakeXT, clock: VirtualClock
) -> None:
    """The same keyed call on a new machine (empty journal): XT answers duplicate, which can
    only mean this very transfer executed: SUCCEEDED, confirmed by the duplicate answer."""
    async with client_for(account_a(), (fake_xt,), MemoryJournal(clock=clock), clock) as client:
        first = await client.transfer("xt", **transfer_args(), key="K")
    async with client_for(account_a(), (fake_xt,), MemoryJournal(clock=clock), clock) as client:
        again = await client.transfer("xt", **transfer_args(), key="K")
    assert first.confirmed_by is Confirmation.VENUE
    assert again.status is TransferStatus.SUCCEEDED
    assert again.transfer_id is None
    assert again.confirmed_by is Confirmation.DUPLICATE
    assert len(fake_xt.audit) == 1


async def test_a_key_reused_with_other_parameters_after_its_row_is_gone_is_a_new_transfer(
    fake_xt: FakeXT, clock: VirtualClock
) -> None:
    """As the prune docs promise: a forgotten key is free; other parameters are another
    bizId, so the venue executes the new transfer instead of answering duplicate."""
    async with client_for(account_a(), (fake_xt,), MemoryJournal(clock=clock), clock) as client:
        await client.transfer("xt", **transfer_args(amount="10"), key="K")
    async with client_for(account_a(), (fake_xt,), MemoryJournal(clock=clock), clock) as client:
        second = await client.transfer("xt", **transfer_args(amount="11"), key="K")
    assert second.confirmed_by is Confirmation.VENUE
    assert len(fake_xt.audit) == 2
    assert len(fake_xt.executions_by_token()) == 2
