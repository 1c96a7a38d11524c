"""The command line owns logging: quiet by default, `-v` for INFO, `--debug` for DEBUG."""

from __future__ import annotations

import logging
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from xferkit.cli._plan import PlanReader

from .conftest import CREDENTIALS, SECRETS, Fakes, invoke, subprocess_env

PLAN = "venue,currency,amount,from_account,to_account,key\nxt,usdt,1,spot,finance,log-1\n"


def closed_port_url() -> str:
    """A loopback URL nothing listens on: every request is refused at once."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def test_the_package_logger_has_a_null_handler_and_importing_configures_nothing() -> None:
    """Importing xferkit adds a NullHandler to its package logger and no handler to the root."""
    code = (
        "import logging, xferkit\n"
        "assert not logging.getLogger().handlers, logging.getLogger().handlers\n"
        "handlers = logging.getLogger('xferkit').handlers\n"
        "assert any(isinstance(h, logging.NullHandler) for h in handlers), handlers\n"
    )
    done = subprocess.run(  # noqa: S603 - this interpreter, arguments built here
        [sys.executable, "-c", code],
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr


def test_batch_prints_no_library_warning_in_a_real_process(tmp_path: Path) -> None:
    """A real `batch` against an unreachable venue (whose clock reads the engine warns about)
    prints its summary and no log line on stderr."""
    plan = tmp_path / "plan.csv"
    plan.write_text(PLAN)
    done = subprocess.run(  # noqa: S603 - this interpreter, arguments built here
        [sys.executable, "-m", "xferkit", "batch", str(plan), "--journal", str(tmp_path / "j")],
        env=subprocess_env(**CREDENTIALS, XFERKIT_XT_BASE_URL=closed_port_url()),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 1, done.stderr
    assert "could not read the server time" not in done.stderr
    assert "WARNING" not in done.stderr
    assert done.stderr == ""
    assert "1 not processed" in done.stdout


def test_transfer_is_quiet_by_default_and_verbose_shows_info_records(tmp_path: Path) -> None:
    """Without flags no log record reaches stderr; `-v` shows INFO records (attempts, and the
    warning about the venue's clock) through rich, on stderr only, without secrets."""
    env = {**CREDENTIALS, "XFERKIT_XT_BASE_URL": closed_port_url()}
    args = ["transfer", "xt", "usdt", "1", "--from", "spot", "--to", "finance"]
    journal = ["--journal", str(tmp_path / "j")]
    quiet = invoke(*args, "--key", "q-1", *journal, env=env)
    assert quiet.exit_code == 1
    assert "could not read the server time" not in quiet.stderr
    assert "INFO" not in quiet.stderr
    verbose = invoke(*args, "--key", "q-2", "-v", *journal, env=env)
    assert verbose.exit_code == 1
    assert "INFO" in verbose.stderr
    assert "transfer q-2 on xt: attempt 1" in verbose.stderr
    assert "could not read the server time" in verbose.stderr
    assert "DEBUG" not in verbose.stderr
    assert "attempt 1" not in verbose.stdout
    for secret in SECRETS:
        assert secret not in verbose.output


def test_debug_on_the_group_shows_debug_records(fakes: Fakes, tmp_path: Path) -> None:
    """`xferkit --debug batch` shows DEBUG records too; the logger is given back afterwards."""
    plan = tmp_path / "plan.csv"
    plan.write_text(PLAN)
    logger = logging.getLogger("xferkit")
    before = (logger.level, logger.propagate, list(logger.handlers))
    result = invoke("--debug", "batch", plan, "--journal", tmp_path / "j", env=fakes.env)
    assert result.exit_code == 0, result.output
    assert "DEBUG" in result.stderr
    assert "INFO" in result.stderr
    assert (logger.level, logger.propagate, list(logger.handlers)) == before


def test_verbose_batch_keeps_its_summary_on_stdout(fakes: Fakes, tmp_path: Path) -> None:
    """`xferkit --verbose batch` logs each attempt on stderr, leaving stdout to the summary."""
    plan = tmp_path / "plan.csv"
    plan.write_text(PLAN)
    result = invoke("--verbose", "batch", plan, "--journal", tmp_path / "j", env=fakes.env)
    assert result.exit_code == 0, result.output
    assert "transfer log-1 on xt: attempt 1" in result.stderr
    assert "attempt 1" not in result.stdout
    assert "all 1 transfer SUCCEEDED" in result.stdout


def test_an_unexpected_error_is_one_line_unless_debug(
    fakes: Fakes, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A bug is one `Error:` line and exit 2 by default; with `--debug`, its traceback."""

    def broken(self: object, report: object) -> int:
        raise RuntimeError("boom")

    monkeypatch.setattr(PlanReader, "check", broken)
    plan = tmp_path / "plan.csv"
    plan.write_text(PLAN)
    result = invoke("batch", plan, "--journal", tmp_path / "j", env=fakes.env)
    assert result.exit_code == 2
    assert result.stderr.startswith("Error: unexpected RuntimeError: boom (")
    assert len(result.stderr.splitlines()) == 1
    with pytest.raises(RuntimeError, match="boom"):
        invoke("batch", plan, "--journal", tmp_path / "j", "--debug", env=fakes.env)
