"""Fault injection shared by every fake venue: which fault strikes a request, and what the
venue-neutral faults look like on the wire.

Faults strike only a venue's transfer endpoint (never its time endpoint), so a client can
always resync its clock. The venue-specific faults (``CLOCK_SKEW``, ``TIMEOUT_CODE_AFTER``) are
rendered by each fake in its own error shape; the rest by `before_processing` and
`after_processing` here.
"""

from __future__ import annotations

import collections
import enum
import random
import types
from collections.abc import Mapping, Sequence

from ._sim import DROP, REFUSE, SimAction, SimResponse, Slow

__all__ = [
    "ALL_FAULTS",
    "DEFAULT_SKEW_MS",
    "RETRY_AFTER_SECONDS",
    "Fault",
    "FaultPlan",
    "after_processing",
    "before_processing",
]

DEFAULT_SKEW_MS = 90_000
"""How far a ``CLOCK_SKEW`` moves the venue's clock: beyond any receive window (60 s at most),
so a client that keeps its old offset is refused until it resyncs."""

RETRY_AFTER_SECONDS = 1
"""The ``Retry-After`` a simulated 429 carries."""


class Fault(enum.Enum):
    """One way a request to a venue's transfer endpoint can go wrong."""

    CONNECT_REFUSED = "connect_refused"
    """Nothing reached the venue; the client sees a connect error."""
    DROP_BEFORE = "drop_before"
    """The connection drops before the venue processes the request."""
    DROP_AFTER = "drop_after"
    """The venue commits, then the connection drops without an answer."""
    ERROR_5XX_BEFORE = "error_5xx_before"
    """503 from the gateway; not processed."""
    ERROR_5XX_AFTER = "error_5xx_after"
    """The venue commits, then the gateway answers 500 or 502 (alternately)."""
    SLOW_AFTER = "slow_after"
    """The venue commits, then answers only after the client's timeout."""
    TIMEOUT_CODE_AFTER = "timeout_code_after"
    """The venue commits, then answers its "timed out, may have executed" code."""
    RATE_LIMIT = "rate_limit"
    """429 with ``Retry-After``; not processed."""
    CLOCK_SKEW = "clock_skew"
    """The venue's clock jumps and this request is refused with the timestamp error."""


ALL_FAULTS: tuple[Fault, ...] = tuple(Fault)


class FaultPlan:
    """Decides, reproducibly, which fault (if any) strikes each transfer request.

    Forced faults are used first, in order; otherwise a fault is drawn with probability
    ``rate`` from ``kinds`` using a ``random.Random(seed)``, so a failing run can be replayed.
    One plan may be shared by several fake venues; it then draws across all of them.

    Args:
        rate: probability (0..1) that a request draws a random fault.
        kinds: the faults random draws choose from (all of them by default).
        seed: the seed of the plan's own random generator.
        skew_ms: how far the venue's clock jumps on each ``CLOCK_SKEW``.
    """

    def __init__(
        self,
        *,
        rate: float = 0.0,
        kinds: Sequence[Fault] = ALL_FAULTS,
        seed: int = 0,
        skew_ms: int = DEFAULT_SKEW_MS,
    ) -> None:
        if not 0.0 <= rate <= 1.0:
            raise ValueError(f"rate must be between 0 and 1, not {rate}")
        if rate and not kinds:
            raise ValueError("a positive rate needs at least one fault kind")
        self.rate = rate
        self.kinds: tuple[Fault, ...] = tuple(kinds)
        self.seed = seed
        self.skew_ms = skew_ms
        self.enabled = True
        """Set to ``False`` to stop all faults (forced ones stay queued), e.g. before resuming."""
        self._random = random.Random(seed)
        self._forced: collections.deque[Fault] = collections.deque()
        self._injected = dict.fromkeys(Fault, 0)

    def __repr__(self) -> str:
        return (
            f"FaultPlan(rate={self.rate!r}, seed={self.seed!r}, enabled={self.enabled!r}, "
            f"forced={len(self._forced)})"
        )

    @property
    def injected(self) -> Mapping[Fault, int]:
        """How many faults of each kind were injected so far (every kind present, 0 if none)."""
        return types.MappingProxyType(self._injected)

    @property
    def forced(self) -> Sequence[Fault]:
        """The forced faults still queued, next first."""
        return tuple(self._forced)

    def force(self, fault: Fault, times: int = 1) -> None:
        """Queue ``fault`` for the next ``times`` transfer requests, ahead of random draws."""
        if times < 1:
            raise ValueError(f"times must be at least 1, not {times}")
        self._forced.extend([fault] * times)

    def next_fault(self) -> Fault | None:
        """Return the fault for the next transfer request, or ``None``, and count it."""
        if not self.enabled:
            return None
        if self._forced:
            fault = self._forced.popleft()
        elif self.rate and self._random.random() < self.rate:
            fault = self._random.choice(self.kinds)
        else:
            return None
        self._injected[fault] += 1
        return fault


def before_processing(fault: Fault | None) -> SimAction | None:
    """Render a fault that strikes before the venue looks at the request; ``None`` otherwise."""
    if fault is Fault.CONNECT_REFUSED:
        return REFUSE
    if fault is Fault.DROP_BEFORE:
        return DROP
    if fault is Fault.ERROR_5XX_BEFORE:
        return _gateway_page(503, "Service Unavailable")
    if fault is Fault.RATE_LIMIT:
        return SimResponse.text(
            429, "Too Many Requests", headers={"retry-after": str(RETRY_AFTER_SECONDS)}
        )
    return None


def after_processing(plan: FaultPlan, fault: Fault | None, answer: SimResponse) -> SimAction:
    """Render a fault that strikes after the venue processed the request into ``answer``.

    Faults this function does not own leave ``answer`` as it is.
    """
    if fault is Fault.DROP_AFTER:
        return DROP
    if fault is Fault.SLOW_AFTER:
        return Slow(answer)
    if fault is Fault.ERROR_5XX_AFTER:
        # Alternate, so a run with a few of these sees both a server error and a gateway error.
        if plan.injected[fault] % 2:
            return _gateway_page(500, "Internal Server Error")
        return _gateway_page(502, "Bad Gateway")
    return answer


def _gateway_page(status: int, reason: str) -> SimResponse:
    """A gateway's HTML error page: the client must cope with a body that is not JSON."""
    return SimResponse.text(status, f"<html><body><h1>{status} {reason}</h1></body></html>")
