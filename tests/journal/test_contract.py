"""One contract, every journal backend: the engine relies on exactly these behaviours."""

from __future__ import annotations

import functools
import gc
import sqlite3
import threading
from collections.abc import Callable
from contextlib import closing
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import anyio
import anyio.lowlevel
import anyio.to_thread
import attrs
import pytest

from xferkit import JournalError, SqliteJournal, TransferStatus
from xferkit.journal import (
    LEGACY_ACCOUNT,
    Claim,
    Intent,
    IntentId,
    Journal,
    LeaseLostError,
    StoredError,
)

from .conftest import ExpireLeases

LEASE = 30.0


ACCOUNT = "acct-a"
OTHER_ACCOUNT = "acct-b"


def make_intent(
    key: str = "k1",
    *,
    created_at: datetime | None = None,
    account: str = ACCOUNT,
    venue: str = "xt",
) -> Intent:
    return Intent(
        key=key,
        venue=venue,
        account=account,
        fingerprint="f" * 64,
        params='{"amount":"10"}',
        token=f"biz-{key}" if account == ACCOUNT else f"biz-{key}-{account}",
        body='{"bizId":"biz"}',
        created_at=created_at or datetime(2026, 11, 21, 8, 0, tzinfo=timezone.utc),
    )


def iid(key: str = "k1", account: str = ACCOUNT, venue: str = "xt") -> IntentId:
    """The id of ``make_intent(key, account=account, venue=venue)``."""
    return IntentId(venue, account, key)


async def test_claim_records_a_new_intent_owned_by_the_caller(journal: Journal) -> None:
    """A first claim creates the intent, hands its lease to the caller and stores it."""
    claim = await journal.claim(make_intent(), owner="a", lease_seconds=LEASE)
    assert (claim.created, claim.owned) == (True, True)
    stored = await journal.get(iid("k1"))
    assert stored is not None
    assert stored.lease_owner == "a"
    assert stored.status is TransferStatus.PENDING


async def test_a_claim_stores_the_intent_as_given(journal: Journal) -> None:
    """A claim may record the first attempt with the intent (XT: IN_FLIGHT, counted, its
    send times); every field it is given is stored, as `save` would store it."""
    sent = datetime(2026, 11, 21, 8, 0, 0, 250000, tzinfo=timezone.utc)
    first_attempt = attrs.evolve(
        make_intent(),
        status=TransferStatus.IN_FLIGHT,
        attempts=1,
        first_sent_at=sent,
        first_sent_venue_ms=1_795_248_000_123,
        last_sent_at=sent,
    )
    claim = await journal.claim(first_attempt, owner="a", lease_seconds=LEASE)
    stored = await journal.get(iid("k1"))
    assert stored is not None
    assert claim.intent == stored
    leased = ("lease_owner", "lease_expires_at")
    assert attrs.asdict(stored, filter=lambda a, _: a.name not in leased) == attrs.asdict(
        first_attempt, filter=lambda a, _: a.name not in leased
    )
    assert stored.lease_owner == "a"


async def test_second_claim_returns_the_stored_intent_without_the_lease(journal: Journal) -> None:
    """A claim on a key leased to someone else returns the stored row and does not own it."""
    await journal.claim(make_intent(), owner="a", lease_seconds=LEASE)
    other = attrs.evolve(make_intent(), fingerprint="0" * 64)
    claim = await journal.claim(other, owner="b", lease_seconds=LEASE)
    assert (claim.created, claim.owned) == (False, False)
    assert claim.intent.fingerprint == "f" * 64  # the stored parameters win


async def test_concurrent_claims_of_one_key_have_exactly_one_winner(journal: Journal) -> None:
    """Twenty concurrent claims of one key: one creates and owns it, the rest do not."""
    results = []

    async def claim(owner: str) -> None:
        results.append(await journal.claim(make_intent(), owner=owner, lease_seconds=LEASE))

    async with anyio.create_task_group() as tg:
        for n in range(20):
            tg.start_soon(claim, f"w{n}")
    assert sum(c.created for c in results) == 1
    assert sum(c.owned for c in results) == 1


async def test_expired_lease_can_be_taken_over(
    journal: Journal, expire_leases: ExpireLeases
) -> None:
    """Once the owner's lease expires, another worker's claim takes it."""
    await journal.claim(make_intent(), owner="a", lease_seconds=LEASE)
    await expire_leases(LEASE + 1)
    claim = await journal.claim(make_intent(), owner="b", lease_seconds=LEASE)
    assert claim.owned
    assert claim.intent.lease_owner == "b"
    with pytest.raises(LeaseLostError):
        await journal.save(claim.intent, owner="a", lease_seconds=LEASE)


async def test_released_lease_is_free_at_once(journal: Journal) -> None:
    """A released lease can be claimed immediately; the state is untouched by release."""
    claim = await journal.claim(make_intent(), owner="a", lease_seconds=LEASE)
    await journal.save(
        attrs.evolve(claim.intent, status=TransferStatus.IN_FLIGHT), owner="a", lease_seconds=LEASE
    )
    await journal.release(iid("k1"), owner="a")
    taken = await journal.claim(make_intent(), owner="b", lease_seconds=LEASE)
    assert taken.owned
    assert taken.intent.status is TransferStatus.IN_FLIGHT


async def test_release_by_a_non_owner_changes_nothing(journal: Journal) -> None:
    """Only the lease holder can release it."""
    await journal.claim(make_intent(), owner="a", lease_seconds=LEASE)
    await journal.release(iid("k1"), owner="b")
    claim = await journal.claim(make_intent(), owner="b", lease_seconds=LEASE)
    assert not claim.owned


