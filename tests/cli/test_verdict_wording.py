"""What the command line tells a person after a failure: where it failed and whether the key
is spent, from `verdict` (``xferkit transfer``) and the batch's closing line, without a venue."""

from __future__ import annotations

from decimal import Decimal

import pytest

from xferkit.cli._batch import Tally, _closing_line
from xferkit.cli._outcome import FAILED, Outcome
from xferkit.cli._transfer import verdict
from xferkit.journal import StoredError
from xferkit.venues._base import TransferSpec

KEY = "rebalance-0007"
SPEC = TransferSpec(
    venue="xt",
    currency="usdt",
    amount=Decimal("10"),
    from_account="spot",
    to_account="usdt_futures",
)
RETRY_HINT = f"Key {KEY} was not spent: the same command with --key {KEY} tries again."

DEAD_HOST = StoredError(
    kind="VenueUnavailableError",
    message="connection refused",
    reusable=True,
)
GATEWAY_REFUSAL = StoredError(
    kind="PermissionDeniedError",
    code="AUTH_104",
    message="IP not whitelisted",
    http_status=200,
    reusable=True,
)
BALANCE_REFUSAL = StoredError(
    kind="InsufficientBalanceError",
    code="FUND_002",
    message="insufficient balance",
    http_status=200,
)


def failed(error: StoredError, *, replayed: bool = False) -> Outcome:
    return Outcome(key=KEY, spec=SPEC, status=FAILED, attempts=1, replayed=replayed, error=error)


def test_a_dead_host_says_the_venue_was_not_reached_and_the_key_is_not_spent() -> None:
    """A failure with no answer from the venue says it was not reached, that nothing moved,
    and the exact command that tries the same key again."""
    text = verdict(failed(DEAD_HOST), generated_key=False)
    assert text.startswith("FAILED: xt was not reached (connection refused); nothing moved.")
    assert text.endswith(RETRY_HINT)
    assert "refused the transfer" not in text
    assert "new --key" not in text


def test_a_dead_host_without_a_key_of_the_callers_says_running_again_tries_anew() -> None:
    """With a generated key, the hint is to run the command again (a new key), not a --key the
    caller never chose."""
    text = verdict(failed(DEAD_HOST), generated_key=True)
    assert "xt was not reached" in text
    assert text.endswith("Running the command again tries anew, under a new key.")
    assert "--key" not in text


def test_a_refusal_before_processing_says_so_and_the_key_is_not_spent() -> None:
    """A gateway refusal (an HTTP answer, key not spent) says the venue refused it before
    processing the transfer, with its code, and the same retry hint."""
    text = verdict(failed(GATEWAY_REFUSAL), generated_key=False)
    assert text.startswith(
        "FAILED: xt refused it before processing the transfer "
        "(AUTH_104: IP not whitelisted); nothing moved."
    )
    assert "not reached" not in text
    assert text.endswith(RETRY_HINT)


def test_a_plain_refusal_says_a_new_attempt_needs_a_new_key() -> None:
    """A refusal by the venue's transfer logic spends the key: the hint is a new --key."""
    text = verdict(failed(BALANCE_REFUSAL), generated_key=False)
    assert text.startswith(
        "FAILED: xt refused the transfer (FUND_002: insufficient balance); nothing moved."
    )
    assert text.endswith(f"Key {KEY} stays refused: to try again, use a new --key.")
    assert "not spent" not in text
    assert "not reached" not in text


@pytest.mark.parametrize("error", [DEAD_HOST, BALANCE_REFUSAL], ids=["unspent", "spent"])
def test_a_replayed_refusal_says_nothing_was_sent_now(error: StoredError) -> None:
    """A refusal answered from the journal says it was refused before and nothing was sent."""
    text = verdict(failed(error, replayed=True), generated_key=False)
    assert "It was refused before; nothing was sent now." in text


def tally_of(*errors: StoredError) -> Tally:
    tally = Tally()
    for line, error in enumerate(errors, start=2):
        tally.add(line, failed(error))
    return tally


def test_the_batch_closing_line_separates_refused_from_not_processed() -> None:
    """The closing line counts spent refusals (a new key needed) apart from rows the venue never
    processed (running the plan again tries them)."""
    line = _closing_line(tally_of(BALANCE_REFUSAL, BALANCE_REFUSAL, DEAD_HOST, GATEWAY_REFUSAL))
    assert line.startswith("4 of 4 did not succeed; exit status 1: ")
    assert (
        "2 refused (nothing moved; their keys stay refused: a new attempt needs a new key)" in line
    )
    assert (
        "2 not processed (the venue was not reached or refused them before processing; "
        "nothing moved; running this plan again tries them again)"
    ) in line


def test_a_batch_against_a_dead_host_says_no_key_is_refused() -> None:
    """When no row reached the venue, the closing line names no refused keys at all."""
    line = _closing_line(tally_of(DEAD_HOST, DEAD_HOST, DEAD_HOST))
    assert "3 not processed" in line
    assert "refused (" not in line
    assert "new key" not in line


def test_a_batch_of_plain_refusals_says_nothing_of_unprocessed_rows() -> None:
    """When every row was refused by the venue itself, no row is called not processed."""
    line = _closing_line(tally_of(BALANCE_REFUSAL))
    assert "1 refused (nothing moved; their keys stay refused" in line
    assert "not processed" not in line
