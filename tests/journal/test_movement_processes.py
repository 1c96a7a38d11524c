"""Two OS processes on one journal send an identical HTX movement at the same instant: the
journal, not either process, decides which goes first (`Journal.take_movement`)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from decimal import Decimal
from pathlib import Path

import anyio

import xferkit
from xferkit import TransferStatus
from xferkit.testing import FakeHTX, Fault, FaultPlan, serve

from ..postgres import drop_schema, require_postgres, unique_schema
from .movement_worker import HTX_ACCESS_KEY, HTX_SECRET, journal_of

REPO_ROOT = Path(__file__).resolve().parents[2]
KEYS = ("p1-key", "p2-key")


async def race(journal: str) -> tuple[FakeHTX, dict[str, dict[str, str]]]:
    """Run one worker per key on ``journal`` against one loopback fake HTX whose first
    transfer answer is lost after it executed; each worker's JSON outcome by key."""
    plan = FaultPlan(seed=16)
    plan.force(Fault.DROP_AFTER)
    fake = FakeHTX(access_key=HTX_ACCESS_KEY, secret=HTX_SECRET, faults=plan)
    schema = journal_of(journal)
    await schema.open()  # the schema, before the race
    await schema.aclose()
    pythonpath = os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")]))
    results: dict[str, dict[str, str]] = {}
    async with serve(fake) as server:
        start_at = time.time() + 3.0  # after both processes have imported xferkit

        async def worker(key: str) -> None:
            done = await anyio.run_process(
                [
                    *(sys.executable, "-m", "tests.journal.movement_worker", journal),
                    *(server.url("htx"), key, "--start-at", str(start_at)),
                ],
                cwd=REPO_ROOT,
                env={**os.environ, "PYTHONPATH": pythonpath},
                stderr=subprocess.PIPE,
            )
            results[key] = json.loads(done.stdout)

        with anyio.fail_after(60):
            async with anyio.create_task_group() as tg:
                for key in KEYS:
                    tg.start_soon(worker, key)
    return fake, results


async def check(journal: str, fake: FakeHTX, results: dict[str, dict[str, str]]) -> None:
    """Each key executed once, and the two were never unresolved at the same time."""
    assert results == {key: {"key": key, "status": "SUCCEEDED"} for key in KEYS}
    assert fake.executions_matching("spot", "linear-swap", "usdt", Decimal(25)) == len(KEYS)
    store = journal_of(journal)
    await store.open()
    try:
        intents = sorted(await store.list(), key=lambda i: i.first_sent_at or i.created_at)
    finally:
        await store.aclose()
    assert [i.status for i in intents] == [TransferStatus.SUCCEEDED] * len(KEYS)
    first, second = intents
    assert first.finished_at is not None
    assert second.first_sent_at is not None
    assert second.first_sent_at >= first.finished_at  # sent only once the first was settled
    executions = sorted(e.executed_at for e in fake.audit)
    assert (executions[1] - executions[0]).total_seconds() >= 2 * xferkit.HTX(
        HTX_ACCESS_KEY, HTX_SECRET
    ).ledger_margin_seconds  # and its ledger row kept out of the other's window


async def test_two_processes_on_one_sqlite_journal_send_an_identical_movement_one_at_a_time(
    tmp_path: Path,
) -> None:
    """Two processes sharing a SQLite file send identical HTX transfers at the same instant:
    the second is sent only after the first is settled, and each executes once."""
    journal = str(tmp_path / "journal.sqlite3")
    fake, results = await race(journal)
    await check(journal, fake, results)


async def test_two_processes_on_one_postgres_journal_send_an_identical_movement_one_at_a_time() -> (
    None
):
    """Two processes sharing a PostgreSQL schema send identical HTX transfers at the same
    instant: the second is sent only after the first is settled, and each executes once."""
    dsn = await require_postgres()
    schema = unique_schema()
    journal = f"{dsn}#{schema}"
    try:
        fake, results = await race(journal)
        await check(journal, fake, results)
    finally:
        await drop_schema(dsn, schema)
