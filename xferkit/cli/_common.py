"""What every CLI command shares: exit codes, the ``--journal`` option and opening a journal.

Exit codes follow grep's convention, so a script can tell "the answer is no" from "no answer":
``0`` yes/done, ``1`` no (intents remain unresolved, or the key is unknown), ``2`` the command
could not run (bad usage, no journal, missing credentials, an unreadable journal).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import anyio
import click

from .._client import JOURNAL_ENV
from .._exceptions import XferError
from .._models import TransferStatus
from ..journal import DEFAULT_JOURNAL_PATH, SqliteJournal

__all__ = [
    "EXIT_ERROR",
    "EXIT_OK",
    "EXIT_UNRESOLVED",
    "JOURNAL_ENVVAR",
    "UNRESOLVED",
    "CliError",
    "NotFoundError",
    "existing_journal",
    "journal_option",
    "journal_to_write",
    "require_journal",
    "run_async",
]

EXIT_OK = 0
EXIT_UNRESOLVED = 1
EXIT_ERROR = 2

JOURNAL_ENVVAR = JOURNAL_ENV  # one name for the CLI and Client(journal=None)
UNRESOLVED = tuple(s for s in TransferStatus if not s.is_terminal)  # PENDING, IN_FLIGHT, UNKNOWN

_T = TypeVar("_T")
_F = TypeVar("_F", bound=Callable[..., object])


class CliError(click.ClickException):
    """The command could not run (exit status 2): one line on stderr, no traceback."""

    exit_code = EXIT_ERROR


class NotFoundError(CliError):
    """The answer is "no such thing" (exit status 1), e.g. an unknown idempotency key."""

    exit_code = EXIT_UNRESOLVED


def journal_option(*, inherited: bool = False) -> Callable[[_F], _F]:
    """The ``--journal PATH`` option.

    Args:
        inherited: for a subcommand of a group that has the option too: no default and no
            environment variable, so a value given here overrides the group's, and ``None``
            means "use the group's".
    """
    if inherited:
        return click.option(
            "--journal",
            "journal_path",
            type=click.Path(dir_okay=False, path_type=Path),
            metavar="PATH",
            default=None,
            help="The SQLite journal file (overrides the group's --journal).",
        )
    return click.option(
        "--journal",
        "journal_path",
        type=click.Path(dir_okay=False, path_type=Path),
        metavar="PATH",
        default=DEFAULT_JOURNAL_PATH,
        envvar=JOURNAL_ENVVAR,
        show_envvar=True,
        show_default="~/.xferkit/journal.sqlite3",
        help="The SQLite journal file.",
    )


def _sqlite_path(path: Path) -> Path:
    if path.parts and path.parts[0] in ("postgresql:", "postgres:"):
        raise CliError("the command line reads SQLite journals only; pass the journal's file")
    return path.expanduser()


def require_journal(path: Path) -> Path:
    """Return the expanded path of an existing journal, or fail with exit code 2.

    Checked before opening because opening a SQLite journal creates it: a mistyped path must
    not read as an empty journal (for ``resume``, as "nothing left to settle").
    """
    expanded = _sqlite_path(path)
    if not expanded.is_file():
        raise CliError(f"no journal at {expanded}")
    return expanded


def journal_to_write(path: Path) -> Path:
    """Return the expanded path of a journal that commands recording new intents may create.

    ``transfer`` and ``batch`` create the journal (and its directory) if it is missing: they
    record intents rather than read old ones, so a new file is not a silent empty answer.
    """
    expanded = _sqlite_path(path)
    if expanded.is_dir():
        raise CliError(f"{expanded} is a directory; pass the journal's file")
    return expanded


@contextlib.asynccontextmanager
async def existing_journal(path: Path) -> AsyncIterator[SqliteJournal]:
    """Open the journal at ``path`` (already checked by `require_journal`) and close it after."""
    journal = SqliteJournal(path)
    await journal.open()
    try:
        yield journal
    finally:
        await journal.aclose()


def run_async(fn: Callable[[], Awaitable[_T]]) -> _T:
    """Run ``fn`` on a fresh event loop; xferkit's own errors become exit code 2.

    A `XferError` escaping a command is an environment problem (an unreadable journal, a bad
    setting), not a transfer outcome: transfer outcomes come back as receipts.

    Ctrl-C raises `KeyboardInterrupt` here, on every Python: the loop's runner cancels the
    command's task on SIGINT, and on Python 3.10 (anyio's backported runner) the task's
    `CancelledError` comes out instead of the `KeyboardInterrupt`.
    """

    async def call() -> _T:
        return await fn()

    try:
        return anyio.run(call)
    except XferError as exc:
        raise CliError(str(exc)) from exc
    except asyncio.CancelledError:
        # Nothing else cancels the loop's main task from outside: it was SIGINT.
        raise KeyboardInterrupt from None