async def test_save_by_a_non_owner_is_refused(journal: Journal) -> None:
    """A worker that does not hold the lease cannot overwrite the intent."""
    claim = await journal.claim(make_intent(), owner="a", lease_seconds=LEASE)
    with pytest.raises(LeaseLostError):
        await journal.save(
            attrs.evolve(claim.intent, status=TransferStatus.SUCCEEDED),
            owner="b",
            lease_seconds=None,
        )
    stored = await journal.get(iid("k1"))
    assert stored is not None
    assert stored.status is TransferStatus.PENDING


async def test_terminal_intents_are_never_leased_again(
    journal: Journal, expire_leases: ExpireLeases
) -> None:
    """A settled intent keeps no lease and no later claim owns it."""
    claim = await journal.claim(make_intent(), owner="a", lease_seconds=LEASE)
    await journal.save(
        attrs.evolve(claim.intent, status=TransferStatus.SUCCEEDED, transfer_id="99"),
        owner="a",
        lease_seconds=LEASE,
    )
    stored = await journal.get(iid("k1"))
    assert stored is not None
    assert stored.lease_owner is None
    await expire_leases(LEASE * 10)
    again = await journal.claim(make_intent(), owner="b", lease_seconds=LEASE)
    assert (again.created, again.owned) == (False, False)
    assert again.intent.transfer_id == "99"


async def test_every_field_round_trips(journal: Journal) -> None:
    """What is saved is what is read back: times in UTC, errors, ids and counters."""
    claim = await journal.claim(make_intent(), owner="a", lease_seconds=LEASE)
    sent = datetime(2026, 11, 21, 8, 0, 1, 123456, tzinfo=timezone.utc)
    final = attrs.evolve(
        claim.intent,
        status=TransferStatus.FAILED,
        attempts=3,
        error=StoredError(kind="InsufficientBalanceError", message="short", code="FUND_002"),
        ledger_ref="ledger-7",
        first_sent_at=sent,
        last_sent_at=sent + timedelta(seconds=2),
        finished_at=sent + timedelta(seconds=3),
    )
    await journal.save(final, owner="a", lease_seconds=None)
    stored = await journal.get(iid("k1"))
    assert stored == attrs.evolve(final, lease_owner=None, lease_expires_at=None)


async def test_list_filters_by_status_oldest_first(journal: Journal) -> None:
    """list() returns intents oldest first, filtered by status and bounded by limit."""
    base = datetime(2026, 11, 21, tzinfo=timezone.utc)
    for n in (3, 1, 2):
        await journal.claim(
            make_intent(f"k{n}", created_at=base + timedelta(minutes=n)),
            owner="a",
            lease_seconds=LEASE,
        )
    done = await journal.get(iid("k2"))
    assert done is not None
    await journal.save(
        attrs.evolve(done, status=TransferStatus.SUCCEEDED), owner="a", lease_seconds=None
    )
    assert [i.key for i in await journal.list()] == ["k1", "k2", "k3"]
    pending = await journal.list(statuses=[TransferStatus.PENDING])
    assert [i.key for i in pending] == ["k1", "k3"]
    assert [i.key for i in await journal.list(limit=1)] == ["k1"]


async def test_get_of_an_unknown_key_is_none(journal: Journal) -> None:
    """Reading a key that was never claimed gives None, not an error."""
    assert await journal.get(iid("nope")) is None


# -- SQLite specifics ---------------------------------------------------------------------


async def test_sqlite_claim_is_on_disk_when_it_returns(tmp_path: Path) -> None:
    """A claim is readable by a second connection to the file as soon as claim() returns."""
    path = tmp_path / "j.sqlite3"
    journal = SqliteJournal(path)
    await journal.open()
    try:
        await journal.claim(make_intent(), owner="a", lease_seconds=LEASE)
        with closing(sqlite3.connect(path)) as other, other:
            rows = other.execute("SELECT key, status FROM intents").fetchall()
        assert rows == [("k1", "PENDING")]
    finally:
        await journal.aclose()


async def test_sqlite_uses_wal_and_full_sync(tmp_path: Path) -> None:
    """The journal file is in WAL mode and the connection fsyncs every commit (FULL)."""
    journal = SqliteJournal(tmp_path / "j.sqlite3")
    await journal.open()
    try:
        mode = await journal._run(lambda db: db.execute("PRAGMA journal_mode").fetchone()[0])
        sync = await journal._run(lambda db: db.execute("PRAGMA synchronous").fetchone()[0])
    finally:
        await journal.aclose()
    assert (mode, sync) == ("wal", 2)


async def test_sqlite_refuses_a_newer_schema(tmp_path: Path) -> None:
    """A journal written by a newer xferkit is refused instead of being misread."""
    path = tmp_path / "j.sqlite3"
    with closing(sqlite3.connect(path)) as db, db:
        db.execute("PRAGMA user_version = 99")
    with pytest.raises(JournalError, match="schema version 99"):
        await SqliteJournal(path).open()


async def test_sqlite_survives_reopen(tmp_path: Path) -> None:
    """Intents written by one journal object are there for the next one on the same file."""
    path = tmp_path / "j.sqlite3"
    first = SqliteJournal(path)
    await first.open()
    await first.claim(make_intent(), owner="a", lease_seconds=LEASE)
    await first.aclose()
    second = SqliteJournal(path)
    await second.open()
    try:
        stored = await second.get(iid("k1"))
    finally:
        await second.aclose()
    assert stored is not None
    assert stored.token == "biz-k1"


async def test_sqlite_unwritable_location_is_a_journal_error(tmp_path: Path) -> None:
    """A journal path that cannot be created raises JournalError on open."""
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(JournalError):
        await SqliteJournal(blocker / "j.sqlite3").open()


