"""The simulated HTX's spot-account ledger: its rows and how ``GET /v2/account/ledger`` pages.

Rows come newest first, as on HTX; ``nextId`` names the first row of the next page and is sent
only when a full page has rows after it (HTX is silent on the latter; this is the simulation's
reading). ``fromId`` must name a row of the selection, else 2002; the window may not start
after now or more than 180 days ago, nor span more than 10 days (2002); an account that is not
the caller's is 1002.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from decimal import Decimal

import attrs

__all__ = [
    "LEDGER_DEFAULT_LIMIT",
    "LEDGER_INVALID_VALUE",
    "LEDGER_MAX_AGE_MS",
    "LEDGER_MAX_LIMIT",
    "LEDGER_MAX_WINDOW_MS",
    "LEDGER_NOT_YOURS",
    "HTXLedgerRow",
    "LedgerRefusal",
    "ledger_page",
]

# The ledger's refusals, in its own shape ({"code", "message", "ok": false}).
LEDGER_INVALID_VALUE = 2002
LEDGER_NOT_YOURS = 1002
LEDGER_DEFAULT_LIMIT = 100
LEDGER_MAX_LIMIT = 500
LEDGER_MAX_WINDOW_MS = 10 * 24 * 3600 * 1000
LEDGER_MAX_AGE_MS = 180 * 24 * 3600 * 1000
_INTEGER = re.compile(r"-?[0-9]{1,18}")


class LedgerRefusal(Exception):  # noqa: N818 - control flow inside the fake, never raised to users
    """A ledger query HTX refuses with ``code`` and ``message``."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(code, message)
        self.code = code
        self.message = message


@attrs.frozen(kw_only=True)
class HTXLedgerRow:
    """One row of the fake's spot-account ledger (``GET /v2/account/ledger``).

    ``transact_amt`` is positive into spot and negative out of it; times are the venue's clock.
    """

    account_id: int
    currency: str
    transact_amt: Decimal
    transact_type: str
    transfer_type: str
    transact_id: int
    transact_time: int
    transferer: int
    transferee: int

    def to_wire(self) -> dict[str, object]:
        """The row as the ledger endpoint serialises it (``transactAmt`` a JSON number)."""
        return {
            "accountId": self.account_id,
            "currency": self.currency,
            "transactAmt": self.transact_amt,
            "transactType": self.transact_type,
            "transferType": self.transfer_type,
            "transactId": self.transact_id,
            "transactTime": self.transact_time,
            "transferer": self.transferer,
            "transferee": self.transferee,
        }


def ledger_page(
    rows: Sequence[HTXLedgerRow], params: Mapping[str, str], *, now_ms: int, spot_account_id: int
) -> tuple[list[HTXLedgerRow], int | None]:
    """Select one page, newest first; ``nextId`` only when more rows follow a full page."""
    account = params.get("accountId") or str(spot_account_id)
    if account != str(spot_account_id):
        raise LedgerRefusal(LEDGER_NOT_YOURS, "the account does not belong to this user")
    limit = _query_int(params, "limit", LEDGER_DEFAULT_LIMIT)
    if not 1 <= limit <= LEDGER_MAX_LIMIT:
        raise LedgerRefusal(LEDGER_INVALID_VALUE, f"limit must be 1..{LEDGER_MAX_LIMIT}")
    end_ms = _query_int(params, "endTime", now_ms)
    start_ms = _query_int(params, "startTime", end_ms - LEDGER_MAX_WINDOW_MS)
    if start_ms > now_ms:
        raise LedgerRefusal(LEDGER_INVALID_VALUE, "value in startTime is later than now")
    if end_ms < start_ms:
        raise LedgerRefusal(LEDGER_INVALID_VALUE, "value in endTime is before startTime")
    if end_ms - start_ms > LEDGER_MAX_WINDOW_MS:
        raise LedgerRefusal(LEDGER_INVALID_VALUE, "the query window is longer than 10 days")
    if start_ms < now_ms - LEDGER_MAX_AGE_MS:
        raise LedgerRefusal(LEDGER_INVALID_VALUE, "value in startTime is older than 180 days")
    currency = params.get("currency", "").lower()
    kinds = set(filter(None, params.get("transactTypes", "").split(",")))
    selected = [
        row
        for row in reversed(rows)
        if start_ms <= row.transact_time <= end_ms
        and (not currency or row.currency == currency)
        and (not kinds or row.transact_type in kinds)
    ]
    if params.get("fromId"):
        from_id = _query_int(params, "fromId", 0)
        start = next((i for i, r in enumerate(selected) if r.transact_id == from_id), None)
        if start is None:
            raise LedgerRefusal(LEDGER_INVALID_VALUE, "value in fromId is not found")
        selected = selected[start:]
    more = len(selected) > limit
    return selected[:limit], selected[limit].transact_id if more else None


def _query_int(params: Mapping[str, str], name: str, default: int) -> int:
    text = params.get(name)
    if text is None or text == "":
        return default
    if not _INTEGER.fullmatch(text):
        raise LedgerRefusal(LEDGER_INVALID_VALUE, f"value in {name} is not an integer")
    return int(text)
