"""Where a ledger's settle window starts: the latest time an intent's attempts can have ended.

A venue without idempotency keys (HTX) may commit a transfer until the attempt that carried it
ends (its answer, timeout, reset or cancellation), and shows it in its ledger within the settle
window after that. So "absent" is provable only once the window has passed since the *latest
possible end* of every attempt sent so far. For an attempt of this very drive that end is
known. For attempts of an earlier call or another process it is bounded by what the journal
holds in `Intent.attempts_end_venue_ms`, which every writer keeps at or after the true end:

* **Before each send** the engine writes the venue's time now (the upper end of what the
  measurement allows) plus ``lease + TRANSPORT_PHASES * timeout``. The send happens only under
  a live lease (it is renewed right before a send that waited long), so it starts by the
  lease's expiry, ``now + lease``; the transport bounds each phase of it (pool wait, connect,
  write, read) by ``timeout``, so it ends within ``TRANSPORT_PHASES * timeout`` after it starts.
  A worker that crashes or stalls mid-attempt leaves this bound behind.
* **When a drive stops** without settling (cancelled, interrupted, left ``UNKNOWN``) it writes
  the latest of the bound it inherited from earlier workers and its own latest attempt's end
  (the time it stops, if it is stopped mid-send). It never lowers the bound below what an
  earlier worker's attempt may need, so a chain of takeovers (a stalled worker, a second one
  that took over and was cancelled, a third one resuming) keeps every attempt covered.
* **A row written before the field existed** has no bound: its worker released it (its
  attempts ended before now) or its lease expired before now (its last send started before
  then), so ``now`` plus the transport phases of this client's timeout covers both.

The bound is in the **venue's** time, not a worker's: workers of a fleet on several hosts may
disagree about the time (the database's clock decides their leases for that reason), but they
all measure the same venue's clock (`ServerClock`). A writer records the upper end of its
estimate of the venue's time, a reader compares with the lower end of its own, so neither
measurement's uncertainty nor the drift since can make the wait too short. A later bound only
costs waiting; an earlier one could turn a transfer that executed into a second execution, so
every choice here leans late.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta

from .._clock import DRIFT_PER_MS
from ..journal._base import Intent

__all__ = ["TRANSPORT_PHASES", "before_send", "latest", "legacy_bound", "local_time", "on_stop"]

TRANSPORT_PHASES = 4
"""Phases of one HTTP attempt that the transport bounds each by the timeout (httpx's pool,
connect, write and read timeouts): an attempt can last this many timeouts."""


def latest(*values: int | None) -> int | None:
    """The latest of ``values`` that are known; ``None`` if none is."""
    known = [v for v in values if v is not None]
    return max(known) if known else None


def _later_ms(seconds: float) -> int:
    """``seconds`` of this host's time as venue milliseconds, rounded up and widened by the
    drift the two clocks may have over them."""
    return math.ceil(seconds * 1000 * (1 + DRIFT_PER_MS))


def before_send(
    intent: Intent, *, venue_now_high_ms: int, lease_seconds: float, timeout: float
) -> int | None:
    """The bound written with the journal entry that precedes a send (see the module)."""
    sent_by = venue_now_high_ms + _later_ms(lease_seconds + TRANSPORT_PHASES * timeout)
    return latest(intent.attempts_end_venue_ms, sent_by)


def legacy_bound(*, venue_now_high_ms: int, timeout: float) -> int:
    """The bound of a row that may have been sent but holds none (written before schema 3):
    taken now, after its worker released it or its lease expired (see the module)."""
    return venue_now_high_ms + _later_ms(TRANSPORT_PHASES * timeout)


def on_stop(
    intent: Intent,
    *,
    inherited_ms: int | None,
    sent: bool,
    ended_ms: int | None,
    venue_now_high_ms: int,
) -> int | None:
    """The bound a drive that stops without settling writes (see the module).

    ``sent``: whether this drive sent anything; ``ended_ms``: the venue's time (upper end)
    when its latest attempt ended, ``None`` if it was stopped mid-send (then it ended no later
    than now).
    """
    if not sent:
        return latest(inherited_ms, intent.attempts_end_venue_ms)
    return latest(inherited_ms, ended_ms if ended_ms is not None else venue_now_high_ms)


def local_time(venue_ms: int, *, now: datetime, venue_now_low_ms: int) -> datetime:
    """When this host's clock will read what the venue's reads at ``venue_ms``, at the latest:
    measured from the earliest the venue's clock can read now, and widened by the drift."""
    ahead_ms = venue_ms - venue_now_low_ms
    rate = 1 + DRIFT_PER_MS if ahead_ms >= 0 else 1 - DRIFT_PER_MS
    return now + timedelta(milliseconds=math.ceil(ahead_ms * rate))
