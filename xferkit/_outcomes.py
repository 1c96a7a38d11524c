"""The four outcome classes of one attempt (design.md §2), as values the engine acts on.

Venue modules turn an answer into one of these; the engine turns transport failures into
``NotProcessed`` (nothing left this machine) or ``Ambiguous`` (it may have arrived).
"""

from __future__ import annotations

import attrs

from ._exceptions import VenueError

__all__ = [
    "Ambiguous",
    "Duplicate",
    "NotProcessed",
    "Outcome",
    "Rejected",
    "Succeeded",
    "outcome_class",
]


@attrs.frozen
class Succeeded:
    """The venue executed the transfer."""

    transfer_id: str | None


@attrs.frozen
class Rejected:
    """The venue definitively refused this attempt; it did not execute.

    ``before_processing``: the refusal came before the venue's transfer logic (its gateway
    refused the key, signature, permission or IP), so the venue never saw the transfer itself
    and the idempotency key is not spent. A refusal says nothing about *earlier* attempts: the
    engine settles an intent on one only while no earlier attempt may have executed.
    """

    error: VenueError
    before_processing: bool = False


@attrs.frozen(kw_only=True)
class NotProcessed:
    """Provably never executed: safe to send again on any venue.

    ``error`` is what the caller sees if the retry policy runs out; ``resync_clock`` asks the
    engine to measure the venue's clock again before the next attempt.
    """

    error: VenueError
    retry_after: float | None = None
    resync_clock: bool = False


@attrs.frozen(kw_only=True)
class Ambiguous:
    """Sent, but no definitive answer: it may have executed."""

    reason: str
    retry_after: float | None = None


@attrs.frozen
class Duplicate:
    """The venue says this idempotency token was used before (XT ``TRANSFER_001``).

    After an attempt that may have executed, that means it did; on a token never sent before it
    is a refusal (``error``).
    """

    error: VenueError


Outcome = Succeeded | Rejected | NotProcessed | Ambiguous | Duplicate


def outcome_class(outcome: Outcome) -> str:
    """The outcome's class as logs and observers name it: ``success``, ``duplicate``,
    ``rejected``, ``not_processed`` or ``ambiguous``."""
    if isinstance(outcome, Succeeded):
        return "success"
    if isinstance(outcome, Duplicate):
        return "duplicate"
    if isinstance(outcome, Rejected):
        return "rejected"
    if isinstance(outcome, NotProcessed):
        return "not_processed"
    return "ambiguous"
