"""What one transfer came to, as ``transfer`` and ``batch`` report it: one shape for both.

The engine hands back a `Receipt` or raises; the command line turns either into an `Outcome`
with one of four statuses, so a script reads one object whatever happened:

- ``SUCCEEDED``: the venue executed it (now, or before this run: ``replayed``);
- ``FAILED``: the venue refused it definitively; nothing moved, and the key is spent, unless no
  attempt reached the venue's processing (``error.key_reusable``): then the same key tries again;
- ``UNKNOWN``: it may have executed; ``xferkit resume`` settles it, never twice;
- ``ERROR``: xferkit did not send it (the key was used for another transfer, or the journal
  could not be written); nothing moved.
"""

from __future__ import annotations

from datetime import datetime

import attrs

from .._exceptions import TransferOutcomeUnknownError, VenueError
from .._models import Receipt, TransferStatus
from .._validation import amount_text
from ..journal import Intent, StoredError
from ..venues._base import TransferSpec
from ._format import error_json, iso_utc

__all__ = ["ERROR", "FAILED", "SUCCEEDED", "UNKNOWN", "Outcome"]

SUCCEEDED = TransferStatus.SUCCEEDED.value
FAILED = TransferStatus.FAILED.value
UNKNOWN = TransferStatus.UNKNOWN.value
ERROR = "ERROR"


@attrs.frozen(kw_only=True)
class Outcome:
    """One transfer's result, ready to count, print or serialise.

    Attributes:
        key: the idempotency key.
        spec: the transfer in canonical form (unified account names, normalized amount).
        status: ``SUCCEEDED``, ``FAILED``, ``UNKNOWN`` or ``ERROR``.
        attempts: requests sent for it over all runs (0 if it was never recorded).
        transfer_id: the venue's transfer id, once known.
        replayed: it was settled before this run began, so nothing was sent now.
        created_at: when the intent was recorded, or ``None`` if it never was.
        finished_at: when it was settled, or ``None``.
        error: why it did not succeed: the venue's refusal (``FAILED``), the reason it is
            still open (``UNKNOWN``), or the problem (``ERROR``); ``None`` on success.
    """

    key: str
    spec: TransferSpec
    status: str
    attempts: int = 0
    transfer_id: str | None = None
    replayed: bool = False
    created_at: datetime | None = None
    finished_at: datetime | None = None
    error: StoredError | None = None

    @classmethod
    def build(
        cls,
        *,
        key: str,
        spec: TransferSpec,
        result: Receipt | Exception,
        intent: Intent | None,
        started: datetime,
    ) -> Outcome:
        """Turn what the engine returned or raised into an outcome.

        Args:
            key: the key the transfer was asked under.
            spec: the transfer that was asked for.
            result: the receipt, or the exception raised for this transfer.
            intent: the journal's intent under ``key`` after the call (``None`` if absent); used
                for failures, whose exceptions carry no attempt count or times.
            started: when this run began: a refusal settled earlier was replayed.
        """
        if isinstance(result, Receipt):
            return cls(
                key=key,
                spec=spec,
                status=result.status.value,
                attempts=result.attempts,
                transfer_id=result.transfer_id,
                replayed=result.replayed,
                created_at=result.created_at,
                finished_at=result.finished_at,
            )
        if isinstance(result, VenueError):
            status, error = FAILED, StoredError.from_exception(result)
        elif isinstance(result, TransferOutcomeUnknownError):
            status = UNKNOWN
            error = StoredError(kind=type(result).__name__, message=result.reason)
        else:
            status, intent = ERROR, None  # a stored intent under this key is another transfer
            error = StoredError(kind=type(result).__name__, message=str(result))
        if intent is None:
            return cls(key=key, spec=spec, status=status, error=error)
        return cls(
            key=key,
            spec=spec,
            status=status,
            attempts=intent.attempts,
            transfer_id=intent.transfer_id,
            replayed=(
                status == FAILED and intent.finished_at is not None and intent.finished_at < started
            ),
            created_at=intent.created_at,
            finished_at=intent.finished_at,
            error=error,
        )

    @property
    def retries(self) -> int:
        """Requests sent beyond the first; 0 for a replay (nothing was sent in this run)."""
        return 0 if self.replayed else max(self.attempts - 1, 0)

    @property
    def refusal(self) -> str:
        """What ``FAILED`` outcomes are counted by: the venue's code, else the error class."""
        if self.error is None:
            return ""
        return self.error.code or self.error.kind

    def to_json(self) -> dict[str, object]:
        """The outcome object (docs/cli.md): a receipt object plus the margin fields and
        ``error``."""
        return {
            "key": self.key,
            "venue": self.spec.venue,
            "status": self.status,
            "amount": amount_text(self.spec.amount),
            "currency": self.spec.currency,
            "from_account": self.spec.from_account,
            "to_account": self.spec.to_account,
            "symbol": self.spec.symbol,
            "margin_account": self.spec.margin_account,
            "attempts": self.attempts,
            "transfer_id": self.transfer_id,
            "replayed": self.replayed,
            "created_at": iso_utc(self.created_at),
            "finished_at": iso_utc(self.finished_at),
            "error": error_json(self.error),
        }