async def test_sqlite_a_file_that_is_not_a_journal_leaves_no_connection_open(
    tmp_path: Path,
) -> None:
    """A file SQLite cannot read is JournalError, and the connection opened on it is closed."""
    path = tmp_path / "j.sqlite3"
    path.write_bytes(b"not a database, " * 256)
    with pytest.raises(JournalError, match="cannot open"):
        await SqliteJournal(path).open()
    gc.collect()  # an unclosed connection would warn here (ResourceWarning, Python 3.13+)


async def test_sqlite_closed_journal_raises(tmp_path: Path) -> None:
    """Using a closed journal raises JournalError rather than silently dropping writes."""
    journal = SqliteJournal(tmp_path / "j.sqlite3")
    await journal.open()
    await journal.aclose()
    with pytest.raises(JournalError):
        await journal.claim(make_intent(), owner="a", lease_seconds=LEASE)


async def test_a_ledger_row_is_claimed_by_one_intent_only(journal: Journal) -> None:
    """Two intents of one venue cannot both claim the same ledger row; the owner's claim sticks."""
    await journal.claim(make_intent("a"), owner="wa", lease_seconds=LEASE)
    await journal.claim(make_intent("b"), owner="wb", lease_seconds=LEASE)
    assert await journal.claim_ledger_ref(iid("a"), owner="wa", ref="row-1")
    assert not await journal.claim_ledger_ref(iid("b"), owner="wb", ref="row-1")
    assert await journal.claim_ledger_ref(iid("b"), owner="wb", ref="row-2")
    stored = await journal.get(iid("a"))
    assert stored is not None
    assert stored.ledger_ref == "row-1"


async def test_a_ledger_row_needs_the_lease(journal: Journal) -> None:
    """A worker that does not hold the intent's lease cannot claim a ledger row for it."""
    await journal.claim(make_intent("a"), owner="wa", lease_seconds=LEASE)
    assert not await journal.claim_ledger_ref(iid("a"), owner="intruder", ref="row-1")
    stored = await journal.get(iid("a"))
    assert stored is not None
    assert stored.ledger_ref is None


async def test_prune_deletes_only_old_settled_intents(journal: Journal) -> None:
    """Settled intents past retention go; recent ones and every unsettled one stay."""
    base = datetime(2026, 11, 1, tzinfo=timezone.utc)
    for key, status, finished in (
        ("old-ok", TransferStatus.SUCCEEDED, base),
        ("old-failed", TransferStatus.FAILED, base),
        ("new-ok", TransferStatus.SUCCEEDED, base + timedelta(days=20)),
        ("old-unknown", TransferStatus.UNKNOWN, None),
        ("old-in-flight", TransferStatus.IN_FLIGHT, None),
    ):
        claim = await journal.claim(
            make_intent(key, created_at=base), owner="a", lease_seconds=LEASE
        )
        await journal.save(
            attrs.evolve(claim.intent, status=status, finished_at=finished),
            owner="a",
            lease_seconds=None,
        )
    deleted = await journal.prune(finished_before=base + timedelta(days=10))
    assert deleted == 2
    assert {i.key for i in await journal.list()} == {"new-ok", "old-unknown", "old-in-flight"}


# -- accounts: an intent is (venue, account, key) ------------------------------------------


async def test_one_key_under_two_accounts_is_two_intents(journal: Journal) -> None:
    """The same key claimed under two accounts creates two intents, each with its own lease
    and fields; get() reads each by its id, and neither id reads the other's row."""
    mine = await journal.claim(make_intent("k1"), owner="a", lease_seconds=LEASE)
    theirs = await journal.claim(
        make_intent("k1", account=OTHER_ACCOUNT), owner="b", lease_seconds=LEASE
    )
    assert (mine.created, mine.owned) == (True, True)
    assert (theirs.created, theirs.owned) == (True, True)
    assert mine.intent.id == iid("k1") == IntentId("xt", ACCOUNT, "k1")
    assert theirs.intent.id == iid("k1", OTHER_ACCOUNT)
    a, b = await journal.get(iid("k1")), await journal.get(iid("k1", OTHER_ACCOUNT))
    assert a is not None
    assert b is not None
    assert (a.account, a.token, a.lease_owner) == (ACCOUNT, "biz-k1", "a")
    assert (b.account, b.token, b.lease_owner) == (OTHER_ACCOUNT, "biz-k1-acct-b", "b")
    assert await journal.get(iid("k1", "acct-c")) is None
    assert await journal.get(iid("k1", venue="htx")) is None
    # Saving one leaves the other as it was.
    await journal.save(
        attrs.evolve(a, status=TransferStatus.SUCCEEDED, transfer_id="t-a"),
        owner="a",
        lease_seconds=None,
    )
    b_after = await journal.get(iid("k1", OTHER_ACCOUNT))
    assert b_after is not None
    assert (b_after.status, b_after.transfer_id, b_after.lease_owner) == (
        TransferStatus.PENDING,
        None,
        "b",
    )
    # Another account's worker cannot save over this account's row under the same key.
    with pytest.raises(LeaseLostError):
        await journal.save(
            attrs.evolve(a, account=OTHER_ACCOUNT, status=TransferStatus.FAILED),
            owner="a",
            lease_seconds=None,
        )
    assert await journal.get(iid("k1", OTHER_ACCOUNT)) == b_after


async def test_a_second_claim_under_the_same_account_still_finds_the_first(
    journal: Journal,
) -> None:
    """With another account's intent under the key, a repeated claim by the first account is
    still answered with its own stored row, unleased for the second claimer."""
    await journal.claim(make_intent("k1"), owner="a", lease_seconds=LEASE)
    await journal.claim(make_intent("k1", account=OTHER_ACCOUNT), owner="b", lease_seconds=LEASE)
    again = await journal.claim(make_intent("k1"), owner="c", lease_seconds=LEASE)
    assert (again.created, again.owned) == (False, False)
    assert (again.intent.account, again.intent.lease_owner) == (ACCOUNT, "a")


