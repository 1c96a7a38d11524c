"""``xferkit batch PLAN``: a plan of keyed transfers through ``Client.transfer_many``.

Every row has an idempotency key, so running a plan again is safe: finished keys come back
from the journal without a request (``replayed``), and unfinished ones continue where they
stopped. Exit status: 0 when every row SUCCEEDED, 1 when any was refused or is unknown (or
was not sent), 2 when the plan could not be run (a bad row, with its line number, before
anything is sent).
"""

from __future__ import annotations

import collections
import contextlib
import json
import time
from collections.abc import Iterator, Mapping
from datetime import datetime, timezone
from pathlib import Path

import attrs
import click
from rich.table import Table
from rich.text import Text

from .._client import Client
from .._exceptions import TransferOutcomeUnknownError, VenueError, XferError
from .._models import Receipt, TransferRequest
from .._validation import amount_text
from ._common import (
    EXIT_OK,
    EXIT_UNRESOLVED,
    JournalLocation,
    client_journal,
    journal_option,
    journal_to_write,
    run_async,
)
from ._format import make_console
from ._logging import AttemptListener, listening, verbosity_options
from ._outcome import ERROR, FAILED, SUCCEEDED, UNKNOWN, Outcome
from ._plan import FORMATS, PlanError, PlanReader, PlanRow, plan_format
from ._progress import progress_bar
from ._venues import check_base_url, parse_rate_limits

__all__ = ["SHOWN_IN_FLIGHT", "SHOWN_PROBLEMS", "Tally", "batch"]

SHOWN_PROBLEMS = 50
"""How many rows that did not succeed the table lists; the JSON lines list every one."""
SHOWN_IN_FLIGHT = 10
"""How many keys left in flight by an interruption the closing message names."""


@attrs.define
class Tally:
    """Running counts of a batch; what the progress bar and the summary show."""

    rows: int = 0
    succeeded: int = 0
    replayed: int = 0
    failed: int = 0
    reusable: int = 0
    unknown: int = 0
    errors: int = 0
    retries: int = 0
    refused_by_code: collections.Counter[str] = attrs.field(factory=collections.Counter)
    kinds: dict[str, str] = attrs.field(factory=dict)
    problems: list[tuple[int, Outcome]] = attrs.field(factory=list)
    in_flight: list[str] = attrs.field(factory=list)
    """Keys handed to the client but not finished when the run stopped (an interruption)."""

    def add(self, line: int, outcome: Outcome) -> None:
        """Count one row's outcome."""
        self.rows += 1
        self.retries += outcome.retries
        self.replayed += outcome.replayed
        if outcome.status == SUCCEEDED:
            self.succeeded += 1
            return
        if outcome.status == FAILED:
            self.failed += 1
            self.reusable += outcome.error is not None and outcome.error.reusable
            self.refused_by_code[outcome.refusal] += 1
            if outcome.error is not None:
                self.kinds.setdefault(outcome.refusal, outcome.error.kind)
        elif outcome.status == UNKNOWN:
            self.unknown += 1
        else:
            self.errors += 1
        if len(self.problems) < SHOWN_PROBLEMS:
            self.problems.append((line, outcome))

    @property
    def exit_status(self) -> int:
        """0 when every row succeeded, else 1."""
        return EXIT_OK if self.succeeded == self.rows else EXIT_UNRESOLVED

    def summary_json(
        self, *, plan: Path, journal: JournalLocation, elapsed: float
    ) -> dict[str, object]:
        """The final summary object of ``--json`` (docs/cli.md)."""
        return {
            "type": "summary",
            "plan": str(plan),
            "journal": str(journal),
            "rows": self.rows,
            "succeeded": self.succeeded,
            "replayed": self.replayed,
            "failed": self.failed,
            "keys_reusable": self.reusable,
            "refused_by_code": dict(sorted(self.refused_by_code.items())),
            "unknown": self.unknown,
            "errors": self.errors,
            "retries": self.retries,
            "elapsed_seconds": round(elapsed, 3),
            "exit_status": self.exit_status,
        }


