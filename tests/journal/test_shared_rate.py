"""The fleet's shared rate budget in PostgreSQL: one budget per venue account."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import anyio
import pytest

import xferkit
from xferkit import PostgresJournal
from xferkit._clock import SYSTEM_CLOCK
from xferkit._ratelimit import RateLimiter
from xferkit._shared_rate import FLEET_HEADROOM as HEADROOM
from xferkit._shared_rate import SharedLimiter

from ..postgres import drop_schema, require_postgres, unique_schema

REPO_ROOT = Path(__file__).resolve().parents[2]


async def test_processes_taking_from_one_budget_never_exceed_its_rate() -> None:
    """Four processes taking 15 slots each at once from one account's budget at 20/s: by the
    database's clock no one-second window admits more than the rate allows, and the budget
    is used (the takes span about 60 slots' spacing, not a quarter of it)."""
    dsn = await require_postgres()
    schema = unique_schema()
    journal = PostgresJournal(dsn, schema=schema)
    await journal.open()  # the schema, before the race
    await journal.aclose()
    rate, takes = 20.0, 15
    pythonpath = os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")]))
    start_at = time.time() + 3.0  # after every process has imported xferkit
    granted: list[float] = []

    async def worker() -> None:
        done = await anyio.run_process(
            [
                *(sys.executable, "-m", "tests.journal.rate_worker", dsn, schema),
                *("--takes", str(takes), "--rate", str(rate), "--start-at", str(start_at)),
            ],
            cwd=REPO_ROOT,
            env={**os.environ, "PYTHONPATH": pythonpath},
            stderr=subprocess.PIPE,
        )
        granted.extend(json.loads(done.stdout))

    try:
        async with anyio.create_task_group() as tg:
            for _ in range(4):
                tg.start_soon(worker)
    finally:
        await drop_schema(dsn, schema)
    times = sorted(granted)
    assert len(times) == 4 * takes
    allowed = rate * HEADROOM
    # A grant is read a round trip after its slot: allow one extra in a window for that lag.
    for i, start in enumerate(times):
        in_window = sum(1 for t in times[i:] if t < start + 1.0)
        assert in_window <= allowed + 1, (in_window, allowed)
    span = times[-1] - times[0]
    assert span >= (len(times) - 1) / allowed - 0.1
    assert span <= (len(times) - 1) / allowed * 1.25


async def test_a_refusal_halves_the_fleet_rate_once() -> None:
    """Four workers refused for rate in one episode halve the shared rate once, not four
    times, and every one of them honours the Retry-After hold-off, capped."""
    dsn = await require_postgres()
    schema = unique_schema()
    journal = PostgresJournal(dsn, schema=schema)
    await journal.open()
    try:
        limiters = [journal.rate_limiter("htx", "acct", 10.0, SYSTEM_CLOCK) for _ in range(4)]
        assert await limiters[0].acquire()
        for limiter in limiters:
            limiter.throttled(3600.0, cap=0.3)
        for limiter in limiters:
            await limiter._flush()
        state = await limiters[0].state()
        assert abs(state["rate"] - 10.0 * HEADROOM * 0.5) < 1e-9
        assert 0.1 < state["hold"] <= 0.3
        started = time.monotonic()
        assert await limiters[3].acquire()
        assert time.monotonic() - started >= state["hold"] - 0.02
    finally:
        await journal.aclose()
        await drop_schema(dsn, schema)


async def test_the_shared_rate_recovers_a_tenth_per_quiet_second() -> None:
    """After a halving, each refusal-free second (by the database's clock) gives back a
    tenth of the configured rate, for the whole fleet."""
    dsn = await require_postgres()
    schema = unique_schema()
    journal = PostgresJournal(dsn, schema=schema)
    await journal.open()
    try:
        limiter = journal.rate_limiter("htx", "acct", 10.0, SYSTEM_CLOCK)
        limiter.throttled(0.0)
        await limiter._flush()
        await journal._run(
            lambda c: c.execute(
                f"UPDATE {schema}.rate_budgets SET last_change = clock_timestamp() "  # noqa: S608
                "- interval '3.5 seconds', tat = '-infinity', hold_until = '-infinity'"
            )
        )
        assert await limiter.acquire()
        state = await limiter.state()
        assert abs(state["rate"] - 10.0 * HEADROOM * 0.8) < 1e-9  # a half, plus 3 tenths
    finally:
        await journal.aclose()
        await drop_schema(dsn, schema)


async def test_a_caller_whose_slot_is_after_its_deadline_takes_none() -> None:
    """A caller whose slot would come after its deadline is refused at once and the budget
    is untouched, so the next caller is not pushed back by it."""
    dsn = await require_postgres()
    schema = unique_schema()
    journal = PostgresJournal(dsn, schema=schema)
    await journal.open()
    try:
        limiter = journal.rate_limiter("htx", "acct", 1.0, SYSTEM_CLOCK)
        other = journal.rate_limiter("htx", "acct", 1.0, SYSTEM_CLOCK)  # another worker
        assert await limiter.acquire()  # the next slot is ~1 s away
        tat = await journal._run(
            lambda c: c.fetchval(f"SELECT tat FROM {schema}.rate_budgets")  # noqa: S608
        )
        started = time.monotonic()
        assert not await other.acquire(deadline_at=time.monotonic() + 0.2)
        assert time.monotonic() - started < 0.1
        after = await journal._run(
            lambda c: c.fetchval(f"SELECT tat FROM {schema}.rate_budgets")  # noqa: S608
        )
        assert after == tat
    finally:
        await journal.aclose()
        await drop_schema(dsn, schema)


async def test_accounts_have_budgets_of_their_own() -> None:
    """Two accounts on one venue do not share a budget: each gets its first slot at once."""
    dsn = await require_postgres()
    schema = unique_schema()
    journal = PostgresJournal(dsn, schema=schema)
    await journal.open()
    try:
        a = journal.rate_limiter("htx", "a", 1.0, SYSTEM_CLOCK)
        b = journal.rate_limiter("htx", "b", 1.0, SYSTEM_CLOCK)
        assert await a.acquire()
        started = time.monotonic()
        assert await b.acquire(deadline_at=time.monotonic() + 0.5)
        assert time.monotonic() - started < 0.3
    finally:
        await journal.aclose()
        await drop_schema(dsn, schema)


async def test_a_schema_3_journal_gains_the_rate_budgets_table() -> None:
    """A schema at version 3 (no rate budgets) is migrated to 4 on open, keeping its rows,
    and its budget works at once."""
    dsn = await require_postgres()
    schema = unique_schema()
    journal = PostgresJournal(dsn, schema=schema)
    await journal.open()
    try:
        await journal._run(
            lambda c: c.execute(
                f"DROP TABLE {schema}.rate_budgets; UPDATE {schema}.meta SET version = 3"  # noqa: S608
            )
        )
        await journal.aclose()
        journal = PostgresJournal(dsn, schema=schema)
        await journal.open()
        version = await journal._run(
            lambda c: c.fetchval(f"SELECT max(version) FROM {schema}.meta")  # noqa: S608
        )
        assert version == 4
        assert await journal.rate_limiter("xt", "acct", 10.0, SYSTEM_CLOCK).acquire()
    finally:
        await journal.aclose()
        await drop_schema(dsn, schema)


async def test_a_postgres_client_takes_its_slots_from_the_shared_budget(tmp_path: Path) -> None:
    """A client on a PostgreSQL journal uses the fleet's budget by default; rate_store=None
    and a SQLite journal keep the in-process limiter; anything else is refused."""
    dsn = await require_postgres()
    schema = unique_schema()
    xt = xferkit.XT("fleet-key", "fleet-secret")
    try:
        async with xferkit.Client(xt, journal=PostgresJournal(dsn, schema=schema)) as client:
            assert isinstance(client._runtimes["xt"].limiter, SharedLimiter)
        own = xferkit.Client(xt, journal=PostgresJournal(dsn, schema=schema), rate_store=None)
        async with own:
            assert isinstance(own._runtimes["xt"].limiter, RateLimiter)
    finally:
        await drop_schema(dsn, schema)
    async with xferkit.Client(xt, journal=tmp_path / "j.sqlite3") as client:
        assert isinstance(client._runtimes["xt"].limiter, RateLimiter)
    with pytest.raises(xferkit.InvalidRequestError, match="rate_store"):
        xferkit.Client(xt, journal=tmp_path / "j.sqlite3", rate_store="redis")  # type: ignore[arg-type]
