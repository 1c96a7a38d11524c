"""The default journal: one SQLite file, WAL mode, ``synchronous=FULL``.

Every call runs on a worker thread behind a ``CapacityLimiter(1)``, so the event loop never
blocks on disk and the single connection is never used by two threads at once. A write returns
only after SQLite's fsync: a claim that returned is on disk before anything is sent. Concurrent
writes share a commit and its fsync (group commit, see ``_group``): a commit's claims and saves
are written by one statement (`_write_group`), anything else in one transaction.
Several processes may share the file; SQLite's write lock serialises their writes.

The journal names accounts, amounts and keys: a file and directories it creates are its
owner's alone (0600 and 0700), and so are SQLite's ``-wal`` and ``-shm`` files, which SQLite
gives the database file's mode (`_create_private`).
"""

from __future__ import annotations

import os
import sqlite3
import sys
from collections import Counter
from collections.abc import Callable, Collection
from datetime import datetime, timedelta, timezone
from os import PathLike
from pathlib import Path
from typing import Any, TypeVar

import anyio
import anyio.to_thread
import attrs

from .._clock import SYSTEM_CLOCK, Clock
from .._exceptions import JournalError
from .._models import TransferStatus
from ._base import (
    LEGACY_ACCOUNT,
    UNRESOLVED_STATUSES,
    Claim,
    Intent,
    IntentId,
    MovementHold,
    MovementTurn,
    decide_claim,
    from_timestamp,
    intent_from_row,
    lease_lost,
    movement_of,
    movement_turn,
    reopened,
    to_timestamp,
    with_lease,
)
from ._group import GroupCommit, Write

__all__ = ["DEFAULT_JOURNAL_PATH", "SqliteJournal"]

DEFAULT_JOURNAL_PATH = Path("~/.xferkit/journal.sqlite3")
_PRIVATE_FILE = 0o600
_PRIVATE_DIRECTORY = 0o700
SCHEMA_VERSION = 3
_T = TypeVar("_T")

# Schema 2: an intent is identified by (venue, account, key), stored as `IntentId.text` in
# ``id``. Schema 1 was keyed by ``key`` alone; `_migrate_from_1` keeps its rows, with the
# account unknown (`LEGACY_ACCOUNT`).
# Schema 3 adds ``intents.attempts_end_venue_ms`` and ``movements``: per (venue, account,
# `movement_of`), which intent holds the turn to send it and when the previous one's spacing
# ends (`SqliteJournal.take_movement`). `_migrate_from_2` adds both to a schema 2 file.
_SCHEMA = """
CREATE TABLE IF NOT EXISTS intents (
    id               TEXT PRIMARY KEY,
    key              TEXT NOT NULL,
    venue            TEXT NOT NULL,
    account          TEXT NOT NULL,
    fingerprint      TEXT NOT NULL,
    params           TEXT NOT NULL,
    token            TEXT,
    body             TEXT NOT NULL,
    status           TEXT NOT NULL,
    attempts         INTEGER NOT NULL,
    transfer_id      TEXT,
    error            TEXT,
    ledger_ref       TEXT,
    created_at       TEXT NOT NULL,
    first_sent_at    TEXT,
    first_sent_venue_ms INTEGER,
    last_sent_at     TEXT,
    finished_at      TEXT,
    lease_owner      TEXT,
    lease_expires_at TEXT,
    settlement       TEXT,
    attempts_end_venue_ms INTEGER
);
CREATE INDEX IF NOT EXISTS intents_status ON intents (status, created_at);
CREATE INDEX IF NOT EXISTS intents_key ON intents (key);
CREATE INDEX IF NOT EXISTS intents_account ON intents (venue, account, status);
CREATE UNIQUE INDEX IF NOT EXISTS intents_ledger_ref ON intents (venue, account, ledger_ref)
    WHERE ledger_ref IS NOT NULL;
CREATE TABLE IF NOT EXISTS movements (
    venue        TEXT NOT NULL,
    account      TEXT NOT NULL,
    movement     TEXT NOT NULL,
    holder_key   TEXT,
    holder_owner TEXT,
    free_at      TEXT,
    PRIMARY KEY (venue, account, movement)
);
"""