@click.command("batch")
@click.argument("plan", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--format",
    "fmt",
    type=click.Choice(FORMATS, case_sensitive=False),
    help="The plan's format [default: by extension: .csv, or .jsonl/.ndjson for JSON lines].",
)
@click.option(
    "--concurrency",
    type=click.IntRange(1, 1000),
    default=16,
    show_default=True,
    help="Transfers in flight at once (each venue's rate limit still applies).",
)
@click.option(
    "--xt-base-url",
    callback=check_base_url,
    metavar="URL",
    help="XT's API host [default: $XFERKIT_XT_BASE_URL, else https://sapi.xt.com].",
)
@click.option(
    "--htx-base-url",
    callback=check_base_url,
    metavar="URL",
    help="HTX's API host [default: $XFERKIT_HTX_BASE_URL, else https://api.huobi.pro].",
)
@click.option(
    "--rate-limit",
    "rate_limits",
    multiple=True,
    metavar="VENUE=N",
    callback=parse_rate_limits,
    help="Transfer requests per second on VENUE, instead of its default (XT 10, HTX 1); "
    "repeat for each venue.",
)
@click.option(
    "--check",
    "check_only",
    is_flag=True,
    help="Check the whole plan, report every bad row, and stop: nothing is sent, no journal.",
)
@journal_option()
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="Print one JSON object per line: an outcome per row as it finishes, then a summary.",
)
@verbosity_options
def batch(
    *,
    plan: Path,
    fmt: str | None,
    concurrency: int,
    xt_base_url: str | None,
    htx_base_url: str | None,
    rate_limits: dict[str, float],
    check_only: bool,
    journal_path: JournalLocation,
    as_json: bool,
) -> None:
    """Run every transfer in PLAN (CSV or JSON lines), each exactly once, several at a time.

    Columns: venue, currency, amount, from_account, to_account, key, and optionally symbol
    and margin_account. Every row needs its own key, so running the plan again never moves
    money twice. The whole plan is checked before anything is sent. Exit status 0 when every
    row SUCCEEDED, 1 when any was refused or is unknown, 2 on a bad plan. With --check,
    exit status 0 when the plan is good, 2 when not.
    """
    reader = PlanReader(
        plan,
        plan_format(plan, fmt.lower() if fmt else None),
        {"xt": xt_base_url, "htx": htx_base_url},
        rate_limits,
    )
    total = reader.check(_report_problem)
    if check_only:
        noun = "row" if total == 1 else "rows"
        click.echo(f"{plan}: {total} {noun}, all good; nothing was sent")
        return
    path = journal_to_write(journal_path)
    began = time.monotonic()
    tally = Tally()
    interrupted = False
    if total:
        try:
            run_async(lambda: _run(reader, path, total, concurrency, tally, as_json=as_json))
        except KeyboardInterrupt:
            interrupted = True
    elapsed = time.monotonic() - began
    if as_json:
        summary = tally.summary_json(plan=plan, journal=path, elapsed=elapsed)
        if interrupted:
            summary.update(
                interrupted=True,
                not_finished=total - tally.rows,
                in_flight=tally.in_flight,
                exit_status=EXIT_UNRESOLVED,
            )
        _echo_line(summary)
    else:
        _print_summary(tally, plan=plan, journal=path, elapsed=elapsed, final=not interrupted)
    if interrupted:
        click.echo(_interrupted_line(tally, plan=plan, total=total), err=True)
        raise SystemExit(EXIT_UNRESOLVED)
    if tally.exit_status:
        raise SystemExit(tally.exit_status)


def _report_problem(problem: PlanError) -> None:
    """One bad row, one ``Error:`` line on stderr, as soon as it is found."""
    click.echo(f"Error: {problem.message}", err=True)


