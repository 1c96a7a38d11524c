"""Settling an ambiguous attempt on a venue without idempotency keys, through its ledger.

After an attempt that may have executed, the engine never resends blindly. It waits for the
venue to settle, then reads the spot account's ledger from the first send (minus a clock
margin) to now and looks for a row that matches the transfer and that no other intent claimed:

* found: the transfer executed; the row is claimed for this intent in the journal (claims are
  unique per venue, so two identical intents can never both take one row);
* absent after the settle window: it did not execute, and sending again is safe;
* anything else (the ledger unreachable, the deadline, a transfer the ledger cannot show):
  unclear, and the intent stays ``UNKNOWN`` for ``resume()``.

Reading the ledger is `xferkit._ledger_reads`' job (concurrent lookups share one scan); in a
``resume()`` sweep, an intent waiting out its settle window gives up its slot (`_sweep`).
"""

from __future__ import annotations

from datetime import datetime

import attrs

from ._clock import Clock, ServerClock
from ._ledger_reads import LedgerReads
from ._models import TransferStatus
from ._sweep import release_sweep_slot
from ._transport import SendError, Transport
from .journal._base import Intent, Journal, LeaseLostError
from .venues._base import LedgerRow, LedgerVenue, TransferSpec

__all__ = ["Absent", "Found", "Reconciler", "Unclear"]


@attrs.frozen
class Found:
    """The transfer is in the ledger; ``ledger_id`` is the row now claimed by this intent."""

    ledger_id: str


@attrs.frozen
class Absent:
    """Provably not executed: the settle window passed without a matching row."""


@attrs.frozen
class Unclear:
    """Neither found nor provably absent; ``reason`` says why."""

    reason: str


_UNTYPED = "a ledger row matches but carries no transfer type xferkit knows"