_V1_COLUMNS = (
    "key, venue, fingerprint, params, token, body, status, attempts, transfer_id, error, "
    "ledger_ref, created_at, first_sent_at, first_sent_venue_ms, last_sent_at, finished_at, "
    "lease_owner, lease_expires_at"
)
_COLUMNS = (
    f"id, {_V1_COLUMNS.replace('venue, ', 'venue, account, ', 1)}, settlement, "
    "attempts_end_venue_ms"
)
_WIDTH = len(_COLUMNS.split(", "))
_UPSERT = f"INSERT OR REPLACE INTO intents ({_COLUMNS}) VALUES ({', '.join('?' * _WIDTH)})"  # noqa: S608
# A save writes every column but the id, and only while the saver holds the lease.
_SAVE = (
    "UPDATE intents SET "  # noqa: S608
    + ", ".join(f"{name} = ?" for name in _COLUMNS.split(", ")[1:])
    + " WHERE id = ? AND lease_owner = ?"
)
_SELECT = f"SELECT {_COLUMNS} FROM intents WHERE id = ?"  # noqa: S608
_HOLDER = "SELECT lease_owner FROM intents WHERE id = ?"
# A batch's claims, saves and takes are written by one statement (`_write_group`). Each row of
# its VALUES is an intent's columns (id first, as `_row`), then the writer (the lease owner),
# its kind (`_CLAIM`, `_SAVE_KIND` or `_TAKE_KIND`), and for a take what the stored row must
# still hold (status, attempts, last_sent_at, error) and the time leases are judged at (NULL
# for the other kinds).
_CLAIM, _SAVE_KIND, _TAKE_KIND = 0, 1, 2
_COLUMN_NAMES = _COLUMNS.split(", ")
_W = len(_COLUMN_NAMES)
_GROUP_WIDTH = _W + 7
_GROUP_ROW = f"({', '.join('?' * _GROUP_WIDTH)})"
_NO_EXPECTATION = (None, None, None, None, None)
_KEY, _WRITER, _KIND = "v.column1", f"v.column{_W + 1}", f"v.column{_W + 2}"
# A take's condition (`takeable`), on the stored row ``i``.
_TAKEABLE = (
    f"i.status = v.column{_W + 3} AND i.attempts = v.column{_W + 4}"
    f" AND i.last_sent_at IS v.column{_W + 5} AND i.error IS v.column{_W + 6}"
    f" AND (i.lease_expires_at IS NULL OR i.lease_expires_at <= v.column{_W + 7})"
)
# A claim of a stored key, a save whose writer does not hold the lease, or a take of a key not
# stored: such a row's status becomes NULL, which the NOT NULL constraint refuses, failing the
# whole statement.
_REFUSED = (
    f"({_KIND} = {_CLAIM} AND EXISTS (SELECT 1 FROM intents AS i WHERE i.id = {_KEY}))"  # noqa: S608
    f" OR ({_KIND} = {_SAVE_KIND} AND NOT EXISTS"
    f" (SELECT 1 FROM intents AS i WHERE i.id = {_KEY} AND i.lease_owner = {_WRITER}))"
    f" OR ({_KIND} = {_TAKE_KIND} AND NOT EXISTS (SELECT 1 FROM intents AS i WHERE i.id = {_KEY}))"
)
# A take that finds its row changed or leased is not refused but passed over: its fingerprint
# (never empty in a real row) becomes '', and the update skips such rows (`_passed_over`).
_PASSED_OVER = (
    f"{_KIND} = {_TAKE_KIND} AND NOT EXISTS"  # noqa: S608
    f" (SELECT 1 FROM intents AS i WHERE i.id = {_KEY} AND {_TAKEABLE})"
)


def _group_column(n: int, name: str) -> str:
    if name == "status":
        return f"CASE WHEN {_REFUSED} THEN NULL ELSE v.column{n} END"
    if name == "fingerprint":
        return f"CASE WHEN {_PASSED_OVER} THEN '' ELSE v.column{n} END"
    return f"v.column{n}"


_WRITE_GROUP = (
    f"INSERT INTO intents ({_COLUMNS}) SELECT "  # noqa: S608 - no value is formatted in
    + ", ".join(_group_column(n, name) for n, name in enumerate(_COLUMN_NAMES, 1))
    # "WHERE true": without a WHERE, SQLite's parser would read ON CONFLICT as a join clause.
    + " FROM (VALUES {values}) AS v WHERE true ON CONFLICT (id) DO UPDATE SET "
    + ", ".join(f"{name} = excluded.{name}" for name in _COLUMN_NAMES[1:])
    + " WHERE excluded.fingerprint <> ''"
)
# The other intents of an account in `UNRESOLVED_STATUSES` (`take_movement`).
_UNRESOLVED_OF = (
    "SELECT key, params FROM intents WHERE venue = ? AND account = ? AND status IN "  # noqa: S608
    f"({', '.join('?' * len(UNRESOLVED_STATUSES))}) AND key <> ?"
)
_NEW_MOVEMENT = "INSERT OR IGNORE INTO movements (venue, account, movement) VALUES (?, ?, ?)"
# ON CONFLICT ... DO UPDATE arrived in SQLite 3.24 (2018); with an older library every write
# runs alone.
_CAN_GROUP = sqlite3.sqlite_version_info >= (3, 24, 0)
# A take alone: every column but the id, where the row is still as listed and its lease free.
_TAKE = (
    "UPDATE intents SET "  # noqa: S608 - no value is formatted in
    + ", ".join(f"{name} = ?" for name in _COLUMN_NAMES[1:])
    + " WHERE id = ? AND status = ? AND attempts = ? AND last_sent_at IS ? AND error IS ?"
    " AND (lease_expires_at IS NULL OR lease_expires_at <= ?)"
)


