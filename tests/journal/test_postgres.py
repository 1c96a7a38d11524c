"""What only the PostgreSQL journal has to get right: shared schema, clocks, failures."""

from __future__ import annotations

import socket

import anyio
import asyncpg
import httpx
import pytest

import xferkit
from xferkit import JournalError, PostgresJournal, TransferStatus
from xferkit.journal import IntentId
from xferkit.testing import FakeTransport, FakeXT, Fault, FaultPlan

from ..postgres import drop_schema, require_postgres, unique_schema
from .test_contract import group_answers, make_intent


async def test_processes_starting_at_once_migrate_the_schema_once() -> None:
    """Ten journals opening one new schema together: no error, one version row."""
    dsn = await require_postgres()
    schema = unique_schema()
    journals = [PostgresJournal(dsn, schema=schema) for _ in range(10)]
    try:
        async with anyio.create_task_group() as tg:
            for journal in journals:
                tg.start_soon(journal.open)
        connection = await asyncpg.connect(dsn)
        versions = await connection.fetch(f"SELECT version FROM {schema}.meta")  # noqa: S608
        await connection.close()
        assert [row["version"] for row in versions] == [4]  # schema 4: rate_budgets
    finally:
        for journal in journals:
            await journal.aclose()
        await drop_schema(dsn, schema)


async def test_a_newer_schema_is_refused() -> None:
    """A schema written by a newer xferkit is refused instead of being misread."""
    dsn = await require_postgres()
    schema = unique_schema()
    journal = PostgresJournal(dsn, schema=schema)
    await journal.open()
    await journal._run(lambda c: c.execute(f"UPDATE {schema}.meta SET version = 99"))  # noqa: S608
    await journal.aclose()
    try:
        with pytest.raises(JournalError, match="version 99"):
            await PostgresJournal(dsn, schema=schema).open()
    finally:
        await drop_schema(dsn, schema)


async def test_an_unreachable_database_is_a_journal_error_and_nothing_is_sent() -> None:
    """No database: JournalError on entering the client, and the venue never hears of it."""
    fake = FakeXT(api_key="k", secret="s")
    client = xferkit.Client(
        xferkit.XT("k", "s"),
        journal="postgresql://postgres:secret-pw@127.0.0.1:1/test",
        http_client=httpx.AsyncClient(transport=FakeTransport(fake)),
    )
    with pytest.raises(JournalError) as raised:
        await client.__aenter__()
    assert "secret-pw" not in str(raised.value)
    assert "secret-pw" not in repr(client)
    assert not fake.requests


async def test_a_database_that_never_answers_is_a_journal_error() -> None:
    """A server that takes the connection but never answers is JournalError, on Python 3.10 too."""
    # asyncpg's timeouts raise asyncio.TimeoutError, which is not the builtin TimeoutError
    # before Python 3.11.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        port = silent.getsockname()[1]
        journal = PostgresJournal(
            f"postgresql://postgres@127.0.0.1:{port}/test", connect_timeout=0.2
        )
        with pytest.raises(JournalError, match="cannot reach"):
            await journal.open()


async def test_waiting_too_long_for_a_pooled_connection_is_a_journal_error() -> None:
    """When every pooled connection stays busy past the timeout, the call is JournalError."""
    dsn = await require_postgres()
    schema = unique_schema()
    journal = PostgresJournal(dsn, schema=schema, min_size=1, max_size=1, connect_timeout=0.2)
    await journal.open()
    try:
        pool = journal._pool
        assert pool is not None
        async with pool.acquire():  # the only connection, held past connect_timeout
            with pytest.raises(JournalError, match="failed"):
                await journal.get(IntentId(venue="xt", account="a", key="k"))
    finally:
        await journal.aclose()
        await drop_schema(dsn, schema)


async def test_client_accepts_a_dsn_and_settles_exactly_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Client(journal="postgresql://...") journals in PostgreSQL: replay and faults included."""
    dsn = await require_postgres()
    schema = unique_schema()
    plan = FaultPlan()
    plan.force(Fault.DROP_AFTER)
    fake = FakeXT(api_key="k", secret="s", faults=plan)
    journal = PostgresJournal(dsn, schema=schema)
    try:
        async with (
            httpx.AsyncClient(transport=FakeTransport(fake)) as http_client,
            xferkit.Client(xferkit.XT("k", "s"), journal=journal, http_client=http_client) as c,
        ):
            args = {"currency": "usdt", "amount": "5", "from_account": "spot",
                    "to_account": "usdt_futures"}  # fmt: skip
            first = await c.transfer("xt", **args, key="pg-1")
            again = await c.transfer("xt", **args, key="pg-1")
            stored = await journal.get(IntentId("xt", xferkit.XT("k", "s").account, "pg-1"))
        assert first.status is TransferStatus.SUCCEEDED
        assert again.replayed
        assert stored is not None
        assert stored.lease_owner is None
        assert list(fake.executions_by_token().values()) == [1]
    finally:
        await drop_schema(dsn, schema)


async def test_leases_follow_the_database_clock_not_the_workers() -> None:
    """A lease expires by the database's now(), whatever time the worker believes it is."""
    dsn = await require_postgres()
    schema = unique_schema()
    journal = PostgresJournal(dsn, schema=schema)
    await journal.open()
    try:
        await journal.claim(make_intent(), owner="a", lease_seconds=0.2)
        assert not (await journal.claim(make_intent(), owner="b", lease_seconds=30)).owned
        await anyio.sleep(0.3)
        assert (await journal.claim(make_intent(), owner="b", lease_seconds=30)).owned
    finally:
        await journal.aclose()
        await drop_schema(dsn, schema)


async def test_a_database_error_in_a_group_fails_every_write_in_it_and_keeps_none() -> None:
    """A write whose statement fails aborts its group's transaction: every write of the group
    is reported failed and none is in the database, so the answers match what is stored. (A
    lost lease is refused without a database error: `test_a_refused_write_does_not_undo_its_
    neighbours` shows its neighbours are kept.)"""
    dsn = await require_postgres()
    schema = unique_schema()
    journal = PostgresJournal(dsn, schema=schema, max_size=1)  # one group commit: one batch
    await journal.open()
    try:
        answers = await group_answers(
            journal, lambda c: c.execute("SELECT 1 / 0"), [("a", "a"), ("z", "a")]
        )
        stored = {intent.key for intent in await journal.list()}
    finally:
        await journal.aclose()
        await drop_schema(dsn, schema)
    assert answers["first/a"] is None
    assert all(isinstance(answers[key], JournalError) for key in ("a/a", "m", "z/a"))
    assert stored == {"first"}
