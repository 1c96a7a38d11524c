"""Retry policy and its tenacity wiring: full-jitter capped exponential backoff.

The backoff arithmetic is a pure function of (policy, attempt, random draw, Retry-After) so it
can be tested without I/O; tenacity runs the loop with the client's clock for sleeping.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from typing import Any

import attrs
import tenacity

from ._clock import Clock
from ._exceptions import InvalidRequestError

__all__ = [
    "DEFAULT_RETRY_POLICY",
    "RetryBudget",
    "RetryPolicy",
    "backoff_delay",
    "deadline_stop",
]


def _positive(_: object, attribute: attrs.Attribute[Any], value: float | None) -> None:
    if value is None and attribute.name == "deadline":
        return
    if not (isinstance(value, int | float) and value > 0 and math.isfinite(value)):
        raise InvalidRequestError(f"{attribute.name} must be a positive number, not {value!r}")


@attrs.frozen(kw_only=True)
class RetryPolicy:
    """How hard one ``transfer()`` call tries before it gives up.

    Attributes:
        max_attempts: requests sent at most per call (the first one included).
        initial_backoff: cap of the first wait, in seconds; it doubles per retry...
        max_backoff: ...up to this cap. Each wait is drawn uniformly from [0, cap]
            ("full jitter"), so concurrent callers do not retry in lockstep.
        max_retry_after: a venue's ``Retry-After`` (or quota header) is honoured up to this
            many seconds, by the backoff and by the venue's rate limiter alike.
        deadline: seconds the whole call may take, waits included; ``None`` for no bound.
            ``transfer(deadline=...)`` overrides it per call. No wait (backoff, rate
            limiter, another worker's lease) runs past it.
    """

    max_attempts: int = attrs.field(default=6)
    initial_backoff: float = attrs.field(default=0.2, validator=_positive)
    max_backoff: float = attrs.field(default=5.0, validator=_positive)
    max_retry_after: float = attrs.field(default=30.0, validator=_positive)
    deadline: float | None = attrs.field(default=60.0, validator=_positive)

    @max_attempts.validator
    def _check_attempts(self, _: attrs.Attribute[int], value: int) -> None:
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise InvalidRequestError(f"max_attempts must be an int >= 1, not {value!r}")


DEFAULT_RETRY_POLICY = RetryPolicy()


def backoff_delay(
    policy: RetryPolicy, attempt: int, draw: float, retry_after: float | None = None
) -> float:
    """Seconds to wait after failed attempt number ``attempt`` (1-based).

    ``draw`` is a uniform random number in [0, 1). The venue's ``Retry-After``, when given,
    is a floor (capped by ``policy.max_retry_after``): retrying sooner would only be refused.
    """
    # The exponent is bounded first: 2.0 ** 1024 overflows, and the cap is long reached by then.
    cap = min(policy.max_backoff, policy.initial_backoff * 2.0 ** min(attempt - 1, 64))
    delay = cap * draw
    if retry_after is not None:
        delay = max(delay, min(retry_after, policy.max_retry_after))
    return delay


def backoff_wait(
    policy: RetryPolicy,
    rng: random.Random,
    retry_after: Callable[[tenacity.RetryCallState], float | None],
) -> Callable[[tenacity.RetryCallState], float]:
    """A tenacity ``wait`` that applies `backoff_delay` with the venue's Retry-After."""

    def wait(state: tenacity.RetryCallState) -> float:
        return backoff_delay(policy, state.attempt_number, rng.random(), retry_after(state))

    return wait


class _StopAtDeadline(tenacity.stop.stop_base):
    def __init__(self, clock: Clock, deadline_at: float | None) -> None:
        self._clock = clock
        self._deadline_at = deadline_at

    def __call__(self, retry_state: tenacity.RetryCallState) -> bool:
        if self._deadline_at is None:
            return False
        upcoming = retry_state.upcoming_sleep or 0.0
        return self._clock.monotonic() + upcoming >= self._deadline_at


def deadline_stop(clock: Clock, deadline_at: float | None) -> tenacity.stop.stop_base:
    """A tenacity ``stop`` that gives up when the next wait would end past ``deadline_at``."""
    return _StopAtDeadline(clock, deadline_at)


@attrs.define
class RetryBudget:
    """A client-wide allowance of retries, so an outage does not become a retry storm.

    A token bucket as in the AWS SDKs' "standard" retry mode: every retry spends tokens (a
    retry after an ambiguous answer, usually a timeout, spends more); a transfer that succeeds
    gets its retries' tokens back (one token when it needed none). With the bucket empty, a
    call stops retrying: its transfer ends ``UNKNOWN`` (settled later by ``resume()``) or, if
    nothing was processed, with the error.

    Attributes:
        capacity: tokens when full.
        retry_cost: tokens one retry after a provably-unprocessed answer spends.
        ambiguous_cost: tokens one retry after an ambiguous answer spends.
        success_refund: tokens a successful transfer returns.
    """

    capacity: int = attrs.field(default=500)
    retry_cost: int = attrs.field(default=5)
    ambiguous_cost: int = attrs.field(default=10)
    success_refund: int = attrs.field(default=1)
    tokens: float = attrs.field(init=False)

    @capacity.validator
    def _check_capacity(self, _: attrs.Attribute[int], value: int) -> None:
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise InvalidRequestError(f"capacity must be an int >= 1, not {value!r}")

    def __attrs_post_init__(self) -> None:
        self.tokens = self.capacity

    def try_spend(self, cost: int) -> bool:
        """Take ``cost`` tokens for one retry; ``False`` (and nothing taken) if short."""
        if self.tokens < cost:
            return False
        self.tokens -= cost
        return True

    def refund(self, tokens: int) -> None:
        """A transfer succeeded: return ``tokens`` (its retries' cost, or the success refund)."""
        self.tokens = min(self.capacity, self.tokens + tokens)
