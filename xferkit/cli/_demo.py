"""``xferkit demo``: a faulted rebalancing batch on the simulated venues, verified exactly once."""

from __future__ import annotations

from collections.abc import Callable

import click
from rich.table import Table
from rich.text import Text

from .._demo import MAX_DEMO_TRANSFERS, DemoSummary, VenueSummary, run_demo
from .._exceptions import TransferOutcomeUnknownError, VenueError
from .._models import Receipt
from ._common import EXIT_UNRESOLVED, run_async
from ._format import echo_json, make_console
from ._logging import AttemptListener, listening, verbosity_options
from ._progress import progress_bar

__all__ = ["demo"]


@click.command("demo")
@click.option(
    "--transfers",
    type=click.IntRange(1, MAX_DEMO_TRANSFERS),
    default=300,
    show_default=True,
    help="Transfers in the batch, alternately on XT and HTX.",
)
@click.option(
    "--concurrency",
    type=click.IntRange(1, 1000),
    default=16,
    show_default=True,
    help="Transfers at once.",
)
@click.option(
    "--fault-rate",
    type=click.FloatRange(0.0, 1.0),
    default=0.3,
    show_default=True,
    help="Share of transfer requests that hit a fault, on each venue.",
)
@click.option("--seed", default=2026, show_default=True, help="Seed of the plan and the faults.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as a JSON object.")
@verbosity_options
def demo(transfers: int, concurrency: int, fault_rate: float, seed: int, as_json: bool) -> None:
    """Run a faulted rebalancing batch across simulated XT and HTX and verify it exactly once.

    Nothing leaves this machine: the venues run on loopback, the journal in a temp dir.
    Exit status 0 when both venues' audits show every transfer executed exactly once.
    """
    console = make_console()
    if not as_json:
        console.print(
            Text(
                f"xferkit demo: {transfers} transfers across simulated XT and HTX on loopback, "
                f"{concurrency} at a time, {fault_rate:.0%} of transfer requests faulted"
            )
        )
    counts = {"sent": 0, "retries": 0, "failed": 0, "unknown": 0}
    with progress_bar(total=transfers) as progress:
        task = progress.task_ids[0]

        def show(advance: int = 0) -> None:
            progress.update(
                task,
                advance=advance,
                sent=counts["sent"],
                retries=counts["retries"],
                failed=counts["failed"],
                unknown=counts["unknown"],
            )

        def on_attempt(key: str, attempt: int) -> None:
            # Live, as each request is sent (the batch's, then resume()'s).
            counts["sent"] += 1
            counts["retries"] += attempt > 1
            show()

        def advance(outcome: Receipt | Exception) -> None:
            if isinstance(outcome, TransferOutcomeUnknownError):
                counts["unknown"] += 1
            elif isinstance(outcome, VenueError):
                counts["failed"] += 1
            show(advance=1)

        # Faults are the point here: the engine's warnings about them stay off the terminal
        # (the CLI is quiet unless -v), and the summary reports them all.
        with listening(AttemptListener(on_attempt)):
            summary = run_async(
                lambda: run_demo(
                    transfers=transfers,
                    concurrency=concurrency,
                    fault_rate=fault_rate,
                    seed=seed,
                    on_progress=advance,
                )
            )
    if as_json:
        echo_json(summary.to_json())
    else:
        console.print(_summary_table(summary))
        if summary.exactly_once:
            console.print(
                Text.from_markup(
                    "[bold green]verified[/]: the audits of both venues show every success "
                    "executed exactly once and every refusal never"
                )
            )
        else:
            console.print(Text.from_markup("[bold red]NOT exactly once[/]: see the table above"))
    if not summary.exactly_once:
        raise SystemExit(EXIT_UNRESOLVED)


def _summary_table(summary: DemoSummary) -> Table:
    """Per venue and in total: what was asked, what the audits show, what was survived."""
    xt, htx = summary.venue("xt"), summary.venue("htx")
    table = Table(title="demo summary (venue audits vs. receipts and journal)")
    table.add_column("")
    for name in ("xt", "htx", "total"):
        table.add_column(name, justify="right")

    def row(what: str, value: Callable[[VenueSummary], int | None]) -> None:
        cells = [value(xt), value(htx)]
        numbers = [c for c in cells if c is not None]
        total = str(sum(numbers)) if numbers else "—"
        table.add_row(what, *("—" if c is None else str(c) for c in cells), total)

    def by(field: str, key: str) -> Callable[[VenueSummary], int]:
        return lambda v: int(getattr(v, field).get(key, 0))

    row("transfers asked for", lambda v: v.transfers)
    row("succeeded", lambda v: v.succeeded)
    row("refused by the venue (nothing moved)", lambda v: v.failed)
    for code in sorted({c for v in summary.venues for c in v.refused_by_code}):
        row(f"  {code}", by("refused_by_code", code))
    row("unknown after the faulted batch", lambda v: v.unknown_after_batch)
    row("settled by resume()", lambda v: v.settled_by_resume)
    row("still unresolved", lambda v: v.unresolved)
    row("  refused after a lost answer (a person settles)", lambda v: v.left_for_operator)
    row("requests sent", lambda v: v.attempts)
    row("retries", lambda v: v.retries)
    row("faults injected and survived", lambda v: sum(v.faults.values()))
    for kind in sorted({k for v in summary.venues for k in v.faults}):
        row(f"  {kind}", by("faults", kind))
    row("settled through the HTX ledger", lambda v: v.reconciled)
    row("executed at the venue (audit)", lambda v: v.executed)
    row("executed twice", lambda v: v.executed_twice)
    row("succeeded but not executed once", lambda v: v.succeeded_not_executed)
    row("refused but executed", lambda v: v.failed_but_executed)
    row("replayed on re-submission", lambda v: v.replayed_on_resubmit)
    table.caption = f"journal: {summary.journal}   elapsed: {summary.elapsed_seconds:.1f} s"
    return table
