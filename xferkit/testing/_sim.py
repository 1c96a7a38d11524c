"""The transport-neutral core of the fake venues: what they receive, answer and record.

A fake venue is a synchronous function from `SimRequest` to an action. The in-process
transport and the loopback server both turn those actions into what a client would see on the
wire, so a new fake (HTX) plugs into both without changing either. Keeping ``handle`` free of
I/O and ``await`` makes every commit atomic with respect to other tasks.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Protocol, TypeAlias, runtime_checkable

import attrs

if TYPE_CHECKING:
    from ._faults import Fault

__all__ = [
    "DROP",
    "REFUSE",
    "Drop",
    "Execution",
    "FakeVenue",
    "ReceivedRequest",
    "Refuse",
    "SimAction",
    "SimRequest",
    "SimResponse",
    "Slow",
]


def _upper(method: str) -> str:
    return method.upper()


def _lower_keys(headers: Mapping[str, str]) -> Mapping[str, str]:
    return {name.lower(): value for name, value in headers.items()}


@attrs.frozen(kw_only=True)
class SimRequest:
    """One request as the venue received it.

    ``query`` is the raw query string without ``?``; ``body`` is the exact bytes received, since
    signatures are checked over those bytes and not over a re-serialisation.
    """

    method: str = attrs.field(converter=_upper)
    path: str
    query: str = ""
    headers: Mapping[str, str] = attrs.field(factory=dict, converter=_lower_keys, repr=False)
    body: bytes = attrs.field(default=b"", repr=False)


@attrs.frozen(kw_only=True)
class SimResponse:
    """An HTTP answer: status, headers and body bytes."""

    status: int
    headers: Mapping[str, str] = attrs.field(factory=dict)
    body: bytes = b""

    @classmethod
    def json(cls, payload: object, *, status: int = 200) -> SimResponse:
        """Serialise ``payload`` compactly, as the venues do; ints stay exact at any size."""
        body = json.dumps(payload, separators=(",", ":")).encode()
        return cls(status=status, headers={"content-type": "application/json"}, body=body)

    @classmethod
    def text(
        cls, status: int, text: str, *, headers: Mapping[str, str] | None = None
    ) -> SimResponse:
        """A non-JSON answer, like a gateway's error page."""
        return cls(
            status=status,
            headers={"content-type": "text/html", **(headers or {})},
            body=text.encode(),
        )


@attrs.frozen
class Drop:
    """Close the connection without answering (whether the venue committed is up to it)."""


@attrs.frozen
class Refuse:
    """Refuse the connection: nothing reached the venue."""


@attrs.frozen
class Slow:
    """Answer ``response``, but only after the client has given up waiting."""

    response: SimResponse


DROP = Drop()
REFUSE = Refuse()

SimAction: TypeAlias = SimResponse | Drop | Refuse | Slow
"""What `FakeVenue.handle` returns: an answer, or how the connection misbehaves."""


@attrs.frozen(kw_only=True)
class ReceivedRequest:
    """A request that reached a fake venue, with when it arrived and the fault it drew.

    ``clock_time`` is the venue's clock (virtual in tests, without the venue's skew);
    ``real_time`` is ``time.time()``, for tests against the loopback server.
    """

    request: SimRequest
    clock_time: float
    real_time: float
    fault: Fault | None = None


@attrs.frozen(kw_only=True)
class Execution:
    """One transfer the fake venue really executed: the ground truth for exactly-once checks.

    Accounts are the venue's native names. ``biz_id`` is the venue's de-duplication key, or
    ``None`` on a venue without one.
    """

    venue: str
    biz_id: str | None
    from_account: str
    to_account: str
    currency: str
    amount: Decimal
    transfer_id: str
    executed_at: datetime
    symbol: str | None = None


@runtime_checkable
class FakeVenue(Protocol):
    """What the in-process transport and the loopback server need from a fake venue."""

    @property
    def name(self) -> str:
        """Short name, as xferkit calls the venue (``"xt"``)."""

    @property
    def host(self) -> str:
        """The host the real venue answers on (``"sapi.xt.com"``); the transport routes by it."""

    @property
    def requests(self) -> Sequence[ReceivedRequest]:
        """Every request that reached the venue, oldest first (refused connections excluded)."""

    def handle(self, request: SimRequest) -> SimAction:
        """Process one request synchronously and say how to answer it."""
