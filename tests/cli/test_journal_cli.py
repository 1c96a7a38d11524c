"""`xferkit journal ls|show|prune` on a journal filled by real transfers against the fake venues."""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from click.testing import CliRunner, Result

import xferkit
from xferkit.cli._app import app
from xferkit.cli._journal import parse_duration
from xferkit.journal import Intent, SqliteJournal
from xferkit.testing import FakeHTX, FakeTransport, FakeXT, Fault, FaultPlan, VirtualClock

XT_KEY = "cli-xt-key-0001"
XT_SECRET = "cli-xt-secret-do-not-leak-5e1f"
HTX_KEY = "cli-htx-key-0001"
HTX_SECRET = "cli-htx-secret-do-not-leak-8c2d"
RECENT = "xt-recent-[b]"  # markup-like on purpose: tables must print it as it is

LS_FIELDS = {
    "key",
    "venue",
    "account",
    "status",
    "amount",
    "currency",
    "from_account",
    "to_account",
    "symbol",
    "margin_account",
    "attempts",
    "transfer_id",
    "created_at",
    "finished_at",
    "error",
}
SHOW_FIELDS = LS_FIELDS | {
    "fingerprint",
    "token",
    "body",
    "ledger_ref",
    "first_sent_at",
    "first_sent_venue_ms",
    "last_sent_at",
    "lease_owner",
    "lease_expires_at",
    "settlement",
}
USDT: dict[str, Any] = {"currency": "usdt", "from_account": "spot", "to_account": "usdt_futures"}


async def _transfers_long_ago(path: Path) -> None:
    """Settled, refused, unknown and pending intents, all from 2023 (the virtual clock's start)."""
    clock = VirtualClock()
    plan = FaultPlan()
    fake_xt = FakeXT(api_key=XT_KEY, secret=XT_SECRET, clock=clock, faults=plan)
    fake_htx = FakeHTX(access_key=HTX_KEY, secret=HTX_SECRET, clock=clock)
    xt = xferkit.XT(XT_KEY, XT_SECRET, rate_limit=1000)
    htx = xferkit.HTX(HTX_KEY, HTX_SECRET, rate_limit=1000)
    async with (
        httpx.AsyncClient(transport=FakeTransport(fake_xt, fake_htx)) as http,
        xferkit.Client(
            xt,
            htx,
            journal=SqliteJournal(path, clock=clock),
            http_client=http,
            clock=clock,
            retry=xferkit.RetryPolicy(max_attempts=2, deadline=None),
        ) as client,
    ):
        await client.transfer("xt", amount="10", key="xt-ok", **USDT)
        await client.transfer(
            "htx",
            currency="btc",
            amount="0.5",
            from_account="spot",
            to_account="coin_futures",
            key="htx-ok",
        )
        with pytest.raises(xferkit.InsufficientBalanceError):
            await client.transfer("xt", amount="5000000", key="xt-refused", **USDT)
        plan.force(Fault.DROP_AFTER, times=2)
        with pytest.raises(xferkit.TransferOutcomeUnknownError):
            await client.transfer("xt", amount="20", key="xt-unknown", **USDT)
        # As a crash right after the claim leaves it: recorded, never sent.
        spec = xt.validate(amount="7", symbol=None, margin_account=None, **USDT)
        token = xt.idempotency_token("xt-pending", spec.fingerprint())
        pending = Intent(
            key="xt-pending",
            venue="xt",
            account=xt.account,
            fingerprint=spec.fingerprint(),
            params=spec.canonical_json(),
            token=token,
            body=xt.transfer_body(spec, token),
            created_at=datetime.fromtimestamp(clock.time(), tz=timezone.utc),
        )
        await client.journal.claim(pending, owner="crashed-worker", lease_seconds=1)
        await client.journal.release(pending.id, owner="crashed-worker")


async def _transfer_now(path: Path) -> None:
    """One settled transfer finished just now, inside any retention period."""
    clock = VirtualClock(start=time.time())
    fake_xt = FakeXT(api_key=XT_KEY, secret=XT_SECRET, clock=clock)
    async with (
        httpx.AsyncClient(transport=FakeTransport(fake_xt)) as http,
        xferkit.Client(
            xferkit.XT(XT_KEY, XT_SECRET),
            journal=SqliteJournal(path, clock=clock),
            http_client=http,
            clock=clock,
        ) as client,
    ):
        await client.transfer("xt", amount="3", key=RECENT, **USDT)


