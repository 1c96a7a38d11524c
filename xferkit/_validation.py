"""Input checks shared by every venue; all of them run before any I/O.

Each failure raises `InvalidRequestError` with a message that says what to change.
"""

from __future__ import annotations

import re
import unicodedata
from decimal import Context, Decimal, InvalidOperation
from typing import Any
from urllib.parse import urlsplit

import attrs

from ._exceptions import InvalidRequestError

__all__ = [
    "MAX_AMOUNT_CHARS",
    "MAX_KEY_CHARS",
    "amount_text",
    "base_url_field",
    "check_base_url",
    "check_credential",
    "check_key",
    "credential_field",
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


def _invisible(text: str) -> bool:
    """Whether ``text`` holds a control (or other invisible, category ``C``) character."""
    return any(unicodedata.category(char).startswith("C") for char in text)


def check_credential(value: object, name: str) -> str:
    """Return ``value`` if it is a usable API key or secret; ``name`` is the field it came from.

    Refused: a non-string, an empty one, surrounding white space (a trailing newline read from
    a mounted secret file is the usual case) or any control character. Such a value would be
    signed and sent, refused far from its cause, or fail inside the HTTP library. The message
    names the field and never shows the value.
    """
    if not isinstance(value, str):
        raise InvalidRequestError(f"{name} must be a str, not {type(value).__name__}")
    if not value:
        raise InvalidRequestError(f"{name} is empty")
    if value.strip() != value:
        raise InvalidRequestError(
            f"{name} has leading or trailing white space (a newline from a secret file?); strip it"
        )
    if _invisible(value):
        raise InvalidRequestError(f"{name} contains a control character")
    return value


def check_base_url(url: object, name: str = "base_url") -> str:
    """Return ``url`` if it is an absolute ``http``/``https`` URL with a host.

    Also refused: white space or control characters anywhere (``urlsplit`` would silently drop
    some), a bad port, credentials in the URL, a query or a fragment (paths are appended to it).
    """
    if not isinstance(url, str):
        raise InvalidRequestError(f"{name} must be a str, not {type(url).__name__}")
    if any(char.isspace() for char in url) or _invisible(url):
        raise InvalidRequestError(f"{name} {url!r} contains white space or a control character")
    parts = urlsplit(url)
    if parts.username is not None or parts.password is not None:
        # Not shown: the part before the host is a credential.
        raise InvalidRequestError(f"{name} must not carry credentials (user:password@)")
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidRequestError(
            f"{name} {url!r} is not an absolute http or https URL with a host, "
            "such as 'https://sapi.xt.com'"
        )
    try:
        parts.port  # noqa: B018 - parsing it is the check
    except ValueError:
        raise InvalidRequestError(f"{name} {url!r} has an invalid port") from None
    if parts.query or parts.fragment or url.endswith(("?", "#")):
        raise InvalidRequestError(f"{name} {url!r} must not have a query or a fragment")
    return url


def credential_field(_: object, attribute: attrs.Attribute[Any], value: object) -> None:
    """An attrs validator: `check_credential` under the attribute's name."""
    check_credential(value, attribute.name)


def base_url_field(_: object, attribute: attrs.Attribute[Any], value: object) -> None:
    """An attrs validator: `check_base_url` under the attribute's name."""
    check_base_url(value, attribute.name)
