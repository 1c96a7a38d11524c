"""`xferkit batch`: `--check`, every bad row, live retries, `--rate-limit` and Ctrl-C."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from rich.progress import Progress

from xferkit.cli import _batch
from xferkit.testing import Fault

from .conftest import SECRETS, Fakes, invoke, subprocess_env

HEADER = "venue,currency,amount,from_account,to_account,key,symbol\n"
BAD_PLAN = (
    HEADER
    + "xt,usdt,1,spot,finance,ok-1,\n"  # line 2
    + 'xt,usdt,2,spot,finance,ok-2,"x\ny"\n'  # lines 3-4: a quoted newline, bad symbol
    + "\n"  # line 5: blank
    + "xt,usdt,1e5,spot,finance,ok-3,\n"  # line 6: bad amount
    + "xt,usdt,1,spot\n"  # line 7: too few fields
    + "xt,usdt,3,spot,finance,ok-1,\n"  # line 8: the key of line 2 again
    + "xt,usdt,4,spot,finance,ok-4,\n"  # line 9: good
)


def htx_plan(path: Path, rows: int) -> Path:
    """A plan of ``rows`` HTX transfers, each with its own amount (so they may overlap)."""
    path.write_text(
        HEADER + "".join(f"htx,usdt,1.{i:04d},spot,otc,h-{i},\n" for i in range(1, rows + 1))
    )
    return path


@pytest.mark.parametrize("check", [True, False])
def test_every_bad_row_is_reported_with_its_physical_line(
    fakes: Fakes, tmp_path: Path, check: bool
) -> None:
    """`--check` and a real run both report every bad row (a quoted newline counted, the header
    line 1), one `Error:` line each, then exit 2 with no journal and no request."""
    plan = tmp_path / "plan.csv"
    plan.write_text(BAD_PLAN)
    journal = tmp_path / "journal.sqlite3"
    args = ["batch", plan, "--journal", journal, *(["--check"] if check else [])]
    result = invoke(*args, env=fakes.env)
    assert result.exit_code == 2, result.output
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert [e.split(":")[1].strip() for e in errors[:-1]] == [
        f"{plan}, line {n}" for n in (3, 6, 7, 8)
    ]
    assert "symbol applies only to margin" in errors[0]
    assert "'1e5'" in errors[1]
    assert "4 fields, but the header has 7" in errors[2]
    assert "also used on line 2" in errors[3]
    assert errors[-1] == f"Error: {plan}: 4 bad rows; nothing was sent"
    assert result.stdout == ""
    assert not journal.exists()
    assert fakes.transfer_requests() == 0


def test_check_accepts_a_good_plan_and_sends_nothing(fakes: Fakes, tmp_path: Path) -> None:
    """`--check` on a good plan exits 0 with one line on stdout, creating no journal."""
    plan = htx_plan(tmp_path / "plan.csv", 3)
    journal = tmp_path / "journal.sqlite3"
    result = invoke("batch", plan, "--check", "--journal", journal, env=fakes.env)
    assert result.exit_code == 0, result.output
    assert result.stdout == f"{plan}: 3 rows, all good; nothing was sent\n"
    assert not journal.exists()
    assert fakes.transfer_requests() == 0


def test_a_jsonl_run_reports_every_bad_line(fakes: Fakes, tmp_path: Path) -> None:
    """A JSON-lines plan with two bad lines names both before anything is sent."""
    plan = tmp_path / "plan.jsonl"
    good = {"venue": "xt", "currency": "usdt", "from_account": "spot", "to_account": "finance"}
    plan.write_text(
        json.dumps({**good, "amount": "1", "key": "a"})
        + "\nnot json\n"
        + json.dumps({**good, "amount": "1", "key": "b", "margin_acount": "x"})
        + "\n"
    )
    result = invoke("batch", plan, "--journal", tmp_path / "j", env=fakes.env)
    assert result.exit_code == 2
    assert "line 2: not valid JSON" in result.stderr
    assert "line 3: unknown field 'margin_acount'" in result.stderr
    assert "2 bad rows" in result.stderr
    assert fakes.transfer_requests() == 0


def test_retries_reach_the_progress_bar_before_the_row_finishes(
    fakes: Fakes, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A resent request counts as a retry on the progress bar while its row is still open,
    not only when it finishes."""
    seen: list[tuple[float, Any, Any]] = []
    real = _batch.progress_bar

    def recording(**kwargs: Any) -> Progress:
        progress = real(**kwargs)
        update = progress.update

        def record(task: Any, **fields: Any) -> None:
            update(task, **fields)
            state = progress.tasks[0]
            seen.append((state.completed, state.fields["retries"], state.fields["sent"]))

        monkeypatch.setattr(progress, "update", record)
        return progress

    monkeypatch.setattr(_batch, "progress_bar", recording)
    fakes.xt_faults.force(Fault.DROP_AFTER)  # the first answer is lost: resent, same bizId
    plan = tmp_path / "plan.csv"
    plan.write_text(HEADER + "xt,usdt,1,spot,finance,r-1,\n")
    result = invoke("batch", plan, "--journal", tmp_path / "j", "--json", env=fakes.env)
    assert result.exit_code == 0, result.output
    assert (0, 1, 2) in seen  # not finished, one retry, two requests sent
    assert seen[-1] == (1, 1, 2)
    assert json.loads(result.stdout.splitlines()[-1])["retries"] == 1


