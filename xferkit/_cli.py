"""The command line's commands (click and rich, from the ``cli`` extra)."""

from __future__ import annotations

import sys

import anyio
import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from ._cli_journal import journal
from ._cli_resume import resume
from ._demo import DemoSummary, run_demo
from ._models import Receipt


@click.group()
@click.version_option(package_name="xferkit")
def app() -> None:
    """Exactly-once transfers between your own accounts on crypto venues.

    Exit status: 0 done, 1 intents remain unresolved (or a key is unknown), 2 could not run.
    """


app.add_command(journal)
app.add_command(resume)


@app.command()
@click.option("--transfers", default=300, show_default=True, help="Transfers in the batch.")
@click.option("--concurrency", default=16, show_default=True, help="Transfers at once.")
@click.option(
    "--fault-rate", default=0.3, show_default=True, help="Share of requests that hit a fault."
)
@click.option("--seed", default=2026, show_default=True, help="Seed of faults and amounts.")
def demo(transfers: int, concurrency: int, fault_rate: float, seed: int) -> None:
    """Run a faulted rebalancing batch against the simulated XT venue and verify it.

    Nothing leaves this machine: the venue runs on loopback, the journal in a temp dir.
    """
    console = Console()
    console.print(
        f"[bold]xferkit demo[/]: {transfers} transfers, {concurrency} at a time, "
        f"{fault_rate:.0%} of requests faulted, against the simulated XT on loopback"
    )
    with Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("failed {task.fields[failed]}  unknown {task.fields[unknown]}"),
        TimeElapsedColumn(),
        console=console,
    ) as progress:
        task = progress.add_task("transferring", total=transfers, failed=0, unknown=0)
        counts = {"failed": 0, "unknown": 0}

        def advance(outcome: Receipt | Exception) -> None:
            if not isinstance(outcome, Receipt):
                kind = "unknown" if "unknown" in type(outcome).__name__.lower() else "failed"
                counts[kind] += 1
            progress.update(task, advance=1, failed=counts["failed"], unknown=counts["unknown"])

        summary = anyio.run(
            lambda: run_demo(
                transfers=transfers,
                concurrency=concurrency,
                fault_rate=fault_rate,
                seed=seed,
                on_progress=advance,
            )
        )
    console.print(_summary_table(summary))
    if summary.exactly_once:
        console.print("[bold green]verified[/]: every transfer executed exactly once")
    else:
        console.print("[bold red]NOT exactly once[/]: see the table above")
        sys.exit(1)


def _summary_table(summary: DemoSummary) -> Table:
    table = Table(title="demo summary (venue audit vs. receipts)", show_header=False)
    table.add_column("what")
    table.add_column("count", justify="right")
    rows = [
        ("transfers asked for", summary.transfers),
        ("succeeded", summary.succeeded),
        ("refused by the venue (nothing moved)", summary.failed),
        ("unknown after the batch", summary.unknown_after_batch),
        ("settled by resume()", summary.settled_by_resume),
        ("requests sent for successes", summary.attempts),
        ("faults injected", sum(summary.faults.values())),
        *((f"  {name}", count) for name, count in sorted(summary.faults.items())),
        ("executed at the venue", summary.executed),
        ("executed twice", summary.executed_twice),
        ("succeeded but not executed once", summary.succeeded_not_executed),
        ("failed but executed", summary.failed_but_executed),
        ("replayed on re-submission", summary.replayed_on_resubmit),
    ]
    for what, count in rows:
        table.add_row(what, str(count))
    table.caption = f"journal: {summary.journal}"
    return table
