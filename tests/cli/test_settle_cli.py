"""`xferkit journal settle|abandon|adopt|account`: what only a person can settle, from a shell."""

from __future__ import annotations

import json
from pathlib import Path

import anyio
import httpx
import pytest
from click.testing import CliRunner

import xferkit
from xferkit import TransferStatus
from xferkit.cli._app import app
from xferkit.journal import IntentId, SqliteJournal
from xferkit.testing import FakeTransport, FakeXT, Fault, FaultPlan, VirtualClock

KEY = "cli-settle-key-0001"
SECRET = "cli-settle-secret-do-not-leak-4d"
OTHER_KEY = "cli-settle-key-0002"
OTHER_SECRET = "cli-settle-secret-b-do-not-leak"
USDT = {"currency": "usdt", "amount": "10", "from_account": "spot", "to_account": "usdt_futures"}


async def _open_and_refused(path: Path) -> None:
    """``open``: executed, its answer lost (UNKNOWN). ``refused``: connection refused on every
    attempt (FAILED, key not spent). ``shared``: one key under two accounts."""
    clock = VirtualClock()
    plan = FaultPlan()
    fake = FakeXT(api_key=KEY, secret=SECRET, clock=clock, faults=plan)
    other = FakeXT(api_key=OTHER_KEY, secret=OTHER_SECRET, clock=clock, host="b.xt.test")
    retry = xferkit.RetryPolicy(max_attempts=1, deadline=None)
    async with httpx.AsyncClient(transport=FakeTransport(fake, other)) as http:
        async with xferkit.Client(
            xferkit.XT(KEY, SECRET), journal=path, http_client=http, clock=clock, retry=retry
        ) as client:
            plan.force(Fault.DROP_AFTER)
            with pytest.raises(xferkit.TransferOutcomeUnknownError):
                await client.transfer("xt", **USDT, key="open")
            plan.force(Fault.CONNECT_REFUSED)
            with pytest.raises(xferkit.VenueError):
                await client.transfer("xt", **USDT, key="refused")
            await client.transfer("xt", **USDT, key="shared")
        async with xferkit.Client(
            xferkit.XT(OTHER_KEY, OTHER_SECRET, base_url="https://b.xt.test"),
            journal=path,
            http_client=http,
            clock=clock,
        ) as client:
            await client.transfer("xt", **USDT, key="shared")


@pytest.fixture
def journal_path(tmp_path: Path) -> Path:
    path = tmp_path / "journal.sqlite3"
    anyio.run(_open_and_refused, path)
    return path


def run(path: Path, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["journal", *args, "--journal", str(path)])
    return result.exit_code, result.output


def stored(path: Path, key: str) -> xferkit.journal.Intent:
    async def read() -> xferkit.journal.Intent:
        journal = SqliteJournal(path)
        await journal.open()
        try:
            intent = await journal.get(IntentId("xt", xferkit.XT(KEY, SECRET).account, key))
        finally:
            await journal.aclose()
        assert intent is not None
        return intent

    return anyio.run(read)


def test_settle_succeeded_records_the_person_and_the_transfer_id(journal_path: Path) -> None:
    code, output = run(
        journal_path, "settle", "open", "--succeeded", "--transfer-id", "9001", "--by", "ops1",
        "--reason", "in XT history", "--json",
    )  # fmt: skip
    assert code == 0, output
    shown = json.loads(output)
    assert shown["status"] == "SUCCEEDED"
    assert shown["transfer_id"] == "9001"
    intent = stored(journal_path, "open")
    assert intent.settlement is not None
    assert (intent.settlement.by, intent.settlement.reason) == ("ops1", "in XT history")


def test_settle_failed_needs_a_reason_and_a_settled_intent_is_refused(journal_path: Path) -> None:
    code, output = run(journal_path, "settle", "open", "--failed")
    assert code == 2
    assert "--reason" in output
    code, output = run(journal_path, "settle", "open", "--failed", "--reason", "not in history")
    assert code == 0, output
    assert stored(journal_path, "open").status is TransferStatus.FAILED
    code, output = run(journal_path, "settle", "open", "--succeeded")
    assert code == 2
    assert "settled already" in output
    assert stored(journal_path, "open").status is TransferStatus.FAILED


def test_abandon_spends_a_never_processed_key_and_refuses_one_that_may_have_run(
    journal_path: Path,
) -> None:
    code, output = run(journal_path, "abandon", "open", "--reason", "compensated")
    assert code == 2
    assert "may have been sent" in output
    assert stored(journal_path, "open").status is TransferStatus.UNKNOWN
    code, output = run(journal_path, "abandon", "refused", "--reason", "compensated", "--by", "o")
    assert code == 0, output
    intent = stored(journal_path, "refused")
    assert intent.status is TransferStatus.FAILED
    assert intent.error is not None
    assert not intent.error.reusable  # the next call with the key no longer sends it


def test_a_key_under_two_accounts_needs_account_to_pick_one(journal_path: Path) -> None:
    code, output = run(journal_path, "show", "shared")
    assert code == 2
    assert "--account" in output
    mine = xferkit.XT(KEY, SECRET).account
    code, output = run(journal_path, "show", "shared", "--account", mine, "--json")
    assert code == 0, output
    assert json.loads(output)["account"] == mine


def test_account_names_the_environments_credentials_without_showing_them(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("XFERKIT_XT_API_KEY", KEY)
    monkeypatch.setenv("XFERKIT_XT_SECRET", SECRET)
    result = CliRunner().invoke(app, ["journal", "account", "--venue", "xt"])
    assert result.exit_code == 0, result.output
    assert result.output.strip() == xferkit.XT(KEY, SECRET).account
    assert KEY not in result.output
    assert SECRET not in result.output
