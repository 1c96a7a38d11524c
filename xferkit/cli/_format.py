"""How the CLI shows intents and receipts: one JSON shape per record, one table for people.

The ``--json`` field names are a contract for scripts (docs/cli.md lists them): fields are only
ever added. Amounts are strings (a float would lose digits), times ISO-8601 in UTC. The tables
are for people and may change.

Every value a user or a venue chose (keys, error messages) goes into the tables as `Text`, never
as a markup string: a key like ``[red]x`` must print as itself.
"""

from __future__ import annotations

import collections
import json
import os
from collections.abc import Iterable, Sequence
from datetime import datetime, timezone
from decimal import Decimal

import attrs
import click
from rich.console import Console
from rich.table import Table
from rich.text import Text

from .._models import Receipt, TransferStatus
from .._validation import amount_text
from ..journal import Intent, StoredError
from ..venues._base import TransferSpec
from ._common import UNRESOLVED

__all__ = [
    "STATUS_STYLES",
    "TransferRow",
    "echo_json",
    "error_json",
    "intent_json",
    "iso_utc",
    "make_console",
    "receipt_json",
    "status_counts",
    "status_text",
    "table_time",
    "transfer_table",
    "unresolved_count",
]

STATUS_STYLES = {
    TransferStatus.PENDING: "cyan",
    TransferStatus.IN_FLIGHT: "yellow",
    TransferStatus.SUCCEEDED: "green",
    TransferStatus.FAILED: "red",
    TransferStatus.UNKNOWN: "bold magenta",
}
_NONE = "—"
_PIPE_WIDTH = 240


def make_console() -> Console:
    """A console for tables on stdout.

    Piped into a file or a pager, rich would fold tables to 80 columns; they get room instead
    (``$COLUMNS`` still wins). Scripts should read ``--json`` rather than tables anyway.
    """
    console = Console(highlight=False)
    if not console.is_terminal and "COLUMNS" not in os.environ:
        console.width = _PIPE_WIDTH
    return console


def iso_utc(value: datetime | None) -> str | None:
    """ISO-8601 in UTC with microseconds (``2026-11-21T10:00:05.123456+00:00``), or ``None``.

    ``+00:00`` rather than ``Z``: ``datetime.fromisoformat`` reads it on every Python xferkit
    supports.
    """
    if value is None:
        return None
    return value.astimezone(timezone.utc).isoformat(timespec="microseconds")


def table_time(value: datetime | None) -> str:
    """A UTC time to the second, for a table cell."""
    if value is None:
        return _NONE
    return value.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S")


def status_text(status: TransferStatus) -> Text:
    """The status name in its colour."""
    return Text(status.value, style=STATUS_STYLES[status])


def status_counts(statuses: Iterable[TransferStatus]) -> str:
    """``"2 SUCCEEDED, 1 UNKNOWN"``, in the enum's order."""
    counts = collections.Counter(statuses)
    return ", ".join(f"{counts[s]} {s.value}" for s in TransferStatus if counts[s])


def echo_json(value: object) -> None:
    """Print ``value`` as indented JSON on stdout, with no colour or wrapping."""
    click.echo(json.dumps(value, indent=2, ensure_ascii=False))


def error_json(error: StoredError | None) -> dict[str, object] | None:
    """A stored refusal as JSON: ``kind`` (the exception class), ``code``, ``message``,
    ``http_status``, and ``key_reusable`` (nothing reached the venue: the key may try again)."""
    if error is None:
        return None
    return {
        "kind": error.kind,
        "code": error.code,
        "message": error.message,
        "http_status": error.http_status,
        "key_reusable": error.reusable,
    }


def intent_json(intent: Intent, *, detail: bool = False) -> dict[str, object]:
    """An intent as JSON: the ``journal ls`` object, or with ``detail`` the ``journal show`` one.

    The detailed object is a superset, so one parser reads both.
    """
    spec = TransferSpec.from_canonical_json(intent.params)
    data: dict[str, object] = {
        "key": intent.key,
        "venue": intent.venue,
        "account": intent.account or None,  # None: from xferkit 0.1, account unknown
        "status": intent.status.value,
        "amount": amount_text(spec.amount),
        "currency": spec.currency,
        "from_account": spec.from_account,
        "to_account": spec.to_account,
        "symbol": spec.symbol,
        "margin_account": spec.margin_account,
        "attempts": intent.attempts,
        "transfer_id": intent.transfer_id,
        "created_at": iso_utc(intent.created_at),
        "finished_at": iso_utc(intent.finished_at),
        "error": error_json(intent.error),
    }
    if detail:
        data.update(
            {
                "fingerprint": intent.fingerprint,
                "token": intent.token,
                "body": intent.body,
                "ledger_ref": intent.ledger_ref,
                "first_sent_at": iso_utc(intent.first_sent_at),
                "first_sent_venue_ms": intent.first_sent_venue_ms,
                "last_sent_at": iso_utc(intent.last_sent_at),
                "lease_owner": intent.lease_owner,
                "lease_expires_at": iso_utc(intent.lease_expires_at),
                "settlement": None
                if intent.settlement is None
                else {
                    "by": intent.settlement.by,
                    "at": iso_utc(intent.settlement.at),
                    "reason": intent.settlement.reason,
                },
            }
        )
    return data


