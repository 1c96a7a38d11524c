"""The journal contract for identical movements (`Journal.take_movement`, `free_movement`),
on every backend: at most one unresolved intent per account and movement, atomically."""

from __future__ import annotations

import sqlite3
from collections.abc import Awaitable, Callable
from contextlib import closing
from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path

import anyio
import attrs
import pytest

from xferkit import PostgresJournal, SqliteJournal, TransferStatus
from xferkit.journal import Intent, Journal, LeaseLostError, MovementTurn, movement_of
from xferkit.testing import VirtualClock
from xferkit.venues._base import TransferSpec

from ..postgres import drop_schema, require_postgres, unique_schema
from .conftest import ExpireLeases

LEASE = 30.0
ACCOUNT = "acct-a"

ExpireSpacing = Callable[[float], Awaitable[None]]


def htx_intent(
    key: str, *, amount: str = "25", account: str = ACCOUNT, to_account: str = "linear-swap"
) -> Intent:
    """A PENDING HTX intent moving ``amount`` usdt from spot to ``to_account``."""
    spec = TransferSpec(
        venue="htx",
        currency="usdt",
        amount=Decimal(amount),
        from_account="spot",
        to_account=to_account,
        margin_account="USDT" if to_account == "linear-swap" else None,
    )
    return Intent(
        key=key,
        venue="htx",
        account=account,
        fingerprint=spec.fingerprint(),
        params=spec.canonical_json(),
        token=None,
        body="{}",
        created_at=datetime(2026, 11, 21, 8, 0, tzinfo=timezone.utc),
    )


async def claimed(journal: Journal, intent: Intent, owner: str | None = None) -> Intent:
    """``intent`` claimed by ``owner`` (its key by default)."""
    claim = await journal.claim(intent, owner=owner or intent.key, lease_seconds=LEASE)
    assert claim.owned
    return claim.intent


async def take(journal: Journal, intent: Intent, owner: str | None = None) -> MovementTurn:
    return await journal.take_movement(intent, owner=owner or intent.key, lease_seconds=LEASE)


@pytest.fixture
def expire_spacing(journal: Journal, clock: VirtualClock) -> ExpireSpacing:
    """Move time past every movement's spacing: the virtual clock, or PostgreSQL's own."""

    async def expire(seconds: float) -> None:
        if isinstance(journal, PostgresJournal):
            await journal._run(
                lambda c: c.execute(
                    f"UPDATE {journal.schema}.movements "  # noqa: S608 - test schema
                    "SET free_at = free_at - make_interval(secs => $1)",
                    seconds,
                )
            )
        else:
            clock.advance(seconds)

    return expire


def test_a_movement_is_the_accounts_currency_and_amount_whatever_its_spelling() -> None:
    """``25`` and ``25.000`` are one movement; another amount or account pair is another."""
    same = movement_of(htx_intent("a").params) == movement_of(
        htx_intent("b", amount="25.000").params
    )
    assert same
    assert movement_of(htx_intent("a").params) != movement_of(htx_intent("b", amount="26").params)
    assert movement_of(htx_intent("a").params) != movement_of(
        htx_intent("b", to_account="otc").params
    )


async def test_a_pending_holder_keeps_an_identical_intent_from_taking_its_turn(
    journal: Journal,
) -> None:
    """While one intent holds a movement's turn (not sent yet), an identical one is refused
    and told which key blocks it; a different movement is not."""
    a = await claimed(journal, htx_intent("a"))
    b = await claimed(journal, htx_intent("b", amount="25.0"))
    c = await claimed(journal, htx_intent("c", amount="26"))
    assert (await take(journal, a)).taken
    assert await take(journal, b) == MovementTurn(taken=False, blocker="a")
    assert (await take(journal, c)).taken
    assert (await take(journal, a)).taken  # the holder may ask again


@pytest.mark.parametrize("status", [TransferStatus.IN_FLIGHT, TransferStatus.UNKNOWN])
async def test_an_unresolved_identical_intent_blocks_without_holding_the_turn(
    journal: Journal, status: TransferStatus
) -> None:
    """An identical intent that may have executed blocks the turn by its state alone, as one
    recorded before movements were tracked does; once settled it no longer does."""
    a = await claimed(journal, htx_intent("a"))
    sent = attrs.evolve(a, status=status, attempts=1)
    await journal.save(sent, owner="a", lease_seconds=LEASE)
    b = await claimed(journal, htx_intent("b"))
    assert await take(journal, b) == MovementTurn(taken=False, blocker="a")
    other_account = await claimed(journal, htx_intent("b", account="acct-b"))
    assert (await take(journal, other_account)).taken
    await journal.save(
        attrs.evolve(sent, status=TransferStatus.SUCCEEDED), owner="a", lease_seconds=None
    )
    assert (await take(journal, b)).taken