def _row(intent: Intent) -> tuple[object, ...]:
    return (
        intent.id.text(),
        intent.key,
        intent.venue,
        intent.account,
        intent.fingerprint,
        intent.params,
        intent.token,
        intent.body,
        intent.status.value,
        intent.attempts,
        intent.transfer_id,
        intent.error.to_json() if intent.error else None,
        intent.ledger_ref,
        to_timestamp(intent.created_at),
        to_timestamp(intent.first_sent_at),
        intent.first_sent_venue_ms,
        to_timestamp(intent.last_sent_at),
        to_timestamp(intent.finished_at),
        intent.lease_owner,
        to_timestamp(intent.lease_expires_at),
        intent.settlement.to_json() if intent.settlement else None,
        intent.attempts_end_venue_ms,
    )


def _intent(row: sqlite3.Row) -> Intent:
    return intent_from_row(row, from_timestamp)  # type: ignore[arg-type] # Row is a Mapping


def _select(db: sqlite3.Connection, row_id: str) -> Intent | None:
    row = db.execute(_SELECT, (row_id,)).fetchone()
    return _intent(row) if row is not None else None


def _migrate_from_1(db: sqlite3.Connection) -> None:
    """Schema 1 (keyed by ``key``) to 2: every row kept, its account unknown.

    Row by row in Python, not in SQL: the id must be exactly `IntentId.text`'s JSON.
    """
    db.execute("ALTER TABLE intents RENAME TO intents_v1")
    db.execute("DROP INDEX IF EXISTS intents_status")
    db.execute("DROP INDEX IF EXISTS intents_ledger_ref")
    _create_schema(db)
    legacy = IntentId.text
    db.executemany(
        f"INSERT INTO intents ({_COLUMNS}) VALUES ({', '.join('?' * _WIDTH)})",  # noqa: S608
        (
            (
                legacy(IntentId(row[1], LEGACY_ACCOUNT, row[0])),
                row[0],
                row[1],
                LEGACY_ACCOUNT,
                *row[2:],
                None,  # no settlement
                None,  # attempts_end_venue_ms: unknown
            )
            for row in db.execute(f"SELECT {_V1_COLUMNS} FROM intents_v1")  # noqa: S608
        ),
    )
    db.execute("DROP TABLE intents_v1")


def _migrate_from_2(db: sqlite3.Connection) -> None:
    """Schema 2 to 3: `Intent.attempts_end_venue_ms`, unknown on old rows, and the
    ``movements`` table (`_create_schema`'s statements are all IF NOT EXISTS)."""
    db.execute("ALTER TABLE intents ADD COLUMN attempts_end_venue_ms INTEGER")
    _create_schema(db)


def _create_schema(db: sqlite3.Connection) -> None:
    # One statement at a time: executescript() would COMMIT and drop the lock that keeps two
    # processes from migrating at once.
    for statement in _SCHEMA.split(";"):
        if statement.strip():
            db.execute(statement)


@attrs.define
class _ClaimWrite:
    """A claim. Alone it reads the stored row and decides; in a group (`_write_group`) its
    key must not be stored yet, and ``new`` is written.

    ``new``, the answer and row when the key is not stored (nearly always), is decided when
    the claim is made, on the event loop's thread, not on the commit's worker thread: every
    line of Python the worker runs holds the GIL the event loop is waiting for.
    """

    intent: Intent
    owner: str
    now: datetime
    lease_seconds: float
    new: tuple[Claim, tuple[object, ...]] = attrs.field(init=False)

    def __attrs_post_init__(self) -> None:
        result, row = self._decide(None)
        assert row is not None  # noqa: S101 - a new key is always written
        self.new = (result, _row(row))

    def __call__(self, db: sqlite3.Connection) -> Claim:
        stored = _select(db, self.row_id)
        if stored is None:
            result, row = self.new
            db.execute(_UPSERT, row)
            return result
        result, write = self._decide(stored)
        if write is not None:
            db.execute(_UPSERT, _row(write))
        return result

    def _decide(self, stored: Intent | None) -> tuple[Claim, Intent | None]:
        return decide_claim(
            stored, self.intent, owner=self.owner, now=self.now, lease_seconds=self.lease_seconds
        )

    @property
    def row_id(self) -> str:
        """The intent's id (`IntentId.text`)."""
        return self.intent.id.text()

    @property
    def group_row(self) -> tuple[object, ...]:
        """This claim as a row of `_WRITE_GROUP`'s VALUES."""
        return (*self.new[1], self.owner, _CLAIM, *_NO_EXPECTATION)


