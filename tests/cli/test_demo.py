"""The main job: `xferkit demo` runs a faulted batch across XT and HTX, and its summary matches
what the fake venues' audits and the journal say."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import anyio
import pytest
from click.testing import CliRunner

import xferkit
from xferkit._demo import (
    DEMO_XT_API_KEY,
    DEMO_XT_SECRET,
    DemoVenues,
    demo_requests,
    run_demo,
)
from xferkit.cli._app import app
from xferkit.journal import Intent, SqliteJournal

from .conftest import subprocess_env


async def read_journal(path: Path) -> list[Intent]:
    """Every intent in the journal at ``path``."""
    store = SqliteJournal(path)
    await store.open()
    try:
        return await store.list()
    finally:
        await store.aclose()


async def test_demo_summary_matches_the_venue_audits(tmp_path: Path) -> None:
    """Under faults on both venues, the summary's counts are the fakes' audits: every success
    executed exactly once on XT (by bizId) and on HTX (by its unique amount), no refusal
    executed, and re-submitting the plan replayed every success."""
    venues = DemoVenues.create(fault_rate=0.3, seed=9)
    summary = await run_demo(
        transfers=80, concurrency=8, seed=9, journal_dir=tmp_path, venues=venues
    )
    assert summary.exactly_once
    plan = demo_requests(80, 9)
    journal = {i.key: i for i in await read_journal(summary.journal)}
    xt = xferkit.XT(DEMO_XT_API_KEY, DEMO_XT_SECRET)
    for request in plan:
        intent = journal[str(request.key)]
        if request.venue == "xt":
            biz_id = xt.biz_id(
                str(request.key),
                currency=request.currency,
                amount=request.amount,
                from_account=request.from_account,
                to_account=request.to_account,
                symbol=request.symbol,
            )
            assert intent.token == biz_id
            executed = venues.xt.executions_by_token()[biz_id]
        else:
            executed = venues.htx.executions_matching(
                request.from_account, request.to_account, request.currency, request.amount
            )
        if intent.status is xferkit.TransferStatus.UNKNOWN:
            # Refused after an earlier attempt may have executed: open, and moved at most once.
            assert intent.error is not None, intent
            assert executed <= 1
            continue
        assert executed == (1 if intent.status is xferkit.TransferStatus.SUCCEEDED else 0)
        assert intent.status.is_terminal
    for name, fake in (("xt", venues.xt), ("htx", venues.htx)):
        part = summary.venue(name)
        mine = [i for i in journal.values() if i.venue == name]
        assert part.transfers == 40
        assert part.executed == len(fake.audit)
        assert part.succeeded <= part.executed <= part.succeeded + part.left_for_operator
        assert part.left_for_operator == sum(1 for i in mine if i.status.value == "UNKNOWN")
        assert part.succeeded == sum(1 for i in mine if i.status.value == "SUCCEEDED")
        assert part.failed == sum(1 for i in mine if i.status.value == "FAILED")
        assert part.attempts == sum(i.attempts for i in mine)
        assert part.replayed_on_resubmit == part.succeeded
        assert part.faults == {f.value: n for f, n in venues.faults(name).injected.items() if n}
        assert sum(part.faults.values()) > 0
    assert summary.venue("htx").reconciled == sum(
        1 for i in journal.values() if i.venue == "htx" and i.ledger_ref is not None
    )
    assert summary.venue("xt").reconciled is None


def test_demo_command_prints_a_verified_table() -> None:
    """`xferkit demo` exits 0 with one column per venue and the verified verdict."""
    result = CliRunner().invoke(
        app, ["demo", "--transfers", "40", "--seed", "4"], env={"COLUMNS": "160"}
    )
    assert result.exit_code == 0, result.output
    assert "verified: the audits of both venues show" in result.output
    assert "settled through the HTX ledger" in result.output
    header = next(line for line in result.output.splitlines() if "xt" in line and "htx" in line)
    assert "total" in header


@pytest.mark.slow
def test_demo_runs_as_a_real_process_and_its_summary_matches_the_journal() -> None:
    """`python -m xferkit demo --json` completes in a subprocess with exit 0, and what it prints
    (from the fakes' audits) agrees with the journal it leaves behind."""
    done = subprocess.run(
        [sys.executable, "-m", "xferkit", "demo", "--transfers", "60", "--json"],
        capture_output=True,
        text=True,
        timeout=120,
        env=subprocess_env(),
        check=False,
    )
    assert done.returncode == 0, done.stderr
    summary: dict[str, Any] = json.loads(done.stdout)
    assert summary["exactly_once"] is True
    assert summary["transfers"] == 60
    intents = anyio.run(read_journal, Path(summary["journal"]))
    assert len(intents) == 60
    for name, part in summary["venues"].items():
        mine = [i for i in intents if i.venue == name]
        states = Counter(i.status.value for i in mine)
        assert part["transfers"] == len(mine) == 30
        assert part["executed"] == part["succeeded"] == states["SUCCEEDED"]
        assert part["failed"] == states["FAILED"]
        assert part["attempts"] == sum(i.attempts for i in mine)
        assert part["executed_twice"] == part["failed_but_executed"] == 0
        assert part["exactly_once"] is True
        failed = [i for i in mine if i.status is xferkit.TransferStatus.FAILED]
        refused = Counter(i.error.code for i in failed if i.error is not None)
        assert part["refused_by_code"] == dict(refused)
    reconciled = sum(1 for i in intents if i.venue == "htx" and i.ledger_ref is not None)
    assert summary["venues"]["htx"]["reconciled"] == reconciled
