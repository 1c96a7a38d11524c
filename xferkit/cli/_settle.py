"""``xferkit journal settle|abandon|adopt``: what only a person can settle.

Nothing here talks to a venue: the person has checked the venue's records and says what
happened. Each command changes one intent and records who, when and why (see `_settle`).
"""

from __future__ import annotations

from datetime import datetime, timezone

import click
from rich.text import Text

from .._models import TransferStatus
from .._settle import abandon_intent, default_settler, settle_intent
from ..journal import LEGACY_ACCOUNT, Intent, IntentId
from ._common import (
    CliError,
    JournalLocation,
    existing_journal,
    journal_option,
    run_async,
)
from ._format import echo_json, intent_json, make_console, status_text
from ._journal import WHICH_ACCOUNT, WHICH_VENUE, journal, journal_path_of, one_intent
from ._venues import VENUE_NAMES, venue_env, venue_from_env

__all__ = ["abandon", "account", "adopt", "settle"]

_BY = click.option("--by", help="Who is settling it (default: user@host); kept in the journal.")


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _report(intent: Intent, *, as_json: bool, verb: str) -> None:
    if as_json:
        echo_json(intent_json(intent, detail=True))
        return
    line = Text(f"{verb} {intent.key} on {intent.venue}: ")
    line.append_text(status_text(intent.status))
    make_console().print(line)


@journal.command("settle")
@click.argument("key")
@journal_option(inherited=True)
@WHICH_VENUE
@WHICH_ACCOUNT
@click.option("--succeeded", "outcome", flag_value="succeeded", help="It moved, once.")
@click.option("--failed", "outcome", flag_value="failed", help="Nothing moved.")
@click.option("--transfer-id", help="The venue's transfer id, with --succeeded, if known.")
@click.option("--reason", default="", help="Why (required with --failed); kept in the journal.")
@_BY
@click.option("--json", "as_json", is_flag=True, help="Print the settled intent as JSON.")
@click.pass_context
def settle(
    ctx: click.Context,
    *,
    key: str,
    journal_path: JournalLocation | None,
    venue: str | None,
    account: str | None,
    outcome: str | None,
    transfer_id: str | None,
    reason: str,
    by: str | None,
    as_json: bool,
) -> None:
    """Settle the unfinished intent KEY by hand, after checking the venue's records.

    --succeeded: it executed once (give --transfer-id if the venue shows one). --failed: it
    never executed (--reason says how you know). Refused for a settled intent or one a worker
    is driving now; `resume` never sends a settled intent.
    """
    if outcome is None:
        raise click.UsageError("say what happened: --succeeded or --failed")
    if outcome == "failed" and transfer_id is not None:
        raise click.UsageError("--transfer-id goes with --succeeded")
    if outcome == "failed" and not reason.strip():
        raise click.UsageError("--failed needs --reason: the journal keeps why")
    path = journal_path_of(ctx, journal_path)
    status = TransferStatus.SUCCEEDED if outcome == "succeeded" else TransferStatus.FAILED

    async def run() -> Intent:
        async with existing_journal(path) as store:
            target = one_intent(await store.find(key), key, path, venue=venue, account=account)
            return await settle_intent(
                store,
                target.id,
                status=status,
                transfer_id=transfer_id,
                reason=reason,
                by=by or default_settler(),
                now=_now(),
            )

    _report(run_async(run), as_json=as_json, verb="settled")


@journal.command("abandon")
@click.argument("key")
@journal_option(inherited=True)
@WHICH_VENUE
@WHICH_ACCOUNT
@click.option("--reason", required=True, help="Why it must never be sent; kept in the journal.")
@_BY
@click.option("--json", "as_json", is_flag=True, help="Print the abandoned intent as JSON.")
@click.pass_context
def abandon(
    ctx: click.Context,
    *,
    key: str,
    journal_path: JournalLocation | None,
    venue: str | None,
    account: str | None,
    reason: str,
    by: str | None,
    as_json: bool,
) -> None:
    """Make the never-sent intent KEY FAILED for good, so `resume` never executes it.

    For a call that was cancelled before it was sent and whose effect was made good another
    way. Refused for anything that may have been sent: check the venue and `settle` it.
    """
    path = journal_path_of(ctx, journal_path)

    async def run() -> Intent:
        async with existing_journal(path) as store:
            target = one_intent(await store.find(key), key, path, venue=venue, account=account)
            return await abandon_intent(
                store, target.id, reason=reason, by=by or default_settler(), now=_now()
            )

    _report(run_async(run), as_json=as_json, verb="abandoned")


@journal.command("adopt")
@click.argument("key")
@journal_option(inherited=True)
@click.option("--venue", required=True, help="The venue of the intent (xt, htx).")
@click.option(
    "--account",
    required=True,
    help="The account it belongs to (`xferkit journal account --venue V` names yours).",
)
@click.pass_context
def adopt(
    ctx: click.Context, *, key: str, journal_path: JournalLocation | None, venue: str, account: str
) -> None:
    """Give the intent KEY, recorded by xferkit 0.1 without an account, to ACCOUNT.

    XT rows are adopted on their own (their bizId proves whose they are); an HTX row needs a
    person who knows which API key sent it. Until then its key is refused.
    """
    path = journal_path_of(ctx, journal_path)
    legacy = IntentId(venue.lower(), LEGACY_ACCOUNT, key)

    async def run() -> Intent | None:
        async with existing_journal(path) as store:
            return await store.adopt(legacy, account=account)

    adopted = run_async(run)
    if adopted is None:
        raise CliError(
            f"no intent {key!r} on {venue} without an account, or account {account} "
            "already has one under that key"
        )
    make_console().print(Text(f"adopted {key} on {adopted.venue} for account {account}"))


@journal.command("account")
@click.option(
    "--venue",
    required=True,
    type=click.Choice(VENUE_NAMES, case_sensitive=False),
    help="The venue whose credentials (from the environment) to name.",
)
def account(venue: str) -> None:
    """Print the account fingerprint of the venue's credentials in the environment.

    The journal names accounts by this non-secret fingerprint of the API key (never the key),
    as `journal ls --json` and `journal adopt --account` do.
    """
    env = venue_env(venue.lower())
    click.echo(venue_from_env(env, None, purpose="naming the account").account)