@attrs.define
class _SaveWrite:
    """A save: every column but the id, written only while ``owner`` holds the lease."""

    row_id: str
    key: str
    owner: str
    row: tuple[object, ...]

    @property
    def group_row(self) -> tuple[object, ...]:
        """This save as a row of `_WRITE_GROUP`'s VALUES."""
        return (*self.row, self.owner, _SAVE_KIND, *_NO_EXPECTATION)

    def __call__(self, db: sqlite3.Connection) -> None:
        # One conditional UPDATE (the same rule as `decide_save`): no read, no parse.
        if db.execute(_SAVE, (*self.row[1:], self.row_id, self.owner)).rowcount != 1:
            holder = db.execute(_HOLDER, (self.row_id,)).fetchone()
            raise lease_lost(self.key, None if holder is None else holder[0], self.owner)


@attrs.define
class _TakeWrite:
    """A take: the intent's row with its next attempt, written only where the stored row is
    still what the taker listed (`takeable`), its lease free. The answer is whether it was.

    ``row`` (as `_row`) and ``expected`` are built on the event loop's thread, as a claim's
    row is (see `_ClaimWrite`).
    """

    key: str
    owner: str
    row: tuple[object, ...]
    expected: tuple[object, ...]  # status, attempts, last_sent_at, error, now

    @property
    def group_row(self) -> tuple[object, ...]:
        """This take as a row of `_WRITE_GROUP`'s VALUES."""
        return (*self.row, self.owner, _TAKE_KIND, *self.expected)

    def __call__(self, db: sqlite3.Connection) -> bool:
        return db.execute(_TAKE, (*self.row[1:], self.row[0], *self.expected)).rowcount == 1


def _write_group(db: sqlite3.Connection, batch: list[Write[Any]], limit: int) -> list[Write[Any]]:
    """Write the batch's claims, saves and takes in one statement; return the writes left.

    Why: the commit runs on a worker thread, which gives up the GIL for every step SQLite takes
    and must win it back from the event loop's thread, busy with many transfers in flight;
    each time is a wait. Measured at 32 callers, a commit of ~20 writes as BEGIN, a read, an
    INSERT, an UPDATE and COMMIT took ~1.4 ms on its thread for ~0.5 ms of SQLite work and fsync.

    One ``INSERT ... SELECT ... ON CONFLICT DO UPDATE`` in SQLite's autocommit mode inserts
    the new claims, updates the saved rows and commits (with its fsync) in one step. Each
    write follows its rules as if it were alone, checked inside the statement, under SQLite's
    write lock: if one would be refused (a claim of a stored key, a save by a writer without
    the lease) or breaks a constraint, the statement fails, SQLite undoes all of it, and every
    write of the batch runs alone, as it would have without grouping. So do writes of other
    kinds, keys that appear twice in the batch, and any beyond ``limit`` rows. A take whose
    row changed or is leased is not an error but is passed over: not written.
    """
    if not _CAN_GROUP:
        return batch
    seen = Counter(w.key for w in batch)
    group: list[Write[Any]] = []
    values: list[object] = []
    takes = False
    for write in batch:
        run = write.run
        if isinstance(run, _ClaimWrite | _SaveWrite | _TakeWrite) and seen[write.key] == 1:
            if len(group) == limit:
                break
            group.append(write)
            values.extend(run.group_row)
            takes = takes or isinstance(run, _TakeWrite)
    if not group:
        return batch
    statement = _WRITE_GROUP.format(values=", ".join([_GROUP_ROW] * len(group)))
    try:
        written = db.execute(statement, values).rowcount
    except sqlite3.IntegrityError:
        return batch  # one would be refused: nothing was written, each runs alone
    passed_over = _passed_over(db, group) if takes and written != len(group) else set()
    for write in group:
        run = write.run
        if isinstance(run, _ClaimWrite):
            write.value = run.new[0]
        elif isinstance(run, _TakeWrite):
            write.value = run.row[0] not in passed_over
        else:
            write.value = None
    grouped = {id(w) for w in group}
    return [w for w in batch if id(w) not in grouped]


def _passed_over(db: sqlite3.Connection, group: list[Write[Any]]) -> set[object]:
    """The ids of the group's takes that its statement passed over (their row had changed).

    Asked only when the statement wrote fewer rows than the group holds, which is rare: not
    with RETURNING on every commit, for each row a statement returns makes the commit thread
    win the GIL back from the event loop once more. A take was written if its owner holds
    the lease now (the statement has just committed it; owners are unique per drive).
    """
    takes = {w.run.row[0]: w.run.owner for w in group if isinstance(w.run, _TakeWrite)}
    held = db.execute(
        f"SELECT id, lease_owner FROM intents WHERE id IN ({', '.join('?' * len(takes))})",  # noqa: S608
        list(takes),
    ).fetchall()
    return set(takes) - {row_id for row_id, owner in held if takes[row_id] == owner}