async def test_freeing_a_turn_spaces_the_next_identical_movement(
    journal: Journal, expire_spacing: ExpireSpacing
) -> None:
    """After the holder frees its turn, the movement stays closed for the spacing asked for
    (the answer says how long), and opens once it has passed."""
    a = await claimed(journal, htx_intent("a"))
    assert (await take(journal, a)).taken
    await journal.free_movement(a, owner="a", spacing_seconds=20.0)
    b = await claimed(journal, htx_intent("b"))
    turn = await take(journal, b)
    assert not turn.taken
    assert turn.blocker is None
    assert 0 < turn.wait_seconds <= 20.0
    await journal.free_movement(a, owner="a", spacing_seconds=0.0)  # never shortens it
    assert not (await take(journal, b)).taken
    await expire_spacing(21.0)
    assert (await take(journal, b)).taken


async def test_a_turn_lapses_with_its_holders_lease(
    journal: Journal, expire_leases: ExpireLeases
) -> None:
    """A drive that took the turn and died before sending leaves a PENDING intent whose lease
    runs out: its turn counts no more."""
    a = await claimed(journal, htx_intent("a"))
    assert (await take(journal, a)).taken
    b = await claimed(journal, htx_intent("b"))
    await expire_leases(LEASE + 1)
    assert (await take(journal, b)).taken
    assert await take(journal, a, owner="a") == MovementTurn(taken=False, blocker="b")


async def test_only_the_drive_holding_a_turn_frees_it(journal: Journal) -> None:
    """A free by another owner of the same key (a drive that lost the lease) leaves the
    holder's turn in place."""
    a = await claimed(journal, htx_intent("a"))
    assert (await take(journal, a)).taken
    await journal.free_movement(a, owner="someone-else", spacing_seconds=0.0)
    b = await claimed(journal, htx_intent("b"))
    assert await take(journal, b) == MovementTurn(taken=False, blocker="a")


async def test_taking_a_turn_needs_the_intents_lease(journal: Journal) -> None:
    """Only the worker holding the intent's lease may take its turn."""
    a = await claimed(journal, htx_intent("a"))
    with pytest.raises(LeaseLostError):
        await take(journal, a, owner="not-the-owner")


async def test_of_many_concurrent_takers_of_one_movement_exactly_one_wins(
    journal: Journal,
) -> None:
    """Twenty identical intents take their movement's turn at once: exactly one gets it, every
    other is told the winner blocks it."""
    intents = [await claimed(journal, htx_intent(f"k{n}")) for n in range(20)]
    turns: dict[str, MovementTurn] = {}

    async def one(intent: Intent) -> None:
        turns[intent.key] = await take(journal, intent)

    async with anyio.create_task_group() as tg:
        for intent in intents:
            tg.start_soon(one, intent)
    winners = [key for key, turn in turns.items() if turn.taken]
    assert len(winners) == 1
    assert {turn.blocker for turn in turns.values() if not turn.taken} == set(winners)


async def test_a_schema_2_sqlite_journal_gains_movements_and_keeps_its_intents(
    tmp_path: Path,
) -> None:
    """A journal file from before movements were tracked (schema 2) is migrated when opened:
    its intents are kept and an unresolved one blocks an identical new one at once."""
    path = tmp_path / "journal.sqlite3"
    old = SqliteJournal(path)
    await old.open()
    sent = attrs.evolve(htx_intent("a"), status=TransferStatus.UNKNOWN, attempts=1)
    await old.claim(sent, owner="a", lease_seconds=LEASE)
    await old.aclose()
    db = sqlite3.connect(path)
    db.execute("DROP TABLE movements")  # as schema 2 had it
    db.execute("ALTER TABLE intents DROP COLUMN attempts_end_venue_ms")
    db.execute("PRAGMA user_version = 2")
    db.commit()
    db.close()
    journal = SqliteJournal(path)
    await journal.open()
    try:
        b = await claimed(journal, htx_intent("b"))
        assert await take(journal, b) == MovementTurn(taken=False, blocker="a")
    finally:
        await journal.aclose()
    with closing(sqlite3.connect(path)) as db:
        assert db.execute("PRAGMA user_version").fetchone() == (3,)


async def test_a_schema_2_postgres_journal_gains_movements_and_keeps_its_intents() -> None:
    """A PostgreSQL schema from before movements were tracked (version 2) is migrated when
    opened: its intents are kept and an unresolved one blocks an identical new one at once."""
    dsn = await require_postgres()
    schema = unique_schema()
    try:
        old = PostgresJournal(dsn, schema=schema)
        await old.open()
        sent = attrs.evolve(htx_intent("a"), status=TransferStatus.UNKNOWN, attempts=1)
        await old.claim(sent, owner="a", lease_seconds=LEASE)
        await old._run(lambda c: c.execute(f"DROP TABLE {schema}.movements"))  # as schema 2
        await old._run(
            lambda c: c.execute(f"ALTER TABLE {schema}.intents DROP COLUMN attempts_end_venue_ms")
        )
        await old._run(lambda c: c.execute(f"UPDATE {schema}.meta SET version = 2"))  # noqa: S608
        await old.aclose()
        journal = PostgresJournal(dsn, schema=schema)
        await journal.open()
        try:
            b = await claimed(journal, htx_intent("b"))
            assert await take(journal, b) == MovementTurn(taken=False, blocker="a")
            version = await journal._run(
                lambda c: c.fetchval(f"SELECT max(version) FROM {schema}.meta")  # noqa: S608
            )
        finally:
            await journal.aclose()
    finally:
        await drop_schema(dsn, schema)
    assert version == 4
