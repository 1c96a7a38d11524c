"""The module-level ``xferkit.transfer()``: one call, credentials from the environment."""

from __future__ import annotations

from ._client import Client
from ._exceptions import InvalidRequestError
from ._models import Amount, Receipt
from .venues.htx import HTX
from .venues.xt import XT

__all__ = ["transfer"]

_FROM_ENV = {"htx": HTX.from_env, "xt": XT.from_env}


async def transfer(
    venue: str,
    *,
    currency: str,
    amount: Amount,
    from_account: str,
    to_account: str,
    symbol: str | None = None,
    margin_account: str | None = None,
    key: str | None = None,
    deadline: float | None = None,
) -> Receipt:
    """Make one transfer with credentials from the environment and the default journal.

    Reads ``XFERKIT_XT_API_KEY``/``XFERKIT_XT_SECRET`` (and ``XFERKIT_XT_BASE_URL``) for XT,
    ``XFERKIT_HTX_ACCESS_KEY``/``XFERKIT_HTX_SECRET`` (and ``XFERKIT_HTX_BASE_URL``) for HTX;
    the journal is ``XFERKIT_JOURNAL`` when set (as for the CLI), else
    ``~/.xferkit/journal.sqlite3``. Same arguments as `Client.transfer`.
    """
    factory = _FROM_ENV.get(venue.lower()) if isinstance(venue, str) else None
    if factory is None:
        raise InvalidRequestError(
            f"venue {venue!r} is not supported; use one of {sorted(_FROM_ENV)}"
        )
    async with Client(factory()) as client:
        return await client.transfer(
            venue,
            currency=currency,
            amount=amount,
            from_account=from_account,
            to_account=to_account,
            symbol=symbol,
            margin_account=margin_account,
            key=key,
            deadline=deadline,
        )
