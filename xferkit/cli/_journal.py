"""``xferkit journal ls|show|prune``: read the journal, and prune what is settled and old.

Nothing here talks to a venue. ``ls`` and ``show`` only read. ``prune`` deletes settled intents
only: an unresolved intent is the record ``resume`` needs to settle a transfer that may have
executed, so it is kept whatever its age.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone

import click
from rich.table import Table
from rich.text import Text

from .._models import TransferStatus
from .._validation import amount_text
from ..journal import Intent
from ..venues._base import TransferSpec
from ._common import (
    UNRESOLVED,
    JournalLocation,
    NotFoundError,
    existing_journal,
    journal_option,
    require_journal,
    run_async,
)
from ._format import (
    TransferRow,
    echo_json,
    intent_json,
    iso_utc,
    make_console,
    status_counts,
    status_text,
    table_time,
    transfer_table,
    unresolved_count,
)

__all__ = [
    "MIN_RETENTION",
    "WHICH_ACCOUNT",
    "WHICH_VENUE",
    "journal",
    "journal_path_of",
    "one_intent",
    "parse_duration",
]

MIN_RETENTION = timedelta(hours=1)
"""The shortest ``prune --older-than``. A pruned key is forgotten, so a caller that retries it
afterwards starts a new transfer: retention must outlast any retry of a key."""

_META_KEY = "xferkit.journal_path"
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_DURATION = re.compile(r"(?:[0-9]+[smhdw])+")
_PART = re.compile(r"([0-9]+)([smhdw])")

_HINTS = {
    TransferStatus.PENDING: "recorded, never sent: `xferkit resume` sends it",
    TransferStatus.IN_FLIGHT: "may have executed: `xferkit resume` settles it, never twice",
    TransferStatus.UNKNOWN: "may have executed: `xferkit resume` settles it, never twice",
    TransferStatus.SUCCEEDED: "the venue executed it",
    TransferStatus.FAILED: "the venue refused it; nothing moved",
}


def parse_duration(text: str) -> timedelta:
    """Parse a span like ``30d``, ``12h``, ``90m``, ``2w`` or ``1d12h`` (``ValueError`` if not)."""
    cleaned = text.strip().lower()
    if not _DURATION.fullmatch(cleaned):
        raise ValueError(f"{text!r} is not a duration such as 30d, 12h or 1d12h")
    try:
        return timedelta(seconds=sum(int(n) * _UNITS[unit] for n, unit in _PART.findall(cleaned)))
    except OverflowError:
        raise ValueError(f"{text!r} is too long") from None


def _retention(ctx: click.Context, param: click.Parameter, value: str) -> timedelta:
    """The ``--older-than`` callback: a duration of at least `MIN_RETENTION`."""
    try:
        span = parse_duration(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc), ctx, param) from exc
    if span < MIN_RETENTION:
        raise click.BadParameter(
            f"{value} is shorter than 1h: a pruned key is forgotten, and a retry "
            "of it would start a new transfer",
            ctx,
            param,
        )
    return span


@click.group("journal")
@journal_option()
@click.pass_context
def journal(ctx: click.Context, journal_path: JournalLocation) -> None:
    """Inspect the journal of transfer intents, and prune settled ones.

    Nothing is sent to a venue. The journal must exist: these commands never create one.
    """
    ctx.meta[_META_KEY] = journal_path


def journal_path_of(ctx: click.Context, own: JournalLocation | None) -> JournalLocation:
    """The subcommand's --journal if given, else the group's (flag, $XFERKIT_JOURNAL, default)."""
    chosen: JournalLocation = own if own is not None else ctx.meta[_META_KEY]
    return require_journal(chosen)


@journal.command("ls")
@journal_option(inherited=True)
@click.option(
    "--state",
    "states",
    multiple=True,
    type=click.Choice([s.value for s in TransferStatus], case_sensitive=False),
    metavar="STATE",
    help="Only intents in STATE (PENDING, IN_FLIGHT, SUCCEEDED, FAILED, UNKNOWN); repeatable.",
)
@click.option(
    "--unresolved",
    is_flag=True,
    help="Only PENDING, IN_FLIGHT and UNKNOWN intents (adds to any --state).",
)
@click.option("--limit", type=click.IntRange(min=1), default=None, help="At most N (the oldest).")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array instead of a table.")
@click.pass_context
def ls(
    ctx: click.Context,
    *,
    journal_path: JournalLocation | None,
    states: tuple[str, ...],
    unresolved: bool,
    limit: int | None,
    as_json: bool,
) -> None:
    """List intents, oldest first. Exit status 0 whatever their states."""
    path = journal_path_of(ctx, journal_path)
    wanted = {TransferStatus(s.upper()) for s in states}
    if unresolved:
        wanted.update(UNRESOLVED)
    filtered = bool(wanted)
    statuses = [s for s in TransferStatus if s in wanted] if filtered else None

    async def read() -> list[Intent]:
        async with existing_journal(path) as store:
            return await store.list(statuses=statuses, limit=limit)

    intents = run_async(read)
    if as_json:
        echo_json([intent_json(intent) for intent in intents])
        return
    console = make_console()
    if not intents:
        console.print(Text(f"no intents {'in those states ' if filtered else ''}in {path}"))
        return
    rows = [TransferRow.from_intent(intent) for intent in intents]
    console.print(transfer_table(rows, title=f"journal {path}"))
    summary = f"{len(rows)} intent{'s' if len(rows) != 1 else ''}: "
    summary += status_counts(row.status for row in rows)
    open_ = unresolved_count(row.status for row in rows)
    if open_:
        summary += (
            f"; {open_} unresolved: `xferkit resume` settles {'it' if open_ == 1 else 'them'}"
        )
    console.print(Text(summary))


# The same key under two accounts (or venues) is two intents: these pick one.
WHICH_VENUE = click.option("--venue", help="Only the intent on this venue (xt, htx).")
WHICH_ACCOUNT = click.option(
    "--account", help="Only the intent of this account (its fingerprint, as `journal ls --json`)."
)


@journal.command("show")
@click.argument("key")
@journal_option(inherited=True)
@WHICH_VENUE
@WHICH_ACCOUNT
@click.option("--json", "as_json", is_flag=True, help="Print a JSON object instead of a table.")
@click.pass_context
def show(
    ctx: click.Context,
    *,
    key: str,
    journal_path: JournalLocation | None,
    venue: str | None,
    account: str | None,
    as_json: bool,
) -> None:
    """Show every field of the intent KEY, and its stored error. Exit status 1 if unknown."""
    path = journal_path_of(ctx, journal_path)

    async def read() -> list[Intent]:
        async with existing_journal(path) as store:
            return await store.find(key)

    intent = one_intent(run_async(read), key, path, venue=venue, account=account)
    if as_json:
        echo_json(intent_json(intent, detail=True))
        return
    console = make_console()
    console.print(_intent_table(intent))
    console.print(Text(_HINTS[intent.status]))


def one_intent(
    found: list[Intent], key: str, path: JournalLocation, *, venue: str | None, account: str | None
) -> Intent:
    """The one intent under ``key`` that ``--venue``/``--account`` leave, or a clear error."""
    matches = [
        i
        for i in found
        if (venue is None or i.venue == venue.lower()) and (account is None or i.account == account)
    ]
    if not matches:
        raise NotFoundError(f"no intent with key {key!r} in {path}")
    if len(matches) > 1:
        which = ", ".join(f"{i.venue} account {i.account or '(unknown)'}" for i in matches)
        raise click.UsageError(
            f"key {key!r} names {len(matches)} intents ({which}): pick one with --venue/--account"
        )
    return matches[0]


def _intent_table(intent: Intent) -> Table:
    """Every field of one intent, one per line; times in full precision."""
    spec = TransferSpec.from_canonical_json(intent.params)
    table = Table(title=Text(f"intent {intent.key}"), title_justify="left", show_header=False)
    table.add_column("field", style="bold")
    table.add_column("value", overflow="fold")

    def add(field: str, value: str | Text | None) -> None:
        cell = value if isinstance(value, Text) else Text("—" if value is None else value)
        table.add_row(field, cell)

    add("key", intent.key)
    add("venue", intent.venue)
    add("account", intent.account or "unknown (recorded by xferkit 0.1: settle it by hand)")
    add("state", status_text(intent.status))
    add("amount", f"{amount_text(spec.amount)} {spec.currency}")
    add("from → to", f"{spec.from_account} → {spec.to_account}")
    if spec.symbol is not None:
        add("symbol", spec.symbol)
    if spec.margin_account is not None:
        add("margin account", spec.margin_account)
    add("attempts", str(intent.attempts))
    add("transfer id", intent.transfer_id)
    add("ledger row", intent.ledger_ref)
    add("venue token (bizId)", intent.token)
    add("fingerprint", intent.fingerprint)
    add("created", iso_utc(intent.created_at))
    add("first sent", iso_utc(intent.first_sent_at))
    if intent.first_sent_venue_ms is not None:
        venue_time = datetime.fromtimestamp(intent.first_sent_venue_ms / 1000, tz=timezone.utc)
        add("first sent (venue clock)", f"{intent.first_sent_venue_ms} ms ({iso_utc(venue_time)})")
    add("last sent", iso_utc(intent.last_sent_at))
    add("finished", iso_utc(intent.finished_at))
    if intent.lease_owner is not None:
        add("lease", f"{intent.lease_owner} until {iso_utc(intent.lease_expires_at)}")
    else:
        add("lease", "free")
    if intent.error is not None:
        error = intent.error
        extra = [f"code {error.code}"] if error.code is not None else []
        extra += [f"HTTP {error.http_status}"] if error.http_status is not None else []
        suffix = f" ({', '.join(extra)})" if extra else ""
        add("error", f"{error.kind}: {error.message}{suffix}")
    else:
        add("error", None)
    if intent.settlement is not None:
        done = intent.settlement
        add("settled by hand", f"by {done.by} at {iso_utc(done.at)}: {done.reason or '—'}")
    add("request body (unsigned)", intent.body)
    return table


@journal.command("prune")
@journal_option(inherited=True)
@click.option(
    "--older-than",
    "older_than",
    metavar="DURATION",
    required=True,
    callback=_retention,
    help="Delete settled intents finished longer ago than this: 30d, 12h, 2w, 1d12h (>= 1h).",
)
@click.option("--json", "as_json", is_flag=True, help="Print a JSON object instead of text.")
@click.pass_context
def prune(
    ctx: click.Context,
    *,
    journal_path: JournalLocation | None,
    older_than: timedelta,
    as_json: bool,
) -> None:
    """Delete SUCCEEDED and FAILED intents finished before now minus --older-than.

    Unresolved intents (PENDING, IN_FLIGHT, UNKNOWN) are never deleted, whatever their age.
    A pruned key is forgotten: using it again later starts a new transfer.
    """
    path = journal_path_of(ctx, journal_path)
    cutoff = datetime.now(timezone.utc) - older_than

    async def delete() -> int:
        async with existing_journal(path) as store:
            return await store.prune(finished_before=cutoff)

    deleted = run_async(delete)
    if as_json:
        echo_json({"deleted": deleted, "finished_before": iso_utc(cutoff)})
        return
    noun = "intent" if deleted == 1 else "intents"
    click.echo(
        f"deleted {deleted} settled {noun} finished before {table_time(cutoff)} UTC "
        f"from {path}; unresolved intents are never pruned"
    )
