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
from collections.abc import Callable, Iterator, Mapping
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
    "PlanProblemsError",
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


class PlanProblemsError(CliError):
    """The plan has bad rows, each already reported on its own line (exit status 2)."""

    def __init__(self, path: Path, bad: int, *, stopped_at: int | None = None) -> None:
        rows = "1 bad row" if bad == 1 else f"{bad} bad rows"
        if stopped_at is not None:
            rows += f" before line {stopped_at}, where the file cannot be read on"
        super().__init__(f"{path}: {rows}; nothing was sent")
        self.bad = bad


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
        rate_limits: ``--rate-limit`` by venue name: transfer requests per second, instead
            of the venue's default.
    """

    def __init__(
        self,
        path: Path,
        fmt: str,
        base_urls: Mapping[str, str | None],
        rate_limits: Mapping[str, float] | None = None,
    ) -> None:
        self.path = path
        self.fmt = fmt
        self._base_urls = base_urls
        self._rate_limits = dict(rate_limits or {})
        self._unusable: set[str] = set()
        self.venues: dict[str, XT | HTX] = {}

    def check(self, report: Callable[[PlanError], None]) -> int:
        """Check every row, ``report`` each bad one, and return how many rows there are.

        Every bad row is reported, not only the first, each as soon as it is found (so a long
        plan's problems stream out and nothing piles up in memory); a problem with the file
        itself (the header, broken CSV quoting, text that is not UTF-8) ends the check there.
        Also refuses a key used on two rows: the second row would silently be the first's
        transfer again (same parameters) or conflict with it (different ones).

        Raises:
            PlanProblemsError: after the last row, when any row was bad.
        """
        seen: set[int] = set()
        count = bad = 0
        try:
            for row in self._checked_rows():
                count += 1
                if isinstance(row, PlanError):
                    bad += 1
                    report(row)
                    continue
                if row is None:  # a venue without credentials, already reported
                    continue
                key = row.request.key
                assert key is not None  # noqa: S101 - every row has a key
                digest = hash(key)
                if digest in seen:
                    first = self._first_line_of(key, before=row.line)
                    if first is not None:
                        bad += 1
                        report(
                            PlanError(
                                self.path,
                                row.line,
                                f"key {key!r} is also used on line {first}; every transfer "
                                "needs its own key (the same key is the same transfer)",
                            )
                        )
                seen.add(digest)
        except PlanError as fatal:
            if not bad:
                raise  # the only problem: its own line says it all
            report(fatal)
            raise PlanProblemsError(self.path, bad, stopped_at=fatal.line) from None
        if bad:
            raise PlanProblemsError(self.path, bad)
        return count

    def rows(self) -> Iterator[PlanRow]:
        """Yield the plan's rows in order, each checked; raises `PlanError` at a bad one."""
        for row in self._checked_rows():
            if isinstance(row, PlanError):
                raise row
            if row is None:  # pragma: no cover - check() refused the plan already
                raise PlanError(self.path, 0, "a venue has no credentials")
            yield row

    def _checked_rows(self) -> Iterator[PlanRow | PlanError | None]:
        """Each row checked, or its problem; ``None`` for a row of a venue without credentials."""
        raw = _csv_rows(self.path) if self.fmt == "csv" else _json_rows(self.path)
        for line, fields in raw:
            if isinstance(fields, PlanError):
                yield fields
                continue
            try:
                yield self._row(line, fields)
            except PlanError as exc:
                yield exc

    def _first_line_of(self, key: str, *, before: int) -> int | None:
        """The first line with ``key`` before line ``before``; ``None`` for a hash clash."""
        raw = _csv_rows(self.path) if self.fmt == "csv" else _json_rows(self.path)
        for line, fields in raw:
            if line >= before:
                return None
            if not isinstance(fields, PlanError) and fields.get("key") == key:
                return line
        return None  # pragma: no cover - the file ends after line `before`

    def _row(self, line: int, fields: RawRow) -> PlanRow | None:
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
        if venue is None:
            return None
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

    def _venue(self, name: str, line: int) -> XT | HTX | None:
        """The venue, built from the environment at its first row.

        Missing credentials are reported once, at that row (a `PlanError`); the venue's later
        rows come back ``None`` (unchecked) rather than repeating the same message.
        """
        venue = self.venues.get(name)
        if venue is not None:
            return venue
        if name in self._unusable:
            return None
        purpose = f"the plan's transfers on {name} (from line {line})"
        try:
            venue = venue_from_env(venue_env(name), self._base_urls.get(name), purpose=purpose)
        except CliError as exc:
            self._unusable.add(name)
            raise PlanError(self.path, line, exc.message) from None
        rate = self._rate_limits.get(name)
        if rate is not None:
            venue = attrs.evolve(venue, rate_limit=rate)
        self.venues[name] = venue
        return venue


def _open(path: Path) -> TextIO:
    # utf-8-sig: spreadsheets often start a CSV export with a byte-order mark.
    return path.open(newline="", encoding="utf-8-sig")


def _csv_rows(path: Path) -> Iterator[tuple[int, RawRow | PlanError]]:
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
                yield (
                    start,
                    PlanError(
                        path, start, f"{len(record)} fields, but the header has {len(names)}"
                    ),
                )
                continue
            yield start, {name: cell.strip() for name, cell in zip(names, record, strict=True)}


def _next_record(path: Path, reader: Iterator[list[str]], line: int) -> list[str] | None:
    try:
        return next(reader, None)
    except csv.Error as exc:
        raise PlanError(path, line, f"not valid CSV: {exc}") from None
    except UnicodeDecodeError:
        raise PlanError(path, line, "not UTF-8 text") from None


def _json_rows(path: Path) -> Iterator[tuple[int, RawRow | PlanError]]:
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
                yield line, PlanError(path, line, f"not valid JSON: {exc}")
                continue
            if not isinstance(value, dict):
                yield (
                    line,
                    PlanError(path, line, f"a JSON object per line, not {type(value).__name__}"),
                )
                continue
            unknown = [name for name in value if name not in FIELDS]
            if unknown:
                yield (
                    line,
                    PlanError(
                        path,
                        line,
                        f"unknown field {unknown[0]!r}; fields are {', '.join(REQUIRED_FIELDS)} "
                        f"and optionally {', '.join(OPTIONAL_FIELDS)}",
                    ),
                )
                continue
            yield line, value


def _no_constant(name: str) -> object:
    raise ValueError(f"{name} is not a number an amount can be")
