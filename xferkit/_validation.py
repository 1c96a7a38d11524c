"""Input checks shared by every venue; all of them run before any I/O.

Each failure raises `InvalidRequestError` with a message that says what to change.
"""

from __future__ import annotations

import re
from decimal import Context, Decimal, InvalidOperation

from ._exceptions import InvalidRequestError

__all__ = [
    "MAX_AMOUNT_CHARS",
    "MAX_KEY_CHARS",
    "amount_text",
    "check_key",
    "normalize_amount",
    "normalize_currency",
]

MAX_KEY_CHARS = 100
MAX_AMOUNT_CHARS = 113  # XT's limit; HTX's 8-decimal rule is stricter in practice
_PLAIN_DECIMAL = re.compile(r"[0-9]+(\.[0-9]+)?")
_CURRENCY = re.compile(r"[a-z0-9]{1,32}")


def normalize_amount(amount: object) -> Decimal:
    """Return ``amount`` as a positive, finite ``Decimal`` without exponent or trailing zeros.

    Accepts ``Decimal``, ``int`` and plain decimal strings (``"10.5"``). A ``float`` is refused
    because most decimal amounts have no exact float (0.1 is 0.1000000000000000055...).
    """
    if isinstance(amount, bool) or not isinstance(amount, Decimal | int | str):
        kind = type(amount).__name__
        hint = f' (write Decimal("{amount!r}") or "{amount!r}")' if kind == "float" else ""
        raise InvalidRequestError(f"amount must be a Decimal, str or int, not {kind}{hint}")
    if isinstance(amount, str):
        if not _PLAIN_DECIMAL.fullmatch(amount):
            raise InvalidRequestError(
                f"amount {amount!r} is not a plain positive decimal; write it like '10' or '0.25'"
            )
        value = Decimal(amount)
    else:
        try:
            value = Decimal(amount)
        except (InvalidOperation, ValueError) as exc:  # pragma: no cover - Decimal(int) is exact
            raise InvalidRequestError(f"amount {amount!r} is not a number") from exc
    if not value.is_finite():
        raise InvalidRequestError(f"amount must be finite, not {value}")
    if value <= 0:
        raise InvalidRequestError(f"amount must be greater than zero, not {value}")
    # normalize() drops trailing zeros so "10", "10.0" and Decimal("1E+1") are one request.
    # It rounds to the context's precision (28 digits by default), so give it every digit.
    value = value.normalize(Context(prec=len(value.as_tuple().digits)))
    if len(format(value, "f")) > MAX_AMOUNT_CHARS:
        raise InvalidRequestError(f"amount has more than {MAX_AMOUNT_CHARS} characters")
    return value


def amount_text(amount: Decimal) -> str:
    """Format a normalized amount as the venues want it: plain digits, never an exponent."""
    return format(amount, "f")


def normalize_currency(currency: object) -> str:
    """Return the currency code in lowercase, refusing anything that is not a plain code."""
    if not isinstance(currency, str) or not currency.isascii():
        raise InvalidRequestError(
            f"currency must be an ASCII code such as 'usdt', not {currency!r}"
        )
    code = currency.strip().lower()
    if not _CURRENCY.fullmatch(code):
        raise InvalidRequestError(
            f"currency {currency!r} is not a currency code; use letters and digits like 'usdt'"
        )
    return code


def check_key(key: object) -> str:
    """Return ``key`` if it is a usable idempotency key: 1..100 printable characters."""
    if not isinstance(key, str):
        raise InvalidRequestError(f"key must be a str, not {type(key).__name__}")
    if not 1 <= len(key) <= MAX_KEY_CHARS:
        raise InvalidRequestError(f"key must have 1 to {MAX_KEY_CHARS} characters, not {len(key)}")
    if not key.isprintable() or key.strip() != key:
        raise InvalidRequestError(
            "key must be printable characters without leading or trailing white space"
        )
    return key
