"""Settling an ambiguous attempt on a venue without idempotency keys, through its ledger.

After an attempt that may have executed, the engine never resends blindly. It waits for the
venue to settle, then reads the spot account's ledger from the first send (minus a clock
margin) to now and looks for a row that matches the transfer and that no other intent claimed:

* found: the transfer executed; the row is claimed for this intent in the journal (claims are
  unique per venue, so two identical intents can never both take one row);
* absent after the settle window: it did not execute, and sending again is safe;
* anything else (the ledger unreachable, the deadline, a transfer the ledger cannot show):
  unclear, and the intent stays ``UNKNOWN`` for ``resume()``.

Reading the ledger is `xferkit.settlement.reads`' job (concurrent lookups share one scan); in a
``resume()`` sweep, an intent waiting out its settle window gives up its slot (`settlement.sweep`).
"""

from __future__ import annotations

from datetime import datetime

import attrs

from .._clock import Clock, ServerClock
from .._models import TransferStatus
from .._transport import SendError, Transport
from ..journal._base import Intent, Journal, LeaseLostError
from ..venues._base import LedgerRow, LedgerVenue, TransferSpec
from .reads import LedgerReads
from .sweep import release_sweep_slot

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
        # sweep, only waiting, this intent lets the next one start (`settlement.sweep`).
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
        """Read the ledger now and claim a matching row no other intent accounts for."""
        assert intent.first_sent_venue_ms is not None  # noqa: S101 - checked by find
        margin_ms = venue.ledger_margin_seconds * 1000
        # The search starts at the venue's earliest time before the first send, less the margin,
        # and ends after the read began (`LedgerReads`: the venue's clock measured afresh).
        start_ms = int(intent.first_sent_venue_ms - margin_ms)
        try:
            for _ in range(_MAX_REACH_BACKS):
                scan = await self._reads.read(venue, server_clock, spec.currency, start_ms)
                if start_ms < scan.start_ms:
                    return Unclear("the first send is older than the ledger's 180-day reach")
                # Read after the ledger: a clean success settled meanwhile is counted.
                others = await self._identical(intent, spec)
                wider = others.reach_back(start_ms, offset_ms=scan.offset_ms, margin_ms=margin_ms)
                if wider == start_ms:
                    break
                start_ms = wider  # rows before this scan's start may be a clean success's
            else:
                return Unclear(_REACHING)
        except (SendError, ValueError, KeyError, TypeError) as exc:
            return Unclear(f"the venue's clock or ledger could not be read: {exc}")
        clean = others.clean_between(
            start_ms, scan.end_ms, offset_ms=scan.offset_ms, margin_ms=margin_ms
        )
        if clean is None:
            return Unclear(
                "an identical transfer that succeeded without a ledger id may own a row "
                "after the search window's end"
            )
        return await self._claim_unowned(
            venue,
            intent,
            spec,
            scan.window(start_ms),
            claimed=others.claimed,
            clean=clean,
            owner=owner,
        )

    async def _claim_unowned(
        self,
        venue: LedgerVenue,
        intent: Intent,
        spec: TransferSpec,
        rows: list[LedgerRow],
        *,
        claimed: frozenset[str],
        clean: int,
        owner: str,
    ) -> Found | Absent | Unclear:
        """Claim a matching row that no other intent accounts for; absent if there is none.

        Ledger accounting, not first match: an identical transfer that succeeded cleanly got
        the transfer endpoint's id, not its ledger row's, so it claimed no row, yet one of the
        rows is its. The window holds every such row whole (`_Identical.reach_back`), so
        exactly ``clean`` of its unclaimed matching rows are theirs; only rows beyond those
        can be this intent's.
        """
        matching: list[LedgerRow] = []
        undecidable = False
        for row in sorted(rows, key=lambda r: (r.transact_time_ms, r.transact_id)):
            match = venue.ledger_matches(row, spec)
            if match is None:
                undecidable = True
            elif match:
                matching.append(row)
        unclaimed = [row for row in matching if row.transact_id not in claimed]
        # The earliest rows go to the clean successes: under the one-unresolved-identical-
        # movement rule they were all sent before this intent.
        for row in unclaimed[clean:]:
            if await self._journal.claim_ledger_ref(intent.id, owner=owner, ref=row.transact_id):
                return Found(row.transact_id)
            # Refused: another intent owns the row, or we lost our lease. Only the first
            # means "keep looking"; reading the second as "absent" could cause a resend.
            stored = await self._journal.get(intent.id)
            if stored is None or stored.lease_owner != owner:
                raise LeaseLostError(f"intent {intent.key!r} was taken over by another worker")
        return Unclear(_UNTYPED) if undecidable else Absent()

    async def _identical(self, intent: Intent, spec: TransferSpec) -> _Identical:
        """What the journal says of this account's other intents moving exactly ``spec``.

        Reads the account's whole journal (a reconciliation is rare; a time-bounded listing
        would make it cheaper on a very large journal).
        """
        claimed: set[str] = set()
        clean: list[tuple[float, float]] = []
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
            finished = other.finished_at or other.last_sent_at or other.first_sent_at
            assert finished is not None  # noqa: S101 - a settled, sent intent has its times
            clean.append((other.first_sent_venue_ms, finished.timestamp() * 1000))
        return _Identical(claimed=frozenset(claimed), clean=tuple(clean))


_MAX_REACH_BACKS = 3
_REACHING = (
    "identical transfers that succeeded without a ledger id keep reaching back before the "
    "search window"
)


@attrs.frozen
class _Identical:
    """Other intents of the account moving the same: the ledger rows they claimed, and for
    each clean success (which claimed none) its first send in the venue's time and when its
    answer was recorded, on this host's wall clock (its row lies between the two)."""

    claimed: frozenset[str]
    clean: tuple[tuple[float, float], ...]

    def _spans(self, offset_ms: float, margin_ms: float) -> list[tuple[float, float]]:
        return [(sent - margin_ms, done + offset_ms + margin_ms) for sent, done in self.clean]

    def reach_back(self, start_ms: int, *, offset_ms: float, margin_ms: float) -> int:
        """Move ``start_ms`` back so no clean success's span straddles it (again for any span
        reaching into the added part): each one is then wholly inside the window or wholly
        outside, and the count of rows they own in it is exact."""
        spans = self._spans(offset_ms, margin_ms)
        moved = True
        while moved:
            moved = False
            for earliest_ms, latest_ms in spans:
                if earliest_ms < start_ms <= latest_ms:
                    start_ms, moved = int(earliest_ms), True
        return start_ms

    def clean_between(
        self, start_ms: int, end_ms: int, *, offset_ms: float, margin_ms: float
    ) -> int | None:
        """How many clean successes own a row between ``start_ms`` and ``end_ms``; ``None``
        if one may own a row after ``end_ms``."""
        clean = 0
        for earliest_ms, latest_ms in self._spans(offset_ms, margin_ms):
            if latest_ms < start_ms or earliest_ms > end_ms:
                continue  # its row is outside the window
            if latest_ms > end_ms:
                return None
            clean += 1
        return clean
