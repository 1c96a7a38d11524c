"""Settling an ambiguous attempt on a venue without idempotency keys, through its ledger.

After an attempt that may have executed, the engine never resends blindly. It waits for the
venue to settle, then reads the spot account's ledger from the first send (minus a clock
margin) to now and looks for a row that matches the transfer and that no other intent claimed:

* found: the transfer executed; the row is claimed for this intent in the journal (claims are
  unique per venue, so two identical intents can never both take one row);
* absent after the settle window: it did not execute, and sending again is safe;
* anything else (the ledger unreachable, the deadline, a transfer the ledger cannot show):
  unclear, and the intent stays ``UNKNOWN`` for ``resume()``.
"""

from __future__ import annotations

from datetime import datetime

import attrs

from ._clock import Clock, ServerClock
from ._http import HttpRequest, HttpResponse
from ._models import TransferStatus
from ._transport import SendError, Transport
from .journal._base import Intent, Journal, LeaseLostError
from .venues._base import LedgerRow, LedgerVenue, TransferSpec

LEDGER_MAX_WINDOW_MS = 10 * 24 * 3600 * 1000  # one ledger query spans at most 10 days
LEDGER_MAX_AGE_MS = 180 * 24 * 3600 * 1000  # and reaches back at most 180 days

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


@attrs.frozen
class _Owned:
    """The search window's start and the rows other identical intents own inside it: those
    they claimed, and how many clean successes (which claim none) have their row there."""

    start_ms: int
    claimed: frozenset[str]
    clean: int


class Reconciler:
    """Looks transfers up in a venue's ledger; one per client, caching spot account ids."""

    def __init__(
        self, *, journal: Journal, transport: Transport, clock: Clock, timeout: float
    ) -> None:
        self._journal = journal
        self._transport = transport
        self._clock = clock
        self._timeout = timeout
        self._spot_accounts: dict[LedgerVenue, str] = {}

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
        # also proves the intent is still ours (LeaseLostError otherwise).
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
        # The ledger is in the venue's time. Measure it afresh: its offset may have moved since
        # the send, and a stale offset could end the search before the transfer's row.
        try:
            await server_clock.resync(seen_generation=server_clock.generation)
            margin_ms = venue.ledger_margin_seconds * 1000
            end_ms = int(server_clock.bounds_ms()[1] + margin_ms)
            owned = await self._accounted_for(
                venue,
                intent,
                spec,
                start_ms=int(intent.first_sent_venue_ms - margin_ms),
                end_ms=end_ms,
                offset_ms=server_clock.offset_ms or 0.0,
            )
            if owned is None:
                return Unclear(
                    "an identical transfer that succeeded without a ledger id may own a row "
                    "after the search window's end"
                )
            if end_ms - owned.start_ms > LEDGER_MAX_AGE_MS:
                return Unclear("the first send is older than the ledger's 180-day reach")
            rows = await self._rows(venue, server_clock, spec.currency, owned.start_ms, end_ms)
        except (SendError, ValueError, KeyError, TypeError) as exc:
            return Unclear(f"the venue's clock or ledger could not be read: {exc}")
        return await self._claim_unowned(venue, intent, spec, rows, owned, owner=owner)

    async def _claim_unowned(
        self,
        venue: LedgerVenue,
        intent: Intent,
        spec: TransferSpec,
        rows: list[LedgerRow],
        owned: _Owned,
        *,
        owner: str,
    ) -> Found | Absent | Unclear:
        """Claim a matching row that no other intent accounts for; absent if there is none.

        Ledger accounting, not first match: an identical transfer that succeeded cleanly got
        the transfer endpoint's id, not its ledger row's, so it claimed no row, yet one of the
        rows is its. The window reaches back far enough to hold every such row whole
        (`_accounted_for`), so exactly ``owned.clean`` of its unclaimed matching rows are
        theirs; only rows beyond those can be this intent's.
        """
        matching: list[LedgerRow] = []
        undecidable = False
        for row in sorted(rows, key=lambda r: (r.transact_time_ms, r.transact_id)):
            if row.transact_time_ms < owned.start_ms:
                continue
            match = venue.ledger_matches(row, spec)
            if match is None:
                undecidable = True
            elif match:
                matching.append(row)
        unclaimed = [row for row in matching if row.transact_id not in owned.claimed]
        # The earliest rows go to the clean successes: under the one-unresolved-identical-
        # movement rule they were all sent before this intent.
        for row in unclaimed[owned.clean :]:
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
    ) -> _Owned | None:
        """What other identical intents of this account own in the window from ``start_ms``
        to ``end_ms``; ``None`` if a clean success may own a row after ``end_ms``.

        A clean success's row lies somewhere between its first send and its answer. One
        whose span straddles ``start_ms`` would make the count uncertain, so the window is
        moved back to hold that span whole (and again, for any span that reaches into the
        added part): every clean success is then wholly inside the window or wholly outside.
        Reads the account's whole journal (a reconciliation is rare; a time-bounded listing
        would make it cheaper on a very large journal).
        """
        margin_ms = venue.ledger_margin_seconds * 1000
        claimed: set[str] = set()
        spans: list[tuple[float, float]] = []
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
            latest_ms = finished.timestamp() * 1000 + offset_ms + margin_ms
            spans.append((other.first_sent_venue_ms - margin_ms, latest_ms))
        moved = True
        while moved:
            moved = False
            for earliest_ms, latest_ms in spans:
                if earliest_ms < start_ms <= latest_ms:
                    start_ms, moved = int(earliest_ms), True
        clean = 0
        for earliest_ms, latest_ms in spans:
            if latest_ms < start_ms or earliest_ms > end_ms:
                continue  # its row is outside the window
            if latest_ms > end_ms:
                return None
            clean += 1
        return _Owned(start_ms=start_ms, claimed=frozenset(claimed), clean=clean)

    async def _rows(
        self,
        venue: LedgerVenue,
        server_clock: ServerClock,
        currency: str,
        start_ms: int,
        end_ms: int,
    ) -> list[LedgerRow]:
        account = await self._spot_account(venue, server_clock)
        rows: list[LedgerRow] = []
        window_start = start_ms
        while window_start <= end_ms:  # the ledger answers at most 10 days per query
            window_end = min(end_ms, window_start + LEDGER_MAX_WINDOW_MS - 1)
            from_id: str | None = None
            while True:
                page = venue.parse_ledger(
                    await self._get(
                        venue.ledger_request(
                            account_id=account,
                            currency=currency,
                            start_ms=window_start,
                            end_ms=window_end,
                            from_id=from_id,
                            timestamp_ms=server_clock.timestamp_ms(),
                        )
                    )
                )
                rows.extend(page.rows)
                if page.next_id is None or page.next_id == from_id:
                    break
                from_id = page.next_id
            window_start = window_end + 1
        return rows

    async def _spot_account(self, venue: LedgerVenue, server_clock: ServerClock) -> str:
        cached = self._spot_accounts.get(venue)
        if cached is None:
            response = await self._get(venue.accounts_request(server_clock.timestamp_ms()))
            cached = venue.parse_spot_account_id(response)
            self._spot_accounts[venue] = cached
        return cached

    async def _get(self, request: HttpRequest) -> HttpResponse:
        return await self._transport.send(request, timeout=self._timeout)