async def test_find_returns_every_intent_under_a_key(journal: Journal) -> None:
    """find(key) returns the key's intents under every venue and account, and no other key's."""
    await journal.claim(make_intent("k1"), owner="a", lease_seconds=LEASE)
    await journal.claim(make_intent("k1", account=OTHER_ACCOUNT), owner="b", lease_seconds=LEASE)
    await journal.claim(make_intent("k1", venue="htx"), owner="c", lease_seconds=LEASE)
    await journal.claim(make_intent("k2"), owner="a", lease_seconds=LEASE)
    found = await journal.find("k1")
    assert len(found) == 3
    assert {i.id for i in found} == {iid("k1"), iid("k1", OTHER_ACCOUNT), iid("k1", venue="htx")}
    assert {i.key for i in found} == {"k1"}
    assert [i.id for i in await journal.find("k2")] == [iid("k2")]
    assert await journal.find("nope") == []


async def test_list_filters_by_venue_and_account_pairs(journal: Journal) -> None:
    """list(accounts=...) keeps only intents of the given (venue, account) pairs, as pairs
    (not any of the venues with any of the accounts), with statuses and limit still applied."""
    base = datetime(2026, 11, 21, tzinfo=timezone.utc)
    rows = [
        ("x-a", "xt", ACCOUNT),
        ("x-b", "xt", OTHER_ACCOUNT),
        ("h-a", "htx", ACCOUNT),
        ("h-b", "htx", OTHER_ACCOUNT),
        ("x-a2", "xt", ACCOUNT),
    ]
    for n, (key, venue, account) in enumerate(rows):
        await journal.claim(
            make_intent(key, venue=venue, account=account, created_at=base + timedelta(minutes=n)),
            owner="a",
            lease_seconds=LEASE,
        )
    done = await journal.get(iid("x-a2"))
    assert done is not None
    await journal.save(
        attrs.evolve(done, status=TransferStatus.SUCCEEDED), owner="a", lease_seconds=None
    )

    def keys(intents: list[Intent]) -> list[str]:
        return [i.key for i in intents]

    assert keys(await journal.list(accounts=[("xt", ACCOUNT)])) == ["x-a", "x-a2"]
    assert keys(await journal.list(accounts=[("xt", OTHER_ACCOUNT), ("htx", ACCOUNT)])) == [
        "x-b",
        "h-a",
    ]
    assert keys(await journal.list(accounts=[("binance", ACCOUNT)])) == []
    assert keys(await journal.list(accounts=[])) == []
    assert keys(await journal.list(accounts=None)) == [key for key, _, _ in rows]
    assert keys(
        await journal.list(statuses=[TransferStatus.PENDING], accounts=[("xt", ACCOUNT)])
    ) == ["x-a"]
    both = [("xt", ACCOUNT), ("htx", OTHER_ACCOUNT)]
    assert keys(await journal.list(accounts=both, limit=2)) == ["x-a", "h-b"]


async def failed_intent(
    journal: Journal, key: str = "k1", *, reusable: bool, account: str = ACCOUNT
) -> Intent:
    """Claim ``key`` and settle it FAILED with a refusal whose key is (not) ``reusable``."""
    claim = await journal.claim(make_intent(key, account=account), owner="a", lease_seconds=LEASE)
    failed = attrs.evolve(
        claim.intent,
        status=TransferStatus.FAILED,
        attempts=1,
        error=StoredError(kind="RateLimitError", message="429", http_status=429, reusable=reusable),
        finished_at=datetime(2026, 11, 21, 8, 1, tzinfo=timezone.utc),
    )
    await journal.save(failed, owner="a", lease_seconds=None)
    return failed


async def test_reopen_turns_a_reusable_failure_back_into_a_leased_pending(
    journal: Journal,
) -> None:
    """A FAILED intent whose stored error is reusable is reopened PENDING, unfinished, leased
    to the caller, the rest of it kept; a claim by anyone else then does not own it."""
    failed = await failed_intent(journal, reusable=True)
    reopened = await journal.reopen(iid("k1"), owner="w", lease_seconds=LEASE)
    assert reopened is not None
    assert (reopened.status, reopened.finished_at, reopened.lease_owner) == (
        TransferStatus.PENDING,
        None,
        "w",
    )
    assert reopened.lease_expires_at is not None
    stored = await journal.get(iid("k1"))
    assert stored == reopened
    assert (stored.token, stored.attempts, stored.error) == (
        failed.token,
        failed.attempts,
        failed.error,
    )
    other = await journal.claim(make_intent("k1"), owner="x", lease_seconds=LEASE)
    assert (other.created, other.owned) == (False, False)
    await journal.save(
        attrs.evolve(stored, status=TransferStatus.SUCCEEDED), owner="w", lease_seconds=None
    )


@pytest.mark.parametrize(
    "status", [TransferStatus.SUCCEEDED, TransferStatus.UNKNOWN, TransferStatus.PENDING]
)
async def test_reopen_refuses_anything_but_a_failure(
    journal: Journal, status: TransferStatus
) -> None:
    """Only a FAILED intent can be reopened, even with a reusable error stored on it."""
    claim = await journal.claim(make_intent(), owner="a", lease_seconds=LEASE)
    error = StoredError(kind="RateLimitError", message="429", reusable=True)
    await journal.save(
        attrs.evolve(claim.intent, status=status, error=error), owner="a", lease_seconds=None
    )
    before = await journal.get(iid("k1"))
    assert await journal.reopen(iid("k1"), owner="w", lease_seconds=LEASE) is None
    assert await journal.get(iid("k1")) == before


