"""``xferkit transfer``: one transfer, credentials from the environment, exactly once.

Exit status: 0 when it SUCCEEDED (now, or replayed from the journal), 1 when the venue refused
it or its outcome is unknown (the message says which), 2 when it could not be sent at all
(bad input, missing credentials, a key already used for another transfer, no journal).
"""

from __future__ import annotations

import uuid
from datetime import datetime, timezone
from decimal import Decimal

import click
from rich.table import Table
from rich.text import Text

from .._client import Client
from .._exceptions import InvalidRequestError, TransferOutcomeUnknownError, VenueError
from .._models import Receipt, TransferStatus
from .._validation import amount_text, check_key, normalize_amount
from ._common import (
    EXIT_UNRESOLVED,
    CliError,
    JournalLocation,
    client_journal,
    journal_option,
    journal_to_write,
    run_async,
)
from ._format import echo_json, iso_utc, make_console, status_text
from ._logging import verbosity_options
from ._outcome import FAILED, SUCCEEDED, UNKNOWN, Outcome
from ._venues import VENUE_NAMES, check_base_url, venue_env, venue_from_env

__all__ = ["outcome_table", "parse_amount", "transfer", "verdict"]


def parse_amount(ctx: click.Context, param: click.Parameter, value: str) -> Decimal:
    """Read AMOUNT as a ``Decimal`` from the text itself (``10``, ``0.25``), never a float.

    Plain digits only: exponents, signs, ``nan`` and zero are refused (exit status 2).
    """
    try:
        return normalize_amount(value)
    except InvalidRequestError as exc:
        raise click.BadParameter(str(exc), ctx, param) from None


@click.command("transfer")
@click.argument("venue", metavar="VENUE", type=click.Choice(VENUE_NAMES, case_sensitive=False))
@click.argument("currency")
@click.argument("amount", callback=parse_amount)
@click.option(
    "--from",
    "from_account",
    required=True,
    metavar="ACCOUNT",
    help="The source account: spot, margin, finance, usdt_futures, coin_futures, futures, otc, "
    "or the venue's own name.",
)
@click.option("--to", "to_account", required=True, metavar="ACCOUNT", help="The target account.")
@click.option(
    "--key",
    metavar="KEY",
    help="Idempotency key (1-100 characters): the same key is the same transfer, however often "
    "the command runs. Default: a new key, printed (cli-<uuid4>).",
)
@click.option("--symbol", metavar="PAIR", help="XT's margin pair for margin transfers: btc_usdt.")
@click.option(
    "--margin-account",
    metavar="ACCOUNT",
    help="HTX's margin account for usdt_futures transfers: USDT, or a pair like BTC-USDT.",
)
@click.option(
    "--base-url",
    callback=check_base_url,
    metavar="URL",
    help="The venue's API host [default: $XFERKIT_XT_BASE_URL or $XFERKIT_HTX_BASE_URL, "
    "else the venue's own].",
)
@journal_option()
@click.option("--json", "as_json", is_flag=True, help="Print an outcome object as JSON.")
@verbosity_options
def transfer(
    *,
    venue: str,
    currency: str,
    amount: Decimal,
    from_account: str,
    to_account: str,
    key: str | None,
    symbol: str | None,
    margin_account: str | None,
    base_url: str | None,
    journal_path: JournalLocation,
    as_json: bool,
) -> None:
    """Move AMOUNT of CURRENCY between two of your accounts on VENUE (xt or htx), once.

    Credentials come from the environment: XFERKIT_XT_API_KEY and XFERKIT_XT_SECRET, or
    XFERKIT_HTX_ACCESS_KEY and XFERKIT_HTX_SECRET. The intent is recorded in the journal
    (created if missing) before anything is sent. Exit status 0 when the transfer SUCCEEDED,
    1 when the venue refused it or its outcome is unknown (then run `xferkit resume`),
    2 when it could not be sent.
    """
    name = venue.lower()
    configured = venue_from_env(venue_env(name), base_url, purpose=f"a transfer on {name}")
    generated = key is None
    try:
        key = check_key(f"cli-{uuid.uuid4()}" if key is None else key)
        spec = configured.validate(
            currency=currency,
            amount=amount,
            from_account=from_account,
            to_account=to_account,
            symbol=symbol,
            margin_account=margin_account,
        )
    except InvalidRequestError as exc:
        raise CliError(str(exc)) from None
    path = journal_to_write(journal_path)
    started = datetime.now(timezone.utc)

    async def run() -> Outcome:
        async with Client(configured, journal=client_journal(path)) as client:
            result: Receipt | Exception
            try:
                result = await client.transfer(
                    name,
                    currency=spec.currency,
                    amount=spec.amount,
                    from_account=spec.from_account,
                    to_account=spec.to_account,
                    symbol=spec.symbol,
                    margin_account=spec.margin_account,
                    key=key,
                )
            except (VenueError, TransferOutcomeUnknownError) as exc:
                result = exc
            intent = None if isinstance(result, Receipt) else await client.intent(name, key)
        return Outcome.build(key=key, spec=spec, result=result, intent=intent, started=started)

    outcome = run_async(run)
    if as_json:
        echo_json(outcome.to_json())
    else:
        console = make_console()
        console.print(outcome_table(outcome))
        console.print(Text(verdict(outcome, generated_key=generated)))
    if outcome.status != SUCCEEDED:
        raise SystemExit(EXIT_UNRESOLVED)


