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
from typing import Any, TypeAlias, TypeVar
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import anyio
import attrs
import click

from .._client import JOURNAL_ENV
from .._exceptions import XferError
from .._models import TransferStatus
from ..journal import DEFAULT_JOURNAL_PATH, PostgresJournal, SqliteJournal

__all__ = [
    "EXIT_ERROR",
    "EXIT_OK",
    "EXIT_UNRESOLVED",
    "JOURNAL_ENVVAR",
    "UNRESOLVED",
    "CliError",
    "JournalDsn",
    "JournalLocation",
    "NotFoundError",
    "client_journal",
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


@attrs.frozen
class JournalDsn:
    """A PostgreSQL journal given as ``--journal postgresql://...``; prints without its password.

    The DSN itself is never shown (``repr`` hides it, ``str`` masks the password), so tables,
    summaries and error messages that name the journal cannot leak the credential.
    """

    dsn: str = attrs.field(repr=False)

    def __str__(self) -> str:
        parts = urlsplit(self.dsn)
        if parts.password is None:
            return self.dsn
        user, _, host = parts.netloc.rpartition("@")
        name = user.partition(":")[0]
        return urlunsplit(parts._replace(netloc=f"{name}:***@{host}"))

    def journal(self) -> PostgresJournal:
        """A (closed) `PostgresJournal` on this DSN; its ``schema=`` query parameter (not
        one of PostgreSQL's) names the journal's schema, ``xferkit`` by default."""
        parts = urlsplit(self.dsn)
        query = parse_qsl(parts.query, keep_blank_values=True)
        schemas = [value for name, value in query if name == "schema"]
        rest = urlencode([(name, value) for name, value in query if name != "schema"])
        dsn = urlunsplit(parts._replace(query=rest))
        if not schemas:
            return PostgresJournal(dsn)
        return PostgresJournal(dsn, schema=schemas[-1])


JournalLocation: TypeAlias = Path | JournalDsn
"""What ``--journal`` names: a SQLite file, or a PostgreSQL journal's DSN."""


class _JournalParam(click.ParamType):  # type: ignore[type-arg]  # generic from click 8.2
    """``--journal``: a ``postgresql://`` DSN, else a SQLite file's path."""

    name = "journal"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, Path | JournalDsn):
            return value
        text = str(value)
        if text.startswith(("postgresql://", "postgres://")):
            return JournalDsn(text)
        return Path(text)


def client_journal(location: JournalLocation) -> Path | PostgresJournal:
    """What ``Client(journal=...)`` takes for ``location``."""
    return location.journal() if isinstance(location, JournalDsn) else location


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
            type=_JournalParam(),
            metavar="PATH|DSN",
            default=None,
            help="The SQLite journal file or a postgresql:// DSN (overrides the group's).",
        )
    return click.option(
        "--journal",
        "journal_path",
        type=_JournalParam(),
        metavar="PATH|DSN",
        default=DEFAULT_JOURNAL_PATH,
        envvar=JOURNAL_ENVVAR,
        show_envvar=True,
        show_default="~/.xferkit/journal.sqlite3",
        help="The SQLite journal file, or a postgresql:// DSN (a fleet's journal).",
    )


def require_journal(path: JournalLocation) -> JournalLocation:
    """Return the expanded path of an existing journal, or fail with exit code 2.

    Checked before opening because opening a SQLite journal creates it: a mistyped path must
    not read as an empty journal (for ``resume``, as "nothing left to settle").
    """
    if isinstance(path, JournalDsn):
        return path  # opening it is the check: an unreachable database is an error
    expanded = path.expanduser()
    if not expanded.is_file():
        raise CliError(f"no journal at {expanded}")
    return expanded


def journal_to_write(path: JournalLocation) -> JournalLocation:
    """Return the expanded path of a journal that commands recording new intents may create.

    ``transfer`` and ``batch`` create the journal (and its directory) if it is missing: they
    record intents rather than read old ones, so a new file is not a silent empty answer.
    """
    if isinstance(path, JournalDsn):
        return path
    expanded = path.expanduser()
    if expanded.is_dir():
        raise CliError(f"{expanded} is a directory; pass the journal's file")
    return expanded


@contextlib.asynccontextmanager
async def existing_journal(
    path: JournalLocation,
) -> AsyncIterator[SqliteJournal | PostgresJournal]:
    """Open the journal at ``path`` (already checked by `require_journal`) and close it after."""
    journal = path.journal() if isinstance(path, JournalDsn) else SqliteJournal(path)
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
