"""A fleet of processes sharing one HTX account's rate limit through the PostgreSQL journal."""

from __future__ import annotations

import sys

import pytest

from xferkit.testing import FakeHTX, serve

from ..postgres import drop_schema, require_postgres, unique_schema
from .harness import read_journal, run_worker, run_workers
from .rate_worker import RATE, plan
from .worker import HTX_ACCESS_KEY, HTX_SECRET

pytestmark = pytest.mark.slow

WORKERS, KEYS = 4, 40


def command(dsn: str, schema: str, url: str, n: int, *extra: str) -> list[str]:
    """The command line of rate worker ``n``."""
    return [
        sys.executable, "-m", "tests.fleet.rate_worker", "--dsn", dsn, "--schema", schema,
        "--htx-url", url, "--name", f"w{n}", "--index", str(n), "--keys", str(KEYS), *extra,
    ]  # fmt: skip


def posts(fake: FakeHTX) -> list[float]:
    """When each transfer POST reached the venue (real time), in order."""
    return sorted(r.real_time for r in fake.requests if r.request.method == "POST")


def used_rate(times: list[float]) -> float:
    """Requests a second over the busy interval (first to last request)."""
    return (len(times) - 1) / (times[-1] - times[0])


def executions(fake: FakeHTX, n: int) -> list[int]:
    """How many times the venue executed each of worker ``n``'s transfers."""
    return [
        fake.executions_matching(r.from_account, r.to_account, r.currency, r.amount)
        for r in plan(f"w{n}", n, KEYS)
    ]


async def test_four_processes_share_one_accounts_rate_limit() -> None:
    """Four processes of 40 keyed HTX transfers each, every one configured at the venue's
    5/s for one UID: the venue refuses none for rate, the fleet uses at least 85% of 5/s over
    the busy interval, and every key executes exactly once."""
    dsn = await require_postgres()
    schema = unique_schema()
    fake = FakeHTX(access_key=HTX_ACCESS_KEY, secret=HTX_SECRET, rate_limit=RATE)
    try:
        async with serve(fake) as server:
            url = server.url("htx")
            runs = await run_workers(
                {f"w{n}": command(dsn, schema, url, n, "--wait-for-go") for n in range(WORKERS)}
            )
        intents = await read_journal(dsn, schema)
    finally:
        await drop_schema(dsn, schema)
    for run in runs.values():
        assert run.returncode == 0, run.stderr
        assert run.summary_counts == {"SUCCEEDED": KEYS}, run.events[-1]
    assert fake.rate_limited == 0
    assert used_rate(posts(fake)) >= 0.85 * RATE, used_rate(posts(fake))
    for n in range(WORKERS):
        assert executions(fake, n) == [1] * KEYS
    assert len(intents) == WORKERS * KEYS


async def test_the_fleet_keeps_the_full_rate_when_a_worker_is_killed() -> None:
    """One of four workers SIGKILLed midway: the others carry on at the full rate with no
    refusal for rate, every key of theirs executes once, and resume() settles the dead
    worker's keys, each executed at most once (exactly once for those it settles)."""
    dsn = await require_postgres()
    schema = unique_schema()
    fake = FakeHTX(access_key=HTX_ACCESS_KEY, secret=HTX_SECRET, rate_limit=RATE)
    try:
        async with serve(fake) as server:
            url = server.url("htx")
            # w0 kills itself after 10 of its 40 answers, about 40 requests into the run.
            runs = await run_workers(
                {
                    f"w{n}": command(
                        dsn, schema, url, n, "--wait-for-go", *(("--die-after", "10") * (n == 0))
                    )
                    for n in range(WORKERS)
                }
            )
            [died_at] = [e["at"] for e in runs["w0"].events if e["event"] == "dying"]
            after_kill = [t for t in posts(fake) if t > died_at]
            recovery = await run_worker("resume", command(dsn, schema, url, 0, "--mode", "resume"))
        intents = await read_journal(dsn, schema)
    finally:
        await drop_schema(dsn, schema)
    assert runs["w0"].returncode == -9
    for n in range(1, WORKERS):
        assert runs[f"w{n}"].summary_counts == {"SUCCEEDED": KEYS}, runs[f"w{n}"].events[-1]
        assert executions(fake, n) == [1] * KEYS
    assert recovery.returncode == 0, recovery.stderr
    assert fake.rate_limited == 0
    assert used_rate(after_kill) >= 0.85 * RATE, used_rate(after_kill)
    for request, count in zip(plan("w0", 0, KEYS), executions(fake, 0), strict=True):
        intent = intents.get(request.key or "")
        assert count <= 1
        if intent is not None and intent.status.value == "SUCCEEDED":
            assert count == 1