def outcome_table(outcome: Outcome) -> Table:
    """One transfer's fields, one per line."""
    spec = outcome.spec
    table = Table(title=Text(f"transfer {outcome.key}"), title_justify="left", show_header=False)
    table.add_column("field", style="bold")
    table.add_column("value", overflow="fold")
    route = f"{spec.from_account} → {spec.to_account}"
    if spec.symbol or spec.margin_account:
        route += f" ({spec.symbol or spec.margin_account})"
    try:
        state = status_text(TransferStatus(outcome.status))
    except ValueError:
        state = Text(outcome.status, style="bold red")
    rows: list[tuple[str, Text | str | None]] = [
        ("key", outcome.key),
        ("venue", spec.venue),
        ("state", state),
        ("amount", f"{amount_text(spec.amount)} {spec.currency}"),
        ("from → to", route),
        ("attempts", str(outcome.attempts)),
        ("transfer id", outcome.transfer_id),
        ("replayed", "yes: settled before this run, nothing sent" if outcome.replayed else "no"),
        ("created", iso_utc(outcome.created_at)),
        ("finished", iso_utc(outcome.finished_at)),
    ]
    if outcome.error is not None:
        error = outcome.error
        code = f" ({error.code})" if error.code else ""
        rows.append(("error", f"{error.kind}{code}: {error.message}"))
    for field, value in rows:
        table.add_row(field, value if isinstance(value, Text) else Text(value or "—"))
    return table


def verdict(outcome: Outcome, *, generated_key: bool) -> str:
    """One paragraph that says what happened and what to do next."""
    spec, key = outcome.spec, outcome.key
    moved = (
        f"{amount_text(spec.amount)} {spec.currency} from {spec.from_account} to {spec.to_account}"
    )
    if outcome.status == SUCCEEDED:
        if outcome.replayed:
            return f"SUCCEEDED before: key {key} was already settled, so nothing was sent now."
        return f"SUCCEEDED: moved {moved} on {spec.venue}, exactly once (key {key})."
    error = outcome.error
    reason = "" if error is None else (f"{error.code}: " if error.code else "") + error.message
    if outcome.status == FAILED:
        again = " It was refused before; nothing was sent now." if outcome.replayed else ""
        if error is not None and error.reusable:
            where = (
                f"{spec.venue} was not reached"
                if error.http_status is None
                else f"{spec.venue} refused it before processing the transfer"
            )
            return f"FAILED: {where} ({reason}); nothing moved.{again}" + (
                " Running the command again tries anew, under a new key."
                if generated_key
                else f" Key {key} was not spent: the same command with --key {key} tries again."
            )
        return f"FAILED: {spec.venue} refused the transfer ({reason}); nothing moved.{again}" + (
            " Running the command again tries anew, under a new key."
            if generated_key
            else f" Key {key} stays refused: to try again, use a new --key."
        )
    assert outcome.status == UNKNOWN  # noqa: S101 - other statuses raise before sending
    warning = (
        f" Do not repeat the command without --key {key}: that would be a new transfer."
        if generated_key
        else ""
    )
    return (
        f"UNKNOWN: {spec.venue} did not say whether the transfer executed ({reason}); it may "
        f"have. Run `xferkit resume` to settle it, never twice (or repeat this command with "
        f"--key {key}); `xferkit journal show {key}` shows where it stands.{warning}"
    )