def _interrupted_line(tally: Tally, *, plan: Path, total: int) -> str:
    """What a Ctrl-C left: what finished, what is open, and how to continue it."""
    left = total - tally.rows
    flying = len(tally.in_flight)
    shown = ", ".join(tally.in_flight[:SHOWN_IN_FLIGHT])
    more = f" and {flying - SHOWN_IN_FLIGHT} more" if flying > SHOWN_IN_FLIGHT else ""
    open_part = (
        f"{flying} of them under way (sent, or waiting for their turn), which the journal "
        f"keeps open ({shown}{more}; `xferkit journal ls --unresolved` lists them)"
        if flying
        else "none of them under way"
    )
    return (
        f"Interrupted: {tally.rows} of {total} rows finished (summary above); {left} not "
        f"finished, {open_part}. Nothing runs twice: run `xferkit batch {plan}` again to "
        "finish them all, or `xferkit resume` to settle only the ones already sent."
    )


async def _run(
    reader: PlanReader,
    journal: JournalLocation,
    total: int,
    concurrency: int,
    tally: Tally,
    *,
    as_json: bool,
) -> None:
    """Stream the plan into ``transfer_many`` and count (and print) outcomes as they come.

    ``tally`` is the caller's, so that what finished is known after an interruption too.
    """
    started = datetime.now(timezone.utc)
    # Rows sent but not yet reported, by key: at most about 2 x concurrency at any time.
    pending: dict[str, collections.deque[PlanRow]] = {}

    def requests() -> Iterator[TransferRequest]:
        for row in reader.rows():
            key = row.request.key
            assert key is not None  # noqa: S101 - every plan row has a key
            pending.setdefault(key, collections.deque()).append(row)
            yield row.request

    # Retries of rows still in flight, by key, as the engine reports each attempt: the bar
    # counts a retry when it is sent, not when its row finishes.
    live: dict[str, int] = {}
    sent = 0

    def show() -> None:
        progress.update(
            task,
            retries=tally.retries + sum(live.values()),
            failed=tally.failed + tally.errors,
            unknown=tally.unknown,
            sent=sent,
        )

    def on_attempt(key: str, attempt: int) -> None:
        nonlocal sent
        if key in pending:
            sent += 1
            live[key] = max(live.get(key, 0), attempt - 1)
            show()

    with (
        progress_bar(total=total) as progress,
        listening(AttemptListener(on_attempt)),
        _note_in_flight(tally, pending),
    ):
        task = progress.task_ids[0]
        async with Client(*reader.venues.values(), journal=client_journal(journal)) as client:
            async for result in client.transfer_many(requests(), concurrency=concurrency):
                key = _key_of(result)
                if key not in pending:
                    raise RuntimeError(f"transfer_many returned an outcome for {key!r}, not asked")
                row = pending[key].popleft()
                if not pending[key]:
                    del pending[key]
                intent = None
                if isinstance(result, VenueError | TransferOutcomeUnknownError):
                    intent = await client.intent(row.spec.venue, key)
                outcome = Outcome.build(
                    key=key, spec=row.spec, result=result, intent=intent, started=started
                )
                live.pop(key, None)
                tally.add(row.line, outcome)
                if as_json:
                    _echo_line({"type": "outcome", "line": row.line, **outcome.to_json()})
                progress.advance(task)
                show()


@contextlib.contextmanager
def _note_in_flight(tally: Tally, pending: Mapping[str, object]) -> Iterator[None]:
    """On the way out (Ctrl-C included), note the keys still in flight for the summary."""
    try:
        yield
    finally:
        tally.in_flight = sorted(pending)


def _key_of(result: Receipt | Exception) -> str | None:
    """The key an outcome belongs to; an exception without a request is a bug, raised here."""
    if isinstance(result, Receipt):
        return result.key
    request = result.request if isinstance(result, XferError) else None
    if request is None:
        raise result  # not one transfer's outcome: a bug, which must not hide in a count
    return request.key


def _echo_line(value: object) -> None:
    """One JSON object on one line (JSON lines), as soon as it is known."""
    click.echo(json.dumps(value, ensure_ascii=False))