def receipt_json(receipt: Receipt) -> dict[str, object]:
    """A `Receipt` as JSON: its attributes, amounts as strings, times ISO-8601 UTC."""
    return {
        "key": receipt.key,
        "venue": receipt.venue,
        "status": receipt.status.value,
        "amount": amount_text(receipt.amount),
        "currency": receipt.currency,
        "from_account": receipt.from_account,
        "to_account": receipt.to_account,
        "attempts": receipt.attempts,
        "transfer_id": receipt.transfer_id,
        "replayed": receipt.replayed,
        "created_at": iso_utc(receipt.created_at),
        "finished_at": iso_utc(receipt.finished_at),
    }


@attrs.frozen(kw_only=True)
class TransferRow:
    """One line of a transfer table; built from an intent (``ls``) or a receipt (``resume``)."""

    key: str
    venue: str
    status: TransferStatus
    amount: Decimal
    currency: str
    from_account: str
    to_account: str
    detail: str | None
    attempts: int
    transfer_id: str | None
    created_at: datetime
    finished_at: datetime | None

    @classmethod
    def from_intent(cls, intent: Intent) -> TransferRow:
        """Read the transfer's parameters from the intent's canonical JSON."""
        spec = TransferSpec.from_canonical_json(intent.params)
        return cls(
            key=intent.key,
            venue=intent.venue,
            status=intent.status,
            amount=spec.amount,
            currency=spec.currency,
            from_account=spec.from_account,
            to_account=spec.to_account,
            detail=spec.symbol or spec.margin_account,
            attempts=intent.attempts,
            transfer_id=intent.transfer_id,
            created_at=intent.created_at,
            finished_at=intent.finished_at,
        )

    @classmethod
    def from_receipt(cls, receipt: Receipt) -> TransferRow:
        """A receipt carries the same fields, bar the margin pair."""
        return cls(
            key=receipt.key,
            venue=receipt.venue,
            status=receipt.status,
            amount=receipt.amount,
            currency=receipt.currency,
            from_account=receipt.from_account,
            to_account=receipt.to_account,
            detail=None,
            attempts=receipt.attempts,
            transfer_id=receipt.transfer_id,
            created_at=receipt.created_at,
            finished_at=receipt.finished_at,
        )

    @property
    def route(self) -> str:
        """``spot → margin (btc_usdt)``: accounts by their unified names."""
        route = f"{self.from_account} → {self.to_account}"
        return f"{route} ({self.detail})" if self.detail else route


def transfer_table(rows: Sequence[TransferRow], *, title: str) -> Table:
    """The table ``journal ls`` and ``resume`` print: one transfer per line."""
    table = Table(title=Text(title), title_justify="left")
    table.add_column("key", overflow="fold")  # folded, never cut: it is what you paste next
    table.add_column("venue")
    table.add_column("state", no_wrap=True)
    table.add_column("amount", justify="right", no_wrap=True)
    table.add_column("currency")
    table.add_column("from → to")
    table.add_column("attempts", justify="right")
    table.add_column("transfer id", overflow="fold")
    table.add_column("created (UTC)")
    table.add_column("finished (UTC)")
    for row in rows:
        table.add_row(
            Text(row.key),
            Text(row.venue),
            status_text(row.status),
            Text(amount_text(row.amount)),
            Text(row.currency),
            Text(row.route),
            Text(str(row.attempts)),
            Text(row.transfer_id or _NONE),
            Text(table_time(row.created_at)),
            Text(table_time(row.finished_at)),
        )
    return table


def unresolved_count(statuses: Iterable[TransferStatus]) -> int:
    """How many of ``statuses`` are not settled (``PENDING``, ``IN_FLIGHT``, ``UNKNOWN``)."""
    return sum(1 for s in statuses if s in UNRESOLVED)
