"""XT transfers through the real engine against the simulated venue, one fault at a time."""

from __future__ import annotations

from decimal import Decimal

import anyio
import httpx
import pytest

import xferkit
from xferkit import TransferStatus
from xferkit.journal import Intent, Journal
from xferkit.testing import FakeTransport, FakeXT, Fault, FaultPlan, VirtualClock

from .conftest import API_KEY, SECRET, MakeClient, transfer_args, xt_id


def transfer_requests(fake: FakeXT) -> int:
    return sum(1 for r in fake.requests if r.request.path == "/v4/balance/transfer")


async def test_clean_transfer_moves_money_once(make_client: MakeClient, fake_xt: FakeXT) -> None:
    """A transfer without faults executes once and the receipt carries the venue's id."""
    before = fake_xt.balance("spot", "usdt")
    async with make_client() as client:
        receipt = await client.transfer("xt", **transfer_args(amount=Decimal("12.5")), key="k1")
    assert receipt.status is TransferStatus.SUCCEEDED
    assert receipt.transfer_id == fake_xt.audit[0].transfer_id
    assert isinstance(receipt.transfer_id, str)
    assert int(receipt.transfer_id) > 2**53  # kept exact, never a float
    assert (receipt.attempts, receipt.replayed) == (1, False)
    assert fake_xt.balance("spot", "usdt") == before - Decimal("12.5")
    assert len(fake_xt.audit) == 1


@pytest.mark.parametrize(
    "fault",
    [Fault.DROP_AFTER, Fault.ERROR_5XX_AFTER, Fault.SLOW_AFTER, Fault.TIMEOUT_CODE_AFTER],
)
async def test_ambiguous_after_commit_resends_and_confirms_by_duplicate(
    make_client: MakeClient, fake_xt: FakeXT, plan: FaultPlan, fault: Fault
) -> None:
    """A lost answer after the venue committed is resent with the same bizId: one execution."""
    plan.force(fault)
    async with make_client() as client:
        receipt = await client.transfer("xt", **transfer_args(), key="k1")
    assert receipt.status is TransferStatus.SUCCEEDED
    assert receipt.transfer_id is None  # confirmed by the duplicate answer, which has no id
    assert receipt.attempts == 2
    assert list(fake_xt.executions_by_token().values()) == [1]


@pytest.mark.parametrize(
    "fault",
    [Fault.CONNECT_REFUSED, Fault.DROP_BEFORE, Fault.ERROR_5XX_BEFORE, Fault.RATE_LIMIT],
)
async def test_failure_before_processing_resends_and_executes_once(
    make_client: MakeClient, fake_xt: FakeXT, plan: FaultPlan, fault: Fault
) -> None:
    """A request the venue never processed is sent again and executes exactly once."""
    plan.force(fault)
    async with make_client() as client:
        receipt = await client.transfer("xt", **transfer_args(), key="k1")
    assert receipt.status is TransferStatus.SUCCEEDED
    assert receipt.transfer_id == fake_xt.audit[0].transfer_id
    assert list(fake_xt.executions_by_token().values()) == [1]


async def test_rate_limit_waits_for_retry_after(
    make_client: MakeClient, plan: FaultPlan, clock: VirtualClock
) -> None:
    """A 429's Retry-After is honoured before the next attempt (on the virtual clock)."""
    plan.force(Fault.RATE_LIMIT)
    start = clock.monotonic()
    async with make_client() as client:
        await client.transfer("xt", **transfer_args(), key="k1")
    assert clock.monotonic() - start >= 1.0  # the fake's Retry-After is 1 s


async def test_clock_skew_resyncs_and_resigns(
    make_client: MakeClient, fake_xt: FakeXT, plan: FaultPlan
) -> None:
    """After AUTH_105 the client measures the venue's clock again and the resend is accepted."""
    plan.force(Fault.CLOCK_SKEW)
    async with make_client() as client:
        receipt = await client.transfer("xt", **transfer_args(), key="k1")
    assert receipt.status is TransferStatus.SUCCEEDED
    assert fake_xt.skew_ms != 0
    stamps = [
        int(r.request.headers["validate-timestamp"])
        for r in fake_xt.requests
        if r.request.path == "/v4/balance/transfer"
    ]
    assert len(stamps) == 2
    assert abs(stamps[1] - stamps[0] - fake_xt.skew_ms) < 5_000  # re-signed in the venue's time


