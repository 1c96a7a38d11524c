"""Public values: what a caller asks for (TransferRequest) and what it gets back (Receipt)."""

from __future__ import annotations

import enum
from datetime import datetime
from decimal import Decimal

import attrs

__all__ = ["Amount", "Confirmation", "Receipt", "TransferRequest", "TransferStatus"]

Amount = Decimal | str | int
"""What ``amount=`` accepts. A ``float`` is refused: it cannot hold most decimal amounts."""


class TransferStatus(str, enum.Enum):
    """Where an intent stands. Only ``SUCCEEDED`` and ``FAILED`` are terminal."""

    PENDING = "PENDING"
    """Recorded in the journal, never sent."""
    IN_FLIGHT = "IN_FLIGHT"
    """Sent at least once; may have reached the venue."""
    SUCCEEDED = "SUCCEEDED"
    """The venue executed it (exactly once)."""
    FAILED = "FAILED"
    """The venue definitively refused it; nothing moved."""
    UNKNOWN = "UNKNOWN"
    """Could not be resolved yet; ``Client.resume()`` continues it."""

    @property
    def is_terminal(self) -> bool:
        """Whether the intent is settled for good."""
        return self in (TransferStatus.SUCCEEDED, TransferStatus.FAILED)


class Confirmation(str, enum.Enum):
    """What proved that a ``SUCCEEDED`` transfer executed (`Receipt.confirmed_by`)."""

    VENUE = "venue"
    """The venue's success answer, with its transfer id."""
    DUPLICATE = "duplicate"
    """XT's duplicate-bizId answer (``TRANSFER_001``/``FUND_001``): the venue already holds
    this transfer's bizId, derived from (account, key, parameters), so this very transfer
    executed earlier (after an ambiguous attempt, or in a run whose journal was lost). The
    answer carries no transfer id."""
    LEDGER = "ledger"
    """A matching row of HTX's account ledger, after an ambiguous attempt; the id is the row's."""
    OPERATOR = "operator"
    """A person, who checked the venue's records (`Client.settle`, ``xferkit journal settle``);
    the journal keeps who, when and why."""


@attrs.frozen(kw_only=True)
class TransferRequest:
    """One transfer, as a value: the same fields as ``Client.transfer``'s arguments."""

    venue: str
    currency: str
    amount: Amount
    from_account: str
    to_account: str
    symbol: str | None = None
    margin_account: str | None = None
    key: str | None = None
    deadline: float | None = None


@attrs.frozen(kw_only=True)
class Receipt:
    """The settled (or, for ``UNKNOWN``, last known) state of one transfer.

    Attributes:
        venue: the venue's name.
        key: the idempotency key (the caller's, or the one xferkit generated).
        status: a `TransferStatus`.
        transfer_id: the venue's transfer id as a string, or ``None`` when the venue confirmed
            without one (an XT duplicate-bizId answer after an ambiguous attempt).
        amount: the amount as a ``Decimal``.
        currency: lowercase currency code.
        from_account: the source account's unified name (``spot``, ``usdt_futures``, ...).
        to_account: the destination account's unified name.
        attempts: how many requests were sent for this transfer, over all calls.
        replayed: ``True`` when the transfer was already settled before this call began, so
            the receipt came from the journal without network I/O. Callers that joined a drive
            of the same key still in progress get that drive's receipt, ``replayed=False``.
        created_at: UTC time the intent was recorded.
        finished_at: UTC time it was settled, or ``None``.
        confirmed_by: for ``SUCCEEDED``, what proved the execution (a `Confirmation`);
            ``None`` otherwise.
        reason: for a transfer not ``SUCCEEDED``, the last word on why, when there is one: the
            venue's refusal, or what kept it open (``journal show`` prints the same).
    """

    venue: str
    key: str
    status: TransferStatus
    transfer_id: str | None
    amount: Decimal
    currency: str
    from_account: str
    to_account: str
    attempts: int
    replayed: bool
    created_at: datetime
    finished_at: datetime | None
    confirmed_by: Confirmation | None = None
    reason: str | None = None
