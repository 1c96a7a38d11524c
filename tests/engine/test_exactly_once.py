"""Exactly-once under faults: many concurrent XT transfers, checked against the venue's audit."""

from __future__ import annotations

import logging
import random
from decimal import Decimal
from pathlib import Path

import anyio
import httpx
import pytest

import xferkit
from xferkit import TransferStatus
from xferkit.journal import Journal
from xferkit.testing import FakeHTX, FakeTransport, FakeXT, Fault, FaultPlan, VirtualClock
from xferkit.venues._base import TransferSpec

from .conftest import API_KEY, HTX_ACCESS_KEY, HTX_SECRET, SECRET, MakeClient, transfer_args

TRANSFERS = 500
TRADING_DEADLINE = 8.0  # a trading engine's call deadline, below HTX's default settle window
HTX_TRANSFERS = 200
CONCURRENCY = 16
ACCOUNTS = ("spot", "usdt_futures", "finance", "coin_futures")


def plan_requests(seed: int) -> list[tuple[str, dict[str, object]]]:
    """A seeded mix: mostly ordinary transfers, about 5% too large to be covered."""
    rng = random.Random(seed)
    requests = []
    for n in range(TRANSFERS):
        source, target = rng.sample(ACCOUNTS, 2)
        amount = "5000000" if rng.random() < 0.05 else f"{rng.randint(1, 500)}.{rng.randint(0, 99)}"
        requests.append(
            (f"batch-{n:04d}", transfer_args(amount=amount, from_account=source, to_account=target))
        )
    return requests


def transfer_posts(fake: FakeHTX) -> int:
    """Transfer requests that reached the fake HTX (ledger and clock reads not counted)."""
    return sum(1 for r in fake.requests if r.request.path == "/v2/account/transfer")


async def run_batch(
    client: xferkit.Client, requests: list[tuple[str, dict[str, object]]]
) -> dict[str, xferkit.Receipt | Exception]:
    outcomes: dict[str, xferkit.Receipt | Exception] = {}
    limiter = anyio.CapacityLimiter(CONCURRENCY)

    async def one(key: str, args: dict[str, object]) -> None:
        async with limiter:
            try:
                outcomes[key] = await client.transfer("xt", key=key, **args)  # type: ignore[arg-type]
            except xferkit.XferError as exc:
                outcomes[key] = exc

    async with anyio.create_task_group() as tg:
        for key, args in requests:
            tg.start_soon(one, key, args)
    return outcomes


@pytest.mark.slow
@pytest.mark.parametrize("deadline", [None, TRADING_DEADLINE], ids=["no-deadline", "deadline-8"])
async def test_every_transfer_executes_at_most_once_under_faults(
    make_client: MakeClient,
    fake_xt: FakeXT,
    plan: FaultPlan,
    xt: xferkit.XT,
    deadline: float | None,
) -> None:
    """500 transfers with ~30% mixed faults, 16 at a time, then resume: each executed once,
    with no call deadline as with a trading engine's."""
    plan.rate = 0.3
    # Every attempt of the first transfers in flight is answered ambiguously, so some surely
    # end UNKNOWN for resume() to settle: random faults alone left none in some runs.
    plan.force(Fault.DROP_AFTER, times=CONCURRENCY * 4)
    requests = plan_requests(seed=3)
    policy = xferkit.RetryPolicy(max_attempts=4, deadline=deadline)
    async with make_client(retry=policy) as client:
        first = await run_batch(client, requests)
        assert sum(plan.injected.values()) >= TRANSFERS * 0.3  # the faults really happened
        assert any(isinstance(o, xferkit.TransferOutcomeUnknownError) for o in first.values())

        plan.enabled = False
        resumed = {r.key: r for r in await client.resume()}
        again = await run_batch(client, requests)  # the caller re-submits the same keys
        intents = {i.key: i for i in await client.journal.list()}

    executions = fake_xt.executions_by_token()
    assert all(count == 1 for count in executions.values()), "a bizId executed twice"
    unsettled = 0
    for key, args in requests:
        token = xt.biz_id(key, **args)
        outcome = again[key]
        if isinstance(outcome, xferkit.Receipt):
            assert outcome.status is TransferStatus.SUCCEEDED
            assert executions[token] == 1, f"{key} succeeded but did not execute once"
        elif isinstance(outcome, xferkit.TransferOutcomeUnknownError):
            # An oversized transfer whose first attempt may have executed: the balance refusal
            # of every resend says nothing about that attempt, so it stays open, with the
            # refusal as its reason, and it moved at most once.
            intent = intents[key]
            assert intent.error is not None, intent
            assert intent.error.code == "FUND_002", intent
            assert executions[token] <= 1
            unsettled += 1
        else:
            # Refusals: the oversized ones, or clock-skew refusals that outlasted the policy.
            assert isinstance(outcome, xferkit.VenueError), outcome
            assert executions[token] == 0, f"{key} failed but executed"
        if key in resumed and not isinstance(outcome, xferkit.TransferOutcomeUnknownError):
            assert resumed[key].status is not TransferStatus.UNKNOWN
    assert unsettled < TRANSFERS * 0.05  # only ever the oversized ones
    assert len(fake_xt.audit) == sum(isinstance(o, xferkit.Receipt) for o in again.values())