async def test_rate_limit_past_the_policy_fails_and_leaves_the_key_unspent(
    make_client: MakeClient, fake_xt: FakeXT, plan: FaultPlan, journal: Journal
) -> None:
    """429 on every attempt: RateLimitError saying the key is not spent, FAILED; resume()
    leaves it alone, and the next call with the same key tries again and moves it once."""
    plan.force(Fault.RATE_LIMIT, times=3)
    async with make_client(retry=xferkit.RetryPolicy(max_attempts=3, deadline=None)) as client:
        with pytest.raises(xferkit.RateLimitError) as refused:
            await client.transfer("xt", **transfer_args(), key="k1")
        assert refused.value.key_reusable
        assert "the key was not spent" in str(refused.value)
        stored = await journal.get(xt_id("k1"))
        assert stored is not None
        assert stored.status is TransferStatus.FAILED
        assert await client.resume() == []
        assert transfer_requests(fake_xt) == 3
        assert not fake_xt.audit

        receipt = await client.transfer("xt", **transfer_args(), key="k1")
        again = await client.transfer("xt", **transfer_args(), key="k1")
    assert receipt.status is TransferStatus.SUCCEEDED
    assert not receipt.replayed
    assert again.replayed
    assert again.transfer_id == receipt.transfer_id
    assert transfer_requests(fake_xt) == 4
    assert len(fake_xt.audit) == 1


async def test_an_auth_refusal_leaves_the_key_unspent_for_the_fixed_credentials(
    make_client: MakeClient, fake_xt: FakeXT, clock: VirtualClock, journal: Journal
) -> None:
    """A mistyped secret is refused at XT's gateway (AUTH_103): FAILED, key not spent; the
    same key with the right secret then executes once."""
    wrong = xferkit.XT(API_KEY, "wrong-" + SECRET, rate_limit=10_000)
    async with (
        httpx.AsyncClient(transport=FakeTransport(fake_xt)) as http_client,
        xferkit.Client(wrong, journal=journal, http_client=http_client, clock=clock) as client,
    ):
        with pytest.raises(xferkit.AuthenticationError) as refused:
            await client.transfer("xt", **transfer_args(), key="k1")
    assert refused.value.key_reusable
    async with make_client() as client:
        assert await client.resume() == []
        receipt = await client.transfer("xt", **transfer_args(), key="k1")
    assert receipt.status is TransferStatus.SUCCEEDED
    assert not receipt.replayed
    assert len(fake_xt.audit) == 1


async def test_ambiguous_past_the_policy_is_unknown_then_resume_settles_it(
    make_client: MakeClient, fake_xt: FakeXT, plan: FaultPlan, journal: Journal
) -> None:
    """Retries exhausted while ambiguous raise with the key; resume() settles it exactly once."""
    plan.force(Fault.DROP_AFTER)
    plan.force(Fault.ERROR_5XX_BEFORE, times=2)
    async with make_client(retry=xferkit.RetryPolicy(max_attempts=3, deadline=None)) as client:
        with pytest.raises(xferkit.TransferOutcomeUnknownError) as raised:
            await client.transfer("xt", **transfer_args(), key="k1")
        assert raised.value.key == "k1"
        stored = await journal.get(xt_id("k1"))
        assert stored is not None
        assert stored.status is TransferStatus.UNKNOWN
        receipts = await client.resume()
    assert [(r.key, r.status) for r in receipts] == [("k1", TransferStatus.SUCCEEDED)]
    assert list(fake_xt.executions_by_token().values()) == [1]


async def test_deadline_bounds_the_whole_call(
    make_client: MakeClient, fake_xt: FakeXT, plan: FaultPlan, clock: VirtualClock
) -> None:
    """A call whose waits would pass its deadline stops and reports the unknown outcome."""
    plan.force(Fault.ERROR_5XX_AFTER, times=20)
    start = clock.monotonic()
    async with make_client(retry=xferkit.RetryPolicy(max_attempts=20)) as client:
        with pytest.raises(xferkit.TransferOutcomeUnknownError):
            await client.transfer("xt", **transfer_args(), key="k1", deadline=3.0)
    assert clock.monotonic() - start <= 3.0
    assert transfer_requests(fake_xt) < 20
    assert len(fake_xt.audit) == 1