async def test_reopen_refuses_a_failure_that_spent_its_key(journal: Journal) -> None:
    """A FAILED intent whose stored error is not reusable (or that has none) stays FAILED."""
    await failed_intent(journal, "spent", reusable=False)
    claim = await journal.claim(make_intent("bare"), owner="a", lease_seconds=LEASE)
    await journal.save(
        attrs.evolve(claim.intent, status=TransferStatus.FAILED), owner="a", lease_seconds=None
    )
    for key in ("spent", "bare"):
        before = await journal.get(iid(key))
        assert before is not None
        assert await journal.reopen(iid(key), owner="w", lease_seconds=LEASE) is None
        assert await journal.get(iid(key)) == before
        assert before.status is TransferStatus.FAILED
    assert await journal.reopen(iid("nope"), owner="w", lease_seconds=LEASE) is None


async def test_reopen_reopens_only_the_named_accounts_intent(journal: Journal) -> None:
    """Reopening one account's failure leaves another account's failure under the key alone;
    an id of an account with no intent under the key reopens nothing."""
    await failed_intent(journal, reusable=True)
    await failed_intent(journal, reusable=True, account=OTHER_ACCOUNT)
    assert await journal.reopen(iid("k1", "acct-c"), owner="w", lease_seconds=LEASE) is None
    reopened = await journal.reopen(iid("k1"), owner="w", lease_seconds=LEASE)
    assert reopened is not None
    assert reopened.account == ACCOUNT
    other = await journal.get(iid("k1", OTHER_ACCOUNT))
    assert other is not None
    assert (other.status, other.lease_owner) == (TransferStatus.FAILED, None)


async def test_reopen_happens_once_under_concurrency(journal: Journal) -> None:
    """Of concurrent reopens of one failure, exactly one reopens it; the others get None and
    the lease is the winner's."""
    await failed_intent(journal, reusable=True)
    results: dict[str, Intent | None] = {}

    async def reopen(owner: str) -> None:
        results[owner] = await journal.reopen(iid("k1"), owner=owner, lease_seconds=LEASE)

    async with anyio.create_task_group() as tg:
        for n in range(10):
            tg.start_soon(reopen, f"w{n}")
    winners = [owner for owner, reopened in results.items() if reopened is not None]
    assert len(results) == 10
    assert len(winners) == 1
    stored = await journal.get(iid("k1"))
    assert stored is not None
    assert (stored.status, stored.lease_owner) == (TransferStatus.PENDING, winners[0])
    assert await journal.reopen(iid("k1"), owner="late", lease_seconds=LEASE) is None


async def test_a_ledger_row_is_claimed_once_per_account(journal: Journal) -> None:
    """A ledger row one account's intent holds can still go to another account's intent (of the
    same venue), even under the same key; within each account it stays one intent's."""
    await journal.claim(make_intent("a"), owner="wa", lease_seconds=LEASE)
    await journal.claim(make_intent("a", account=OTHER_ACCOUNT), owner="wb", lease_seconds=LEASE)
    await journal.claim(make_intent("c", account=OTHER_ACCOUNT), owner="wc", lease_seconds=LEASE)
    assert await journal.claim_ledger_ref(iid("a"), owner="wa", ref="row-1")
    assert await journal.claim_ledger_ref(iid("a", OTHER_ACCOUNT), owner="wb", ref="row-1")
    assert not await journal.claim_ledger_ref(iid("c", OTHER_ACCOUNT), owner="wc", ref="row-1")
    a, b, c = (
        await journal.get(iid("a")),
        await journal.get(iid("a", OTHER_ACCOUNT)),
        await journal.get(iid("c", OTHER_ACCOUNT)),
    )
    assert a is not None
    assert b is not None
    assert c is not None
    assert (a.ledger_ref, b.ledger_ref, c.ledger_ref) == ("row-1", "row-1", None)


async def test_a_ledger_row_is_claimed_once_per_venue(journal: Journal) -> None:
    """The same account name and ref on another venue is another ledger: both claims stand."""
    await journal.claim(make_intent("a"), owner="wa", lease_seconds=LEASE)
    await journal.claim(make_intent("b", venue="htx"), owner="wb", lease_seconds=LEASE)
    assert await journal.claim_ledger_ref(iid("a"), owner="wa", ref="row-1")
    assert await journal.claim_ledger_ref(iid("b", venue="htx"), owner="wb", ref="row-1")


async def test_adopt_gives_a_legacy_row_to_an_account(journal: Journal) -> None:
    """adopt() moves a LEGACY_ACCOUNT row to the account: it is read under its new id with
    every field kept, no longer under the legacy id, and found once under its key."""
    claim = await journal.claim(
        make_intent("old", account=LEGACY_ACCOUNT), owner="a", lease_seconds=LEASE
    )
    legacy = attrs.evolve(
        claim.intent,
        status=TransferStatus.UNKNOWN,
        attempts=2,
        error=StoredError(kind="TransferRejectedError", message="lost", code="X"),
    )
    await journal.save(legacy, owner="a", lease_seconds=None)
    stored = await journal.get(iid("old", LEGACY_ACCOUNT))
    assert stored is not None
    adopted = await journal.adopt(iid("old", LEGACY_ACCOUNT), account=ACCOUNT)
    assert adopted is not None
    assert adopted == attrs.evolve(stored, account=ACCOUNT)
    assert adopted.id == iid("old")
    assert await journal.get(iid("old")) == adopted
    assert await journal.get(iid("old", LEGACY_ACCOUNT)) is None
    assert [i.id for i in await journal.find("old")] == [iid("old")]
    assert [i.key for i in await journal.list(accounts=[("xt", ACCOUNT)])] == ["old"]
    assert await journal.list(accounts=[("xt", LEGACY_ACCOUNT)]) == []
    # It is now an ordinary intent of the account: its owner may lease and settle it.
    taken = await journal.claim(make_intent("old"), owner="w", lease_seconds=LEASE)
    assert taken.owned
    assert (taken.intent.status, taken.intent.attempts) == (TransferStatus.UNKNOWN, 2)
    await journal.save(
        attrs.evolve(taken.intent, status=TransferStatus.SUCCEEDED), owner="w", lease_seconds=None
    )
    # Adopted once: the legacy id is gone, so a second adoption finds nothing.
    assert await journal.adopt(iid("old", LEGACY_ACCOUNT), account=OTHER_ACCOUNT) is None