@pytest.mark.slow
async def test_htx_transfers_execute_exactly_once_with_a_short_deadline_and_the_default_window(
    clock: VirtualClock, journal: Journal
) -> None:
    """200 HTX transfers (some moving identical amounts) under ~30% mixed faults with a
    trading engine's 8 s deadline and HTX's default 10 s settle window, then resume() once
    the faults stop: every key is terminal, each SUCCEEDED executed exactly once and each
    FAILED never, and asking every key again sends nothing."""
    plan = FaultPlan(rate=0.3, seed=5)
    fake = FakeHTX(access_key=HTX_ACCESS_KEY, secret=HTX_SECRET, clock=clock, faults=plan)
    rng = random.Random(5)
    requests = [
        # One in ten moves the same amount: those go one at a time (each must own its row).
        (f"htx-{n:03d}", {"amount": "1.5" if rng.random() < 0.1 else f"{n + 3}.5"})
        for n in range(HTX_TRANSFERS)
    ]
    htx = xferkit.HTX(HTX_ACCESS_KEY, HTX_SECRET, rate_limit=50)  # default settle window
    async with (
        httpx.AsyncClient(transport=FakeTransport(fake)) as http_client,
        xferkit.Client(
            htx,
            journal=journal,
            http_client=http_client,
            clock=clock,
            retry=xferkit.RetryPolicy(deadline=TRADING_DEADLINE),
        ) as client,
    ):

        async def run() -> dict[str, xferkit.Receipt | Exception]:
            outcomes: dict[str, xferkit.Receipt | Exception] = {}
            limiter = anyio.CapacityLimiter(CONCURRENCY)

            async def one(key: str, amount: str) -> None:
                async with limiter:
                    try:
                        outcomes[key] = await client.transfer(
                            "htx", **transfer_args(amount=amount), key=key
                        )
                    except xferkit.XferError as exc:
                        outcomes[key] = exc

            async with anyio.create_task_group() as tg:
                for key, fields in requests:
                    tg.start_soon(one, key, fields["amount"])
            return outcomes

        first = await run()
        assert sum(plan.injected.values()) >= HTX_TRANSFERS * 0.2  # the faults really happened
        assert any(isinstance(o, xferkit.TransferOutcomeUnknownError) for o in first.values())
        plan.enabled = False
        with anyio.fail_after(60):  # real seconds: a sweep that waits forever fails, not hangs
            await client.resume()
        settled = await client.journal.list()
        assert all(i.status.is_terminal for i in settled), "resume() left a key open"
        # FAILED keys whose every attempt provably never reached the venue are not spent: the
        # next call tries them again. Every other key is answered from the journal.
        unspent = {i.key for i in settled if i.error is not None and i.error.reusable}
        sent = transfer_posts(fake)
        again = await run()
        # (Some unspent keys may be refused again before sending: the limiter, slowed by the
        # outage's 429s, cannot give them a slot within their deadline.)
        assert transfer_posts(fake) - sent <= len(unspent), "a spent key reached the venue"
        intents = {i.key: i for i in await client.journal.list()}

    # The venue's audit, matched to keys through the ledger rows and transfer ids the
    # journal recorded: every execution is some SUCCEEDED key's, and no key's twice.
    ids = {i.transfer_id for i in intents.values() if i.ledger_ref is None and i.transfer_id}
    refs = {i.ledger_ref for i in intents.values() if i.ledger_ref is not None}
    rows = {row.transact_id: row for row in fake.ledger_rows()}
    assert refs <= set(map(str, rows)), "a ledger_ref names no ledger row"
    succeeded = [i for i in intents.values() if i.status is TransferStatus.SUCCEEDED]
    assert len(fake.audit) == len(succeeded), "executions and SUCCEEDED keys differ"
    assert len(ids) + len(refs) == len(succeeded), "two keys claim one execution"
    for amount in {fields["amount"] for _, fields in requests}:
        done = sum(
            1
            for i in succeeded
            if TransferSpec.from_canonical_json(i.params).amount == Decimal(amount)
        )
        assert fake.executions_matching("spot", "linear-swap", "usdt", amount) == done, amount
    for key, _ in requests:
        outcome, status = again[key], intents[key].status
        if isinstance(outcome, xferkit.Receipt):
            assert outcome.status is TransferStatus.SUCCEEDED
            assert outcome.replayed is (key not in unspent)
        elif isinstance(outcome, xferkit.VenueError):  # refused before anything moved
            assert status is TransferStatus.FAILED
        else:
            # An unspent key tried again but not sent within its deadline: identical amounts
            # go one at a time. It stays PENDING (never sent) for a later call or resume().
            assert isinstance(outcome, xferkit.TransferOutcomeUnknownError), outcome
            assert key in unspent
            assert status is TransferStatus.PENDING