def _failed(path: Path, exc: sqlite3.Error) -> JournalError:
    return JournalError(f"journal {path} failed: {exc}")


def _run_alone(db: sqlite3.Connection, writes: list[Write[Any]], path: Path) -> None:
    """Run ``writes`` one by one in one transaction; each gets its own answer.

    No savepoints: every write run alone changes the file with at most one statement, and
    SQLite undoes a failed statement by itself, so a refused write leaves its neighbours
    intact. An error that ends the whole transaction (disk full, I/O) is raised: then no
    write here is on disk.
    """
    db.execute("BEGIN IMMEDIATE")
    try:
        for write in writes:
            try:
                write.value = write.run(db)
            except (JournalError, sqlite3.Error) as exc:
                if not db.in_transaction:
                    raise  # SQLite rolled everything back
                write.error = exc if isinstance(exc, JournalError) else _failed(path, exc)
        db.execute("COMMIT")
    except BaseException:
        if db.in_transaction:
            db.execute("ROLLBACK")
        raise


def _create_private(path: Path) -> None:
    """Create ``path``'s missing directories (0700) and an empty ``path`` (0600) if absent.

    An existing directory or file keeps its mode: its owner chose it (a group that shares a
    journal, say). The file is made here, empty (which SQLite reads as a new database),
    rather than by SQLite under a narrowed umask: the umask belongs to the whole process,
    and other threads create files meanwhile. SQLite creates ``-wal`` and ``-shm`` with the
    database file's mode, so they are 0600 too. Each mode is set exactly with ``chmod``,
    since a umask may also take the owner's own bits away.
    """
    missing: list[Path] = []
    for parent in path.parents:
        if parent.exists():
            break
        missing.append(parent)
    for directory in reversed(missing):
        try:
            directory.mkdir(mode=_PRIVATE_DIRECTORY)
        except FileExistsError:
            continue  # made meanwhile by another process: its mode is not ours to set
        directory.chmod(_PRIVATE_DIRECTORY)
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, _PRIVATE_FILE)
    except FileExistsError:
        return
    os.close(descriptor)
    path.chmod(_PRIVATE_FILE)


def _variable_limit(db: sqlite3.Connection) -> int:
    """How many values one statement may bind: asked on Python 3.11+, else SQLite's default."""
    if sys.version_info >= (3, 11):
        return db.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER)
    return 32766 if sqlite3.sqlite_version_info >= (3, 32, 0) else 999


