"""`xferkit sim`: the fake venues served on loopback by a real process until a signal."""

from __future__ import annotations

import contextlib
import json
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from xferkit.venues.htx import HTX
from xferkit.venues.xt import XT

from .conftest import invoke, subprocess_env

STARTUP_SECONDS = 20


@contextlib.contextmanager
def running_sim(*args: str) -> Iterator[tuple[subprocess.Popen[str], list[str]]]:
    """`python -m xferkit sim ARGS` in a subprocess, and its output up to the "Serving" line."""
    process = subprocess.Popen(  # noqa: S603 - this interpreter, the test's own arguments
        [sys.executable, "-m", "xferkit", "sim", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=subprocess_env(),
    )
    watchdog = threading.Timer(STARTUP_SECONDS, process.kill)  # a hung start fails, not hangs
    watchdog.start()
    lines: list[str] = []
    try:
        assert process.stdout is not None
        for line in process.stdout:
            lines.append(line.rstrip("\n"))
            if line.startswith("Serving until"):
                break
        watchdog.cancel()
        yield process, lines
    finally:
        watchdog.cancel()
        if process.poll() is None:
            process.kill()
        process.wait(timeout=10)
        for stream in (process.stdout, process.stderr):
            if stream is not None:
                stream.close()


@pytest.fixture
def sim_process() -> Iterator[tuple[subprocess.Popen[str], list[str]]]:
    """`python -m xferkit sim` in a subprocess, and its output up to the "Serving" line."""
    with running_sim() as running:
        yield running


def exports(lines: list[str]) -> dict[str, str]:
    """The `export NAME=value` lines, as an environment."""
    found = [re.fullmatch(r"export (XFERKIT_[A-Z_]+)=(\S+)", line) for line in lines]
    return {m[1]: m[2] for m in found if m is not None}


@pytest.mark.slow
@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_sim_serves_both_venues_until_a_signal(
    sim_process: tuple[subprocess.Popen[str], list[str]], tmp_path: Path, stop: signal.Signals
) -> None:
    """The sim prints both URLs and paste-able exports; a transfer on each venue through them
    succeeds; SIGINT or SIGTERM stops it with exit 0."""
    process, lines = sim_process
    env = exports(lines)
    assert set(env) == {
        "XFERKIT_XT_API_KEY",
        "XFERKIT_XT_SECRET",
        "XFERKIT_XT_BASE_URL",
        "XFERKIT_HTX_ACCESS_KEY",
        "XFERKIT_HTX_SECRET",
        "XFERKIT_HTX_BASE_URL",
        "XFERKIT_JOURNAL",
    }
    for name in ("XFERKIT_XT_BASE_URL", "XFERKIT_HTX_BASE_URL"):
        assert re.fullmatch(r"http://127\.0\.0\.1:[0-9]+", env[name])
        assert any(env[name] in line for line in lines[:5])  # the URL table
    env["XFERKIT_JOURNAL"] = str(tmp_path / "journal.sqlite3")
    for args in (
        ("xt", "usdt", "12.5", "--from", "spot", "--to", "usdt_futures", "--key", "sim-xt"),
        ("htx", "usdt", "3", "--from", "spot", "--to", "otc", "--key", "sim-htx"),
    ):
        result = invoke("transfer", *args, "--json", env=env)
        assert result.exit_code == 0, result.output
        assert json.loads(result.stdout)["status"] == "SUCCEEDED"
    process.send_signal(stop)
    out, err = process.communicate(timeout=10)
    assert process.returncode == 0, err
    assert f"stopped by {stop.name}: executed 1 transfer on xt and 1 on htx" in out
    assert "Traceback" not in err


@pytest.mark.slow
def test_sim_answers_as_chosen_duplicates_and_clock_message() -> None:
    """`--xt-duplicate-code FUND_001 --htx-time-message chinese`: a reused bizId is FUND_001
    and a clock 400 s off gets the older Chinese-only message."""
    chosen = ("--xt-duplicate-code", "FUND_001", "--htx-time-message", "chinese")
    with running_sim(*chosen) as (_, lines), httpx.Client() as http:
        env = exports(lines)
        xt = XT(
            env["XFERKIT_XT_API_KEY"],
            env["XFERKIT_XT_SECRET"],
            base_url=env["XFERKIT_XT_BASE_URL"],
        )
        body = '{"bizId":"b1","from":"SPOT","to":"FINANCE","currency":"usdt","amount":"1"}'
        answers = []
        for _ in range(2):
            request = xt.transfer_request(body, int(time.time() * 1000))
            sent = http.post(request.url, headers=dict(request.headers), content=request.body)
            answers.append(sent.json()["mc"])
        assert answers == ["SUCCESS", "FUND_001"]
        htx = HTX(
            env["XFERKIT_HTX_ACCESS_KEY"],
            env["XFERKIT_HTX_SECRET"],
            base_url=env["XFERKIT_HTX_BASE_URL"],
        )
        request = htx.accounts_request(int(time.time() * 1000) - 400_000)
        answer = http.get(request.url).json()
    assert answer["err-msg"] == "Signature not valid: 无效的提交时间，或时间格式错误"  # noqa: RUF001


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--host", "0.0.0.0"], "not a loopback address"),  # noqa: S104 - the refused case
        (["--host", "192.168.1.10"], "not a loopback address"),
        (["--host", "example.com"], "not an IP address"),
        (["--fault-rate", "1.5"], "1.5"),
        (["--xt-duplicate-code", "AUTH_001"], "AUTH_001"),
        (["--htx-time-message", "french"], "french"),
    ],
)
def test_sim_refuses_what_it_cannot_serve(args: list[str], message: str) -> None:
    """A non-loopback host or a bad fault rate: exit 2 before serving anything."""
    result = invoke("sim", *args, env={})
    assert result.exit_code == 2
    assert message in " ".join(result.stderr.split())


def test_sim_reports_a_port_in_use() -> None:
    """A fixed port another process holds: exit 2 with the reason, no traceback."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = invoke("sim", "--xt-port", str(port), env={})
    assert result.exit_code == 2
    assert "cannot serve on 127.0.0.1" in " ".join(result.stderr.split())