async def test_secrets_never_leak_into_logs_reprs_errors_or_the_journal(
    tmp_path: Path, clock: VirtualClock, caplog: pytest.LogCaptureFixture
) -> None:
    """A faulted batch at DEBUG: the secret is nowhere in logs, reprs, errors or the journal."""
    plan = FaultPlan(rate=0.5, seed=11)
    fake = FakeXT(api_key=API_KEY, secret=SECRET, clock=clock, faults=plan)
    xt = xferkit.XT(API_KEY, SECRET, rate_limit=10_000)
    path = tmp_path / "journal.sqlite3"
    seen: list[str] = [repr(xt), repr(fake)]
    caplog.set_level(logging.DEBUG)
    async with (
        httpx.AsyncClient(transport=FakeTransport(fake)) as http_client,
        xferkit.Client(
            xt,
            journal=path,
            http_client=http_client,
            clock=clock,
            retry=xferkit.RetryPolicy(max_attempts=2, deadline=None),
        ) as client,
    ):
        seen.append(repr(client))
        outcomes = await run_batch(client, plan_requests(seed=5)[:60])
        # Faults off: a lost answer would leave the wrong-secret transfer UNKNOWN, not refused.
        plan.enabled = False
        bad = xferkit.XT(API_KEY, "wrong-" + SECRET, rate_limit=10_000)
        async with xferkit.Client(
            bad, journal=tmp_path / "other.sqlite3", http_client=http_client, clock=clock
        ) as bad_client:
            with pytest.raises(xferkit.AuthenticationError) as refused:
                await bad_client.transfer("xt", **transfer_args())  # type: ignore[arg-type]
    seen += [str(o) + repr(o) for o in outcomes.values()]
    seen += [str(refused.value), repr(refused.value)]
    seen += [record.getMessage() + repr(record.__dict__) for record in caplog.records]
    assert any(isinstance(o, xferkit.XferError) for o in outcomes.values())
    assert len(caplog.records) > 60
    for text in seen:
        assert SECRET not in text
    for file in tmp_path.iterdir():  # noqa: ASYNC240 - after the event loop work
        assert SECRET.encode() not in file.read_bytes(), file.name