@pytest.fixture
def journal_file(tmp_path: Path) -> Path:
    """A journal with xt-ok, htx-ok (SUCCEEDED), xt-refused (FAILED), xt-unknown (UNKNOWN),
    xt-pending (PENDING), all from 2023, and RECENT (SUCCEEDED just now)."""
    path = tmp_path / "journal.sqlite3"
    anyio.run(_transfers_long_ago, path)
    anyio.run(_transfer_now, path)
    return path


def invoke(*args: str | Path, env: Mapping[str, str | None] | None = None) -> Result:
    """Run the CLI in-process, wide enough that table cells do not wrap."""
    environment = {"COLUMNS": "250", "XFERKIT_JOURNAL": None, **(env or {})}
    return CliRunner().invoke(app, [str(a) for a in args], env=environment, catch_exceptions=False)


def ls_json(journal: Path, *options: str) -> list[dict[str, object]]:
    result = invoke("journal", "ls", "--journal", journal, "--json", *options)
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert isinstance(rows, list)
    return rows


def test_ls_prints_a_table_of_every_intent(journal_file: Path) -> None:
    """The table lists every key with its state, route in unified names, and a summary line."""
    result = invoke("journal", "ls", "--journal", journal_file)
    assert result.exit_code == 0, result.output
    for key in ("xt-ok", "htx-ok", "xt-refused", "xt-unknown", "xt-pending", RECENT):
        assert key in result.stdout
    for header in ("state", "from → to", "transfer id", "created (UTC)", "finished (UTC)"):
        assert header in result.stdout
    assert "spot → coin_futures" in result.stdout
    assert "5000000" in result.stdout
    assert "6 intents: 1 PENDING, 3 SUCCEEDED, 1 FAILED, 1 UNKNOWN" in result.stdout
    assert "2 unresolved" in result.stdout


def test_ls_json_has_the_documented_schema(journal_file: Path) -> None:
    """Each object has exactly the documented fields, amounts as strings, times ISO-8601 UTC."""
    rows = ls_json(journal_file)
    assert len(rows) == 6
    by_key = {row["key"]: row for row in rows}
    for row in rows:
        assert set(row) == LS_FIELDS
        assert isinstance(row["amount"], str)
        created = datetime.fromisoformat(str(row["created_at"]))
        assert created.utcoffset() == timedelta(0)
    for key, row in by_key.items():  # each row's account is its API key's fingerprint
        venue = (
            xferkit.HTX(HTX_KEY, HTX_SECRET) if key == "htx-ok" else xferkit.XT(XT_KEY, XT_SECRET)
        )
        assert row["account"] == venue.account, key
    assert by_key["htx-ok"]["amount"] == "0.5"
    assert by_key["htx-ok"]["to_account"] == "coin_futures"
    assert by_key["xt-ok"]["status"] == "SUCCEEDED"
    assert by_key["xt-ok"]["finished_at"] is not None
    assert by_key["xt-pending"]["finished_at"] is None
    error = by_key["xt-refused"]["error"]
    assert isinstance(error, dict)
    assert set(error) == {"kind", "code", "message", "http_status", "key_reusable"}
    assert (error["kind"], error["http_status"]) == ("InsufficientBalanceError", 200)
    stamps = [(row["created_at"], row["key"]) for row in rows]
    assert stamps == sorted(stamps)  # oldest first


@pytest.mark.parametrize(
    ("options", "keys"),
    [
        (["--state", "failed"], {"xt-refused"}),
        (["--state", "SUCCEEDED", "--state", "FAILED"], {"xt-ok", "htx-ok", "xt-refused", RECENT}),
        (["--unresolved"], {"xt-unknown", "xt-pending"}),
        (["--unresolved", "--state", "FAILED"], {"xt-unknown", "xt-pending", "xt-refused"}),
    ],
)
def test_ls_filters_by_state(journal_file: Path, options: list[str], keys: set[str]) -> None:
    """--state (any case, repeatable) and --unresolved select intents; together they add up."""
    assert {row["key"] for row in ls_json(journal_file, *options)} == keys


def test_ls_exits_zero_with_unresolved_intents_and_limits_to_the_oldest(
    journal_file: Path,
) -> None:
    """ls reports without judging (exit 0 despite unresolved intents); --limit keeps the oldest."""
    everything = ls_json(journal_file)
    assert ls_json(journal_file, "--limit", "2") == everything[:2]
    result = invoke("journal", "ls", "--journal", journal_file, "--unresolved")
    assert result.exit_code == 0


