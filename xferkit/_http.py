"""Plain HTTP values passed between venue modules and the transport.

Venue modules build and parse these without importing httpx, so that only ``_transport`` (and
the fake venues' in-process transport) depend on the HTTP library.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

import attrs

__all__ = ["HttpRequest", "HttpResponse"]


@attrs.frozen(kw_only=True)
class HttpRequest:
    """One request, ready to send: the URL carries its final (already encoded) query string.

    ``body`` is the exact byte string that was signed; the transport sends it unchanged.
    """

    method: str
    url: str
    headers: Mapping[str, str] = attrs.field(factory=dict, repr=False)
    body: bytes | None = attrs.field(default=None, repr=False)


# Numbers stay text: large integers exact, never floats. One decoder (json.loads with options
# builds a new one per call); bytes are decoded as json.loads decodes them.
_EXACT_JSON = json.JSONDecoder(parse_float=str, parse_int=str)


@attrs.frozen(kw_only=True)
class HttpResponse:
    """One answer from a venue: status, lower-cased headers and the raw body."""

    status: int
    headers: Mapping[str, str] = attrs.field(factory=dict)
    body: bytes = b""

    def json(self) -> Any:
        """Decode the body as JSON, keeping large integers exact (never as floats)."""
        body = self.body
        return _EXACT_JSON.decode(body.decode(json.detect_encoding(body), "surrogatepass"))

    def retry_after(self) -> float | None:
        """Seconds from a ``Retry-After`` header given in seconds, or ``None``.

        Only a finite, non-negative number counts: ``inf`` (or ``nan``) would hold the venue's
        rate limiter for ever. The retry policy caps what remains (``max_retry_after``).
        """
        value = self.headers.get("retry-after")
        if value is None:
            return None
        try:
            seconds = float(value)
        except ValueError:
            return None  # an HTTP-date: rare on these venues; the policy's backoff applies
        return seconds if math.isfinite(seconds) and seconds >= 0 else None
