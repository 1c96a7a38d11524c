"""`xferkit batch PLAN`: plans of keyed transfers through `transfer_many`, on loopback fakes."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import anyio
import pytest

from xferkit.cli._plan import PlanError, PlanReader
from xferkit.journal import SqliteJournal
from xferkit.testing import Fault

from .conftest import CREDENTIALS, SECRETS, UNKNOWN_SPELLING, Fakes, invoke
from .test_transfer_cli import OUTCOME_FIELDS

SUMMARY_FIELDS = {
    "type",
    "plan",
    "journal",
    "rows",
    "succeeded",
    "replayed",
    "failed",
    "keys_reusable",
    "refused_by_code",
    "unknown",
    "errors",
    "retries",
    "elapsed_seconds",
    "exit_status",
}
CSV_PLAN = """\
venue,currency,amount,from_account,to_account,key,symbol,margin_account
xt,usdt,10,spot,usdt_futures,p-1,,
xt,USDT,0.25,usdt_futures,spot,p-2,,

xt,usdt,1.5,spot,margin,p-3,btc_usdt,
htx,usdt,7.125,spot,usdt_futures,p-4,,USDT
"""
JSONL_ROWS: list[dict[str, Any]] = [
    {"venue": "xt", "currency": "usdt", "amount": "3", "from_account": "spot",
     "to_account": "finance", "key": "j-1"},
    {"venue": "xt", "currency": "usdt", "amount": 0.1, "from_account": "finance",
     "to_account": "spot", "key": "j-2"},
    {"venue": "htx", "currency": "usdt", "amount": "2.5", "from_account": "spot",
     "to_account": "otc", "key": "j-3", "margin_account": None},
]  # fmt: skip


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def run_json(plan: Path, journal: Path, fakes: Fakes, *extra: str) -> tuple[int, list[Any]]:
    """Run `batch --json`; the exit status and the parsed JSON lines."""
    result = invoke("batch", plan, "--journal", journal, "--json", *extra, env=fakes.env)
    for secret in SECRETS:
        assert secret not in result.output
    return result.exit_code, [json.loads(line) for line in result.stdout.splitlines()]


def intents(journal: Path) -> dict[str, str]:
    """Key to status of every intent in the journal."""

    async def read() -> dict[str, str]:
        store = SqliteJournal(journal)
        await store.open()
        try:
            return {i.key: i.status.value for i in await store.list()}
        finally:
            await store.aclose()

    return anyio.run(read)


def test_a_csv_plan_runs_every_row_once(fakes: Fakes, tmp_path: Path) -> None:
    """A CSV plan on both venues (blank line, margin pair, HTX margin account) runs each row
    once: exit 0, one outcome line per row with its line number, and a summary."""
    plan = tmp_path / "plan.csv"
    plan.write_text(CSV_PLAN)
    journal = tmp_path / "journal.sqlite3"
    status, lines = run_json(plan, journal, fakes, "--concurrency", "3")
    assert status == 0, lines
    *outcomes, summary = lines
    assert {o["key"]: o["line"] for o in outcomes} == {"p-1": 2, "p-2": 3, "p-3": 5, "p-4": 6}
    assert {o["status"] for o in outcomes} == {"SUCCEEDED"}
    by_key = {o["key"]: o for o in outcomes}
    assert by_key["p-3"]["symbol"] == "btc_usdt"
    assert by_key["p-4"]["margin_account"] == "USDT"
    assert by_key["p-2"]["currency"] == "usdt"
    assert sorted(e.amount for e in fakes.xt.audit) == [Decimal("0.25"), Decimal("1.5"), 10]
    assert [e.amount for e in fakes.htx.audit] == [Decimal("7.125")]
    assert summary["type"] == "summary"
    assert (summary["rows"], summary["succeeded"], summary["exit_status"]) == (4, 4, 0)
    assert intents(journal) == dict.fromkeys(["p-1", "p-2", "p-3", "p-4"], "SUCCEEDED")


def test_a_jsonl_plan_reads_amounts_as_decimals(fakes: Fakes, tmp_path: Path) -> None:
    """A JSON-lines plan runs too, and a JSON number amount (0.1) reaches the venue exactly."""
    plan = write_jsonl(tmp_path / "plan.jsonl", JSONL_ROWS)
    status, lines = run_json(plan, tmp_path / "journal.sqlite3", fakes)
    assert status == 0, lines
    *outcomes, summary = lines
    assert {o["key"]: (o["line"], o["amount"]) for o in outcomes} == {
        "j-1": (1, "3"),
        "j-2": (2, "0.1"),
        "j-3": (3, "2.5"),
    }
    assert Decimal("0.1") in {e.amount for e in fakes.xt.audit}
    assert summary["succeeded"] == 3


def test_running_a_plan_again_sends_nothing(fakes: Fakes, tmp_path: Path) -> None:
    """Re-running a finished plan is a no-op: zero new transfer requests at the fakes, every
    outcome replayed, the refused row still refused, and the same exit status."""
    plan = tmp_path / "plan.ndjson"
    refused = {**JSONL_ROWS[0], "key": "j-big", "amount": "99999999"}
    write_jsonl(plan, [*JSONL_ROWS, refused])
    journal = tmp_path / "journal.sqlite3"
    first_status, _ = run_json(plan, journal, fakes)
    assert first_status == 1
    sent, executed = fakes.transfer_requests(), len(fakes.xt.audit) + len(fakes.htx.audit)
    assert (sent, executed) == (4, 3)
    status, again = run_json(plan, journal, fakes)
    assert status == 1
    assert fakes.transfer_requests() == sent
    assert len(fakes.xt.audit) + len(fakes.htx.audit) == executed
    *outcomes, summary = again
    assert all(o["replayed"] for o in outcomes)
    assert {o["key"]: o["status"] for o in outcomes} == {
        "j-1": "SUCCEEDED",
        "j-2": "SUCCEEDED",
        "j-3": "SUCCEEDED",
        "j-big": "FAILED",
    }
    assert (summary["replayed"], summary["retries"], summary["failed"]) == (4, 0, 1)


def test_json_lines_follow_the_documented_schema(fakes: Fakes, tmp_path: Path) -> None:
    """`--json` prints one outcome object per row (outcome fields plus type and line), then
    one summary object; refusals and unknowns carry an error object."""
    plan = tmp_path / "plan.csv"
    plan.write_text(
        "venue,currency,amount,from_account,to_account,key\n"
        "xt,usdt,1,spot,finance,s-ok\n"
        "xt,usdt,99999999,spot,finance,s-no\n"
        "htx,btc,0.5,spot,usdt_futures,s-unknown\n"
    )
    # The plan's only HTX request executes, its answer is lost, and its ledger row carries a
    # transferType spelling xferkit does not know: cannot tell.
    fakes.htx.transfer_types[("spot", "linear-swap")] = UNKNOWN_SPELLING
    fakes.htx_faults.force(Fault.DROP_AFTER)
    status, lines = run_json(plan, tmp_path / "journal.sqlite3", fakes)
    assert status == 1
    *outcomes, summary = lines
    assert len(outcomes) == 3
    for outcome in outcomes:
        assert set(outcome) == OUTCOME_FIELDS | {"type", "line"}
        assert outcome["type"] == "outcome"
        assert isinstance(outcome["line"], int)
        assert isinstance(outcome["amount"], str)
        assert isinstance(outcome["attempts"], int)
        assert isinstance(outcome["replayed"], bool)
    by_key = {o["key"]: o for o in outcomes}
    assert by_key["s-ok"]["error"] is None
    assert by_key["s-no"]["status"] == "FAILED"
    assert set(by_key["s-no"]["error"]) == {
        "kind",
        "code",
        "message",
        "http_status",
        "key_reusable",
    }
    assert by_key["s-no"]["error"]["code"] == "FUND_002"
    assert by_key["s-unknown"]["status"] == "UNKNOWN"
    assert by_key["s-unknown"]["error"]["kind"] == "TransferOutcomeUnknownError"
    assert set(summary) == SUMMARY_FIELDS
    assert summary["refused_by_code"] == {"FUND_002": 1}
    assert (summary["rows"], summary["succeeded"], summary["failed"]) == (3, 1, 1)
    assert (summary["unknown"], summary["errors"], summary["exit_status"]) == (1, 0, 1)


def test_the_summary_table_and_exit_status(fakes: Fakes, tmp_path: Path) -> None:
    """Without `--json`: exit 0 when all succeed; exit 1 with a table of the rows that did not
    succeed (line, key, why) and a closing line that says what to do."""
    journal = tmp_path / "journal.sqlite3"
    good = tmp_path / "good.csv"
    good.write_text("venue,currency,amount,from_account,to_account,key\nxt,usdt,1,spot,finance,g\n")
    ok = invoke("batch", good, "--journal", journal, env=fakes.env)
    assert ok.exit_code == 0, ok.output
    assert "all 1 transfer SUCCEEDED (0 replayed); exit status 0" in ok.stdout
    bad = tmp_path / "bad.csv"
    bad.write_text(
        "venue,currency,amount,from_account,to_account,key\n"
        "xt,usdt,1,spot,finance,g\n"
        "xt,usdt,99999999,spot,finance,big\n"
    )
    result = invoke("batch", bad, "--journal", journal, env=fakes.env)
    assert result.exit_code == 1, result.output
    out = result.stdout
    assert "did not succeed" in out
    assert "FUND_002 (InsufficientBalanceError)" in out
    assert "InsufficientBalanceError: FUND_002: insufficient balance" in out
    assert "1 of 2 did not succeed; exit status 1: 1 refused" in out


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("p.csv", "venue,currency,amount,from_account,to_account,key\n"
         "xt,usdt,1,spot,finance,a\nxt,usdt,2,spot,finance,b\n\nxt,usdt,1e5,spot,finance,c\n",
         "line 5: amount '1e5' is not a plain positive decimal"),
        ("p.csv", "venue,currency,amount,from_account,to_account,key\n"
         "xt,usdt,1,spot,finance,a\nxt,usdt,1,spot,finance,\n",
         "line 3: key is missing (every row needs one"),
        ("p.csv", "venue,currency,amount,from_account,to_account\nxt,usdt,1,spot,finance\n",
         "line 1: the header has no key column"),
        ("p.csv", "venue,currency,amount,from_account,to_account,key,memo\n",
         "line 1: unknown column 'memo'"),
        ("p.csv", "venue,currency,amount,from_account,to_account,key\n"
         "xt,usdt,1,spot,finance,a\nxt,usdt,1,spot,finance,b,extra\n",
         "line 3: 7 fields, but the header has 6"),
        ("p.csv", "venue,currency,amount,from_account,to_account,key\n"
         "xt,usdt,1,spot,finance,a\nkraken,usdt,1,spot,finance,b\n",
         "line 3: venue 'kraken' is not one of xt, htx"),
        ("p.csv", "venue,currency,amount,from_account,to_account,key\n"
         "xt,usdt,1,spot,finance,a\nxt,usdt,2,spot,finance,b\nxt,usdt,3,spot,finance,a\n",
         "line 4: key 'a' is also used on line 2"),
        ("p.jsonl", '{"venue":"xt","currency":"usdt","amount":"1","from_account":"spot",'
         '"to_account":"finance","key":"a"}\n\n{"venue":"xt",\n',
         "line 3: not valid JSON"),
        ("p.jsonl", '{"venue":"xt","currency":"usdt","amount":true,"from_account":"spot",'
         '"to_account":"finance","key":"a"}\n',
         "line 1: amount must be a decimal number or string, not bool"),
        ("p.jsonl", '{"venue":"xt","currency":"usdt","amount":NaN,"from_account":"spot",'
         '"to_account":"finance","key":"a"}\n',
         "line 1: not valid JSON"),
        ("p.jsonl", '{"venue":"htx","currency":"usdt","amount":"0.123456789",'
         '"from_account":"spot","to_account":"otc","key":"a"}\n',
         "line 1: HTX takes at most 8 decimal places"),
        ("p.txt", "venue,currency,amount,from_account,to_account,key\n",
         "cannot tell the format"),
    ],
)  # fmt: skip
def test_a_bad_plan_exits_2_naming_the_line(
    fakes: Fakes, tmp_path: Path, name: str, text: str, message: str
) -> None:
    """A bad row stops the batch before anything is sent: exit 2, the line number on stderr,
    no journal, no request."""
    plan = tmp_path / name
    plan.write_text(text)
    journal = tmp_path / "journal.sqlite3"
    result = invoke("batch", plan, "--journal", journal, env=fakes.env)
    assert result.exit_code == 2, result.output
    assert message in result.stderr
    assert result.stdout == ""
    assert not journal.exists()
    assert fakes.transfer_requests() == 0


def test_a_plan_needs_credentials_only_for_its_venues(fakes: Fakes, tmp_path: Path) -> None:
    """An XT-only plan runs without HTX credentials; a row on HTX without them is exit 2,
    naming the variables and the line."""
    plan = tmp_path / "plan.csv"
    plan.write_text("venue,currency,amount,from_account,to_account,key\nxt,usdt,1,spot,finance,a\n")
    xt_only = {k: v for k, v in fakes.env.items() if "_HTX_" not in k}
    journal = tmp_path / "journal.sqlite3"
    assert invoke("batch", plan, "--journal", journal, env=xt_only).exit_code == 0
    plan.write_text(plan.read_text() + "htx,usdt,1,spot,otc,b\n")
    result = invoke("batch", plan, "--journal", journal, env=xt_only)
    assert result.exit_code == 2
    assert "XFERKIT_HTX_ACCESS_KEY and XFERKIT_HTX_SECRET are not set" in result.stderr
    assert "from line 3" in result.stderr
    assert CREDENTIALS["XFERKIT_XT_SECRET"] not in result.output


def test_format_option_overrides_the_extension(fakes: Fakes, tmp_path: Path) -> None:
    """`--format jsonl` reads a plan whatever its name; an empty JSON-lines plan is exit 0."""
    plan = write_jsonl(tmp_path / "plan.txt", JSONL_ROWS[:1])
    status, lines = run_json(plan, tmp_path / "journal.sqlite3", fakes, "--format", "jsonl")
    assert status == 0
    assert lines[-1]["succeeded"] == 1
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n")
    status, lines = run_json(empty, tmp_path / "journal.sqlite3", fakes)
    assert (status, lines[-1]["rows"]) == (0, 0)


def test_the_plan_is_read_as_a_stream(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Rows come one at a time: the first row is yielded before a bad later line is read."""
    for name, value in CREDENTIALS.items():
        monkeypatch.setenv(name, value)
    plan = tmp_path / "plan.csv"
    plan.write_text(
        "venue,currency,amount,from_account,to_account,key\n"
        "xt,usdt,1,spot,finance,a\n"
        "xt,usdt,-1,spot,finance,b\n"
    )
    rows = PlanReader(plan, "csv", {}).rows()
    first = next(rows)
    assert (first.line, first.request.key, first.request.amount) == (2, "a", Decimal(1))
    with pytest.raises(PlanError, match="line 3"):
        next(rows)


def test_a_key_reused_for_another_transfer_is_not_sent(fakes: Fakes, tmp_path: Path) -> None:
    """An edited plan that gives a finished key another amount: that row is ERROR (not sent),
    the others run, and the exit status is 1."""
    journal = tmp_path / "journal.sqlite3"
    plan = write_jsonl(tmp_path / "plan.jsonl", JSONL_ROWS[:1])
    assert run_json(plan, journal, fakes)[0] == 0
    edited = [{**JSONL_ROWS[0], "amount": "4"}, {**JSONL_ROWS[0], "key": "j-new"}]
    status, lines = run_json(write_jsonl(plan, edited), journal, fakes)
    assert status == 1
    *outcomes, summary = lines
    by_key = {o["key"]: o for o in outcomes}
    assert by_key["j-1"]["status"] == "ERROR"
    assert by_key["j-1"]["error"]["kind"] == "IdempotencyConflictError"
    assert by_key["j-1"]["attempts"] == 0
    assert by_key["j-new"]["status"] == "SUCCEEDED"
    assert (summary["errors"], summary["succeeded"], summary["exit_status"]) == (1, 1, 1)
    assert sorted(e.amount for e in fakes.xt.audit) == [3, 3]
