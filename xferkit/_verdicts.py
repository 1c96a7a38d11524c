"""What an outcome means for the caller and the journal: a refusal, a verdict left open, a
receipt. A status is a promise about money, so these rules are kept apart from the engine's
mechanics and read on their own.
"""

from __future__ import annotations

from ._drive_state import Exhausted, Progress
from ._exceptions import VenueError
from ._models import Confirmation, Receipt, TransferStatus
from ._outcomes import NotProcessed, Outcome, Rejected
from .journal._base import Intent
from .venues._base import TransferSpec, Venue

__all__ = [
    "UNPROVEN_DUPLICATE",
    "confirmation",
    "definitive_refusal",
    "duplicate_proves_execution",
    "late_refusal",
    "receipt_from_intent",
]


def definitive_refusal(outcome: Outcome | Exhausted, maybe_executed: bool) -> VenueError | None:
    """The error a FAILED intent raises, or ``None`` when the outcome is still unknown.

    Once an attempt may have executed (in this call, an earlier one or another process), a
    refusal of a later attempt settles nothing: it says nothing about the earlier one. When
    no attempt reached the venue's processing, the error says the key was not spent.
    """
    if maybe_executed:
        return None
    if isinstance(outcome, Rejected):
        if outcome.before_processing:
            return _unspent(outcome.error)
        return outcome.error
    if isinstance(outcome, Exhausted) and isinstance(outcome.last, NotProcessed):
        return _unspent(outcome.last.error)
    return None


def _unspent(error: VenueError) -> VenueError:
    """``error`` marked as leaving the key unspent (`VenueError.key_reusable`)."""
    if error.key_reusable:
        return error
    return type(error)(
        error.message,
        venue=error.venue,
        code=error.code,
        http_status=error.http_status,
        key_reusable=True,
    )


def late_refusal(outcome: Outcome | Exhausted) -> VenueError | None:
    """The refusal that left a possibly executed intent open, kept as its reason."""
    last = outcome.last if isinstance(outcome, Exhausted) else outcome
    if isinstance(last, Rejected | NotProcessed):
        return last.error
    return None


UNPROVEN_DUPLICATE = "UnprovenDuplicate"  # StoredError.kind of `Engine._unproven_duplicate`


def duplicate_proves_execution(progress: Progress, venue: Venue) -> bool:
    """Whether XT's duplicate answer means this very transfer executed.

    The bizId names (account, key, parameters), so it does, whether this journal sent it or
    not (a lost journal). Only a bizId from xferkit 0.1, derived from (api key, key) alone,
    may name a transfer with other parameters, unless this intent's own send may have
    executed (and no earlier duplicate answer showed the bizId was spent before it was sent).
    """
    intent = progress.intent
    if intent.token == venue.idempotency_token(intent.key, intent.fingerprint):
        return True
    unproven_before = intent.error is not None and intent.error.kind == UNPROVEN_DUPLICATE
    return progress.maybe_executed and not unproven_before


def receipt_from_intent(
    intent: Intent, *, replayed: bool, spec: TransferSpec | None = None
) -> Receipt:
    """Build the caller's receipt from a journal intent (whose ``spec`` may be known)."""
    if spec is None:
        spec = TransferSpec.from_canonical_json(intent.params)
    return Receipt(
        venue=intent.venue,
        key=intent.key,
        status=intent.status,
        transfer_id=intent.transfer_id,
        amount=spec.amount,
        currency=spec.currency,
        from_account=spec.from_account,
        to_account=spec.to_account,
        attempts=intent.attempts,
        replayed=replayed,
        created_at=intent.created_at,
        finished_at=intent.finished_at,
        confirmed_by=confirmation(intent),
        reason=None if intent.error is None else intent.error.describe(),
    )


def confirmation(intent: Intent) -> Confirmation | None:
    """What proved a ``SUCCEEDED`` intent executed, from what the journal holds.

    Derived, not stored: a ledger match keeps its row (``ledger_ref``), and on XT only the
    duplicate answer settles without a transfer id.
    """
    if intent.status is not TransferStatus.SUCCEEDED:
        return None
    if intent.settlement is not None:
        return Confirmation.OPERATOR
    if intent.ledger_ref is not None:
        return Confirmation.LEDGER
    if intent.transfer_id is None:
        return Confirmation.DUPLICATE
    return Confirmation.VENUE
