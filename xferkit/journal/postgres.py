"""A journal in PostgreSQL, for fleets: many processes on many hosts sharing one set of intents.

* Claims are ``INSERT ... ON CONFLICT DO NOTHING``: exactly one worker creates a key.
* Leases are judged by the database's clock (``now()``), never a worker's, so workers with
  skewed clocks still agree on whose lease has expired.
* Taking over an existing intent locks its row ``FOR UPDATE SKIP LOCKED`` inside one short
  transaction: two workers racing for it never both win, and no lock is ever held across an
  HTTP call.
* Ledger-row claims are unique per venue across the fleet (a partial unique index).
* The schema is created and migrated on first use under an advisory lock, so processes that
  start at once do not race.

asyncpg runs on asyncio only, so this journal does too.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Collection
from datetime import datetime
from typing import Any, TypeVar

import anyio

from .._clock import Clock
from .._exceptions import JournalError
from .._models import TransferStatus
from .._shared_rate import PostgresBudget, SharedLimiter, budget_table_sql
from ._base import (
    LEGACY_ACCOUNT,
    UNRESOLVED_STATUSES,
    Claim,
    Intent,
    IntentId,
    LeaseLostError,
    MovementHold,
    MovementTurn,
    intent_from_row,
    movement_of,
    movement_turn,
    reopened,
)
from ._group import GroupCommit, Write

__all__ = ["PostgresJournal"]

SCHEMA_VERSION = 4
_T = TypeVar("_T")
_TERMINAL = [TransferStatus.SUCCEEDED.value, TransferStatus.FAILED.value]
_DEADLOCK_RETRIES = 5
_MIGRATION_LOCK = 0x78666B6A  # "xfkj": one advisory lock id for every xferkit schema migration

_COLUMNS = (
    "key, venue, account, fingerprint, params, token, body, status, attempts, transfer_id, error, "
    "ledger_ref, created_at, first_sent_at, first_sent_venue_ms, last_sent_at, finished_at, "
    "lease_owner, lease_expires_at, settlement, attempts_end_venue_ms"
)


def _meta_sql(schema: str) -> list[str]:
    return [
        f"CREATE SCHEMA IF NOT EXISTS {schema}",
        f"CREATE TABLE IF NOT EXISTS {schema}.meta (version integer NOT NULL)",
    ]


def _schema_sql(schema: str) -> list[str]:
    """Schema 3: an intent is identified by (venue, account, key)."""
    return [
        f"""CREATE TABLE {schema}.intents (
            key                 text NOT NULL,
            venue               text NOT NULL,
            account             text NOT NULL,
            fingerprint         text NOT NULL,
            params              text NOT NULL,
            token               text,
            body                text NOT NULL,
            status              text NOT NULL,
            attempts            integer NOT NULL,
            transfer_id         text,
            error               text,
            ledger_ref          text,
            created_at          timestamptz NOT NULL,
            first_sent_at       timestamptz,
            first_sent_venue_ms bigint,
            last_sent_at        timestamptz,
            finished_at         timestamptz,
            lease_owner         text,
            lease_expires_at    timestamptz,
            settlement          text,
            attempts_end_venue_ms bigint,
            PRIMARY KEY (venue, account, key)
        )""",
        f"CREATE INDEX intents_status ON {schema}.intents (status, created_at)",
        f"CREATE INDEX intents_key ON {schema}.intents (key)",
        f"""CREATE UNIQUE INDEX intents_ledger_ref_v2
            ON {schema}.intents (venue, account, ledger_ref) WHERE ledger_ref IS NOT NULL""",
    ]


def _movements_sql(schema: str) -> list[str]:
    """Schema 3: per (venue, account, `movement_of`), which intent holds the turn to send it
    and when the previous one's spacing ends (`PostgresJournal.take_movement`)."""
    return [
        f"""CREATE TABLE IF NOT EXISTS {schema}.movements (
            venue        text NOT NULL,
            account      text NOT NULL,
            movement     text NOT NULL,
            holder_key   text,
            holder_owner text,
            free_at      timestamptz,
            PRIMARY KEY (venue, account, movement)
        )""",
    ]


