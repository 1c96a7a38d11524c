"""The journal contract runs against every backend, PostgreSQL included."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from xferkit import MemoryJournal, PostgresJournal, SqliteJournal
from xferkit.journal import Journal
from xferkit.testing import VirtualClock

from ..postgres import drop_schema, require_postgres, unique_schema

ExpireLeases = Callable[[float], Awaitable[None]]


@pytest.fixture(params=["memory", "sqlite", "postgres"])
async def journal(
    request: pytest.FixtureRequest, tmp_path: Path, clock: VirtualClock
) -> AsyncIterator[Journal]:
    """Each journal backend in turn, opened (PostgreSQL in a schema of its own)."""
    backend: Journal
    schema = None
    dsn = ""
    if request.param == "memory":
        backend = MemoryJournal(clock=clock)
    elif request.param == "sqlite":
        backend = SqliteJournal(tmp_path / "journal.sqlite3", clock=clock)
    else:
        dsn = await require_postgres()
        schema = unique_schema()
        backend = PostgresJournal(dsn, schema=schema)
    await backend.open()
    try:
        yield backend
    finally:
        await backend.aclose()
        if schema is not None:
            await drop_schema(dsn, schema)


@pytest.fixture
def expire_leases(journal: Journal, clock: VirtualClock) -> ExpireLeases:
    """Move time past every lease: the virtual clock, or PostgreSQL's own (it judges leases)."""

    async def expire(seconds: float) -> None:
        if isinstance(journal, PostgresJournal):
            await journal._run(
                lambda c: c.execute(
                    f"UPDATE {journal.schema}.intents "  # noqa: S608 - test schema
                    "SET lease_expires_at = lease_expires_at - make_interval(secs => $1)",
                    seconds,
                )
            )
        else:
            clock.advance(seconds)

    return expire
