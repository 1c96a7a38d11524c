"""`SweepJournal`: what a resume() sweep relies on, on every backend that offers it."""

from __future__ import annotations

import functools
import sqlite3
from contextlib import closing
from datetime import datetime, timedelta, timezone
from pathlib import Path

import anyio
import attrs
import pytest

from xferkit import SqliteJournal, TransferStatus
from xferkit.journal import Intent, Journal, StoredError, SweepJournal

from .conftest import ExpireLeases
from .test_contract import LEASE, _held_group, iid, make_intent

SENT = datetime(2026, 11, 21, 8, 0, 1, tzinfo=timezone.utc)
UNFINISHED = (TransferStatus.PENDING, TransferStatus.IN_FLIGHT, TransferStatus.UNKNOWN)


def sweeper(journal: Journal) -> SweepJournal:
    if not isinstance(journal, SweepJournal):
        pytest.skip(f"{type(journal).__name__} is swept by list() and claim()")
    return journal


async def left_open(journal: Journal, key: str = "k1", **fields: object) -> Intent:
    """An intent sent once whose answer was lost, its lease released: as a sweep lists it."""
    claim = await journal.claim(make_intent(key), owner="crashed", lease_seconds=LEASE)
    sent = attrs.evolve(
        claim.intent,
        status=TransferStatus.UNKNOWN,
        attempts=1,
        first_sent_at=SENT,
        last_sent_at=SENT,
        **fields,
    )
    await journal.save(sent, owner="crashed", lease_seconds=None)
    stored = await journal.get(iid(key))
    assert stored is not None
    return stored


def next_attempt(listed: Intent) -> Intent:
    return attrs.evolve(
        listed, attempts=listed.attempts + 1, last_sent_at=SENT + timedelta(seconds=5)
    )


async def test_take_leases_an_intent_and_records_its_next_attempt(journal: Journal) -> None:
    """One write leases the listed intent and stores its next attempt, counted."""
    listed = await left_open(journal)
    taken = await sweeper(journal).take(
        listed, next_attempt(listed), owner="b", lease_seconds=LEASE
    )
    assert taken is not None
    stored = await journal.get(iid("k1"))
    assert stored == taken
    assert (stored.attempts, stored.last_sent_at, stored.lease_owner) == (
        2,
        SENT + timedelta(seconds=5),
        "b",
    )
    assert stored.status is TransferStatus.UNKNOWN


@pytest.mark.parametrize("change", ["attempts", "error", "status"])
async def test_take_refuses_a_row_that_changed_since_it_was_listed(
    journal: Journal, change: str
) -> None:
    """A row another worker wrote after the listing (a later attempt, a refusal kept as the
    reason, a settlement) is not overwritten: the take answers None and writes nothing."""
    listed = await left_open(journal)
    claim = await journal.claim(make_intent(), owner="other", lease_seconds=LEASE)
    changed = {
        "attempts": {"attempts": 2},
        "error": {"error": StoredError(kind="RateLimitError", message="429")},
        "status": {"status": TransferStatus.SUCCEEDED, "finished_at": SENT},
    }[change]
    await journal.save(attrs.evolve(claim.intent, **changed), owner="other", lease_seconds=None)
    before = await journal.get(iid("k1"))
    taken = await sweeper(journal).take(
        listed, next_attempt(listed), owner="b", lease_seconds=LEASE
    )
    assert taken is None
    assert await journal.get(iid("k1")) == before


async def test_take_waits_for_a_live_lease_to_expire(
    journal: Journal, expire_leases: ExpireLeases
) -> None:
    """While another worker's lease is live the take answers None; once it expired, it takes."""
    listed = await left_open(journal)
    await journal.claim(make_intent(), owner="other", lease_seconds=LEASE)
    journal_ = sweeper(journal)
    assert await journal_.take(listed, next_attempt(listed), owner="b", lease_seconds=LEASE) is None
    await expire_leases(LEASE + 1)
    taken = await journal_.take(listed, next_attempt(listed), owner="b", lease_seconds=LEASE)
    assert taken is not None
    assert taken.lease_owner == "b"


