"""xferkit: exactly-once fund transfers between your own accounts on crypto venues.

>>> async with xferkit.Client(xferkit.XT(api_key, secret)) as client:
...     receipt = await client.transfer(
...         "xt", currency="usdt", amount=Decimal("10"),
...         from_account="spot", to_account="usdt_futures", key="rebalance-0007",
...     )
"""

import logging

from ._api import transfer
from ._client import Client
from ._clock import Clock, SystemClock
from ._exceptions import (
    AuthenticationError,
    ClientClosedError,
    IdempotencyConflictError,
    InsufficientBalanceError,
    InvalidRequestError,
    JournalError,
    PermissionDeniedError,
    RateLimitError,
    SettlementRefusedError,
    TransferOutcomeUnknownError,
    TransferRejectedError,
    VenueError,
    VenueUnavailableError,
    XferError,
)
from ._models import Confirmation, Receipt, TransferRequest, TransferStatus
from ._retry import RetryBudget, RetryPolicy
from ._shared_rate import Limiter, RateStore
from .journal import Journal, MemoryJournal, PostgresJournal, SqliteJournal
from .venues.htx import HTX
from .venues.xt import XT

__version__ = "0.1.0"

# A library never configures logging (no basicConfig): the application does. Without this
# handler, Python's last-resort handler would print the engine's warnings on stderr.
logging.getLogger(__name__).addHandler(logging.NullHandler())

__all__ = [
    "HTX",
    "XT",
    "AuthenticationError",
    "Client",
    "ClientClosedError",
    "Clock",
    "Confirmation",
    "IdempotencyConflictError",
    "InsufficientBalanceError",
    "InvalidRequestError",
    "Journal",
    "JournalError",
    "Limiter",
    "MemoryJournal",
    "PermissionDeniedError",
    "PostgresJournal",
    "RateLimitError",
    "RateStore",
    "Receipt",
    "RetryBudget",
    "RetryPolicy",
    "SettlementRefusedError",
    "SqliteJournal",
    "SystemClock",
    "TransferOutcomeUnknownError",
    "TransferRejectedError",
    "TransferRequest",
    "TransferStatus",
    "VenueError",
    "VenueUnavailableError",
    "XferError",
    "__version__",
    "transfer",
]