def _print_summary(
    tally: Tally, *, plan: Path, journal: JournalLocation, elapsed: float, final: bool = True
) -> None:
    """The summary table, the rows that did not succeed, and a line that says the exit status.

    ``final=False`` (an interrupted run): no closing line, which would judge a partial run.
    """
    console = make_console()
    table = Table(title=Text(f"batch {plan}"), title_justify="left", show_header=False)
    table.add_column("what")
    table.add_column("count", justify="right")
    rate = f"{tally.rows / elapsed:.1f}/s" if elapsed > 0 else "—"
    rows: list[tuple[str, str]] = [
        ("rows", str(tally.rows)),
        ("succeeded", str(tally.succeeded)),
        ("replayed (settled before this run; nothing sent)", str(tally.replayed)),
        ("refused by the venue (nothing moved)", str(tally.failed)),
        *(
            (f"  {code} ({tally.kinds.get(code, '?')})", str(count))
            for code, count in sorted(tally.refused_by_code.items())
        ),
        ("unknown (may have executed)", str(tally.unknown)),
        ("not sent (error)", str(tally.errors)),
        ("retries", str(tally.retries)),
        ("elapsed", f"{elapsed:.1f} s ({rate})"),
    ]
    for what, count in rows:
        table.add_row(Text(what), Text(count))
    table.caption = Text(f"journal: {journal}")
    console.print(table)
    if tally.problems:
        console.print(_problem_table(tally))
    if final:  # an interrupted run ends with its own message instead (on stderr)
        console.print(Text(_closing_line(tally)))


def _problem_table(tally: Tally) -> Table:
    shown = len(tally.problems)
    missing = tally.rows - tally.succeeded - shown
    title = "did not succeed"
    if missing:
        title += f" (the first {shown} to finish; {missing} more in --json)"
    table = Table(title=Text(title), title_justify="left")
    table.add_column("line", justify="right")
    table.add_column("key", overflow="fold")
    table.add_column("venue")
    table.add_column("state", no_wrap=True)
    table.add_column("amount", justify="right")
    table.add_column("why", overflow="fold")
    styles = {FAILED: "red", UNKNOWN: "bold magenta", ERROR: "bold red"}
    for line, outcome in sorted(tally.problems, key=lambda item: item[0]):
        error = outcome.error
        why = (
            ""
            if error is None
            else f"{error.kind}: "
            + (f"{error.code}: {error.message}" if error.code else error.message)
        )
        table.add_row(
            Text(str(line)),
            Text(outcome.key),
            Text(outcome.spec.venue),
            Text(outcome.status, style=styles.get(outcome.status, "")),
            Text(f"{amount_text(outcome.spec.amount)} {outcome.spec.currency}"),
            Text(why),
        )
    return table


def _closing_line(tally: Tally) -> str:
    if tally.exit_status == EXIT_OK:
        noun = "transfer" if tally.rows == 1 else "transfers"
        return f"all {tally.rows} {noun} SUCCEEDED ({tally.replayed} replayed); exit status 0"
    reasons: list[str] = []
    spent = tally.failed - tally.reusable
    if spent:
        reasons.append(
            f"{spent} refused (nothing moved; their keys stay refused: "
            "a new attempt needs a new key)"
        )
    if tally.reusable:
        reasons.append(
            f"{tally.reusable} not processed (the venue was not reached or refused them before "
            "processing; nothing moved; running this plan again tries them again)"
        )
    if tally.unknown:
        reasons.append(
            f"{tally.unknown} unknown (`xferkit resume` settles them, never twice, "
            "or run this plan again)"
        )
    if tally.errors:
        reasons.append(f"{tally.errors} not sent (see the table)")
    failing = tally.rows - tally.succeeded
    return (
        f"{failing} of {tally.rows} did not succeed; exit status {EXIT_UNRESOLVED}: "
        + "; ".join(reasons)
    )