class SqliteJournal:
    """A durable journal in one SQLite file (the default).

    Args:
        path: the database file; it and missing parent directories are created readable
            by their owner only (0600, 0700). Defaults to ``~/.xferkit/journal.sqlite3``.
        clock: the clock leases are judged by.
        busy_timeout: seconds to wait for another process's write lock.
    """

    def __init__(
        self,
        path: str | PathLike[str] = DEFAULT_JOURNAL_PATH,
        *,
        clock: Clock = SYSTEM_CLOCK,
        busy_timeout: float = 10.0,
    ) -> None:
        self.path = Path(path).expanduser()
        self._clock = clock
        self._busy_timeout = busy_timeout
        self._db: sqlite3.Connection | None = None
        self._limiter: anyio.CapacityLimiter | None = None
        self._group: GroupCommit | None = None
        self._group_limit = 1  # rows per grouped statement, from SQLite's limit (`open`)

    def __repr__(self) -> str:
        return f"SqliteJournal({str(self.path)!r})"

    # -- plumbing ---------------------------------------------------------------------------

    async def _run(self, fn: Callable[[sqlite3.Connection], _T]) -> _T:
        if self._db is None or self._limiter is None:
            raise JournalError(f"{self!r} is not open")
        db = self._db

        def call() -> _T:
            try:
                return fn(db)
            except sqlite3.Error as exc:
                raise _failed(self.path, exc) from exc

        # Not abandoned on cancellation: a write that started finishes, so the caller's view
        # (written or not) matches the file.
        return await anyio.to_thread.run_sync(call, limiter=self._limiter)

    async def _write(self, fn: Callable[[sqlite3.Connection], _T], *, key: str) -> _T:
        """Run a write in the next group commit; returns once that commit is on disk."""
        if self._db is None or self._group is None:
            raise JournalError(f"{self!r} is not open")
        return await self._group.submit(fn, key=key)

    async def _commit_batch(self, batch: list[Write[Any]]) -> None:
        """Commit every write in ``batch``: one statement and one fsync when it can.

        Claims and saves go first, together in one self-committing statement
        (`_write_group`). The writes it leaves, if any (rare on the transfer path), run one by
        one in one transaction (`_run_alone`). Each write's answer says whether it is on disk:
        if that transaction fails, only its writes fail; the group's stay written.
        """
        db = self._db
        if db is None:
            raise JournalError(f"{self!r} is not open")
        path, limit = self.path, self._group_limit

        def commit() -> None:
            rest = batch
            try:
                rest = _write_group(db, batch, limit)
                if rest:
                    _run_alone(db, rest, path)
            except (sqlite3.Error, JournalError) as exc:
                failed = exc if isinstance(exc, JournalError) else _failed(path, exc)
                if rest is batch:
                    raise failed from exc  # nothing of the batch was written
                for write in rest:
                    write.value, write.error = None, failed

        await anyio.to_thread.run_sync(commit, limiter=self._limiter)

    @property
    def commits(self) -> int:
        """Group commits run so far (each holds one or more writes, written together)."""
        return self._group.commits if self._group is not None else 0

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self._clock.time(), tz=timezone.utc)

    # -- lifecycle --------------------------------------------------------------------------

    async def open(self) -> None:
        """Create the file and schema (or check its version); idempotent."""
        if self._db is not None:
            return
        self._limiter = anyio.CapacityLimiter(1)

        def connect() -> sqlite3.Connection:
            try:
                _create_private(self.path)
                db = sqlite3.connect(
                    self.path,
                    timeout=self._busy_timeout,
                    isolation_level=None,  # explicit BEGIN/COMMIT below
                    check_same_thread=False,  # one thread at a time, via the limiter
                )
                try:
                    self._prepare(db)
                except BaseException:
                    db.close()  # a journal that failed to open holds no connection open
                    raise
            except (OSError, sqlite3.Error) as exc:
                raise JournalError(f"cannot open journal {self.path}: {exc}") from exc
            return db

        self._db = await anyio.to_thread.run_sync(connect, limiter=self._limiter)
        self._group = GroupCommit(self._commit_batch)

    def _prepare(self, db: sqlite3.Connection) -> None:
        """Set WAL and FULL sync, then create, check or migrate the schema in one transaction."""
        db.row_factory = sqlite3.Row
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")
        db.execute("BEGIN IMMEDIATE")
        version = db.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            db.execute("ROLLBACK")
            raise JournalError(
                f"journal {self.path} has schema version {version}; this xferkit "
                f"understands up to {SCHEMA_VERSION}: upgrade xferkit"
            )
        if version == 0:
            _create_schema(db)
        elif version == 1:
            _migrate_from_1(db)  # straight to the current schema
        elif version == 2:
            _migrate_from_2(db)
        db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        db.execute("COMMIT")
        self._group_limit = max(1, _variable_limit(db) // _GROUP_WIDTH)

    async def aclose(self) -> None:
        """Close the connection; safe to call twice."""
        if self._db is None or self._limiter is None:
            return
        db, self._db = self._db, None
        self._group = None
        await anyio.to_thread.run_sync(db.close, limiter=self._limiter)

    # -- the contract -----------------------------------------------------------------------

    async def claim(self, intent: Intent, *, owner: str, lease_seconds: float) -> Claim:
        """Record ``intent`` unless its id exists; take the lease if free. Durable on return."""
        write = _ClaimWrite(intent, owner, self._now(), lease_seconds)
        return await self._write(write, key=write.row_id)

    async def take(
        self, listed: Intent, attempt: Intent, *, owner: str, lease_seconds: float
    ) -> Intent | None:
        """Lease ``listed`` and record ``attempt`` if the stored row still is ``listed``.

        One conditional UPDATE of the attempt's columns and the lease; in a group commit, one
        statement for every take of the group. Durable on return.
        """
        if listed.status.is_terminal:
            return None
        now = self._now()
        leased = with_lease(attempt, owner=owner, now=now, lease_seconds=lease_seconds)
        expected = (
            listed.status.value,
            listed.attempts,
            to_timestamp(listed.last_sent_at),
            listed.error.to_json() if listed.error else None,
            to_timestamp(now),
        )
        row = _row(leased)
        take = _TakeWrite(listed.key, owner, row, expected)
        written = await self._write(take, key=listed.id.text())
        return leased if written else None

    async def save(self, intent: Intent, *, owner: str, lease_seconds: float | None) -> None:
        """Write the intent if ``owner`` holds its lease. Durable on return."""
        row = _row(with_lease(intent, owner=owner, now=self._now(), lease_seconds=lease_seconds))
        row_id = intent.id.text()
        await self._write(_SaveWrite(row_id, intent.key, owner, row), key=row_id)

    async def release(self, intent_id: IntentId, *, owner: str) -> None:
        """Give up the lease if ``owner`` holds it."""
        row_id = intent_id.text()

        def release(db: sqlite3.Connection) -> None:
            db.execute(
                "UPDATE intents SET lease_owner = NULL, lease_expires_at = NULL "
                "WHERE id = ? AND lease_owner = ?",
                (row_id, owner),
            )

        await self._write(release, key=row_id)

    async def reopen(
        self, intent_id: IntentId, *, owner: str, lease_seconds: float
    ) -> Intent | None:
        """Reopen a ``FAILED`` intent whose key was not spent. Durable on return."""
        now, row_id = self._now(), intent_id.text()

        def reopen(db: sqlite3.Connection) -> Intent | None:
            # Read and write in one write transaction: nobody can reopen it in between.
            row = reopened(_select(db, row_id), owner=owner, now=now, lease_seconds=lease_seconds)
            if row is not None:
                db.execute(_UPSERT, _row(row))
            return row

        return await self._write(reopen, key=row_id)

    async def claim_ledger_ref(self, intent_id: IntentId, *, owner: str, ref: str) -> bool:
        """Give ledger row ``ref`` to the intent unless another of its account has it."""
        row_id = intent_id.text()

        def claim(db: sqlite3.Connection) -> bool:
            try:
                cursor = db.execute(
                    "UPDATE intents SET ledger_ref = ? WHERE id = ? AND lease_owner = ?",
                    (ref, row_id, owner),
                )
            except sqlite3.IntegrityError:
                return False  # the unique (venue, account, ledger_ref) index: another has it
            return cursor.rowcount == 1

        return await self._write(claim, key=row_id)

    async def adopt(self, intent_id: IntentId, *, account: str) -> Intent | None:
        """Give a legacy row to ``account``. Durable on return."""
        row_id = intent_id.text()

        def adopt(db: sqlite3.Connection) -> Intent | None:
            stored = _select(db, row_id)
            if stored is None or stored.account != LEGACY_ACCOUNT:
                return None
            adopted = attrs.evolve(stored, account=account)
            try:
                db.execute(
                    "UPDATE intents SET id = ?, account = ? WHERE id = ?",
                    (adopted.id.text(), account, row_id),
                )
            except sqlite3.IntegrityError:
                return None  # the account has an intent under this key already
            return adopted

        return await self._write(adopt, key=row_id)

    async def take_movement(
        self, intent: Intent, *, owner: str, lease_seconds: float
    ) -> MovementTurn:
        """Take the turn to send ``intent``'s movement: one ``BEGIN IMMEDIATE`` transaction
        (`_run_alone`), whose write lock every process sharing the file waits for."""
        row_id, now = intent.id.text(), self._now()

        def take(db: sqlite3.Connection) -> MovementTurn:
            stored = _select(db, row_id)
            if stored is None:
                raise lease_lost(intent.key, None, owner)
            movement = movement_of(stored.params)
            statuses = [s.value for s in UNRESOLVED_STATUSES]
            unresolved = [
                key
                for key, params in db.execute(
                    _UNRESOLVED_OF,
                    (stored.venue, stored.account, *statuses, stored.key),
                )
                if movement_of(params) == movement
            ]
            where = (stored.venue, stored.account, movement)
            found = db.execute(
                "SELECT holder_key, holder_owner, free_at FROM movements "
                "WHERE venue = ? AND account = ? AND movement = ?",
                where,
            ).fetchone()
            hold = holder = None
            if found is not None:
                hold = MovementHold(
                    holder_key=found[0], holder_owner=found[1], free_at=from_timestamp(found[2])
                )
                if hold.holder_key is not None:
                    holder = _select(
                        db, IntentId(stored.venue, stored.account, hold.holder_key).text()
                    )
            turn = movement_turn(
                stored, owner=owner, unresolved=unresolved, hold=hold, holder=holder, now=now
            )
            leased = with_lease(stored, owner=owner, now=now, lease_seconds=lease_seconds)
            db.execute(
                "UPDATE intents SET lease_expires_at = ? WHERE id = ? AND lease_owner = ?",
                (to_timestamp(leased.lease_expires_at), row_id, owner),
            )
            if turn.taken:
                # No upsert (SQLite 3.24+): insert the row if missing, then mark it.
                db.execute(_NEW_MOVEMENT, where)
                db.execute(
                    "UPDATE movements SET holder_key = ?, holder_owner = ? "
                    "WHERE venue = ? AND account = ? AND movement = ?",
                    (stored.key, owner, *where),
                )
            return turn

        return await self._write(take, key=row_id)

    async def free_movement(self, intent: Intent, *, owner: str, spacing_seconds: float) -> None:
        """End ``intent``'s turn and space the next identical movement; also forgets the
        account's movements nobody holds whose spacing has passed, so the table stays small."""
        now = self._now()
        row_id, movement = intent.id.text(), movement_of(intent.params)
        free_at = to_timestamp(now + timedelta(seconds=spacing_seconds))
        where = (intent.venue, intent.account)

        def free(db: sqlite3.Connection) -> None:
            db.execute(
                "DELETE FROM movements WHERE venue = ? AND account = ? AND holder_key IS NULL "
                "AND free_at < ?",
                (*where, to_timestamp(now)),
            )
            db.execute(_NEW_MOVEMENT, (*where, movement))
            # Every right-hand side reads the row as it was before this UPDATE.
            db.execute(
                "UPDATE movements SET free_at = max(coalesce(free_at, ''), ?), "
                "holder_key = CASE WHEN holder_key = ? AND holder_owner = ? THEN NULL "
                "ELSE holder_key END, "
                "holder_owner = CASE WHEN holder_key = ? AND holder_owner = ? THEN NULL "
                "ELSE holder_owner END "
                "WHERE venue = ? AND account = ? AND movement = ?",
                (free_at, intent.key, owner, intent.key, owner, *where, movement),
            )

        await self._write(free, key=row_id)

    async def get(self, intent_id: IntentId) -> Intent | None:
        """The intent under ``intent_id``."""
        row_id = intent_id.text()
        return await self._run(lambda db: _select(db, row_id))

    async def find(self, key: str) -> list[Intent]:
        """Every intent under ``key``."""
        sql = f"SELECT {_COLUMNS} FROM intents WHERE key = ? ORDER BY created_at, id"  # noqa: S608
        return await self._run(lambda db: [_intent(r) for r in db.execute(sql, (key,))])

    async def prune(self, *, finished_before: datetime) -> int:
        """Delete settled intents finished before ``finished_before``."""
        cutoff = to_timestamp(finished_before)

        def prune(db: sqlite3.Connection) -> int:
            cursor = db.execute(
                "DELETE FROM intents WHERE status IN (?, ?) AND finished_at < ?",
                (TransferStatus.SUCCEEDED.value, TransferStatus.FAILED.value, cutoff),
            )
            return cursor.rowcount

        return await self._write(prune, key="")

    async def list_page(
        self,
        *,
        statuses: Collection[TransferStatus],
        accounts: Collection[tuple[str, str]],
        after: Intent | None,
        limit: int,
    ) -> list[Intent]:
        """Up to ``limit`` intents after ``after`` in sweep order (`sweep_order`).

        One ordered, limited query per status, merged: each walks the status index from the
        cursor on and stops at ``limit`` rows, so a page costs the same at the end of a
        sweep of 100,000 intents as at its start. One query over every status at once is
        sorted whole, every page: a sweep would cost the square of its length.
        """
        wanted = [s.value for s in statuses]
        pairs = list(accounts)
        if not wanted or not pairs:
            return []
        where = "(" + " OR ".join(["(venue = ? AND account = ?)"] * len(pairs)) + ")"
        mine: list[object] = [part for pair in pairs for part in pair]
        if after is not None:
            at = to_timestamp(after.created_at)
            # The first term is what the index can range over; the row value breaks ties.
            where += " AND created_at >= ? AND (created_at, key, venue, account) > (?, ?, ?, ?)"
            mine += [at, at, after.key, after.venue, after.account]
        order = " ORDER BY created_at, key, venue, account LIMIT ?"
        one = (
            f"SELECT * FROM (SELECT {_COLUMNS} FROM intents INDEXED BY intents_status"  # noqa: S608
            f" WHERE status = ? AND {where}{order})"
        )
        sql = " UNION ALL ".join([one] * len(wanted)) + order
        args: list[object] = [arg for status in wanted for arg in (status, *mine, limit)]
        args.append(limit)
        return await self._run(lambda db: [_intent(r) for r in db.execute(sql, args)])

    async def list(
        self,
        *,
        statuses: Collection[TransferStatus] | None = None,
        accounts: Collection[tuple[str, str]] | None = None,
        limit: int | None = None,
    ) -> list[Intent]:
        """Intents oldest first, optionally filtered by status and account."""
        sql = f"SELECT {_COLUMNS} FROM intents WHERE true"  # noqa: S608
        args: list[object] = []
        if statuses is not None:
            wanted = [s.value for s in statuses]
            sql += f" AND status IN ({', '.join('?' * len(wanted))})"
            args.extend(wanted)
        if accounts is not None:
            pairs = list(accounts)
            if not pairs:
                return []
            sql += " AND (" + " OR ".join(["(venue = ? AND account = ?)"] * len(pairs)) + ")"
            args.extend(part for pair in pairs for part in pair)
        sql += " ORDER BY created_at, key"
        if limit is not None:
            sql += " LIMIT ?"
            args.append(limit)
        return await self._run(lambda db: [_intent(r) for r in db.execute(sql, args)])
