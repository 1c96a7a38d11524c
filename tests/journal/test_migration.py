"""Journals from xferkit 0.1 (schema 1, keyed by key alone) upgrade without losing a row, and
a row whose account cannot be established is never sent, nor replayed, under credentials that
cannot be shown to own it (issue 15)."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from datetime import datetime, timezone
from pathlib import Path

import asyncpg
import httpx
import pytest

import xferkit
from xferkit import Confirmation, TransferStatus
from xferkit.journal import LEGACY_ACCOUNT, IntentId, SqliteJournal
from xferkit.journal._base import to_timestamp
from xferkit.testing import FakeTransport, FakeXT, VirtualClock

from ..postgres import drop_schema, require_postgres, unique_schema

API_KEY = "legacy-api-key-0001"
SECRET = "legacy-secret-do-not-leak-51f0"
HTX_KEY = "legacy-htx-access-key"
HTX_SECRET = "legacy-htx-secret-9b2e"
ARGS = {"currency": "usdt", "amount": "10", "from_account": "spot", "to_account": "usdt_futures"}

# The schema xferkit 0.1 created, as it shipped: the fixture an upgrade starts from.
V1_SQLITE = """
CREATE TABLE intents (
    key TEXT PRIMARY KEY, venue TEXT NOT NULL, fingerprint TEXT NOT NULL,
    params TEXT NOT NULL, token TEXT, body TEXT NOT NULL, status TEXT NOT NULL,
    attempts INTEGER NOT NULL, transfer_id TEXT, error TEXT, ledger_ref TEXT,
    created_at TEXT NOT NULL, first_sent_at TEXT, first_sent_venue_ms INTEGER,
    last_sent_at TEXT, finished_at TEXT, lease_owner TEXT, lease_expires_at TEXT
);
CREATE INDEX intents_status ON intents (status, created_at);
CREATE UNIQUE INDEX intents_ledger_ref ON intents (venue, ledger_ref) WHERE ledger_ref IS NOT NULL;
PRAGMA user_version = 1;
"""
_V1_INSERT = (
    "INSERT INTO intents (key, venue, fingerprint, params, token, body, status, attempts, "
    "created_at, first_sent_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
NOW = datetime(2026, 11, 20, 10, 0, tzinfo=timezone.utc)


def xt() -> xferkit.XT:
    return xferkit.XT(API_KEY, SECRET, rate_limit=10_000)


def htx() -> xferkit.HTX:
    return xferkit.HTX(HTX_KEY, HTX_SECRET)


def legacy_row(
    key: str, venue: str = "xt", status: TransferStatus = TransferStatus.UNKNOWN
) -> tuple[object, ...]:
    """A row as xferkit 0.1 wrote it: on XT with the bizId derived from (api key, key)."""
    module: xferkit.XT | xferkit.HTX = xt() if venue == "xt" else htx()
    spec = module.validate(**ARGS, symbol=None, margin_account=None)
    token = module.legacy_token(key)
    attempts = 0 if status is TransferStatus.PENDING else 1
    sent = None if status is TransferStatus.PENDING else to_timestamp(NOW)
    body = module.transfer_body(spec, token)
    return (key, venue, spec.fingerprint(), spec.canonical_json(), token, body, status.value,
            attempts, to_timestamp(NOW), sent)  # fmt: skip


@pytest.fixture
def v1_journal(tmp_path: Path) -> Path:
    path = tmp_path / "journal.sqlite3"
    db = sqlite3.connect(path)
    db.executescript(V1_SQLITE)
    db.executemany(
        _V1_INSERT,
        [
            legacy_row("xt-open"),
            legacy_row("xt-never-sent", status=TransferStatus.PENDING),
            legacy_row("htx-done", "htx", TransferStatus.SUCCEEDED),
        ],
    )
    db.commit()
    db.close()
    return path


async def test_an_upgraded_sqlite_journal_keeps_every_row_with_its_account_unknown(
    v1_journal: Path,
) -> None:
    journal = SqliteJournal(v1_journal)
    await journal.open()
    try:
        rows = await journal.list()
        stored = await journal.get(IntentId("xt", LEGACY_ACCOUNT, "xt-open"))
    finally:
        await journal.aclose()
    assert {r.key for r in rows} == {"xt-open", "xt-never-sent", "htx-done"}
    assert {r.account for r in rows} == {LEGACY_ACCOUNT}
    assert stored is not None
    assert stored.token == xt().legacy_token("xt-open")  # its bizId is kept
    with closing(sqlite3.connect(v1_journal)) as db:
        assert db.execute("PRAGMA user_version").fetchone() == (3,)


async def send_as_xferkit_0_1(
    http_client: httpx.AsyncClient, clock: VirtualClock, key: str, amount: str
) -> None:
    """What another machine running xferkit 0.1 did: send a transfer under ``key`` with the
    bizId derived from (api key, key) alone, which executed."""
    spec = xt().validate(**{**ARGS, "amount": amount})
    request = xt().transfer_request(
        xt().transfer_body(spec, xt().legacy_token(key)), int(clock.time() * 1000)
    )
    answer = await http_client.request(
        request.method, request.url, headers=dict(request.headers), content=request.body
    )
    assert answer.json()["rc"] == 0


async def test_an_xt_row_is_adopted_by_the_api_key_its_bizid_proves_and_settles_once(
    v1_journal: Path,
) -> None:
    """The open XT row's bizId was derived from this API key: the client adopts it, and
    resume() resends its stored body (the legacy bizId), which executes once."""
    clock = VirtualClock()
    fake = FakeXT(api_key=API_KEY, secret=SECRET, clock=clock)
    async with (
        httpx.AsyncClient(transport=FakeTransport(fake)) as http_client,
        xferkit.Client(xt(), journal=v1_journal, http_client=http_client, clock=clock) as client,
    ):
        by_key = {r.key: r for r in await client.resume()}
        replay = await client.transfer("xt", **ARGS, key="xt-open")
    assert by_key["xt-open"].status is TransferStatus.SUCCEEDED
    assert by_key["xt-open"].confirmed_by is Confirmation.VENUE
    assert replay.replayed
    assert fake.executions_by_token()[xt().legacy_token("xt-open")] == 1


async def test_a_legacy_bizid_the_venue_already_holds_is_left_for_a_person(
    v1_journal: Path,
) -> None:
    """A never-sent 0.1 row whose bizId (from the key alone) XT already holds, for a transfer
    of 99 under that key: neither SUCCEEDED nor FAILED would be true of this row's 10. It
    stays UNKNOWN across resumes until a person settles it."""
    clock = VirtualClock()
    fake = FakeXT(api_key=API_KEY, secret=SECRET, clock=clock)
    async with (
        httpx.AsyncClient(transport=FakeTransport(fake)) as http_client,
        xferkit.Client(xt(), journal=v1_journal, http_client=http_client, clock=clock) as client,
    ):
        await send_as_xferkit_0_1(http_client, clock, "xt-never-sent", amount="99")
        for _ in range(2):
            by_key = {r.key: r for r in await client.resume()}
            assert by_key["xt-never-sent"].status is TransferStatus.UNKNOWN
            assert "xferkit 0.1" in (by_key["xt-never-sent"].reason or "")
        settled = await client.settle(
            "xt-never-sent",
            status=TransferStatus.FAILED,
            reason="XT history shows 99 usdt under this bizId, not our 10",
            by="ops@example",
        )
        assert "xt-never-sent" not in {r.key for r in await client.resume()}
    assert settled.status is TransferStatus.FAILED
    assert len(fake.audit) == 2  # the 99 sent by 0.1, and xt-open: nothing twice
    assert fake.executions_by_token()[xt().legacy_token("xt-never-sent")] == 1


async def test_an_htx_row_whose_account_is_unknown_blocks_its_key_until_adopted(
    v1_journal: Path,
) -> None:
    """Nothing proves whose a 0.1 HTX row is: its key is refused before any I/O (a new
    intent would execute the transfer again), until a person adopts it for the account."""
    async with xferkit.Client(htx(), journal=v1_journal) as client:
        with pytest.raises(xferkit.IdempotencyConflictError, match=r"xferkit 0\.1"):
            await client.transfer("htx", **ARGS, key="htx-done")
    journal = SqliteJournal(v1_journal)
    await journal.open()
    try:
        adopted = await journal.adopt(
            IntentId("htx", LEGACY_ACCOUNT, "htx-done"), account=htx().account
        )
    finally:
        await journal.aclose()
    assert adopted is not None
    async with xferkit.Client(htx(), journal=v1_journal) as client:
        replay = await client.transfer("htx", **ARGS, key="htx-done")
    assert replay.replayed
    assert replay.status is TransferStatus.SUCCEEDED


async def test_an_upgraded_postgres_journal_keeps_every_row() -> None:
    dsn = await require_postgres()
    schema = unique_schema()
    connection = await asyncpg.connect(dsn)
    try:
        await connection.execute(f"CREATE SCHEMA {schema}")
        await connection.execute(f"CREATE TABLE {schema}.meta (version integer NOT NULL)")
        await connection.execute(f"INSERT INTO {schema}.meta VALUES (1)")  # noqa: S608
        await connection.execute(
            f"""CREATE TABLE {schema}.intents (
            key text PRIMARY KEY, venue text NOT NULL, fingerprint text NOT NULL,
            params text NOT NULL, token text, body text NOT NULL, status text NOT NULL,
            attempts integer NOT NULL, transfer_id text, error text, ledger_ref text,
            created_at timestamptz NOT NULL, first_sent_at timestamptz,
            first_sent_venue_ms bigint, last_sent_at timestamptz, finished_at timestamptz,
            lease_owner text, lease_expires_at timestamptz)"""
        )
        await connection.execute(
            f"""CREATE UNIQUE INDEX intents_ledger_ref ON {schema}.intents (venue, ledger_ref)
            WHERE ledger_ref IS NOT NULL"""
        )
        for row in (legacy_row("xt-open"), legacy_row("htx-done", "htx", TransferStatus.SUCCEEDED)):
            await connection.execute(
                f"""INSERT INTO {schema}.intents (key, venue, fingerprint, params, token, body,
                status, attempts, created_at, first_sent_at)
                VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)""",  # noqa: S608
                *row[:8],
                NOW,
                None if row[9] is None else NOW,
            )
        journal = xferkit.PostgresJournal(dsn, schema=schema)
        await journal.open()
        try:
            rows = await journal.list()
            adopted = await journal.adopt(
                IntentId("xt", LEGACY_ACCOUNT, "xt-open"), account=xt().account
            )
            mine = await journal.list(accounts=[("xt", xt().account)])
        finally:
            await journal.aclose()
        version = await connection.fetchval(f"SELECT max(version) FROM {schema}.meta")  # noqa: S608
    finally:
        await connection.close()
        await drop_schema(dsn, schema)
    assert {(r.key, r.account) for r in rows} == {
        ("xt-open", LEGACY_ACCOUNT),
        ("htx-done", LEGACY_ACCOUNT),
    }
    assert adopted is not None
    assert [r.key for r in mine] == ["xt-open"]
    assert version == 4


async def test_a_schema_2_sqlite_journal_gains_attempts_end_venue_ms_and_keeps_its_rows(
    tmp_path: Path,
) -> None:
    """A journal from before `Intent.attempts_end_venue_ms` (schema 2) is migrated in place: its
    rows are kept with the bound unknown (resume() then falls back to a later one), and the
    new column is written from then on."""
    path = tmp_path / "journal.sqlite3"
    journal = SqliteJournal(path)
    await journal.open()
    intent = xferkit.journal.Intent(
        key="open",
        venue="xt",
        account=xt().account,
        fingerprint="f" * 64,
        params='{"amount":"10"}',
        token="biz",
        body="{}",
        created_at=NOW,
        status=TransferStatus.IN_FLIGHT,
        attempts=1,
    )
    await journal.claim(intent, owner="w", lease_seconds=60)
    await journal.aclose()
    db = sqlite3.connect(path)
    db.execute("ALTER TABLE intents DROP COLUMN attempts_end_venue_ms")  # as schema 2 had it
    db.execute("PRAGMA user_version = 2")
    db.commit()
    db.close()
    journal = SqliteJournal(path)
    await journal.open()
    try:
        stored = await journal.get(intent.id)
        assert stored is not None
        assert stored.attempts_end_venue_ms is None
        assert stored.status is TransferStatus.IN_FLIGHT
        await journal.save(stored, owner="w", lease_seconds=60)  # still w's lease
    finally:
        await journal.aclose()
    with closing(sqlite3.connect(path)) as db:
        assert db.execute("PRAGMA user_version").fetchone() == (3,)
        assert db.execute("SELECT count(*) FROM movements").fetchone() == (0,)  # schema 3 too
