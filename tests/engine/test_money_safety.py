"""What a status promises about money (issue 15): FAILED only when nothing moved and nothing will,
SUCCEEDED only when it moved once, UNKNOWN whenever a refusal cannot tell."""

from __future__ import annotations

import random
from decimal import Decimal
from pathlib import Path

import httpx
import pytest

import xferkit
from xferkit import TransferStatus
from xferkit.journal import Journal
from xferkit.testing import FakeTransport, FakeXT, Fault, FaultPlan, VirtualClock

from .conftest import API_KEY, SECRET, MakeClient, transfer_args, xt_id


def transfer_bodies(fake: FakeXT) -> list[bytes]:
    return [r.request.body for r in fake.requests if r.request.path == "/v4/balance/transfer"]


@pytest.mark.parametrize(
    "code",
    ["GATEWAY_0001", "AUTH_104", "AUTH_102", "AUTH_106", "TRANSFER_010", "TRANSFER_011"],
)
async def test_a_refusal_after_a_lost_answer_leaves_the_transfer_open(
    make_client: MakeClient, fake_xt: FakeXT, plan: FaultPlan, journal: Journal, code: str
) -> None:
    """Attempt 1 executes and its answer is lost; the resend is refused. The refusal says
    nothing about attempt 1: UNKNOWN with the refusal as the reason (a refusal is not retried
    within the call), and resume() later resends the same bizId, which settles it once."""
    plan.force(Fault.DROP_AFTER)
    fake_xt.refuse_next(code)
    async with make_client(retry=xferkit.RetryPolicy(max_attempts=4, deadline=None)) as client:
        with pytest.raises(xferkit.TransferOutcomeUnknownError) as raised:
            await client.transfer("xt", **transfer_args(), key="k1")
        assert code in raised.value.reason
        assert len(transfer_bodies(fake_xt)) == 2
        stored = await journal.get(xt_id("k1"))
        assert stored is not None
        assert stored.status is TransferStatus.UNKNOWN
        assert stored.error is not None
        assert stored.error.code == code  # shown by `journal show`
        [receipt] = await client.resume()
    assert receipt.status is TransferStatus.SUCCEEDED
    assert receipt.confirmed_by is xferkit.Confirmation.DUPLICATE
    assert receipt.reason is None
    assert len(fake_xt.audit) == 1
    assert len(set(transfer_bodies(fake_xt))) == 1  # every send carried the same bizId


async def test_a_balance_refusal_after_a_lost_answer_is_not_failed_when_xt_checks_it_first(
    clock: VirtualClock, plan: FaultPlan, journal: Journal
) -> None:
    """If XT checks the balance before the bizId (undocumented), the resend of an executed
    transfer that emptied the account is answered FUND_002: FAILED would be a lie, so it
    stays UNKNOWN, and resume() does not turn it into FAILED either."""
    fake = FakeXT(
        api_key=API_KEY,
        secret=SECRET,
        clock=clock,
        faults=plan,
        balance_checked_first=True,
        balances={"SPOT": {"usdt": Decimal(10)}, "FUTURES_U": {"usdt": Decimal(0)}},
    )
    plan.force(Fault.DROP_AFTER)
    async with (
        httpx.AsyncClient(transport=FakeTransport(fake)) as http_client,
        xferkit.Client(
            xferkit.XT(API_KEY, SECRET, rate_limit=10_000),
            journal=journal,
            http_client=http_client,
            clock=clock,
            retry=xferkit.RetryPolicy(max_attempts=3, deadline=None),
        ) as client,
    ):
        with pytest.raises(xferkit.TransferOutcomeUnknownError):
            await client.transfer("xt", **transfer_args(amount="10"), key="k1")
        [receipt] = await client.resume()
    assert receipt.status is TransferStatus.UNKNOWN
    assert receipt.reason is not None
    assert "FUND_002" in receipt.reason
    assert len(fake.audit) == 1  # it did move, once


async def test_a_refusal_before_any_possible_execution_is_still_failed(
    make_client: MakeClient, fake_xt: FakeXT, plan: FaultPlan, journal: Journal
) -> None:
    """The rule only bites after a possible execution: a first attempt that provably never
    reached the venue, then a risk-control refusal, is FAILED with the key spent."""
    plan.force(Fault.CONNECT_REFUSED)
    fake_xt.refuse_next("GATEWAY_0001")
    async with make_client() as client:
        with pytest.raises(xferkit.TransferRejectedError) as refused:
            await client.transfer("xt", **transfer_args(), key="k1")
    assert refused.value.code == "GATEWAY_0001"
    assert not refused.value.key_reusable
    assert not fake_xt.audit