async def test_adopt_refuses_a_row_that_is_not_legacy(journal: Journal) -> None:
    """A row that already has an account is never moved to another one."""
    await journal.claim(make_intent("k1"), owner="a", lease_seconds=LEASE)
    before = await journal.get(iid("k1"))
    assert await journal.adopt(iid("k1"), account=OTHER_ACCOUNT) is None
    assert await journal.get(iid("k1")) == before
    assert await journal.get(iid("k1", OTHER_ACCOUNT)) is None
    assert await journal.adopt(iid("nope", LEGACY_ACCOUNT), account=ACCOUNT) is None
    assert await journal.get(iid("nope")) is None


async def test_adopt_refuses_when_the_account_has_the_key_already(journal: Journal) -> None:
    """If the account already has an intent under the legacy row's key, adopt() changes
    neither row: both stay as they were, under their own ids."""
    await journal.claim(make_intent("k1", account=LEGACY_ACCOUNT), owner="a", lease_seconds=LEASE)
    await journal.claim(make_intent("k1"), owner="b", lease_seconds=LEASE)
    legacy_before = await journal.get(iid("k1", LEGACY_ACCOUNT))
    mine_before = await journal.get(iid("k1"))
    assert legacy_before is not None
    assert mine_before is not None
    assert await journal.adopt(iid("k1", LEGACY_ACCOUNT), account=ACCOUNT) is None
    assert await journal.get(iid("k1", LEGACY_ACCOUNT)) == legacy_before
    assert await journal.get(iid("k1")) == mine_before
    assert len(await journal.find("k1")) == 2
    # Another account without the key may still adopt it.
    adopted = await journal.adopt(iid("k1", LEGACY_ACCOUNT), account=OTHER_ACCOUNT)
    assert adopted is not None
    assert adopted.id == iid("k1", OTHER_ACCOUNT)


# -- group commit (the durable journals) ---------------------------------------------------


async def test_concurrent_writes_share_commits_and_each_is_durable_on_return(
    journal: Journal,
) -> None:
    """Fifty concurrent claims take fewer commits than claims, and every claim is readable
    (from the journal's own store) the moment its call returns."""
    commits_before = getattr(journal, "commits", None)
    seen_on_return: list[bool] = []

    async def claim(n: int) -> None:
        await journal.claim(make_intent(f"g{n}"), owner=f"w{n}", lease_seconds=LEASE)
        seen_on_return.append(await journal.get(iid(f"g{n}")) is not None)

    async with anyio.create_task_group() as tg:
        for n in range(50):
            tg.start_soon(claim, n)
    assert seen_on_return == [True] * 50
    if commits_before is not None:  # MemoryJournal has nothing to commit
        assert journal.commits - commits_before < 50  # type: ignore[attr-defined]


async def test_a_refused_write_does_not_undo_its_neighbours(journal: Journal) -> None:
    """In one group, a save refused for a lost lease fails alone; the others are kept."""
    await journal.claim(make_intent("mine"), owner="a", lease_seconds=LEASE)
    outcomes: dict[str, object] = {}

    async def intruder() -> None:
        stored = await journal.get(iid("mine"))
        assert stored is not None
        try:
            await journal.save(
                attrs.evolve(stored, status=TransferStatus.SUCCEEDED), owner="b", lease_seconds=None
            )
        except LeaseLostError as exc:
            outcomes["intruder"] = exc

    async def neighbour(n: int) -> None:
        outcomes[f"n{n}"] = await journal.claim(
            make_intent(f"n{n}"), owner="c", lease_seconds=LEASE
        )

    async with anyio.create_task_group() as tg:
        tg.start_soon(intruder)
        for n in range(10):
            tg.start_soon(neighbour, n)
    assert isinstance(outcomes["intruder"], LeaseLostError)
    assert {i.key for i in await journal.list()} >= {f"n{n}" for n in range(10)}
    stored = await journal.get(iid("mine"))
    assert stored is not None
    assert stored.status is TransferStatus.PENDING


async def test_sqlite_group_commit_is_on_disk_for_each_caller(tmp_path: Path) -> None:
    """Under concurrency, each claim is visible to a separate connection the moment it returns."""
    path = tmp_path / "j.sqlite3"
    journal = SqliteJournal(path)
    await journal.open()
    missing: list[str] = []

    async def claim(n: int) -> None:
        await journal.claim(make_intent(f"d{n}"), owner="a", lease_seconds=LEASE)
        with closing(sqlite3.connect(path)) as other, other:
            row = other.execute("SELECT 1 FROM intents WHERE key = ?", (f"d{n}",)).fetchone()
        if row is None:
            missing.append(f"d{n}")

    try:
        async with anyio.create_task_group() as tg:
            for n in range(30):
                tg.start_soon(claim, n)
        assert journal.commits < 30
    finally:
        await journal.aclose()
    assert missing == []


