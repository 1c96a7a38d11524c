"""The SQLite journal's files and the directories it makes are readable by their owner only."""

from __future__ import annotations

import os
import stat
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from xferkit import SqliteJournal

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX file modes")


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _sqlite_files(path: Path) -> list[Path]:
    return [path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")]


@pytest.fixture(params=[0o000, 0o022, 0o277], ids=lambda mask: f"umask-{mask:03o}")
def umask(request: pytest.FixtureRequest) -> Iterator[int]:
    """Each of a permissive umask, the usual one, and one that takes the owner's write bit."""
    previous = os.umask(request.param)
    try:
        yield request.param
    finally:
        os.umask(previous)


@pytest.mark.usefixtures("umask")
async def test_a_new_journal_and_its_wal_and_shm_files_are_private(tmp_path: Path) -> None:
    """A new journal file and its -wal and -shm files are 0600, whatever the umask."""
    path = tmp_path / "journal.sqlite3"
    journal = SqliteJournal(path)
    await journal.open()
    try:
        assert {file.name: _mode(file) for file in _sqlite_files(path)} == {
            file.name: 0o600 for file in _sqlite_files(path)
        }
    finally:
        await journal.aclose()


@pytest.mark.usefixtures("umask")
async def test_every_directory_the_journal_makes_is_private(tmp_path: Path) -> None:
    """Each missing parent directory of the journal is made 0700, whatever the umask."""
    path = tmp_path / "a" / "b" / "journal.sqlite3"
    journal = SqliteJournal(path)
    await journal.open()
    await journal.aclose()
    assert (_mode(tmp_path / "a"), _mode(tmp_path / "a" / "b")) == (0o700, 0o700)
    assert _mode(path) == 0o600


async def test_the_default_directory_is_private(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The default journal, ``~/.xferkit/journal.sqlite3``, is made 0600 in a 0700 directory."""
    monkeypatch.setenv("HOME", str(tmp_path))
    journal = SqliteJournal()
    await journal.open()
    await journal.aclose()
    assert _mode(tmp_path / ".xferkit") == 0o700
    assert _mode(tmp_path / ".xferkit" / "journal.sqlite3") == 0o600


async def test_an_existing_directory_keeps_its_mode(tmp_path: Path) -> None:
    """A directory that already exists is the owner's choice: the journal leaves its mode."""
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o750)
    journal = SqliteJournal(shared / "journal.sqlite3")
    await journal.open()
    await journal.aclose()
    assert _mode(shared) == 0o750
    assert _mode(shared / "journal.sqlite3") == 0o600


async def test_an_existing_journal_file_keeps_its_mode(tmp_path: Path) -> None:
    """A journal file that already exists (shared with a group, say) keeps its mode on open."""
    path = tmp_path / "journal.sqlite3"
    first = SqliteJournal(path)
    await first.open()
    await first.aclose()
    path.chmod(0o640)
    journal = SqliteJournal(path)
    await journal.open()
    await journal.aclose()
    assert _mode(path) == 0o640
