"""`xferkit resume` settles UNKNOWN intents against fake venues served on loopback, exactly once."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import attrs
import pytest
from anyio.from_thread import BlockingPortal, start_blocking_portal
from click.testing import CliRunner, Result
from rich.progress import Progress

import xferkit
from xferkit.cli import _resume
from xferkit.cli._app import app
from xferkit.testing import FakeHTX, FakeXT, Fault, FaultPlan, LoopbackServer, serve

from .conftest import UNKNOWN_SPELLING

XT_KEY = "resume-xt-key-0001"
XT_SECRET = "resume-xt-secret-do-not-leak-91ab"
HTX_KEY = "resume-htx-key-0001"
HTX_SECRET = "resume-htx-secret-do-not-leak-3f7c"
REPO = Path(__file__).resolve().parents[2]
CREDENTIALS = {
    "XFERKIT_XT_API_KEY": XT_KEY,
    "XFERKIT_XT_SECRET": XT_SECRET,
    "XFERKIT_HTX_ACCESS_KEY": HTX_KEY,
    "XFERKIT_HTX_SECRET": HTX_SECRET,
}
NO_ENVIRONMENT: dict[str, str | None] = dict.fromkeys(
    [*CREDENTIALS, "XFERKIT_XT_BASE_URL", "XFERKIT_HTX_BASE_URL"], None
)


@attrs.frozen
class Served:
    """Fake XT and HTX on loopback, run by a portal thread so the CLI can own the main loop."""

    portal: BlockingPortal
    server: LoopbackServer
    xt: FakeXT
    htx: FakeHTX
    plan: FaultPlan


@pytest.fixture
def served() -> Iterator[Served]:
    """Both fakes on the real clock (the CLI signs with real time), sharing one fault plan."""
    plan = FaultPlan()
    fake_xt = FakeXT(api_key=XT_KEY, secret=XT_SECRET, faults=plan)
    fake_htx = FakeHTX(access_key=HTX_KEY, secret=HTX_SECRET, faults=plan)
    with (
        start_blocking_portal() as portal,
        portal.wrap_async_context_manager(serve(fake_xt, fake_htx)) as server,
    ):
        yield Served(portal, server, fake_xt, fake_htx, plan)


def htx_transfer_posts(served: Served) -> int:
    """Transfer requests that reached the fake HTX so far (ledger reads not counted)."""
    return sum(1 for r in served.htx.requests if r.request.path == "/v2/account/transfer")


def leave_unknown(
    served: Served, journal: Path, *transfers: tuple[str, Fault, dict[str, str]]
) -> None:
    """Run each (key, fault, transfer) once over loopback with that fault forced: all UNKNOWN."""

    async def run() -> None:
        xt = xferkit.XT(XT_KEY, XT_SECRET, base_url=served.server.url("xt"))
        htx = xferkit.HTX(HTX_KEY, HTX_SECRET, base_url=served.server.url("htx"), rate_limit=100)
        retry = xferkit.RetryPolicy(max_attempts=1, deadline=None)  # one try: no backoff sleep
        async with xferkit.Client(xt, htx, journal=journal, retry=retry) as client:
            for key, fault, transfer in transfers:
                served.plan.force(fault)
                with pytest.raises(xferkit.TransferOutcomeUnknownError):
                    await client.transfer(key=key, **transfer)  # type: ignore[arg-type]

    served.portal.call(run)
    assert served.plan.forced == ()


def xt_transfer(amount: str) -> dict[str, str]:
    return {
        "venue": "xt",
        "currency": "usdt",
        "amount": amount,
        "from_account": "spot",
        "to_account": "usdt_futures",
    }


# Its ledger row will carry a transferType xferkit does not know (UNKNOWN_SPELLING): the
# ledger cannot tell whether it executed.
HTX_UNTELLABLE = {
    "venue": "htx",
    "currency": "btc",
    "amount": "0.5",
    "from_account": "spot",
    "to_account": "usdt_futures",
}


def invoke(*args: str | Path, env: Mapping[str, str | None]) -> Result:
    """Run the CLI in-process with only the given xferkit variables set."""
    environment = {**NO_ENVIRONMENT, "XFERKIT_JOURNAL": None, "COLUMNS": "250", **env}
    return CliRunner().invoke(app, [str(a) for a in args], env=environment, catch_exceptions=False)


def test_resume_settles_unknown_intents_exactly_once(served: Served, tmp_path: Path) -> None:
    """One transfer executed before its answer was lost, one never did: after `resume` both
    SUCCEEDED, exit 0, and the venue executed each bizId exactly once."""
    journal = tmp_path / "journal.sqlite3"
    leave_unknown(
        served,
        journal,
        ("lost-answer", Fault.DROP_AFTER, xt_transfer("10")),
        ("never-arrived", Fault.DROP_BEFORE, xt_transfer("20")),
    )
    assert len(served.xt.audit) == 1
    xt_only = {k: v for k, v in CREDENTIALS.items() if "_XT_" in k}
    url = served.server.url("xt")
    result = invoke("resume", "--journal", journal, "--xt-base-url", url, "--json", env=xt_only)
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    statuses = {r["key"]: r["status"] for r in report["receipts"]}
    assert statuses == {"lost-answer": "SUCCEEDED", "never-arrived": "SUCCEEDED"}
    assert report["unresolved"] == []
    xt = xferkit.XT(XT_KEY, XT_SECRET)
    amounts = {"lost-answer": "10", "never-arrived": "20"}
    tokens = {
        xt.biz_id(key, **{k: v for k, v in xt_transfer(amounts[key]).items() if k != "venue"})
        for key in statuses
    }
    assert served.xt.executions_by_token() == dict.fromkeys(tokens, 1)
    assert XT_SECRET not in result.output
    listed = subprocess.run(  # noqa: S603 - this interpreter, a temp path
        [sys.executable, "-m", "xferkit", "journal", "ls", "--json", "--journal", str(journal)],
        capture_output=True,
        text=True,
        timeout=60,
        env={
            **os.environ,
            "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
        },
        check=False,
    )
    assert listed.returncode == 0, listed.stderr
    assert {row["key"]: row["status"] for row in json.loads(listed.stdout)} == statuses


def test_resume_exits_1_while_an_intent_cannot_be_settled(served: Served, tmp_path: Path) -> None:
    """An HTX transfer the ledger cannot tell about stays UNKNOWN: XT settles, the exit status
    is 1 and the summary says what is left."""
    journal = tmp_path / "journal.sqlite3"
    served.htx.transfer_types[("spot", "linear-swap")] = UNKNOWN_SPELLING
    leave_unknown(
        served,
        journal,
        ("xt-lost", Fault.DROP_AFTER, xt_transfer("10")),
        ("htx-untellable", Fault.DROP_AFTER, HTX_UNTELLABLE),
    )
    htx_posts = htx_transfer_posts(served)
    urls = ["--xt-base-url", served.server.url("xt"), "--htx-base-url", served.server.url("htx")]
    as_json = invoke("resume", "--journal", journal, *urls, "--json", env=CREDENTIALS)
    assert as_json.exit_code == 1, as_json.output
    report = json.loads(as_json.stdout)
    assert {r["key"]: r["status"] for r in report["receipts"]} == {
        "xt-lost": "SUCCEEDED",
        "htx-untellable": "UNKNOWN",
    }
    assert [(i["key"], i["status"]) for i in report["unresolved"]] == [
        ("htx-untellable", "UNKNOWN")
    ]
    table = invoke("resume", "--journal", journal, *urls, env=CREDENTIALS)
    assert table.exit_code == 1, table.output
    assert "1 unresolved, exit status 1: 1 still ambiguous" in table.stdout
    assert htx_transfer_posts(served) == htx_posts  # never resent blindly
    assert len(served.htx.audit) == 1
    for secret in (XT_SECRET, HTX_SECRET):
        assert secret not in as_json.output + table.output


def test_intents_of_a_venue_without_credentials_are_left_and_exit_1(
    served: Served, tmp_path: Path
) -> None:
    """With only HTX configured, the XT intent is not attempted: the summary says why, exit 1."""
    journal = tmp_path / "journal.sqlite3"
    leave_unknown(served, journal, ("xt-lost", Fault.DROP_AFTER, xt_transfer("10")))
    htx_only = {k: v for k, v in CREDENTIALS.items() if "_HTX_" in k}
    xt_requests = len(served.xt.requests)
    result = invoke("resume", "--journal", journal, env=htx_only)
    assert result.exit_code == 1, result.output
    assert "not attempted" in result.stdout
    assert "1 on xt, which has no credentials here" in result.stdout
    assert "XFERKIT_XT_API_KEY and XFERKIT_XT_SECRET" in result.stdout
    assert len(served.xt.requests) == xt_requests


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        ([], {}, "no venue credentials in the environment"),
        (["--venue", "htx"], {"XFERKIT_XT_API_KEY": XT_KEY, "XFERKIT_XT_SECRET": XT_SECRET},
         "XFERKIT_HTX_ACCESS_KEY and XFERKIT_HTX_SECRET are not set"),
        ([], {"XFERKIT_XT_API_KEY": XT_KEY}, "XFERKIT_XT_SECRET is not set"),
        (["--htx-base-url", "http://127.0.0.1:9"], {"XFERKIT_XT_API_KEY": XT_KEY,
         "XFERKIT_XT_SECRET": XT_SECRET}, "htx: environment variable"),
    ],
)  # fmt: skip
def test_missing_credentials_exit_2_naming_the_variables(
    tmp_path: Path, args: list[str], env: dict[str, str], message: str
) -> None:
    """Missing credentials stop the run before anything is opened: exit 2, variables named."""
    journal = tmp_path / "journal.sqlite3"
    result = invoke("resume", "--journal", journal, *args, env=env)
    assert result.exit_code == 2
    assert message in result.stderr
    assert XT_SECRET not in result.output
    assert not journal.exists()


def test_resume_refuses_a_missing_journal_and_a_bad_base_url(tmp_path: Path) -> None:
    """A missing journal is exit 2 (not "nothing to do"); so is a base URL without a scheme."""
    missing = tmp_path / "journal.sqlite3"
    result = invoke("resume", "--journal", missing, env=CREDENTIALS)
    assert result.exit_code == 2
    assert f"no journal at {missing}" in result.stderr
    assert not missing.exists()
    bad = invoke("resume", "--journal", missing, "--xt-base-url", "127.0.0.1:80", env=CREDENTIALS)
    assert bad.exit_code == 2
    assert "http://" in bad.stderr


def test_resume_takes_a_concurrency_and_a_deadline_of_its_own(
    served: Served, tmp_path: Path
) -> None:
    """`--concurrency` and `--deadline` bound the sweep; nonsense values exit 2 before it."""
    journal = tmp_path / "journal.sqlite3"
    leave_unknown(served, journal, ("lost-answer", Fault.DROP_AFTER, xt_transfer("10")))
    xt_only = {k: v for k, v in CREDENTIALS.items() if "_XT_" in k}
    url = served.server.url("xt")
    for bad in (["--concurrency", "0"], ["--deadline", "0"], ["--deadline", "-1"]):
        refused = invoke("resume", "--journal", journal, "--xt-base-url", url, *bad, env=xt_only)
        assert refused.exit_code == 2, (bad, refused.output)
    result = invoke(
        "resume", "--journal", journal, "--xt-base-url", url, "--concurrency", "4",
        "--deadline", "30", "--json", env=xt_only,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert [r["status"] for r in json.loads(result.stdout)["receipts"]] == ["SUCCEEDED"]
    assert len(served.xt.audit) == 1


def test_resume_progress_counts_each_request_as_it_is_sent(
    served: Served, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`resume`'s progress bar counts settled intents, and requests sent and retries live."""
    journal = tmp_path / "journal.sqlite3"
    leave_unknown(served, journal, ("lost", Fault.DROP_AFTER, xt_transfer("10")))
    seen: list[tuple[float, Any, Any]] = []
    real = _resume.progress_bar

    def recording(**kwargs: Any) -> Progress:
        progress = real(**kwargs)
        update = progress.update

        def record(task: Any, **fields: Any) -> None:
            update(task, **fields)
            state = progress.tasks[0]
            seen.append((state.completed, state.fields["sent"], state.fields["retries"]))

        monkeypatch.setattr(progress, "update", record)
        return progress

    monkeypatch.setattr(_resume, "progress_bar", recording)
    xt_only = {k: v for k, v in CREDENTIALS.items() if "_XT_" in k}
    url = served.server.url("xt")
    result = invoke("resume", "--journal", journal, "--xt-base-url", url, env=xt_only)
    assert result.exit_code == 0, result.output
    assert (0, 1, 1) in seen  # the resend, counted before the intent settles
    assert seen[-1] == (1, 1, 1)