async def group_answers(
    journal: Journal, failing: Callable[[Any], object], claims: list[tuple[str, str]]
) -> dict[str, BaseException | None]:
    """Claim ``first`` alone, then make the ``claims`` (key, owner) and a write that runs
    ``failing`` at once, queued behind it in one group; each caller's answer by ``key/owner``
    (``m`` for the failing write): ``None`` if it was written, else its error."""
    answers: dict[str, BaseException | None] = {}

    async def claim(key: str, owner: str) -> None:
        try:
            await journal.claim(make_intent(key), owner=owner, lease_seconds=LEASE)
        except JournalError as exc:
            answers[f"{key}/{owner}"] = exc
        else:
            answers[f"{key}/{owner}"] = None

    async def fail() -> None:
        try:
            await journal._write(failing, key="m")  # type: ignore[attr-defined]
        except JournalError as exc:
            answers["m"] = exc

    async with anyio.create_task_group() as tg:
        tg.start_soon(claim, "first", "a")  # commits alone; the rest queue behind it
        await anyio.lowlevel.checkpoint()
        for key, owner in claims:
            tg.start_soon(claim, key, owner)
        tg.start_soon(fail)
    return answers


async def test_sqlite_answers_match_the_disk_when_sqlite_ends_a_transaction(
    tmp_path: Path,
) -> None:
    """When SQLite itself rolls a transaction back (disk full, I/O error), every write in it
    fails and none is on disk, rather than neighbours reported failed yet kept; a claim the
    batch's one-statement write already committed is reported written, and is."""
    path = tmp_path / "j.sqlite3"
    journal = SqliteJournal(path)
    await journal.open()

    def disk_full(db: sqlite3.Connection) -> None:
        db.execute("ROLLBACK")  # what SQLite does on SQLITE_FULL or SQLITE_IOERR
        raise sqlite3.OperationalError("database or disk is full")

    try:
        # One key twice: both run in the transaction. A new key, "z": written by the one
        # statement, first.
        answers = await group_answers(journal, disk_full, [("a", "a"), ("a", "b"), ("z", "a")])
    finally:
        await journal.aclose()
    assert answers["first/a"] is None
    assert answers["z/a"] is None
    assert all(isinstance(answers[k], JournalError) for k in ("a/a", "a/b", "m"))
    with closing(sqlite3.connect(path)) as other, other:
        keys = {row[0] for row in other.execute("SELECT key FROM intents")}
    assert keys == {"first", "z"}


async def _held_group(journal: SqliteJournal, queue: list[functools.partial[object]]) -> list[str]:
    """Run ``queue``'s writes as one group commit (queued behind a commit held open); return
    the statements that group's commit ran, as SQLite's trace saw them."""
    statements: list[str] = []
    held, release = threading.Event(), threading.Event()

    def hold(db: sqlite3.Connection) -> None:
        held.set()
        release.wait(10)  # the writes below queue up behind this commit
        db.set_trace_callback(statements.append)

    async with anyio.create_task_group() as tg:
        tg.start_soon(functools.partial(journal._write, hold, key=""))
        await anyio.to_thread.run_sync(held.wait)
        for write in queue:
            tg.start_soon(write)
        for _ in range(5):
            await anyio.lowlevel.checkpoint()  # each has queued its write
        release.set()
    await journal._write(lambda db: db.set_trace_callback(None), key="")
    # The held commit's COMMIT and the BEGIN of the write that stops the trace surround it.
    assert (statements[0], statements[-1]) == ("COMMIT", "BEGIN IMMEDIATE")
    return statements[1:-1]


async def test_sqlite_commits_a_groups_claims_and_saves_in_one_statement(
    tmp_path: Path,
) -> None:
    """New claims and saves by their lease holders are written, and committed, by one
    statement, and each gets the answer it would get alone."""
    journal = SqliteJournal(tmp_path / "j.sqlite3")
    await journal.open()
    answers: dict[str, Claim | None] = {}

    async def claim(key: str) -> None:
        answers[key] = await journal.claim(make_intent(key), owner="b", lease_seconds=LEASE)

    async def save(intent: Intent) -> None:
        done = attrs.evolve(intent, status=TransferStatus.SUCCEEDED, transfer_id="t-1")
        answers[intent.key] = await journal.save(done, owner="a", lease_seconds=None)

    try:
        saved = [
            (await journal.claim(make_intent(k), owner="a", lease_seconds=LEASE)).intent
            for k in ("saved1", "saved2")
        ]
        queue = [functools.partial(claim, f"new{n}") for n in range(5)]
        queue += [functools.partial(save, intent) for intent in saved]
        statements = await _held_group(journal, queue)
    finally:
        await journal.aclose()

    assert len(statements) == 1, statements  # no BEGIN, no COMMIT: it commits itself
    assert statements[0].startswith("INSERT INTO intents")
    for n in range(5):
        answer = answers[f"new{n}"]
        assert isinstance(answer, Claim)
        assert (answer.created, answer.owned, answer.intent.lease_owner) == (True, True, "b")
    with closing(sqlite3.connect(tmp_path / "j.sqlite3")) as other, other:
        rows = {r[0]: r[1:] for r in other.execute("SELECT key, status, lease_owner FROM intents")}
    assert rows["saved1"] == rows["saved2"] == (TransferStatus.SUCCEEDED.value, None)
    assert all(rows[f"new{n}"] == (TransferStatus.PENDING.value, "b") for n in range(5))