def _rate_budgets_sql(schema: str) -> list[str]:
    """Schema 4: the fleet's shared rate budgets, one row per venue account
    (`xferkit._shared_rate`)."""
    return [budget_table_sql(f"{schema}.rate_budgets")]


def _migration_from_1_sql(schema: str) -> list[str]:
    """Schema 1 (keyed by ``key``) to 2: every row kept, its account unknown."""
    return [
        f"ALTER TABLE {schema}.intents ADD COLUMN account text NOT NULL DEFAULT ''",
        f"ALTER TABLE {schema}.intents ALTER COLUMN account DROP DEFAULT",
        f"ALTER TABLE {schema}.intents ADD COLUMN settlement text",
        f"ALTER TABLE {schema}.intents DROP CONSTRAINT intents_pkey",
        f"ALTER TABLE {schema}.intents ADD PRIMARY KEY (venue, account, key)",
        f"DROP INDEX {schema}.intents_ledger_ref",
        f"CREATE INDEX intents_key ON {schema}.intents (key)",
        f"""CREATE UNIQUE INDEX intents_ledger_ref_v2
            ON {schema}.intents (venue, account, ledger_ref) WHERE ledger_ref IS NOT NULL""",
        f"UPDATE {schema}.meta SET version = 2",  # noqa: S608 - checked identifier
    ]


def _migration_from_2_sql(schema: str) -> list[str]:
    """Schema 2 to 3: `Intent.attempts_end_venue_ms`, unknown on old rows (and the
    ``movements`` table, `_movements_sql`)."""
    return [f"ALTER TABLE {schema}.intents ADD COLUMN attempts_end_venue_ms bigint"]


_WHERE_ID = "venue = $1 AND account = $2 AND key = $3"


def _ident(intent_id: IntentId) -> tuple[str, str, str]:
    """``intent_id`` as the parameters ``$1..$3`` of `_WHERE_ID`."""
    return (intent_id.venue, intent_id.account, intent_id.key)


def _intent(row: Any) -> Intent:
    return intent_from_row(row, lambda value: value)  # asyncpg returns aware datetimes


_STATE_COLUMNS = (
    "status, attempts, transfer_id, error, ledger_ref, first_sent_at, first_sent_venue_ms, "
    "last_sent_at, finished_at, params, body, settlement, attempts_end_venue_ms"
)


def _state(intent: Intent) -> list[object]:
    """The values of ``_STATE_COLUMNS``: what a save writes (``$4..$16``, after the id)."""
    return [
        intent.status.value,
        intent.attempts,
        intent.transfer_id,
        intent.error.to_json() if intent.error else None,
        intent.ledger_ref,
        intent.first_sent_at,
        intent.first_sent_venue_ms,
        intent.last_sent_at,
        intent.finished_at,
        intent.params,
        intent.body,
        intent.settlement.to_json() if intent.settlement else None,
        intent.attempts_end_venue_ms,
    ]


def _database_errors() -> tuple[type[BaseException], ...]:
    """Everything asyncpg raises for a failed database call, so callers only see JournalError.

    ``InternalClientError`` comes from reusing a pooled connection the server just dropped.
    asyncpg's connect and pool timeouts raise ``asyncio.TimeoutError``, which only Python 3.11
    made the builtin ``TimeoutError``: both are listed, so 3.10 sees JournalError too.
    """
    import asyncpg  # noqa: PLC0415

    return (
        asyncpg.PostgresError,
        asyncpg.InterfaceError,
        asyncpg.InternalClientError,
        OSError,
        TimeoutError,
        asyncio.TimeoutError,
    )


