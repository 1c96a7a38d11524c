"""Where a ledger's settle window starts: the latest time an intent's attempts can have ended.

A venue without idempotency keys (HTX) may commit a transfer until the attempt that carried it
ends (its answer, timeout, reset or cancellation), and shows it in its ledger within the settle
window after that. So "absent" is provable only once the window has passed since the *latest
possible end* of every attempt sent so far. For an attempt of this very drive that end is
known. For attempts of an earlier call or another process it is bounded by what the journal
holds in `Intent.attempts_end_by`, which every writer keeps at or after the true end:

* **Before each send** the engine writes ``now + lease + TRANSPORT_PHASES * timeout``. The send
  happens only under a live lease (it is renewed right before a send that waited long), so it
  starts by the lease's expiry, ``now + lease``; the transport bounds each phase of it (pool
  wait, connect, write, read) by ``timeout``, so it ends within ``TRANSPORT_PHASES * timeout``
  after it starts. A worker that crashes or stalls mid-attempt leaves this bound behind.
* **When a drive stops** without settling (cancelled, interrupted, left ``UNKNOWN``) it writes
  the latest of the bound it inherited from earlier workers and its own attempts' real end (the
  time it stops, if it is stopped mid-send). Its attempts are over by then: the write comes
  after them. It never lowers the bound below what an earlier worker's attempt may need, so a
  chain of takeovers (a stalled worker, a second one that took over and was cancelled, a third
  one resuming) keeps every attempt covered.
* **A row written before the field existed** has no bound: its worker released it (its
  attempts ended before now) or its lease expired before now (its last send started before
  then), so ``now`` plus the transport phases of this client's timeout covers both.

Times are each writer's wall clock: workers sharing a journal are assumed to agree on UTC to
well within the settle window (the venue's settle window also absorbs small differences), as
the SQLite journal's leases already assume. A later bound only costs waiting; an earlier one
could turn a transfer that executed into a second execution, so every choice here leans late.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from .journal._base import Intent

__all__ = ["TRANSPORT_PHASES", "before_send", "inherited", "latest", "on_stop"]

TRANSPORT_PHASES = 4
"""Phases of one HTTP attempt that the transport bounds each by the timeout (httpx's pool,
connect, write and read timeouts): an attempt can last this many timeouts."""


def latest(*times: datetime | None) -> datetime | None:
    """The latest of ``times`` that are known; ``None`` if none is."""
    known = [t for t in times if t is not None]
    return max(known) if known else None


def before_send(
    intent: Intent, *, now: datetime, lease_seconds: float, timeout: float
) -> datetime | None:
    """The bound written with the journal entry that precedes a send (see the module)."""
    sent_by = now + timedelta(seconds=lease_seconds + TRANSPORT_PHASES * timeout)
    return latest(intent.attempts_end_by, sent_by)


def inherited(intent: Intent, *, now: datetime, timeout: float) -> datetime:
    """The latest an earlier call's or process's attempts of ``intent`` can have ended.

    ``intent`` is the stored row, read when this drive took the lease.
    """
    if intent.attempts_end_by is not None:
        return intent.attempts_end_by
    return now + timedelta(seconds=TRANSPORT_PHASES * timeout)  # a row from before schema 3


def on_stop(
    intent: Intent,
    *,
    inherited_bound: datetime | None,
    sent: bool,
    ended_at: datetime | None,
    now: datetime,
) -> datetime | None:
    """The bound a drive that stops without settling writes (see the module).

    ``sent``: whether this drive sent anything; ``ended_at``: when its latest attempt ended,
    ``None`` if it was stopped mid-send (then it ended no later than ``now``).
    """
    if not sent:
        return latest(inherited_bound, intent.attempts_end_by)
    return latest(inherited_bound, ended_at if ended_at is not None else now)
