"""Exactly-once under faults: many concurrent XT transfers, checked against the venue's audit."""

from __future__ import annotations

import logging
import random
from pathlib import Path

import anyio
import httpx
import pytest

import xferkit
from xferkit import TransferStatus
from xferkit.testing import FakeTransport, FakeXT, Fault, FaultPlan, VirtualClock

from .conftest import API_KEY, SECRET, MakeClient, transfer_args

TRANSFERS = 500
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
async def test_every_transfer_executes_at_most_once_under_faults(
    make_client: MakeClient, fake_xt: FakeXT, plan: FaultPlan, xt: xferkit.XT
) -> None:
    """500 transfers with ~30% mixed faults, 16 at a time, then resume: each executed once."""
    plan.rate = 0.3
    # Every attempt of the first transfers in flight is answered ambiguously, so some surely
    # end UNKNOWN for resume() to settle: random faults alone left none in some runs.
    plan.force(Fault.DROP_AFTER, times=CONCURRENCY * 4)
    requests = plan_requests(seed=3)
    async with make_client(retry=xferkit.RetryPolicy(max_attempts=4, deadline=None)) as client:
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