async def test_concurrent_takes_of_one_intent_have_exactly_one_winner(journal: Journal) -> None:
    """Two sweeps that listed the same intent cannot both drive it."""
    listed = await left_open(journal)
    journal_ = sweeper(journal)
    winners: list[str] = []

    async def take(owner: str) -> None:
        if await journal_.take(listed, next_attempt(listed), owner=owner, lease_seconds=LEASE):
            winners.append(owner)

    async with anyio.create_task_group() as tg:
        for n in range(8):
            tg.start_soon(take, f"w{n}")
    assert len(winners) == 1
    stored = await journal.get(iid("k1"))
    assert stored is not None
    assert (stored.lease_owner, stored.attempts) == (winners[0], 2)


async def test_list_page_pages_in_order_and_never_sees_an_intent_twice(journal: Journal) -> None:
    """Paging by key: intents that settle, or move from UNKNOWN to IN_FLIGHT, between two
    pages are neither listed again nor make a later intent skipped."""
    journal_ = sweeper(journal)
    base = datetime(2026, 11, 21, 8, 0, tzinfo=timezone.utc)
    for n in range(7):
        # Two intents per instant: the page boundary falls between equal times.
        created = base + timedelta(seconds=n // 2)
        await journal.claim(
            make_intent(f"k{n}", created_at=created), owner="w", lease_seconds=LEASE
        )
    await journal.claim(make_intent("other", account="acct-b"), owner="w", lease_seconds=LEASE)
    mine = [("xt", "acct-a")]
    seen: list[str] = []
    after = None
    while True:
        page = await journal_.list_page(statuses=UNFINISHED, accounts=mine, after=after, limit=3)
        assert len(page) <= 3
        seen += [i.key for i in page]
        for intent in page:  # each one is driven before the next page is read
            moved = TransferStatus.SUCCEEDED if intent.key == "k0" else TransferStatus.IN_FLIGHT
            await journal.save(attrs.evolve(intent, status=moved), owner="w", lease_seconds=LEASE)
        if len(page) < 3:
            break
        after = page[-1]
    assert seen == [f"k{n}" for n in range(7)]


async def test_sqlite_a_groups_takes_share_its_one_statement(tmp_path: Path) -> None:
    """Takes join the claims and saves of a group commit in one self-committing statement;
    a take whose row changed is passed over there (a read then says which), and its
    neighbours are written."""
    journal = SqliteJournal(tmp_path / "j.sqlite3")
    await journal.open()
    answers: dict[str, object] = {}

    async def take(listed: Intent) -> None:
        answers[listed.key] = await journal.take(
            listed, next_attempt(listed), owner="b", lease_seconds=LEASE
        )

    async def claim(key: str) -> None:
        answers[key] = await journal.claim(make_intent(key), owner="b", lease_seconds=LEASE)

    try:
        listed = [await left_open(journal, f"t{n}") for n in range(3)]
        stale = await left_open(journal, "stale")
        moved = await journal.claim(make_intent("stale"), owner="other", lease_seconds=LEASE)
        await journal.save(
            attrs.evolve(moved.intent, attempts=5), owner="other", lease_seconds=None
        )
        queue = [functools.partial(take, intent) for intent in [*listed, stale]]
        queue.append(functools.partial(claim, "new"))
        statements = await _held_group(journal, queue)
    finally:
        await journal.aclose()

    assert statements[0].startswith("INSERT INTO intents"), statements
    assert all(s.startswith("SELECT") for s in statements[1:]), statements  # no BEGIN, COMMIT
    assert answers["stale"] is None
    assert all(isinstance(answers[f"t{n}"], Intent) for n in range(3))
    with closing(sqlite3.connect(tmp_path / "j.sqlite3")) as other:  # `with` alone never closes
        rows = {
            r[0]: r[1:] for r in other.execute("SELECT key, attempts, lease_owner FROM intents")
        }
    assert all(rows[f"t{n}"] == (2, "b") for n in range(3))
    assert rows["stale"] == (5, None)
    assert rows["new"] == (0, "b")