def test_show_prints_every_field_and_the_stored_error(journal_file: Path) -> None:
    """show --json has every field; the table shows the refusal, never a credential."""
    result = invoke("journal", "show", "xt-refused", "--journal", journal_file, "--json")
    assert result.exit_code == 0, result.output
    intent = json.loads(result.stdout)
    assert set(intent) == SHOW_FIELDS
    assert intent["status"] == "FAILED"
    assert intent["error"]["kind"] == "InsufficientBalanceError"
    assert json.loads(intent["body"])["bizId"] == intent["token"]
    assert intent["account"] == xferkit.XT(XT_KEY, XT_SECRET).account
    assert intent["settlement"] is None
    table = invoke("journal", "show", "xt-refused", "--journal", journal_file)
    assert table.exit_code == 0, table.output
    assert "InsufficientBalanceError" in table.stdout
    assert intent["error"]["message"] in table.stdout
    assert "nothing moved" in table.stdout
    for secret in (XT_SECRET, HTX_SECRET):
        assert secret not in result.output
        assert secret not in table.output


def test_show_of_an_unknown_key_exits_1(journal_file: Path) -> None:
    """An unknown key is a "no" answer: exit 1 and a message on stderr, nothing on stdout."""
    result = invoke("journal", "show", "no-such-key", "--journal", journal_file, "--json")
    assert result.exit_code == 1
    assert "no-such-key" in result.stderr
    assert result.stdout == ""


def test_prune_deletes_old_settled_intents_and_keeps_unresolved_ones(journal_file: Path) -> None:
    """prune --older-than 30d deletes the 2023 SUCCEEDED/FAILED ones; unresolved and recent stay."""
    result = invoke("journal", "prune", "--older-than", "30d", "--journal", journal_file, "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["deleted"] == 3
    cutoff = datetime.fromisoformat(report["finished_before"])
    assert abs(datetime.now(timezone.utc) - timedelta(days=30) - cutoff) < timedelta(minutes=1)
    assert {row["key"] for row in ls_json(journal_file)} == {"xt-unknown", "xt-pending", RECENT}
    again = invoke("journal", "prune", "--older-than", "1h", "--journal", journal_file)
    assert again.exit_code == 0, again.output
    assert "deleted 0 settled intents" in again.stdout


@pytest.mark.parametrize("span", ["59m", "30", "d", "-1d", "1y"])
def test_prune_refuses_short_or_malformed_retention(journal_file: Path, span: str) -> None:
    """Below one hour, or not a duration: usage error, exit 2, nothing deleted."""
    result = invoke("journal", "prune", "--older-than", span, "--journal", journal_file)
    assert result.exit_code == 2
    assert "--older-than" in result.stderr
    assert len(ls_json(journal_file)) == 6


def test_durations_combine_units() -> None:
    """Durations add their parts: 1d12h is 36 hours, 2w is 14 days."""
    assert parse_duration("1d12h") == timedelta(hours=36)
    assert parse_duration("2W") == timedelta(days=14)


@pytest.mark.parametrize(
    "args", [["ls"], ["show", "xt-ok"], ["prune", "--older-than", "30d"], ["ls", "--json"]]
)
def test_a_missing_journal_is_an_error_and_is_not_created(tmp_path: Path, args: list[str]) -> None:
    """A path with no journal gives exit 2 and "no journal at PATH"; no file appears."""
    missing = tmp_path / "nowhere" / "journal.sqlite3"
    result = invoke("journal", *args, "--journal", missing)
    assert result.exit_code == 2
    assert f"no journal at {missing}" in result.stderr
    assert not missing.parent.exists()


def test_journal_path_from_group_option_env_var_and_subcommand(
    journal_file: Path, tmp_path: Path
) -> None:
    """$XFERKIT_JOURNAL and the group's --journal pick the file; a subcommand's --journal wins."""
    other = tmp_path / "other.sqlite3"
    via_env = invoke("journal", "ls", "--json", env={"XFERKIT_JOURNAL": str(journal_file)})
    assert via_env.exit_code == 0, via_env.output
    assert len(json.loads(via_env.stdout)) == 6
    via_group = invoke("journal", "--journal", journal_file, "show", "xt-ok", "--json")
    assert via_group.exit_code == 0, via_group.output
    overridden = invoke("journal", "--journal", journal_file, "ls", "--journal", other)
    assert overridden.exit_code == 2
    assert str(other) in overridden.stderr
