"""The live progress bar of ``batch``, ``resume``, ``demo``: done/total, rate, ETA, retries.

It draws on stderr, and only when stderr is a terminal: stdout stays for the summary (or the
JSON lines of ``--json``), and a log file never fills with bar frames.
"""

from __future__ import annotations

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

__all__ = ["RateColumn", "progress_bar"]


class RateColumn(ProgressColumn):
    """Transfers finished per second, over rich's recent-speed window."""

    def render(self, task: Task) -> Text:
        """``12.5/s``, or ``-/s`` before the first sample."""
        speed = task.finished_speed or task.speed
        return Text("-/s" if speed is None else f"{speed:.1f}/s", style="progress.data.speed")


def progress_bar(*, total: int | None, description: str = "transferring") -> Progress:
    """A started-on-entry progress bar with one task.

    Its fields: ``sent`` (transfer requests sent so far), ``retries`` (requests beyond each
    transfer's first), ``failed`` and ``unknown``. Use as a context manager; update with
    ``progress.update(progress.task_ids[0], advance=1, retries=..., ...)``.
    """
    console = Console(stderr=True)
    progress = Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        RateColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        TextColumn(
            "sent {task.fields[sent]}  retries {task.fields[retries]}  "
            "failed {task.fields[failed]}  unknown {task.fields[unknown]}"
        ),
        TimeElapsedColumn(),
        console=console,
        disable=not console.is_terminal,
    )
    progress.add_task(description, total=total, sent=0, retries=0, failed=0, unknown=0)
    return progress