def test_rate_limit_lifts_htx_pace(fakes: Fakes, tmp_path: Path) -> None:
    """`--rate-limit htx=50` runs 20 HTX rows well under the 19 s the default 1/s takes."""
    plan = htx_plan(tmp_path / "plan.csv", 20)
    began = time.monotonic()
    result = invoke(
        "batch", plan, "--journal", tmp_path / "j", "--rate-limit", "htx=50", env=fakes.env
    )
    elapsed = time.monotonic() - began
    assert result.exit_code == 0, result.output
    assert len(fakes.htx.audit) == 20
    assert elapsed < 10, elapsed


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("htx=0", "positive number"),
        ("htx=-3", "positive number"),
        ("htx=fast", "positive number"),
        ("htx=inf", "positive number"),
        ("binance=5", "not VENUE=N"),
        ("htx", "not VENUE=N"),
    ],
)
def test_a_bad_rate_limit_is_a_usage_error(
    fakes: Fakes, tmp_path: Path, value: str, message: str
) -> None:
    """An unknown venue or a rate that is not a positive number is exit 2 before any send."""
    plan = htx_plan(tmp_path / "plan.csv", 2)
    journal = tmp_path / "journal.sqlite3"
    result = invoke("batch", plan, "--journal", journal, "--rate-limit", value, env=fakes.env)
    assert result.exit_code == 2
    assert "--rate-limit" in result.stderr
    assert message in result.stderr
    assert not journal.exists()
    assert fakes.transfer_requests() == 0


@pytest.mark.slow
def test_ctrl_c_ends_with_a_summary_and_how_to_continue(fakes: Fakes, tmp_path: Path) -> None:
    """SIGINT during a real `batch` process: exit 1, a summary of what finished, what is left
    and how to continue (rerun the plan or `xferkit resume`), and no traceback."""
    plan = htx_plan(tmp_path / "plan.csv", 40)  # at HTX's default 1/s: about 40 s
    journal = tmp_path / "journal.sqlite3"
    process = subprocess.Popen(  # noqa: S603 - this interpreter, arguments built here
        [sys.executable, "-m", "xferkit", "batch", str(plan), "--journal", str(journal), "--json"],
        env=subprocess_env(**fakes.env),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while len(fakes.htx.audit) < 3 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert len(fakes.htx.audit) >= 3
        process.send_signal(signal.SIGINT)
        stdout, stderr = process.communicate(timeout=60)
    finally:
        process.kill()
    assert process.returncode == 1, stderr
    assert "Traceback" not in stderr
    summary = json.loads(stdout.splitlines()[-1])
    assert summary["type"] == "summary"
    assert summary["interrupted"] is True
    assert summary["rows"] >= 2
    assert summary["rows"] + summary["not_finished"] == 40
    assert summary["not_finished"] >= 1
    assert set(summary["in_flight"]) <= {f"h-{i}" for i in range(1, 41)}
    assert "Interrupted:" in stderr
    assert f"xferkit batch {plan}" in stderr
    assert "xferkit resume" in stderr
    for secret in SECRETS:
        assert secret not in stdout + stderr


def test_the_check_stops_where_the_file_cannot_be_read_on(fakes: Fakes, tmp_path: Path) -> None:
    """Bad rows before broken CSV quoting are all reported, then the line the check stopped at."""
    plan = tmp_path / "plan.csv"
    plan.write_text(HEADER + 'xt,usdt,1e5,spot,finance,a,\nxt,usdt,1,spot,finance,"b\n')
    result = invoke("batch", plan, "--check", env=fakes.env)
    assert result.exit_code == 2
    assert result.stderr.splitlines() == [
        f"Error: {plan}, line 2: amount '1e5' is not a plain positive decimal; "
        "write it like '10' or '0.25'",
        f"Error: {plan}, line 3: not valid CSV: unexpected end of data",
        f"Error: {plan}: 1 bad row before line 3, where the file cannot be read on; "
        "nothing was sent",
    ]