async def test_a_dead_host_leaves_the_key_unspent_and_the_next_call_sends_it(
    make_client: MakeClient, fake_xt: FakeXT, plan: FaultPlan, journal: Journal
) -> None:
    """Connection refused on every attempt: FAILED with the key not spent, resume() leaves it
    alone, and the same call once the venue is back moves it once."""
    plan.force(Fault.CONNECT_REFUSED, times=3)
    async with make_client(retry=xferkit.RetryPolicy(max_attempts=3, deadline=None)) as client:
        with pytest.raises(xferkit.VenueError) as refused:
            await client.transfer("xt", **transfer_args(), key="k1")
        assert refused.value.key_reusable
        assert "key was not spent" in str(refused.value)
        assert await client.resume() == []
        assert not transfer_bodies(fake_xt)  # no transfer ever reached the venue
        receipt = await client.transfer("xt", **transfer_args(), key="k1")
    assert receipt.status is TransferStatus.SUCCEEDED
    assert not receipt.replayed
    assert len(fake_xt.audit) == 1


async def test_an_unspent_key_with_other_parameters_is_still_a_conflict(
    make_client: MakeClient, fake_xt: FakeXT, plan: FaultPlan
) -> None:
    """Trying again is for the same transfer: other parameters under the key are refused."""
    plan.force(Fault.CONNECT_REFUSED, times=3)
    async with make_client(retry=xferkit.RetryPolicy(max_attempts=3, deadline=None)) as client:
        with pytest.raises(xferkit.VenueError):
            await client.transfer("xt", **transfer_args(), key="k1")
        with pytest.raises(xferkit.IdempotencyConflictError):
            await client.transfer("xt", **transfer_args(amount="11"), key="k1")
    assert not fake_xt.audit


async def test_generated_keys_never_repeat_across_identically_seeded_clients(
    make_client: MakeClient, fake_xt: FakeXT
) -> None:
    """Two runs seeded alike for reproducible jitter: both transfers execute (a key drawn
    from the rng would have made the second one a replay that never moves money)."""
    receipts = []
    for _ in range(2):
        async with make_client(rng=random.Random(7)) as client:
            receipts.append(await client.transfer("xt", **transfer_args()))
    assert receipts[0].key != receipts[1].key
    assert not any(r.replayed for r in receipts)
    assert len(fake_xt.audit) == 2


class _BrokenFor(httpx.AsyncBaseTransport):
    """The fake venue, except that sending one bizId hits a bug (an unexpected exception)."""

    def __init__(self, fake: FakeXT, token: str) -> None:
        self._inner = FakeTransport(fake)
        self._token = token.encode()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if self._token in request.content:
            raise RuntimeError("a bug in the venue module")
        return await self._inner.handle_async_request(request)


async def test_resume_reports_an_intent_it_cannot_drive_and_settles_the_others(
    make_client: MakeClient,
    fake_xt: FakeXT,
    plan: FaultPlan,
    journal: Journal,
    *,
    xt: xferkit.XT,
    clock: VirtualClock,
) -> None:
    """One intent whose resend hits an unexpected error does not stop the sweep: it is
    reported still open with the reason, and the others settle."""
    plan.force(Fault.DROP_AFTER, times=2)
    async with make_client(retry=xferkit.RetryPolicy(max_attempts=1, deadline=None)) as client:
        for key in ("a", "b"):
            with pytest.raises(xferkit.TransferOutcomeUnknownError):
                await client.transfer("xt", **transfer_args(), key=key)
    await journal.open()  # the client closed it
    stored = await journal.get(xt_id("a"))
    assert stored is not None
    async with (
        httpx.AsyncClient(transport=_BrokenFor(fake_xt, stored.token)) as http_client,
        xferkit.Client(xt, journal=journal, http_client=http_client, clock=clock) as client,
    ):
        receipts = {r.key: r for r in await client.resume()}
    assert receipts["a"].status is TransferStatus.UNKNOWN
    assert receipts["a"].reason is not None
    assert "resume() could not drive it" in receipts["a"].reason
    assert receipts["b"].status is TransferStatus.SUCCEEDED
    assert len(fake_xt.audit) == 2  # each executed once, on its first attempt


async def test_client_from_the_environment_uses_xferkit_journal(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, fake_xt: FakeXT, clock: VirtualClock
) -> None:
    """`Client()` without a journal, like `xferkit.transfer()`, writes where the CLI reads:
    ``XFERKIT_JOURNAL``."""
    path = tmp_path / "sim.sqlite3"
    monkeypatch.setenv("XFERKIT_JOURNAL", str(path))
    async with (
        httpx.AsyncClient(transport=FakeTransport(fake_xt)) as http_client,
        xferkit.Client(
            xferkit.XT(API_KEY, SECRET, rate_limit=10_000), http_client=http_client, clock=clock
        ) as client,
    ):
        await client.transfer("xt", **transfer_args(), key="k1")
    reader = xferkit.SqliteJournal(path)
    await reader.open()
    try:
        stored = await reader.get(xt_id("k1"))
    finally:
        await reader.aclose()
    assert stored is not None
    assert stored.status is TransferStatus.SUCCEEDED
