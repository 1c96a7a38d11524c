"""A batch plan: one transfer per row, as CSV or JSON lines, read as a stream and checked.

A plan is read twice. The first pass checks every row (fields, amount, key, the venue's own
rules, credentials for each venue used, keys used twice) before anything is sent, so a typo on
line 9,000 stops the batch before line 1 moves money. The second pass streams the same rows
into ``Client.transfer_many``. Neither keeps the rows: memory stays flat however long the plan,
bar one small hash per key for spotting a key used twice.

Amounts are read from the text as ``Decimal`` (JSON numbers too), never through a float.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator, Mapping
from decimal import Decimal
from pathlib import Path
from typing import TextIO

import attrs

from .._exceptions import InvalidRequestError
from .._models import TransferRequest
from .._validation import check_key
from ..venues._base import TransferSpec
from ..venues.htx import HTX
from ..venues.xt import XT
from ._common import CliError
from ._venues import VENUE_NAMES, venue_env, venue_from_env

__all__ = [
    "FORMATS",
    "OPTIONAL_FIELDS",
    "REQUIRED_FIELDS",
    "PlanError",
    "PlanReader",
    "PlanRow",
    "plan_format",
]

REQUIRED_FIELDS = ("venue", "currency", "amount", "from_account", "to_account", "key")
OPTIONAL_FIELDS = ("symbol", "margin_account")
FIELDS = REQUIRED_FIELDS + OPTIONAL_FIELDS
FORMATS = ("csv", "jsonl")
_EXTENSIONS = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl"}

RawRow = Mapping[str, object]


class PlanError(CliError):
    """The plan cannot be run as it is (exit status 2); the message names the line."""

    def __init__(self, path: Path, line: int, message: str) -> None:
        super().__init__(f"{path}, line {line}: {message}")
        self.line = line


def plan_format(path: Path, chosen: str | None) -> str:
    """``csv`` or ``jsonl``: ``chosen`` (``--format``) if given, else by the file's extension."""
    if chosen is not None:
        return chosen
    fmt = _EXTENSIONS.get(path.suffix.lower())
    if fmt is None:
        raise CliError(
            f"cannot tell the format of {path} from its extension; name it .csv, .jsonl or "
            ".ndjson, or pass --format csv or --format jsonl"
        )
    return fmt


@attrs.frozen(kw_only=True)
class PlanRow:
    """One checked row: where it is, the transfer in canonical form and the request to send."""

    line: int
    spec: TransferSpec
    request: TransferRequest


class PlanReader:
    """Reads a plan's rows as checked transfers.

    Each venue the plan names is built from the environment when its first row is read, so a
    plan on XT alone needs no HTX credentials.

    Args:
        path: the plan file.
        fmt: ``csv`` or ``jsonl``.
        base_urls: ``--xt-base-url`` / ``--htx-base-url`` by venue name (``None``: from the
            environment or the default).
    """

    def __init__(self, path: Path, fmt: str, base_urls: Mapping[str, str | None]) -> None:
        self.path = path
        self.fmt = fmt
        self._base_urls = base_urls
        self.venues: dict[str, XT | HTX] = {}

    def check(self) -> int:
        """Check every row and return how many there are; raises `PlanError` at the first bad one.

        Also refuses a key used on two rows: the second row would silently be the first's
        transfer again (same parameters) or conflict with it (different ones).
        """
        seen: set[int] = set()
        count = 0
        for row in self.rows():
            count += 1
            key = row.request.key
            assert key is not None  # noqa: S101 - every row has a key
            digest = hash(key)
            if digest in seen:
                first = self._first_line_of(key, before=row.line)
                if first is not None:
                    raise PlanError(
                        self.path,
                        row.line,
                        f"key {key!r} is also used on line {first}; every transfer needs its "
                        "own key (the same key is the same transfer)",
                    )
            seen.add(digest)
        return count

    def rows(self) -> Iterator[PlanRow]:
        """Yield the plan's rows in order, each checked; raises `PlanError` at a bad one."""
        raw = _csv_rows(self.path) if self.fmt == "csv" else _json_rows(self.path)
        for line, fields in raw:
            yield self._row(line, fields)

    def _first_line_of(self, key: str, *, before: int) -> int | None:
        """The first line with ``key`` before line ``before``; ``None`` for a hash clash."""
        raw = _csv_rows(self.path) if self.fmt == "csv" else _json_rows(self.path)
        for line, fields in raw:
            if line >= before:
                return None
            if fields.get("key") == key:
                return line
        return None  # pragma: no cover - the file ends after line `before`

    def _row(self, line: int, fields: RawRow) -> PlanRow:
        def fail(message: str) -> PlanError:
            return PlanError(self.path, line, message)

        def text(name: str, *, required: bool) -> str | None:
            value = fields.get(name)
            if value is None or value == "":
                if required:
                    hint = (
                        " (every row needs one, so that re-running the plan is a no-op for "
                        "transfers already done)"
                        if name == "key"
                        else ""
                    )
                    raise fail(f"{name} is missing{hint}")
                return None
            if not isinstance(value, str):
                raise fail(f"{name} must be a string, not {type(value).__name__}")
            return value

        venue_name = (text("venue", required=True) or "").lower()
        if venue_name not in VENUE_NAMES:
            raise fail(f"venue {fields['venue']!r} is not one of {', '.join(VENUE_NAMES)}")
        key = text("key", required=True)
        amount = fields.get("amount")
        if amount is None or amount == "":
            raise fail("amount is missing")
        if isinstance(amount, bool) or not isinstance(amount, str | int | Decimal):
            raise fail(f"amount must be a decimal number or string, not {type(amount).__name__}")
        venue = self._venue(venue_name, line)
        try:
            key = check_key(key)
            spec = venue.validate(
                currency=text("currency", required=True),
                amount=amount,
                from_account=text("from_account", required=True),
                to_account=text("to_account", required=True),
                symbol=text("symbol", required=False),
                margin_account=text("margin_account", required=False),
            )
        except InvalidRequestError as exc:
            raise fail(str(exc)) from None
        request = TransferRequest(
            venue=spec.venue,
            currency=spec.currency,
            amount=spec.amount,
            from_account=spec.from_account,
            to_account=spec.to_account,
            symbol=spec.symbol,
            margin_account=spec.margin_account,
            key=key,
        )
        return PlanRow(line=line, spec=spec, request=request)

    def _venue(self, name: str, line: int) -> XT | HTX:
        venue = self.venues.get(name)
        if venue is None:
            purpose = f"the plan's transfers on {name} (from line {line})"
            venue = venue_from_env(venue_env(name), self._base_urls.get(name), purpose=purpose)
            self.venues[name] = venue
        return venue


