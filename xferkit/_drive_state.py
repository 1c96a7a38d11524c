"""What one drive of an intent works with: its venue's runtime state and what it has learnt.

Shared by the engine (`xferkit._engine`) and the ledger drive (`xferkit.settlement.drive`).
"""

from __future__ import annotations

import logging
from datetime import datetime, timezone

import attrs

from ._clock import Clock, ServerClock
from ._outcomes import Ambiguous, NotProcessed
from ._shared_rate import Limiter
from ._transport import SendError
from .journal._base import Intent
from .venues._base import AmbiguityPolicy, TransferSpec, Venue

__all__ = ["Exhausted", "Progress", "VenueRuntime", "reconciles", "sync_clock", "utc"]

_log = logging.getLogger("xferkit.engine")


@attrs.define
class VenueRuntime:
    """A venue together with its per-client state: its clock offset and its rate limiter
    (in process, or a fleet's shared budget)."""

    venue: Venue
    server_clock: ServerClock
    limiter: Limiter  # a `RateLimiter` in process, or the fleet's shared budget


@attrs.frozen
class Exhausted:
    """The retry policy ran out; ``last`` is the final attempt's outcome."""

    last: NotProcessed | Ambiguous


@attrs.define
class Progress:
    """What one drive has learnt so far; ``intent`` is the latest state to write."""

    intent: Intent
    spec: TransferSpec
    maybe_executed: bool
    sent_this_call: int = 0
    budget_spent: int = 0
    # Driven by resume(): an identical unresolved intent that nobody drives is not waited for.
    sweep: bool = False
    # When (monotonic) the claim wrote the next attempt to the journal, leasing the intent;
    # None once that attempt is under way, or if the claim wrote none.
    attempt_recorded_at: float | None = None
    # What the journal said before the claim recorded the next attempt, if that claim was a
    # resume()'s take (`Engine._take`): written back should the attempt never be sent.
    unsent: Intent | None = None
    # When this call's latest attempt ended (its answer, timeout or reset), in UTC: the venue
    # may commit a transfer until then, so a ledger's settle window counts from here; and the
    # venue's time then (the upper end of the estimate). None while an attempt is on the wire.
    attempt_ended_at: datetime | None = None
    attempt_ended_venue_ms: int | None = None
    # On a venue that reconciles: the venue's time by which an earlier call's or process's
    # attempts had ended (`settlement.windows`), when the intent may have executed before
    # this drive;
    # `bound_missing` if its row holds none (from before schema 3): worked out when needed.
    inherited_end_ms: int | None = None
    bound_missing: bool = False


def reconciles(runtime: VenueRuntime) -> bool:
    """Whether the venue settles ambiguity through its ledger (and so needs the bound on when
    an intent's attempts ended, `settlement.windows`)."""
    return runtime.venue.ambiguity_policy is AmbiguityPolicy.RECONCILE


def utc(clock: Clock) -> datetime:
    """``clock``'s time as an aware UTC datetime, as the journal keeps times."""
    return datetime.fromtimestamp(clock.time(), tz=timezone.utc)


async def sync_clock(runtime: VenueRuntime, *, seen_generation: int | None = None) -> None:
    """Measure the venue's clock (once, or again after a timestamp refusal); best effort."""
    server_clock = runtime.server_clock
    try:
        if seen_generation is None:
            await server_clock.ensure_synced()
        else:
            await server_clock.resync(seen_generation=seen_generation)
    except (SendError, ValueError, KeyError, TypeError) as exc:
        # The transfer can still succeed on the local clock; a timestamp refusal asks again.
        _log.warning("%s: could not read the server time: %s", runtime.venue.name, exc)