class PostgresJournal:
    """A durable journal shared by any number of processes through PostgreSQL.

    Args:
        dsn: a ``postgresql://`` connection string.
        schema: the schema holding xferkit's tables (created if missing).
        min_size: connections the pool keeps open.
        max_size: connections the pool may open; size it to your concurrency.
        connect_timeout: seconds to wait for a connection before `JournalError`.
    """

    def __init__(
        self,
        dsn: str,
        *,
        schema: str = "xferkit",
        min_size: int = 1,
        max_size: int = 10,
        connect_timeout: float = 10.0,
    ) -> None:
        if not schema.isidentifier() or not schema.isascii():
            raise JournalError(f"schema must be a plain identifier, not {schema!r}")
        self._dsn = dsn
        self.schema = schema
        self._min_size = min_size
        self._max_size = max_size
        self._connect_timeout = connect_timeout
        self._pool: Any = None
        self._groups: list[GroupCommit] = []
        self._table = f"{schema}.intents"

    def __repr__(self) -> str:
        # The DSN may hold a password: show the schema only.
        return f"PostgresJournal(schema={self.schema!r})"

    # -- plumbing ---------------------------------------------------------------------------

    async def _run(self, fn: Callable[[Any], Awaitable[_T]]) -> _T:
        """Run ``fn(connection)``, turning every database failure into `JournalError`."""

        if self._pool is None:
            raise JournalError(f"{self!r} is not open")
        try:
            async with self._pool.acquire(timeout=self._connect_timeout) as connection:
                return await fn(connection)
        except _database_errors() as exc:
            raise JournalError(f"journal {self.schema} failed: {exc}") from exc

    async def _write(self, fn: Callable[[Any], Awaitable[_T]], *, key: str) -> _T:
        """Run a write in the next group commit; returns once that commit is durable.

        A key's writes always go to the same one of ``max_size`` group commits, each running
        one transaction at a time on a connection it borrows from the pool: commits on several
        connections at once share PostgreSQL's WAL flushes anyway. Funnelled through one
        commit at a time instead (a transaction, and a savepoint per write, one round trip
        after another), the journal benchmark fell from ~1,400 to ~500 transfers/s at 32
        callers.
        """
        if not self._groups:
            raise JournalError(f"{self!r} is not open")
        group = self._groups[hash(key) % len(self._groups)]
        return await group.submit(fn, key=key)  # type: ignore[arg-type]

    async def _commit_batch(self, batch: list[Write[Any]]) -> None:
        """One transaction (one WAL flush) for every write in ``batch``.

        A write refused by the journal's rules (`LeaseLostError`: its ``UPDATE`` matched no
        row) leaves the transaction intact and its neighbours are committed; no write here
        fails a statement on purpose (a ledger-row conflict is caught in a savepoint of its
        own, `claim_ledger_ref`), so any database error fails the whole batch and nothing of
        it is kept. Batches lock rows in key order, so they do not deadlock one another;
        should the database still pick this batch as a deadlock victim, it is run again from
        the start (each write re-reads the rows it decides on).
        """
        import asyncpg  # noqa: PLC0415

        async def commit(connection: Any) -> None:
            async with connection.transaction():
                for write in batch:
                    write.value, write.error = None, None
                    try:
                        write.value = await write.run(connection)
                    except JournalError as exc:
                        write.error = exc

        for attempt in range(_DEADLOCK_RETRIES):
            try:
                await self._run(commit)
            except JournalError as exc:
                if isinstance(exc.__cause__, asyncpg.DeadlockDetectedError) and (
                    attempt + 1 < _DEADLOCK_RETRIES
                ):
                    continue
                raise
            return

    @property
    def commits(self) -> int:
        """Transactions committed so far (each holds one or more writes: group commit)."""
        return sum(group.commits for group in self._groups)

    def rate_limiter(self, venue: str, account: str, rate: float, clock: Clock) -> SharedLimiter:
        """The fleet's rate budget for ``(venue, account)``, kept in this journal's database.

        Every process on this schema takes its send slots for that account from one row, by
        the database's clock (`xferkit._shared_rate`).
        """

        async def execute(sql: str, *args: object) -> list[Any]:
            return await self._run(lambda connection: connection.fetch(sql, *args))

        budget = PostgresBudget(
            execute, table=f"{self.schema}.rate_budgets", venue=venue, account=account
        )
        return SharedLimiter(budget, rate=rate, clock=clock)

    # -- lifecycle --------------------------------------------------------------------------

    async def open(self) -> None:
        """Connect the pool and create or migrate the schema; idempotent."""
        if self._pool is not None:
            return
        try:
            asyncio.get_running_loop()
        except RuntimeError as exc:  # pragma: no cover - trio users
            raise JournalError(
                "PostgresJournal needs asyncio (asyncpg does not run on trio)"
            ) from exc
        try:
            import asyncpg  # noqa: PLC0415
        except ImportError as exc:  # pragma: no cover - exercised without the extra
            raise JournalError(
                "PostgresJournal needs asyncpg: pip install 'xferkit[postgres]'"
            ) from exc
        try:
            self._pool = await asyncpg.create_pool(
                self._dsn,
                min_size=self._min_size,
                max_size=self._max_size,
                timeout=self._connect_timeout,
            )
        except _database_errors() as exc:
            raise JournalError(f"cannot reach the journal database: {exc}") from exc

        async def migrate(connection: Any) -> None:
            async with connection.transaction():
                await connection.execute("SELECT pg_advisory_xact_lock($1)", _MIGRATION_LOCK)
                for statement in _meta_sql(self.schema):
                    await connection.execute(statement)
                version = await connection.fetchval(
                    f"SELECT max(version) FROM {self.schema}.meta"  # noqa: S608 - checked identifier
                )
                if version is None:
                    for statement in [
                        *_schema_sql(self.schema),
                        *_movements_sql(self.schema),
                        *_rate_budgets_sql(self.schema),
                    ]:
                        await connection.execute(statement)
                    await connection.execute(
                        f"INSERT INTO {self.schema}.meta (version) VALUES ($1)",  # noqa: S608
                        SCHEMA_VERSION,
                    )
                elif version < SCHEMA_VERSION:
                    steps = _migration_from_1_sql(self.schema) if version == 1 else []
                    if version <= 2:
                        steps += _migration_from_2_sql(self.schema)
                    steps += [*_movements_sql(self.schema), *_rate_budgets_sql(self.schema)]
                    for statement in steps:
                        await connection.execute(statement)
                    await connection.execute(
                        f"UPDATE {self.schema}.meta SET version = $1",  # noqa: S608
                        SCHEMA_VERSION,
                    )
                elif version > SCHEMA_VERSION:
                    raise JournalError(
                        f"journal schema {self.schema} has version {version}; this xferkit "
                        f"understands up to {SCHEMA_VERSION}: upgrade xferkit"
                    )

        try:
            await self._run(migrate)
        except BaseException:
            await self.aclose()
            raise
        self._groups = [GroupCommit(self._commit_batch) for _ in range(self._max_size)]

    async def aclose(self) -> None:
        """Close the pool; safe to call twice."""
        pool, self._pool = self._pool, None
        self._groups = []
        if pool is not None:
            with anyio.CancelScope(shield=True):
                try:
                    await pool.close()
                except _database_errors():
                    pool.terminate()  # the server is gone: drop the connections outright

    # -- the contract -----------------------------------------------------------------------

    async def claim(self, intent: Intent, *, owner: str, lease_seconds: float) -> Claim:
        """Insert the intent unless its id exists; else take a free or expired lease."""
        table = self._table
        ident = (intent.venue, intent.account, intent.key)

        async def claim(connection: Any) -> Claim:
            # Inside the group's transaction (`_commit_batch`): the read, lock and update below
            # are atomic with the insert, with no savepoint of their own.
            # Every field as given: on XT the claim also records the first attempt.
            row = await connection.fetchrow(
                f"""INSERT INTO {table} (venue, account, key, fingerprint, token, created_at,
                    {_STATE_COLUMNS}, lease_owner, lease_expires_at) VALUES (
                    $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16,
                    $17, $18, $19, $20, now() + make_interval(secs => $21))
                ON CONFLICT (venue, account, key) DO NOTHING RETURNING {_COLUMNS}""",  # noqa: S608
                *ident,
                intent.fingerprint,
                intent.token,
                intent.created_at,
                *_state(intent),
                owner,
                lease_seconds,
            )
            if row is not None:
                return Claim(intent=_intent(row), created=True, owned=True)
            # Someone else's key, or ours from before. Lock it only if nobody else holds
            # the row lock right now (SKIP LOCKED): whoever does is taking it over.
            row = await connection.fetchrow(
                f"""SELECT {_COLUMNS} FROM {table} WHERE {_WHERE_ID}
                    AND status <> ALL($4::text[])
                    AND (lease_expires_at IS NULL OR lease_expires_at <= now())
                    FOR UPDATE SKIP LOCKED""",  # noqa: S608
                *ident,
                _TERMINAL,
            )
            if row is not None:
                row = await connection.fetchrow(
                    f"""UPDATE {table} SET lease_owner = $4,
                        lease_expires_at = now() + make_interval(secs => $5)
                        WHERE {_WHERE_ID} RETURNING {_COLUMNS}""",  # noqa: S608
                    *ident,
                    owner,
                    lease_seconds,
                )
                return Claim(intent=_intent(row), created=False, owned=True)
            row = await connection.fetchrow(
                f"SELECT {_COLUMNS} FROM {table} WHERE {_WHERE_ID}",  # noqa: S608
                *ident,
            )
            return Claim(intent=_intent(row), created=False, owned=False)

        return await self._write(claim, key=intent.id.text())

    async def save(self, intent: Intent, *, owner: str, lease_seconds: float | None) -> None:
        """Write the intent if ``owner`` holds its lease; extend or release the lease."""
        release = lease_seconds is None or intent.status.is_terminal
        table = self._table

        async def save(connection: Any) -> None:
            updated = await connection.fetchval(
                f"""UPDATE {table} SET status = $4, attempts = $5, transfer_id = $6, error = $7,
                    ledger_ref = $8, first_sent_at = $9, first_sent_venue_ms = $10,
                    last_sent_at = $11, finished_at = $12, params = $13, body = $14,
                    settlement = $15, attempts_end_venue_ms = $16,
                    lease_owner = CASE WHEN $18 THEN NULL ELSE lease_owner END,
                    lease_expires_at = CASE WHEN $18 THEN NULL
                        ELSE now() + make_interval(secs => $19) END
                    WHERE {_WHERE_ID} AND lease_owner = $17 RETURNING 1""",  # noqa: S608
                intent.venue,
                intent.account,
                intent.key,
                *_state(intent),
                owner,
                release,
                0.0 if lease_seconds is None else lease_seconds,
            )
            if updated is None:
                raise LeaseLostError(f"intent {intent.key!r} is no longer leased to {owner}")

        await self._write(save, key=intent.id.text())

    async def take(
        self, listed: Intent, attempt: Intent, *, owner: str, lease_seconds: float
    ) -> Intent | None:
        """Lease ``listed`` and record ``attempt`` if the stored row still is ``listed``.

        One conditional UPDATE in the group's transaction: a worker racing for the row waits
        for its lock, then finds the row changed (PostgreSQL checks the condition again on
        the row it locked), so only one wins. The lease is judged by the database's clock.
        """
        if listed.status.is_terminal:
            return None
        table = self._table

        async def take(connection: Any) -> Intent | None:
            row = await connection.fetchrow(
                f"""UPDATE {table} SET status = $4, attempts = $5, first_sent_at = $6,
                    first_sent_venue_ms = $7, last_sent_at = $8, lease_owner = $9,
                    lease_expires_at = now() + make_interval(secs => $10)
                    WHERE {_WHERE_ID} AND status = $11 AND attempts = $12
                    AND last_sent_at IS NOT DISTINCT FROM $13
                    AND error IS NOT DISTINCT FROM $14
                    AND (lease_expires_at IS NULL OR lease_expires_at <= now())
                    RETURNING {_COLUMNS}""",  # noqa: S608
                *_ident(listed.id),
                attempt.status.value,
                attempt.attempts,
                attempt.first_sent_at,
                attempt.first_sent_venue_ms,
                attempt.last_sent_at,
                owner,
                lease_seconds,
                listed.status.value,
                listed.attempts,
                listed.last_sent_at,
                listed.error.to_json() if listed.error else None,
            )
            return None if row is None else _intent(row)

        return await self._write(take, key=listed.id.text())

    async def release(self, intent_id: IntentId, *, owner: str) -> None:
        """Give up the lease if ``owner`` holds it."""
        await self._write(
            lambda c: c.execute(
                f"""UPDATE {self._table} SET lease_owner = NULL, lease_expires_at = NULL
                    WHERE {_WHERE_ID} AND lease_owner = $4""",  # noqa: S608
                *_ident(intent_id),
                owner,
            ),
            key=intent_id.text(),
        )

    async def reopen(
        self, intent_id: IntentId, *, owner: str, lease_seconds: float
    ) -> Intent | None:
        """Reopen a ``FAILED`` intent whose key was not spent; atomic under the row lock."""
        table = self._table
        ident = _ident(intent_id)

        async def reopen(connection: Any) -> Intent | None:
            row = await connection.fetchrow(
                f"SELECT {_COLUMNS} FROM {table} WHERE {_WHERE_ID} FOR UPDATE",  # noqa: S608
                *ident,
            )
            stored = _intent(row) if row is not None else None
            # The lease is judged by the database's clock, as every lease here.
            now = await connection.fetchval("SELECT now()")
            new = reopened(stored, owner=owner, now=now, lease_seconds=lease_seconds)
            if new is None:
                return None
            row = await connection.fetchrow(
                f"""UPDATE {table} SET status = $4, finished_at = NULL, lease_owner = $5,
                    lease_expires_at = now() + make_interval(secs => $6)
                    WHERE {_WHERE_ID} RETURNING {_COLUMNS}""",  # noqa: S608
                *ident,
                new.status.value,
                owner,
                lease_seconds,
            )
            return _intent(row)

        return await self._write(reopen, key=intent_id.text())

    async def claim_ledger_ref(self, intent_id: IntentId, *, owner: str, ref: str) -> bool:
        """Give ledger row ``ref`` to the intent unless another of its account has it."""
        import asyncpg  # noqa: PLC0415

        async def claim(connection: Any) -> bool:
            try:
                # Its own savepoint: a failed statement aborts the transaction around it,
                # which here is a whole group commit.
                async with connection.transaction():
                    updated = await connection.fetchval(
                        f"""UPDATE {self._table} SET ledger_ref = $5
                            WHERE {_WHERE_ID} AND lease_owner = $4 RETURNING 1""",  # noqa: S608
                        *_ident(intent_id),
                        owner,
                        ref,
                    )
            except asyncpg.UniqueViolationError:
                return False  # another intent of this account claimed the row
            return updated is not None

        return await self._write(claim, key=intent_id.text())

    async def adopt(self, intent_id: IntentId, *, account: str) -> Intent | None:
        """Give a legacy row to ``account``."""
        import asyncpg  # noqa: PLC0415

        if intent_id.account != LEGACY_ACCOUNT:
            return None

        async def adopt(connection: Any) -> Intent | None:
            try:
                async with connection.transaction():  # a savepoint, as in claim_ledger_ref
                    row = await connection.fetchrow(
                        f"""UPDATE {self._table} SET account = $4
                            WHERE {_WHERE_ID} RETURNING {_COLUMNS}""",  # noqa: S608
                        *_ident(intent_id),
                        account,
                    )
            except asyncpg.UniqueViolationError:
                return None  # the account has an intent under this key already
            return _intent(row) if row is not None else None

        return await self._write(adopt, key=intent_id.text())

    async def take_movement(
        self, intent: Intent, *, owner: str, lease_seconds: float
    ) -> MovementTurn:
        """Take the turn to send ``intent``'s movement.

        Its own short transaction, not a group commit's: the movement's row lock (taken
        first, by an upsert) serialises every taker of the movement across the fleet, and a
        transaction holding one movement's lock, never two, cannot deadlock with another.
        Times are the database's (``now()``), as for leases.
        """
        table, movements = self._table, f"{self.schema}.movements"
        ident = _ident(intent.id)
        unresolved_statuses = [s.value for s in UNRESOLVED_STATUSES]

        async def take(connection: Any) -> MovementTurn:
            # Five round trips, BEGIN and COMMIT included: a transfer waits for them before
            # its first send.
            async with connection.transaction():
                # Renewed whether or not the turn is taken: a waiter is alive.
                row = await connection.fetchrow(
                    f"""UPDATE {table} SET lease_expires_at = now() + make_interval(secs => $5)
                        WHERE {_WHERE_ID} AND lease_owner = $4
                        RETURNING {_COLUMNS}, now() AS now""",  # noqa: S608
                    *ident,
                    owner,
                    lease_seconds,
                )
                if row is None:
                    raise LeaseLostError(f"intent {intent.key!r} is no longer leased to {owner}")
                stored = _intent(row)
                where = (intent.venue, intent.account, movement_of(stored.params))
                # One statement creates the row or locks the one there (a no-op update), and
                # returns it: a concurrent `free_movement` deleting it cannot slip in between.
                # Every taker of the movement queues here, so what is read below is settled.
                found = await connection.fetchrow(
                    f"""INSERT INTO {movements} AS m (venue, account, movement)
                        VALUES ($1, $2, $3) ON CONFLICT (venue, account, movement)
                        DO UPDATE SET holder_key = m.holder_key
                        RETURNING holder_key, holder_owner, free_at""",  # noqa: S608
                    *where,
                )
                hold = MovementHold(
                    holder_key=found["holder_key"],
                    holder_owner=found["holder_owner"],
                    free_at=found["free_at"],
                )
                # The account's other unresolved intents, and the turn's holder.
                others = [
                    _intent(r)
                    for r in await connection.fetch(
                        f"""SELECT {_COLUMNS} FROM {table} WHERE venue = $1 AND account = $2
                            AND key <> $3 AND (status = ANY($4::text[]) OR key = $5)""",  # noqa: S608
                        intent.venue,
                        intent.account,
                        intent.key,
                        unresolved_statuses,
                        hold.holder_key,
                    )
                ]
                turn = movement_turn(
                    stored,
                    owner=owner,
                    unresolved=[
                        other.key
                        for other in others
                        if other.status in UNRESOLVED_STATUSES
                        and movement_of(other.params) == where[2]
                    ],
                    hold=hold,
                    holder=next((o for o in others if o.key == hold.holder_key), None),
                    now=row["now"],
                )
                if turn.taken:
                    await connection.execute(
                        f"""UPDATE {movements} SET holder_key = $4, holder_owner = $5
                            WHERE venue = $1 AND account = $2 AND movement = $3""",  # noqa: S608
                        *where,
                        intent.key,
                        owner,
                    )
                return turn

        return await self._run(take)

    async def free_movement(self, intent: Intent, *, owner: str, spacing_seconds: float) -> None:
        """End ``intent``'s turn and space the next identical movement (the database's clock);
        also forgets the account's movements nobody holds whose spacing has passed (those not
        locked right now), so the table stays small."""
        movements = f"{self.schema}.movements"
        where = (intent.venue, intent.account, movement_of(intent.params))

        async def free(connection: Any) -> None:
            # One statement, so one round trip: it runs after the send, before the answer.
            await connection.execute(
                f"""WITH gone AS (
                        DELETE FROM {movements} WHERE (venue, account, movement) IN (
                            SELECT venue, account, movement FROM {movements}
                            WHERE venue = $1 AND account = $2 AND movement <> $3
                            AND holder_key IS NULL AND free_at < now()
                            FOR UPDATE SKIP LOCKED))
                    INSERT INTO {movements} AS m (venue, account, movement, free_at)
                    VALUES ($1, $2, $3, now() + make_interval(secs => $4))
                    ON CONFLICT (venue, account, movement) DO UPDATE SET
                    free_at = greatest(m.free_at, excluded.free_at),
                    holder_key = CASE WHEN m.holder_key = $5 AND m.holder_owner = $6
                        THEN NULL ELSE m.holder_key END,
                    holder_owner = CASE WHEN m.holder_key = $5 AND m.holder_owner = $6
                        THEN NULL ELSE m.holder_owner END""",  # noqa: S608
                *where,
                spacing_seconds,
                intent.key,
                owner,
            )

        await self._run(free)

    async def get(self, intent_id: IntentId) -> Intent | None:
        """The intent under ``intent_id``."""
        row = await self._run(
            lambda c: c.fetchrow(
                f"SELECT {_COLUMNS} FROM {self._table} WHERE {_WHERE_ID}",  # noqa: S608
                *_ident(intent_id),
            )
        )
        return _intent(row) if row is not None else None

    async def find(self, key: str) -> list[Intent]:
        """Every intent under ``key``."""
        rows = await self._run(
            lambda c: c.fetch(
                f"""SELECT {_COLUMNS} FROM {self._table} WHERE key = $1
                    ORDER BY created_at, venue, account""",  # noqa: S608
                key,
            )
        )
        return [_intent(row) for row in rows]

    async def prune(self, *, finished_before: datetime) -> int:
        """Delete settled intents finished before ``finished_before``."""
        deleted = await self._run(  # its own transaction: many rows, outside any batch
            lambda c: c.fetchval(
                f"""WITH gone AS (DELETE FROM {self._table}
                    WHERE status = ANY($1::text[]) AND finished_at < $2 RETURNING 1)
                    SELECT count(*) FROM gone""",  # noqa: S608
                _TERMINAL,
                finished_before,
            )
        )
        return int(deleted)

    async def list_page(
        self,
        *,
        statuses: Collection[TransferStatus],
        accounts: Collection[tuple[str, str]],
        after: Intent | None,
        limit: int,
    ) -> list[Intent]:
        """Up to ``limit`` intents after ``after`` in sweep order (`sweep_order`)."""
        cursor = (
            (None, None, None, None)
            if after is None
            else (after.created_at, after.key, after.venue, after.account)
        )
        rows = await self._run(
            lambda c: c.fetch(
                f"""SELECT {_COLUMNS} FROM {self._table}
                    WHERE status = ANY($1::text[])
                    AND (venue, account) IN (SELECT * FROM unnest($2::text[], $3::text[]))
                    AND ($4::timestamptz IS NULL OR (created_at, key, venue, account)
                        > ($4::timestamptz, $5::text, $6::text, $7::text))
                    ORDER BY created_at, key, venue, account LIMIT $8""",  # noqa: S608
                [s.value for s in statuses],
                [venue for venue, _ in accounts],
                [account for _, account in accounts],
                *cursor,
                limit,
            )
        )
        return [_intent(row) for row in rows]

    async def list(
        self,
        *,
        statuses: Collection[TransferStatus] | None = None,
        accounts: Collection[tuple[str, str]] | None = None,
        limit: int | None = None,
    ) -> list[Intent]:
        """Intents oldest first, optionally filtered by status and account."""
        wanted = None if statuses is None else [s.value for s in statuses]
        venues = None if accounts is None else [venue for venue, _ in accounts]
        owners = None if accounts is None else [account for _, account in accounts]
        rows = await self._run(
            lambda c: c.fetch(
                f"""SELECT {_COLUMNS} FROM {self._table}
                    WHERE ($1::text[] IS NULL OR status = ANY($1::text[]))
                    AND ($2::text[] IS NULL OR (venue, account) IN
                        (SELECT * FROM unnest($2::text[], $3::text[])))
                    ORDER BY created_at, key LIMIT $4""",  # noqa: S608
                wanted,
                venues,
                owners,
                limit,
            )
        )
        return [_intent(row) for row in rows]