def _open(path: Path) -> TextIO:
    # utf-8-sig: spreadsheets often start a CSV export with a byte-order mark.
    return path.open(newline="", encoding="utf-8-sig")


def _csv_rows(path: Path) -> Iterator[tuple[int, RawRow]]:
    """Yield (line where the record starts, fields) per CSV record; blank lines are skipped."""
    with _open(path) as file:
        reader = csv.reader(file, strict=True)
        header = _next_record(path, reader, 1)
        if header is None:
            raise PlanError(
                path,
                1,
                f"the file is empty; a CSV plan starts with the header line "
                f"{','.join(REQUIRED_FIELDS)} (optionally ,{','.join(OPTIONAL_FIELDS)})",
            )
        names = [name.strip().lower() for name in header]
        unknown = [name for name in names if name not in FIELDS]
        if unknown:
            raise PlanError(
                path,
                1,
                f"unknown column {unknown[0]!r} in the header; columns are "
                f"{', '.join(REQUIRED_FIELDS)} and optionally {', '.join(OPTIONAL_FIELDS)}",
            )
        repeated = sorted({name for name in names if names.count(name) > 1})
        if repeated:
            raise PlanError(path, 1, f"column {repeated[0]!r} appears twice in the header")
        missing = [name for name in REQUIRED_FIELDS if name not in names]
        if missing:
            raise PlanError(path, 1, f"the header has no {', '.join(missing)} column")
        while True:
            start = reader.line_num + 1
            record = _next_record(path, reader, start)
            if record is None:
                return
            if not any(cell.strip() for cell in record):
                continue
            if len(record) != len(names):
                raise PlanError(
                    path, start, f"{len(record)} fields, but the header has {len(names)}"
                )
            yield start, {name: cell.strip() for name, cell in zip(names, record, strict=True)}


def _next_record(path: Path, reader: Iterator[list[str]], line: int) -> list[str] | None:
    try:
        return next(reader, None)
    except csv.Error as exc:
        raise PlanError(path, line, f"not valid CSV: {exc}") from None
    except UnicodeDecodeError:
        raise PlanError(path, line, "not UTF-8 text") from None


def _json_rows(path: Path) -> Iterator[tuple[int, RawRow]]:
    """Yield (line number, object) per non-blank line of a JSON-lines file."""
    with _open(path) as file:
        line = 0
        while True:
            line += 1
            try:
                text = file.readline()
            except UnicodeDecodeError:
                raise PlanError(path, line, "not UTF-8 text") from None
            if not text:
                return
            if not text.strip():
                continue
            try:
                value = json.loads(text, parse_float=Decimal, parse_constant=_no_constant)
            except ValueError as exc:
                raise PlanError(path, line, f"not valid JSON: {exc}") from None
            if not isinstance(value, dict):
                raise PlanError(path, line, f"a JSON object per line, not {type(value).__name__}")
            unknown = [name for name in value if name not in FIELDS]
            if unknown:
                raise PlanError(
                    path,
                    line,
                    f"unknown field {unknown[0]!r}; fields are {', '.join(REQUIRED_FIELDS)} "
                    f"and optionally {', '.join(OPTIONAL_FIELDS)}",
                )
            yield line, value


def _no_constant(name: str) -> object:
    raise ValueError(f"{name} is not a number an amount can be")
