"""The command line on a fleet's PostgreSQL journal: batch, journal ls/show, resume."""

from __future__ import annotations

from pathlib import Path

import anyio

from xferkit.cli._common import JournalDsn

from ..postgres import drop_schema, require_postgres, unique_schema
from .conftest import Fakes, invoke
from .test_batch_run_cli import htx_plan

PASSWORD = "pg-pass-do-not-print-5c1e"


def with_password(dsn: str, schema: str) -> str:
    """``dsn`` with a password (the test server trusts, so any will do) and a schema."""
    scheme, _, rest = dsn.partition("://")
    user, _, host = rest.rpartition("@")
    return f"{scheme}://{user or 'postgres'}:{PASSWORD}@{host}?schema={schema}"


def test_batch_ls_show_and_resume_work_on_postgres_without_printing_the_password(
    fakes: Fakes, tmp_path: Path
) -> None:
    """`batch`, `journal ls`, `journal show` and `resume` take a postgresql:// DSN as
    --journal, work on that schema, and never print the DSN's password."""
    dsn = anyio.run(require_postgres)
    schema = unique_schema()
    journal = with_password(dsn, schema)
    plan = htx_plan(tmp_path / "plan.csv", 2)
    try:
        runs = [
            invoke("batch", plan, "--journal", journal, "--rate-limit", "htx=50", env=fakes.env),
            invoke("journal", "--journal", journal, "ls", env=fakes.env),
            invoke("journal", "ls", "--journal", journal, "--json", env=fakes.env),
            invoke("journal", "--journal", journal, "show", "h-1", env=fakes.env),
            invoke("resume", "--journal", journal, env=fakes.env),
            invoke("journal", "ls", env={**fakes.env, "XFERKIT_JOURNAL": journal}),
        ]
    finally:
        anyio.run(drop_schema, dsn, schema)
    for result in runs:
        assert result.exit_code == 0, result.output
        assert PASSWORD not in result.output
    assert len(fakes.htx.audit) == 2
    assert "h-1" in runs[1].stdout
    assert "h-2" in runs[1].stdout
    assert "h-2" in runs[2].stdout
    assert "h-1" in runs[3].stdout
    assert "h-1" in runs[5].stdout


def test_an_unreachable_database_is_reported_without_the_password() -> None:
    """A DSN whose database does not answer: exit 2, and the error omits the password."""
    result = invoke(
        "journal", "ls", "--journal", f"postgresql://u:{PASSWORD}@127.0.0.1:9/x", env={}
    )
    assert result.exit_code == 2
    assert PASSWORD not in result.output


def test_a_dsn_prints_with_its_password_masked() -> None:
    """A journal DSN prints with ``***`` for its password, and its repr hides it whole."""
    location = JournalDsn("postgresql://app:hunter2@db.example:5432/xfer?schema=fleet")
    assert str(location) == "postgresql://app:***@db.example:5432/xfer?schema=fleet"
    assert "hunter2" not in repr(location)
    assert location.journal().schema == "fleet"