@pytest.mark.parametrize(
    "refused",
    ["claim of a leased key", "save by another", "save of a released key", "save of a missing key"],
)
async def test_sqlite_one_refused_write_keeps_a_group_from_writing_it(
    tmp_path: Path, refused: str
) -> None:
    """A group whose only refusal is one write: that write gets the refusal it would get
    alone and leaves the file as it was; the group's other writes are written."""
    journal = SqliteJournal(tmp_path / "j.sqlite3")
    await journal.open()
    answers: dict[str, object] = {}

    async def claim(key: str, owner: str) -> None:
        answers[key] = await journal.claim(make_intent(key), owner=owner, lease_seconds=LEASE)

    async def save(intent: Intent, owner: str) -> None:
        done = attrs.evolve(intent, status=TransferStatus.SUCCEEDED, transfer_id="t-1")
        try:
            await journal.save(done, owner=owner, lease_seconds=None)
        except LeaseLostError as exc:
            answers[intent.key] = exc

    try:
        target = (await journal.claim(make_intent("target"), owner="a", lease_seconds=LEASE)).intent
        if refused == "save of a released key":
            await journal.release(iid("target"), owner="a")
        before = await journal.get(iid("target"))
        odd = {
            "claim of a leased key": functools.partial(claim, "target", "b"),
            "save by another": functools.partial(save, target, "b"),
            "save of a released key": functools.partial(save, target, "a"),
            "save of a missing key": functools.partial(save, make_intent("ghost"), "a"),
        }[refused]
        await _held_group(
            journal, [functools.partial(claim, f"new{n}", "b") for n in range(3)] + [odd]
        )
        after, ghost = await journal.get(iid("target")), await journal.get(iid("ghost"))
    finally:
        await journal.aclose()

    assert all(isinstance(answers[f"new{n}"], Claim) for n in range(3))
    if refused == "claim of a leased key":
        answer = answers["target"]
        assert isinstance(answer, Claim)
        assert (answer.created, answer.owned) == (False, False)
    else:
        assert isinstance(
            answers["ghost" if refused.endswith("missing key") else "target"], LeaseLostError
        )
    assert after == before  # untouched
    assert ghost is None


async def test_sqlite_a_refused_write_in_a_group_gets_its_own_answer(tmp_path: Path) -> None:
    """When a group holds a claim of a stored key, two claims of one key, a save by a writer
    without the lease and a save of a missing key, nothing of the one-statement write is kept
    and every write runs alone, with the answer it would get alone."""
    journal = SqliteJournal(tmp_path / "j.sqlite3")
    await journal.open()
    answers: dict[str, Claim | LeaseLostError | str] = {}

    async def claim(key: str, owner: str) -> None:
        answers[f"{key}/{owner}"] = await journal.claim(
            make_intent(key), owner=owner, lease_seconds=LEASE
        )

    async def save(intent: Intent, owner: str) -> None:
        try:
            await journal.save(
                attrs.evolve(intent, status=TransferStatus.SUCCEEDED),
                owner=owner,
                lease_seconds=None,
            )
        except LeaseLostError as exc:
            answers[f"{intent.key}/{owner}"] = exc
        else:
            answers[f"{intent.key}/{owner}"] = "saved"

    try:
        stored = {
            k: (await journal.claim(make_intent(k), owner="a", lease_seconds=LEASE)).intent
            for k in ("leased", "saved", "stolen")
        }
        queue = [functools.partial(claim, f"new{n}", "b") for n in range(5)]
        queue += [
            functools.partial(claim, "twice", "b"),
            functools.partial(claim, "twice", "c"),
            functools.partial(claim, "leased", "b"),  # stored, leased to a
            functools.partial(save, stored["saved"], "a"),
            functools.partial(save, stored["stolen"], "b"),  # not b's lease
            functools.partial(save, make_intent("ghost"), "a"),  # never claimed
        ]
        statements = await _held_group(journal, queue)
    finally:
        await journal.aclose()

    assert statements[0].startswith("INSERT INTO intents")  # tried, refused as a whole
    assert "BEGIN IMMEDIATE" in statements  # then write by write

    def claimed(name: str) -> tuple[bool, bool]:
        answer = answers[name]
        assert isinstance(answer, Claim)
        return answer.created, answer.owned

    assert [claimed(f"new{n}/b") for n in range(5)] == [(True, True)] * 5
    assert sorted([claimed("twice/b"), claimed("twice/c")]) == [(False, False), (True, True)]
    assert claimed("leased/b") == (False, False)
    assert answers["saved/a"] == "saved"
    assert isinstance(answers["stolen/b"], LeaseLostError)
    assert isinstance(answers["ghost/a"], LeaseLostError)
    with closing(sqlite3.connect(tmp_path / "j.sqlite3")) as other, other:
        rows = dict(other.execute("SELECT key, status FROM intents"))
    assert rows["saved"] == TransferStatus.SUCCEEDED.value
    assert rows["stolen"] == TransferStatus.PENDING.value
    assert "ghost" not in rows
    assert {f"new{n}" for n in range(5)} <= rows.keys()


async def test_the_bound_on_an_intents_attempts_is_stored_and_read_back(journal: Journal) -> None:
    """`Intent.attempts_end_venue_ms` (where a settle window may start) survives a claim and a save
    exactly: resume() in another process counts an HTX settle window from it."""
    bound = 1_795_000_000_123
    claim = await journal.claim(
        attrs.evolve(make_intent(), attempts_end_venue_ms=bound), owner="w1", lease_seconds=60
    )
    assert claim.intent.attempts_end_venue_ms == bound
    assert (await journal.get(iid())).attempts_end_venue_ms == bound  # type: ignore[union-attr]
    later = bound + 70_000
    await journal.save(
        attrs.evolve(claim.intent, status=TransferStatus.IN_FLIGHT, attempts_end_venue_ms=later),
        owner="w1",
        lease_seconds=None,
    )
    stored = await journal.get(iid())
    assert stored is not None
    assert stored.attempts_end_venue_ms == later
