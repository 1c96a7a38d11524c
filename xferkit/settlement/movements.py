"""One unresolved identical movement at a time, on a venue without idempotency keys (HTX).

An ambiguous HTX attempt is settled by finding its row in the account's ledger, and two
transfers moving the same amount of the same currency between the same accounts look alike
there. So before an intent's first send it takes its movement's turn in the journal
(`Journal.take_movement`): atomically, across every client and process sharing the journal,
only while no identical intent is unresolved and the previous one's spacing has passed. The
turn ends (`free`) when the drive ends, starting the spacing that keeps the next identical
movement's ledger window clear of this one's row.

A waiting transfer holds nothing but its own intent's lease: the unresolved intent's own drive
(a `resume()` beside it) never waits for it, so the two cannot deadlock.
"""

from __future__ import annotations

import logging
from datetime import datetime, timezone

import anyio

from .._clock import Clock
from .._exceptions import JournalError, TransferOutcomeUnknownError
from ..journal._base import Intent, IntentId, Journal, lease_available

__all__ = ["free", "take_turn"]

_log = logging.getLogger("xferkit.settlement")

POLL_MAX = 1.0  # longest pause between two tries while an identical intent is unresolved


async def take_turn(
    journal: Journal,
    clock: Clock,
    intent: Intent,
    *,
    owner: str,
    lease_seconds: float,
    deadline_at: float | None,
    wait_for_parked: bool = True,
) -> None:
    """Wait until ``intent`` holds its movement's turn, up to ``deadline_at`` (monotonic).

    Raises `TransferOutcomeUnknownError` ("not sent yet") at the deadline: nothing was sent,
    the intent stays ``PENDING``. Each try renews the intent's lease, so a live waiter is not
    taken over. A call waits for an unresolved identical intent that nobody drives, since a
    `resume()` beside it may settle that one; a sweep (``wait_for_parked=False``) does not:
    the sweep could not settle it, and waiting would never end (a sweep may have no deadline).
    """
    while True:
        turn = await journal.take_movement(intent, owner=owner, lease_seconds=lease_seconds)
        if turn.taken:
            return
        if turn.blocker is not None:
            why = f"identical transfer {turn.blocker!r} is still unresolved"
            if not wait_for_parked and await _parked(journal, clock, intent, turn.blocker):
                raise TransferOutcomeUnknownError(
                    intent.key, intent.venue, f"not sent yet: {why} and nobody is driving it"
                )
            pause = POLL_MAX
        else:
            why = "the previous identical transfer's ledger spacing has not passed"
            pause = turn.wait_seconds
        if deadline_at is not None:
            left = deadline_at - clock.monotonic()
            if left <= 0:
                raise TransferOutcomeUnknownError(intent.key, intent.venue, f"not sent yet: {why}")
            pause = min(pause, left)  # never sleep past the deadline
        _log.debug("transfer %s on %s: waiting: %s", intent.key, intent.venue, why)
        await clock.sleep(pause)


async def _parked(journal: Journal, clock: Clock, intent: Intent, blocker: str) -> bool:
    """Whether no worker holds a live lease on the blocking intent (it waits for a later
    call or sweep)."""
    other = await journal.get(IntentId(intent.venue, intent.account, blocker))
    now = datetime.fromtimestamp(clock.time(), tz=timezone.utc)
    return other is None or lease_available(other, now)


async def free(journal: Journal, intent: Intent, *, owner: str, spacing_seconds: float) -> None:
    """End the turn and start the movement's spacing; shielded, as every write after a send.

    A failure is logged, not raised: the caller must still learn the outcome. The turn is then
    left to lapse with the intent's lease, and a sent intent is unresolved by its state anyway.
    """
    with anyio.CancelScope(shield=True):
        try:
            await journal.free_movement(intent, owner=owner, spacing_seconds=spacing_seconds)
        except JournalError as exc:
            _log.error(
                "transfer %s on %s: could not free its movement: %s", intent.key, intent.venue, exc
            )
