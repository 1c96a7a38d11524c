"""The main job: `xferkit demo` runs a faulted batch and its summary matches the venue's audit."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from xferkit._cli import app
from xferkit._demo import run_demo


async def test_demo_summary_matches_the_venue_audit(tmp_path: Path) -> None:
    """The demo's counts come from the fake venue's audit and show exactly-once under faults."""
    summary = await run_demo(
        transfers=80, concurrency=8, fault_rate=0.3, seed=9, journal_dir=tmp_path
    )
    assert summary.exactly_once
    assert summary.executed == summary.succeeded
    assert summary.succeeded + summary.failed == 80
    assert sum(summary.faults.values()) > 0
    assert summary.replayed_on_resubmit == summary.succeeded  # re-running moved nothing
    assert summary.journal.is_file()


def test_demo_command_reports_verified() -> None:
    """`xferkit demo` exits 0 and says the batch was verified exactly-once."""
    result = CliRunner().invoke(app, ["demo", "--transfers", "40", "--seed", "4"])
    assert result.exit_code == 0, result.output
    assert "verified" in result.output
    assert "executed twice" in result.output


@pytest.mark.slow
def test_demo_runs_as_a_real_process() -> None:
    """`python -m xferkit demo` completes in a subprocess with exit code 0."""
    env = {**os.environ, "COLUMNS": "100"}
    done = subprocess.run(
        [sys.executable, "-m", "xferkit", "demo", "--transfers", "60"],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "verified" in done.stdout