class Reconciler:
    """Looks transfers up in a venue's ledger; one per client, its reads shared."""

    def __init__(
        self, *, journal: Journal, transport: Transport, clock: Clock, timeout: float
    ) -> None:
        self._journal = journal
        self._clock = clock
        self._reads = LedgerReads(transport=transport, timeout=timeout)

    async def find(
        self,
        venue: LedgerVenue,
        server_clock: ServerClock,
        intent: Intent,
        spec: TransferSpec,
        *,
        owner: str,
        lease_seconds: float,
        deadline_at: float | None,
        attempt_ended_at: datetime,
    ) -> Found | Absent | Unclear:
        """Settle whether ``intent`` executed, claiming its ledger row if it did.

        The ledger is read at once: a matching row settles the intent whatever the deadline.
        Only absence needs the settle window, counted from ``attempt_ended_at`` (when the
        latest attempt ended: the venue may commit until then), after which it is read again.

        Raises:
            LeaseLostError: another worker took the intent over; this one must not decide.
        """
        if intent.ledger_ref is not None:
            return Found(intent.ledger_ref)  # claimed before a crash or a cancellation
        if not venue.can_reconcile(spec):
            return Unclear("the spot ledger cannot show a transfer that does not touch spot")
        if intent.first_sent_venue_ms is None:
            return Absent()  # never sent: IN_FLIGHT and the anchor are written before a send
        first = await self._look(venue, server_clock, intent, spec, owner=owner)
        if not isinstance(first, Absent):
            return first
        settled_at = attempt_ended_at.timestamp() + venue.settle_seconds
        wait = max(settled_at - self._clock.time(), 0.0)
        if wait == 0:
            return first  # read after the settle window: absent
        if deadline_at is not None and self._clock.monotonic() + wait > deadline_at:
            return Unclear("not in the ledger yet, and the deadline ends before the settle window")
        # Heartbeat through the wait: the settle window can be longer than the lease, and a
        # lapsed lease would let another worker drive the intent at the same time. Each renewal
        # also proves the intent is still ours (LeaseLostError otherwise). In a resume()
        # sweep, only waiting, this intent lets the next one start (`_sweep`).
        release_sweep_slot()
        deadline_wait = self._clock.monotonic() + wait
        while True:
            await self._journal.save(intent, owner=owner, lease_seconds=lease_seconds)
            left = deadline_wait - self._clock.monotonic()
            if left <= 0:
                break
            await self._clock.sleep(min(left, lease_seconds / 3))
        return await self._look(venue, server_clock, intent, spec, owner=owner)

    async def _look(
        self,
        venue: LedgerVenue,
        server_clock: ServerClock,
        intent: Intent,
        spec: TransferSpec,
        *,
        owner: str,
    ) -> Found | Absent | Unclear:
        """Read the ledger now and claim the first matching row no other intent has."""
        assert intent.first_sent_venue_ms is not None  # noqa: S101 - checked by find
        # The search starts at the venue's earliest time before the first send, less the margin,
        # and ends after the read began (`LedgerReads`: the venue's clock measured afresh).
        start_ms = int(intent.first_sent_venue_ms - venue.ledger_margin_seconds * 1000)
        try:
            scan = await self._reads.read(venue, server_clock, spec.currency, start_ms)
        except (SendError, ValueError, KeyError, TypeError) as exc:
            return Unclear(f"the venue's clock or ledger could not be read: {exc}")
        if start_ms < scan.start_ms:
            return Unclear("the first send is older than the ledger's 180-day reach")
        return await self._claim_first_match(
            venue,
            intent,
            spec,
            scan.window(start_ms),
            owner=owner,
            start_ms=start_ms,
            end_ms=scan.end_ms,
            offset_ms=scan.offset_ms,
        )

    async def _claim_first_match(
        self,
        venue: LedgerVenue,
        intent: Intent,
        spec: TransferSpec,
        rows: list[LedgerRow],
        *,
        owner: str,
        start_ms: int,
        end_ms: int,
        offset_ms: float,
    ) -> Found | Absent | Unclear:
        """Claim a matching row that no other intent accounts for; absent if there is none.

        Ledger accounting, not first match: an identical transfer that succeeded cleanly got
        the transfer endpoint's id, not its ledger row's, so it claimed no row, yet one of the
        rows is its. Every such success whose row must lie in the window owns one; only rows
        beyond those can be this intent's. One whose row may lie at the window's edge makes
        the count uncertain: cannot tell.
        """
        matching: list[LedgerRow] = []
        undecidable = False
        for row in sorted(rows, key=lambda r: (r.transact_time_ms, r.transact_id)):
            if row.transact_time_ms < start_ms:
                continue
            match = venue.ledger_matches(row, spec)
            if match is None:
                undecidable = True
            elif match:
                matching.append(row)
        if not matching:
            return Unclear(_UNTYPED) if undecidable else Absent()
        owned = await self._accounted_for(
            venue, intent, spec, start_ms=start_ms, end_ms=end_ms, offset_ms=offset_ms
        )
        if owned is None:
            return Unclear(
                "an identical transfer that succeeded without a ledger id may own a row at "
                "the edge of the search window"
            )
        claimed, clean = owned
        unclaimed = [row for row in matching if row.transact_id not in claimed]
        # The earliest rows go to the clean successes, sent before this intent's later sends.
        for row in unclaimed[clean:]:
            if await self._journal.claim_ledger_ref(intent.id, owner=owner, ref=row.transact_id):
                return Found(row.transact_id)
            # Refused: another intent owns the row, or we lost our lease. Only the first
            # means "keep looking"; reading the second as "absent" could cause a resend.
            stored = await self._journal.get(intent.id)
            if stored is None or stored.lease_owner != owner:
                raise LeaseLostError(f"intent {intent.key!r} was taken over by another worker")
        return Unclear(_UNTYPED) if undecidable else Absent()

    async def _accounted_for(
        self,
        venue: LedgerVenue,
        intent: Intent,
        spec: TransferSpec,
        *,
        start_ms: int,
        end_ms: int,
        offset_ms: float,
    ) -> tuple[set[str], int] | None:
        """The rows other identical intents of this account claimed, and how many clean
        successes own a row inside [start_ms, end_ms]; ``None`` if one may own a row at its
        edge.

        Reads the account's whole journal (a reconciliation is rare; a time-bounded listing
        would make it cheaper on a very large journal).
        """
        margin_ms = venue.ledger_margin_seconds * 1000
        claimed: set[str] = set()
        clean = 0
        for other in await self._journal.list(accounts=[(intent.venue, intent.account)]):
            if other.key == intent.key:
                continue
            if not TransferSpec.from_canonical_json(other.params).same_movement(spec):
                continue
            if other.ledger_ref is not None:
                claimed.add(other.ledger_ref)
                continue
            if other.status is not TransferStatus.SUCCEEDED or other.first_sent_venue_ms is None:
                continue
            # Its row was written between its first send and its answer.
            finished = other.finished_at or other.last_sent_at or other.first_sent_at
            assert finished is not None  # noqa: S101 - a settled, sent intent has its times
            latest_ms = finished.timestamp() * 1000 + offset_ms + margin_ms
            earliest_ms = other.first_sent_venue_ms
            if latest_ms < start_ms or earliest_ms > end_ms:
                continue  # its row is outside the window
            if earliest_ms < start_ms or latest_ms > end_ms:
                return None
            clean += 1
        return claimed, clean