async def test_insufficient_balance_is_failed_and_replayed_without_requests(
    make_client: MakeClient, fake_xt: FakeXT, journal: Journal
) -> None:
    """A definitive refusal marks FAILED; asking again re-raises it without network I/O."""
    async with make_client() as client:
        with pytest.raises(xferkit.InsufficientBalanceError) as first:
            await client.transfer("xt", **transfer_args(amount="1000000000"), key="big")
        sent = len(fake_xt.requests)
        with pytest.raises(xferkit.InsufficientBalanceError) as again:
            await client.transfer("xt", **transfer_args(amount="1000000000"), key="big")
        stored = await journal.get(xt_id("big"))
    assert len(fake_xt.requests) == sent
    assert (again.value.code, again.value.venue) == (first.value.code, "xt")
    assert stored is not None
    assert stored.status is TransferStatus.FAILED
    assert not fake_xt.audit


async def test_replay_returns_the_stored_receipt_without_requests(
    make_client: MakeClient, fake_xt: FakeXT
) -> None:
    """Same key, same parameters (in another spelling): the stored receipt, zero requests."""
    async with make_client() as client:
        first = await client.transfer("xt", **transfer_args(), key="k1")
        sent = len(fake_xt.requests)
        again = await client.transfer(
            "XT",
            **transfer_args(currency="USDT", amount=Decimal("10.00"), from_account="SPOT"),
            key="k1",
        )
    assert len(fake_xt.requests) == sent
    assert again.replayed
    assert (again.transfer_id, again.status, again.key) == (first.transfer_id, first.status, "k1")


async def test_conflicting_reuse_of_a_key_is_refused_without_requests(
    make_client: MakeClient, fake_xt: FakeXT
) -> None:
    """Same key, different amount: IdempotencyConflictError and zero requests."""
    async with make_client() as client:
        await client.transfer("xt", **transfer_args(), key="k1")
        sent = len(fake_xt.requests)
        with pytest.raises(xferkit.IdempotencyConflictError):
            await client.transfer("xt", **transfer_args(amount="11"), key="k1")
    assert len(fake_xt.requests) == sent
    assert len(fake_xt.audit) == 1


async def test_duplicate_on_a_never_sent_bizid_settles_it_without_executing_again(
    make_client: MakeClient, fake_xt: FakeXT, clock: VirtualClock
) -> None:
    """With a lost journal, the same key and parameters cannot execute again: the bizId names
    this very transfer, so the venue's duplicate answer settles it SUCCEEDED (confirmed by the
    duplicate, no transfer id) without moving money a second time (docs/idempotency.md)."""
    async with make_client() as client:
        first = await client.transfer("xt", **transfer_args(), key="k1")
    async with make_client(journal=xferkit.MemoryJournal(clock=clock)) as fresh:
        again = await fresh.transfer("xt", **transfer_args(), key="k1")
    assert first.confirmed_by is not xferkit.Confirmation.DUPLICATE
    assert again.status is TransferStatus.SUCCEEDED
    assert again.confirmed_by is xferkit.Confirmation.DUPLICATE
    assert again.transfer_id is None
    assert not again.replayed
    assert list(fake_xt.executions_by_token().values()) == [1]


async def test_generated_keys_are_journaled_and_distinct(
    make_client: MakeClient, fake_xt: FakeXT, journal: Journal
) -> None:
    """Without a key each call gets its own generated, persisted key and executes once."""
    async with make_client() as client:
        a = await client.transfer("xt", **transfer_args())
        b = await client.transfer("xt", **transfer_args())
        keys = {i.key for i in await journal.list()}
    assert a.key != b.key
    assert keys == {a.key, b.key}
    assert len(fake_xt.audit) == 2


