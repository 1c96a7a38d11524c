"""``xferkit resume``: settle every unfinished intent in a journal, with venues from the env.

The exit status is the point for scripts and cron jobs: 0 only when nothing in the journal is
left unresolved after the run, 1 when something is (still ambiguous, a venue without
credentials, or driven by another worker), 2 when the run could not start.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import attrs
import click
from rich.text import Text

from .._client import DEFAULT_RESUME_CONCURRENCY, Client
from .._models import Receipt, TransferStatus
from ..journal import Intent
from ..venues.htx import HTX
from ..venues.xt import XT
from ._common import (
    EXIT_UNRESOLVED,
    UNRESOLVED,
    CliError,
    JournalLocation,
    client_journal,
    journal_option,
    require_journal,
    run_async,
)
from ._format import (
    TransferRow,
    echo_json,
    intent_json,
    make_console,
    receipt_json,
    status_counts,
    transfer_table,
)
from ._logging import AttemptListener, listening, verbosity_options
from ._progress import progress_bar
from ._venues import VENUE_ENV, VenueEnv, check_base_url, venue_from_env

__all__ = ["VENUE_ENV", "VenueEnv", "build_venues", "resume"]


def build_venues(names: Sequence[str], base_urls: dict[str, str | None]) -> list[XT | HTX]:
    """Build the venues to resume with, from the environment.

    Named venues (``--venue``, or a ``--<venue>-base-url``) must have credentials; with none
    named, every venue with any credential variable set is used, so a half-configured venue
    is an error rather than silently skipped. Messages name variables, never values.
    """
    wanted = set(names) | {name for name, url in base_urls.items() if url}
    if not wanted:
        wanted = {v.name for v in VENUE_ENV if any(os.environ.get(c) for c in v.credentials)}
    if not wanted:
        pairs = ", or ".join(v.needs for v in VENUE_ENV)
        raise CliError(f"no venue credentials in the environment: set {pairs}")
    return [
        venue_from_env(env, base_urls.get(env.name), purpose=f"resuming {env.name} intents")
        for env in VENUE_ENV
        if env.name in wanted
    ]


@attrs.frozen(kw_only=True)
class _Outcome:
    receipts: list[Receipt]
    remaining: list[Intent]


@click.command("resume")
@journal_option()
@click.option(
    "--venue",
    "venue_names",
    multiple=True,
    type=click.Choice([v.name for v in VENUE_ENV], case_sensitive=False),
    help="Resume with this venue (its credentials must be set); repeat for both. "
    "Default: every venue whose credentials are in the environment.",
)
@click.option(
    "--xt-base-url",
    callback=check_base_url,
    metavar="URL",
    help="XT's API host, e.g. a proxy or a simulated venue "
    "[default: $XFERKIT_XT_BASE_URL, else https://sapi.xt.com].",
)
@click.option(
    "--htx-base-url",
    callback=check_base_url,
    metavar="URL",
    help="HTX's API host [default: $XFERKIT_HTX_BASE_URL, else https://api.huobi.pro].",
)
@click.option(
    "--concurrency",
    type=click.IntRange(min=1),
    default=DEFAULT_RESUME_CONCURRENCY,
    show_default=True,
    help="Intents driven at once (the venues' rate limits still apply).",
)
@click.option(
    "--deadline",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    help="Seconds the whole sweep may take [default: no limit].",
)
@click.option("--json", "as_json", is_flag=True, help="Print a JSON object instead of tables.")
@verbosity_options
def resume(
    *,
    journal_path: JournalLocation,
    venue_names: tuple[str, ...],
    xt_base_url: str | None,
    htx_base_url: str | None,
    concurrency: int,
    deadline: float | None,
    as_json: bool,
) -> None:
    """Drive every unfinished intent in the journal to a final state, exactly once.

    Credentials come from the environment (XFERKIT_XT_API_KEY and XFERKIT_XT_SECRET,
    XFERKIT_HTX_ACCESS_KEY and XFERKIT_HTX_SECRET). Exit status 0 when every intent is
    settled afterwards, 1 when any remains unresolved, 2 when the run could not start.
    """
    venues = build_venues(
        [name.lower() for name in venue_names], {"xt": xt_base_url, "htx": htx_base_url}
    )
    path = require_journal(journal_path)

    async def run() -> _Outcome:
        async with Client(*venues, journal=client_journal(path)) as client:
            mine = [(v.name, v.account) for v in venues]
            total = len(await client.journal.list(statuses=UNRESOLVED, accounts=mine))
            tally = {"failed": 0, "unknown": 0, "sent": 0, "retries": 0}

            def on_attempt(key: str, attempt: int) -> None:
                # Live, as each request is sent: resending a lost answer is a retry.
                tally["sent"] += 1
                tally["retries"] += attempt > 1
                progress.update(task, sent=tally["sent"], retries=tally["retries"])

            with (
                progress_bar(total=total, description="resuming") as progress,
                listening(AttemptListener(on_attempt)),
            ):
                task = progress.task_ids[0]

                def advance(receipt: Receipt) -> None:
                    if receipt.status is TransferStatus.FAILED:
                        tally["failed"] += 1
                    elif receipt.status is not TransferStatus.SUCCEEDED:
                        tally["unknown"] += 1
                    progress.update(
                        task, advance=1, failed=tally["failed"], unknown=tally["unknown"]
                    )

                receipts = await client.resume(
                    concurrency=concurrency, deadline=deadline, on_receipt=advance
                )
            remaining = await client.journal.list(statuses=UNRESOLVED)
        return _Outcome(receipts=receipts, remaining=remaining)

    outcome = run_async(run)
    if as_json:
        echo_json(
            {
                "receipts": [receipt_json(r) for r in outcome.receipts],
                "unresolved": [intent_json(i) for i in outcome.remaining],
            }
        )
    else:
        _print(outcome, path, mine={(v.name, v.account) for v in venues})
    if outcome.remaining:
        raise SystemExit(EXIT_UNRESOLVED)


def _print(outcome: _Outcome, path: JournalLocation, *, mine: set[tuple[str, str]]) -> None:
    """The receipts, what was left untouched, and one summary line that says the exit status.

    ``mine``: the (venue, account) pairs whose credentials this run has.
    """
    console = make_console()
    configured = {venue for venue, _ in mine}
    resumed = {(r.venue, r.key) for r in outcome.receipts}
    if outcome.receipts:
        rows = [TransferRow.from_receipt(r) for r in outcome.receipts]
        console.print(transfer_table(rows, title=f"resumed from {path}"))
    untouched = [
        i
        for i in outcome.remaining
        if (i.venue, i.key) not in resumed or (i.venue, i.account) not in mine
    ]
    if untouched:
        rows = [TransferRow.from_intent(i) for i in untouched]
        console.print(transfer_table(rows, title="not attempted"))
    if outcome.receipts:
        count = len(outcome.receipts)
        summary = f"resumed {count} intent{'s' if count != 1 else ''}: "
        summary += status_counts(r.status for r in outcome.receipts)
    else:
        summary = "nothing was resumed"
    if not outcome.remaining:
        console.print(Text(f"{summary}; every intent is settled"))
        return
    reasons: list[str] = []
    still = len(outcome.remaining) - len(untouched)
    if still:
        reasons.append(f"{still} still ambiguous (`xferkit journal show KEY`; resume again later)")
    for env in VENUE_ENV:
        count = sum(1 for i in untouched if i.venue == env.name and i.venue not in configured)
        if count:
            reasons.append(
                f"{count} on {env.name}, which has no credentials here "
                f"(set {' and '.join(env.credentials)})"
            )
    others = sum(1 for i in untouched if i.venue in configured and (i.venue, i.account) not in mine)
    if others:
        reasons.append(
            f"{others} of other accounts (or from xferkit 0.1, unclaimed): only their own "
            "credentials resume them (`xferkit journal adopt` for an unclaimed one)"
        )
    leased = sum(1 for i in untouched if (i.venue, i.account) in mine)
    if leased:
        reasons.append(f"{leased} driven by another worker right now")
    console.print(
        Text(
            f"{summary}; {len(outcome.remaining)} unresolved, exit status {EXIT_UNRESOLVED}: "
            + "; ".join(reasons)
        )
    )
