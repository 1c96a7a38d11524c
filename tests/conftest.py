"""Shared fixtures: a virtual clock and every journal backend."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from xferkit import MemoryJournal, SqliteJournal
from xferkit.journal import Journal
from xferkit.testing import VirtualClock


@pytest.fixture
def clock() -> VirtualClock:
    """A clock whose sleeps return at once and advance virtual time."""
    return VirtualClock()


@pytest.fixture(params=["memory", "sqlite"])
async def journal(
    request: pytest.FixtureRequest, tmp_path: Path, clock: VirtualClock
) -> AsyncIterator[Journal]:
    """Each journal backend in turn, opened, on the virtual clock."""
    backend: Journal
    if request.param == "memory":
        backend = MemoryJournal(clock=clock)
    else:
        backend = SqliteJournal(tmp_path / "journal.sqlite3", clock=clock)
    await backend.open()
    try:
        yield backend
    finally:
        await backend.aclose()