async def test_the_client_refuses_use_outside_its_context(make_client: MakeClient) -> None:
    """A client that is not open, or already closed, raises ClientClosedError."""
    async with make_client() as client:
        pass
    with pytest.raises(xferkit.ClientClosedError):
        await client.transfer("xt", **transfer_args())
    unopened = xferkit.Client(xferkit.XT("k", "s"), journal=xferkit.MemoryJournal())
    with pytest.raises(xferkit.ClientClosedError):
        await unopened.transfer("xt", **transfer_args())


async def test_unknown_venue_is_refused_before_io(make_client: MakeClient, fake_xt: FakeXT) -> None:
    """A venue the client has no credentials for is an InvalidRequestError, nothing sent."""
    async with make_client() as client:
        with pytest.raises(xferkit.InvalidRequestError, match="not configured"):
            await client.transfer("binance", **transfer_args())
    assert not fake_xt.requests


async def test_a_transfer_cancelled_before_its_request_left_is_put_back_to_pending(
    xt: xferkit.XT, fake_xt: FakeXT, clock: VirtualClock, journal: Journal
) -> None:
    """On XT the claim records the first attempt IN_FLIGHT; cancelled before that request left
    (here while reading the venue's clock), the intent goes back to PENDING, never sent, and
    resume() then executes it once."""
    inner = FakeTransport(fake_xt)
    clock_readable = anyio.Event()

    class StallingClockReads(httpx.AsyncBaseTransport):
        async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
            if request.method == "GET" and not clock_readable.is_set():
                await anyio.sleep_forever()
            return await inner.handle_async_request(request)

    async with (
        httpx.AsyncClient(transport=StallingClockReads()) as http_client,
        xferkit.Client(xt, journal=journal, http_client=http_client, clock=clock) as client,
    ):
        with anyio.move_on_after(0.2) as scope:
            await client.transfer("xt", **transfer_args(), key="k1")
        assert scope.cancelled_caught
        stored = await journal.get(xt_id("k1"))
        assert stored is not None
        assert stored.status is TransferStatus.PENDING
        assert (stored.attempts, stored.first_sent_at, stored.last_sent_at) == (0, None, None)
        assert stored.lease_owner is None  # freed for resume() at once
        assert not fake_xt.requests

        clock_readable.set()
        (receipt,) = await client.resume()
    assert receipt.status is TransferStatus.SUCCEEDED
    assert receipt.attempts == 1
    assert fake_xt.executions_by_token()[xt.biz_id("k1", **transfer_args())] == 1


async def test_a_claim_older_than_half_its_lease_is_renewed_before_the_first_send(
    xt: xferkit.XT, fake_xt: FakeXT, clock: VirtualClock
) -> None:
    """The claim leases the intent and records the first attempt; if reading the venue's
    clock then takes most of the lease, the lease is renewed before that attempt is sent, as
    it is for every later attempt, so no other worker can take the intent over mid-send."""
    lease = 60.0
    events: list[str] = []
    inner = FakeTransport(fake_xt)

    class SlowClockReads(httpx.AsyncBaseTransport):
        async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
            if request.method != "GET":
                events.append("send")
                return await inner.handle_async_request(request)
            # The clock read outlasts half the lease: 0.3 of it each way, so the venue's
            # clock is still read right (at the midpoint).
            clock.advance(lease * 0.3)
            response = await inner.handle_async_request(request)
            clock.advance(lease * 0.3)
            return response

    class RecordingJournal(xferkit.MemoryJournal):
        async def save(self, intent: Intent, *, owner: str, lease_seconds: float | None) -> None:
            events.append(f"save {intent.status.value} lease={lease_seconds}")
            await super().save(intent, owner=owner, lease_seconds=lease_seconds)

    journal = RecordingJournal(clock=clock)
    async with (
        httpx.AsyncClient(transport=SlowClockReads()) as http_client,
        xferkit.Client(
            xt, journal=journal, http_client=http_client, clock=clock, lease_seconds=lease
        ) as client,
    ):
        receipt = await client.transfer("xt", **transfer_args(), key="k1")
    assert receipt.status is TransferStatus.SUCCEEDED
    assert events == [
        f"save {TransferStatus.IN_FLIGHT.value} lease={lease}",
        "send",
        f"save {TransferStatus.SUCCEEDED.value} lease=None",
    ]
