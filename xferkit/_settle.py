"""Settling an intent by hand: what only a person can decide.

Some intents software cannot settle: a venue that no longer answers, a closed account, an
XT bizId from xferkit 0.1 that the venue already held. A person who has checked the venue's
records says what happened (`settle`), or that a transfer that was never sent must never be
(`abandon`: a cancelled call the caller has compensated for). Either way the journal keeps
who, when and why (`Settlement`), and the intent is terminal: ``resume()`` never sends it.
Used by `xferkit.Client` and by ``xferkit journal settle|abandon``.
"""

from __future__ import annotations

import getpass
import os
import socket
from datetime import datetime

import anyio
import attrs

from ._exceptions import SettlementRefusedError
from ._models import TransferStatus
from .journal._base import Intent, IntentId, Journal, Settlement, StoredError

__all__ = ["abandon_intent", "default_settler", "settle_intent"]

# Long enough to read and write one row; a settlement holds the lease for no more.
_LEASE_SECONDS = 30.0


def default_settler() -> str:
    """``user@host``: who settled it, when the caller does not say."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no name for this uid (a container)
        user = f"uid-{os.getuid()}" if hasattr(os, "getuid") else "unknown"
    return f"{user}@{socket.gethostname()}"


async def settle_intent(
    journal: Journal,
    intent_id: IntentId,
    *,
    status: TransferStatus,
    transfer_id: str | None,
    reason: str,
    by: str,
    now: datetime,
) -> Intent:
    """Record what a person found: ``SUCCEEDED`` (it moved once) or ``FAILED`` (nothing moved).

    Refused (`SettlementRefusedError`, nothing changed) for an intent already settled, or one
    another worker is driving now.
    """
    if status not in (TransferStatus.SUCCEEDED, TransferStatus.FAILED):
        # The value, not f"{status}": that reads "TransferStatus.UNKNOWN" since Python 3.11.
        shown = getattr(status, "value", status)
        raise SettlementRefusedError(f"an intent is settled SUCCEEDED or FAILED, not {shown}")
    if status is TransferStatus.FAILED and transfer_id is not None:
        raise SettlementRefusedError("a FAILED transfer has no transfer id")
    if status is TransferStatus.FAILED and not reason.strip():
        raise SettlementRefusedError("say why it failed (reason): an audit will ask")
    owner = f"settle:{by}"
    leased = await _lease(journal, intent_id, owner)
    settlement = Settlement(by=by, at=now, reason=reason)
    if status is TransferStatus.SUCCEEDED:
        final = attrs.evolve(
            leased, status=status, transfer_id=transfer_id, error=None, settlement=settlement
        )
    else:
        error = StoredError(
            kind="TransferRejectedError", message=f"settled as failed by {by}: {reason}"
        )
        final = attrs.evolve(leased, status=status, error=error, settlement=settlement)
    return await _write(journal, attrs.evolve(final, finished_at=now), owner)


async def abandon_intent(
    journal: Journal, intent_id: IntentId, *, reason: str, by: str, now: datetime
) -> Intent:
    """Make an intent that was provably never sent ``FAILED`` for good, its key spent.

    Only a ``PENDING`` intent (recorded, never sent) or a ``FAILED`` one whose key was not
    spent (no attempt reached the venue's processing) qualifies; anything that may have been
    sent is refused: only `settle_intent`, after checking the venue, can close it.
    """
    owner = f"abandon:{by}"
    stored = await journal.get(intent_id)
    if (
        stored is not None
        and stored.status is TransferStatus.FAILED
        and stored.error is not None
        and stored.error.reusable
    ):
        with anyio.CancelScope(shield=True):  # never leave a lease held
            leased = await journal.reopen(intent_id, owner=owner, lease_seconds=_LEASE_SECONDS)
        if leased is None:
            raise SettlementRefusedError(f"intent {intent_id.key!r} changed meanwhile; look again")
    else:
        leased = await _lease(journal, intent_id, owner)
        if leased.status is not TransferStatus.PENDING or leased.attempts:
            await journal.release(intent_id, owner=owner)
            raise SettlementRefusedError(
                f"intent {intent_id.key!r} is {leased.status.value}: it may have been sent, so "
                "it cannot be abandoned; check the venue's records and settle it instead"
            )
    error = StoredError(
        kind="TransferRejectedError", message=f"abandoned by {by} before it was sent: {reason}"
    )
    final = attrs.evolve(
        leased,
        status=TransferStatus.FAILED,
        error=error,
        finished_at=now,
        settlement=Settlement(by=by, at=now, reason=reason),
    )
    return await _write(journal, final, owner)


async def _lease(journal: Journal, intent_id: IntentId, owner: str) -> Intent:
    """Take the lease of the unfinished intent ``intent_id``, or refuse."""
    stored = await journal.get(intent_id)
    if stored is None:
        raise SettlementRefusedError(
            f"no intent with key {intent_id.key!r} on {intent_id.venue} for this account"
        )
    if stored.status.is_terminal:
        how = "" if stored.settlement is None else f" by {stored.settlement.by}"
        raise SettlementRefusedError(
            f"intent {intent_id.key!r} is settled already ({stored.status.value}{how})"
        )
    with anyio.CancelScope(shield=True):  # never leave a lease held
        claim = await journal.claim(stored, owner=owner, lease_seconds=_LEASE_SECONDS)
    if not claim.owned:
        if claim.intent.status.is_terminal:
            raise SettlementRefusedError(
                f"intent {intent_id.key!r} was settled meanwhile ({claim.intent.status.value})"
            )
        raise SettlementRefusedError(
            f"intent {intent_id.key!r} is being driven by {claim.intent.lease_owner} right now; "
            "try again once its lease has run out"
        )
    return claim.intent


async def _write(journal: Journal, final: Intent, owner: str) -> Intent:
    with anyio.CancelScope(shield=True):  # a settlement half-made is none at all
        await journal.save(final, owner=owner, lease_seconds=None)
    return attrs.evolve(final, lease_owner=None, lease_expires_at=None)
