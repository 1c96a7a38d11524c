"""The xferkit error tree.

Every error xferkit raises on purpose subclasses `XferError`. The tree says, for each
error, whether money can have moved::

    XferError
    ├── InvalidRequestError (also ValueError)   bad input; raised before any I/O     no money moved
    ├── IdempotencyConflictError                key reused with other parameters      no money moved
    ├── JournalError                            the journal could not be written      no money moved
    ├── ClientClosedError                       the client is not open                no money moved
    ├── SettlementRefusedError                  settle()/abandon() refused            no money moved
    ├── TransferOutcomeUnknownError             ambiguous after retries; resume()     maybe
    └── VenueError                              the venue answered definitively       no money moved
        ├── AuthenticationError                 key, signature or timestamp refused
        ├── PermissionDeniedError               the key may not transfer (or IP not allowed)
        ├── InsufficientBalanceError            the source account is short
        ├── RateLimitError                      rate limited past the retry policy
        ├── VenueUnavailableError               could not connect; nothing was sent
        └── TransferRejectedError               any other definitive refusal

A definitive refusal (every `VenueError`) marks the intent ``FAILED`` in the journal;
calling again with the same key re-raises the stored error without network I/O, except when
no attempt reached the venue's processing (``error.key_reusable``): then the same key tries
again. After an attempt that may have executed, a refusal settles nothing: the caller gets
`TransferOutcomeUnknownError` and the intent stays ``UNKNOWN`` for ``resume()``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ._models import TransferRequest

__all__ = [
    "AuthenticationError",
    "ClientClosedError",
    "IdempotencyConflictError",
    "InsufficientBalanceError",
    "InvalidRequestError",
    "JournalError",
    "PermissionDeniedError",
    "RateLimitError",
    "SettlementRefusedError",
    "TransferOutcomeUnknownError",
    "TransferRejectedError",
    "VenueError",
    "VenueUnavailableError",
    "XferError",
]


class XferError(Exception):
    """Base class of every error xferkit raises on purpose.

    Attributes:
        request: in ``Client.transfer_many``, the `TransferRequest` this error belongs to.
    """

    request: TransferRequest | None = None


class InvalidRequestError(XferError, ValueError):
    """The request is malformed; nothing was recorded and nothing was sent."""


class IdempotencyConflictError(XferError):
    """The idempotency key was used before with different transfer parameters."""

    def __init__(self, key: str, reason: str | None = None) -> None:
        super().__init__(
            reason
            or f"idempotency key {key!r} was already used for a transfer with different "
            "parameters; use a new key for a new transfer"
        )
        self.key = key


class JournalError(XferError):
    """The journal could not be read or written; nothing is sent without a journal write."""


class ClientClosedError(XferError):
    """The client is not open: use it inside ``async with Client(...)``."""


class SettlementRefusedError(XferError):
    """A hand settlement was refused and nothing was changed: the intent is settled already,
    another worker is driving it, or (``abandon``) it may have been sent."""


class TransferOutcomeUnknownError(XferError):
    """The transfer may or may not have executed; ``Client.resume()`` settles it.

    The intent stays in the journal as ``UNKNOWN`` (or ``IN_FLIGHT`` after a cancellation).
    Calling ``transfer()`` again with the same key, or ``resume()``, continues it safely.
    """

    def __init__(self, key: str, venue: str, reason: str) -> None:
        super().__init__(
            f"outcome of transfer {key!r} on {venue} is not known yet ({reason}); "
            "call client.resume() or repeat the call with the same key to settle it"
        )
        self.key = key
        self.venue = venue
        self.reason = reason


class VenueError(XferError):
    """The venue answered definitively: the transfer did not execute.

    Attributes:
        venue: the venue's name (``"xt"``, ``"htx"``).
        code: the venue's error code as a string, or ``None`` when it gave none.
        message: the venue's message (never contains credentials).
        http_status: the HTTP status of the answer, or ``None`` without one.
        key_reusable: ``True`` when no attempt reached the venue's processing (it could not
            be reached, its gateway refused the key, or it rate limited every attempt): the
            key was not spent, and calling again with the same key and parameters tries
            again. ``False`` when the venue refused the transfer itself: the key is spent and
            a new attempt needs a new key.
    """

    def __init__(
        self,
        message: str,
        *,
        venue: str,
        code: str | None = None,
        http_status: int | None = None,
        key_reusable: bool = False,
    ) -> None:
        text = f"{venue}: {code}: {message}" if code else f"{venue}: {message}"
        if key_reusable:
            text += (
                " (nothing moved and the key was not spent: calling again with the same key "
                "tries again)"
            )
        super().__init__(text)
        self.venue = venue
        self.code = code
        self.message = message
        self.http_status = http_status
        self.key_reusable = key_reusable


class AuthenticationError(VenueError):
    """The venue refused the key, the signature or the timestamp."""


class PermissionDeniedError(VenueError):
    """The key lacks the transfer permission, or the caller's IP is not whitelisted."""


class InsufficientBalanceError(VenueError):
    """The source account does not hold enough of the currency."""


class RateLimitError(VenueError):
    """The venue kept rate limiting past the retry policy; nothing executed."""


class VenueUnavailableError(VenueError):
    """The venue could not be reached; no request left this machine."""


class TransferRejectedError(VenueError):
    """Any other definitive refusal by the venue; ``code`` and ``message`` say why."""


VENUE_ERROR_TYPES: dict[str, type[VenueError]] = {
    cls.__name__: cls
    for cls in (
        AuthenticationError,
        PermissionDeniedError,
        InsufficientBalanceError,
        RateLimitError,
        VenueUnavailableError,
        TransferRejectedError,
    )
}
"""Error classes by name, so a stored refusal can be raised again exactly."""
