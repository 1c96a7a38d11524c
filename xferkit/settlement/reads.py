"""Reading a venue's spot ledger: one paged scan shared by the lookups that wait for it.

A `Client.resume` sweep may reconcile hundreds of HTX intents of one account and currency
at about the same time (their settle windows end together). Each would page through the
same ledger on its own, under the venue's request limits. Instead, lookups of one (venue
account, currency) coalesce (single flight):

* at most one scan per key is on the wire; lookups arriving while it runs form the next
  batch, which starts when it ends, over the union of their windows (each later keeps only
  the rows of its own window);
* a lookup joins only a batch that has not begun: a read that began before a lookup asked
  may miss rows committed after it began, which that lookup needs (its settle window may
  have just ended), so it is never reused by it;
* the venue's clock is measured afresh when a batch begins, and the batch's window ends at
  that measurement (plus the margin), so every joiner sees rows up to a time after it asked.

A lookup whose batch's runner is cancelled tries again; an error of the read reaches every
lookup of the batch.
"""

from __future__ import annotations

import anyio
import anyio.lowlevel
import attrs

from .._clock import ServerClock
from .._http import HttpRequest, HttpResponse
from .._transport import Transport
from ..venues._base import LedgerRow, LedgerVenue

__all__ = ["LEDGER_MAX_AGE_MS", "LEDGER_MAX_WINDOW_MS", "LedgerReads", "LedgerScan"]

LEDGER_MAX_WINDOW_MS = 10 * 24 * 3600 * 1000  # one ledger query spans at most 10 days
LEDGER_MAX_AGE_MS = 180 * 24 * 3600 * 1000  # and reaches back at most 180 days


@attrs.frozen
class LedgerScan:
    """The ledger rows with ``start_ms <= transact time <= end_ms`` (the venue's ms), read
    after the venue's clock was measured; ``offset_ms`` is that measurement."""

    rows: tuple[LedgerRow, ...]
    start_ms: int
    end_ms: int
    offset_ms: float

    def window(self, start_ms: int) -> list[LedgerRow]:
        """The rows of one lookup's window, from ``start_ms`` to this scan's end."""
        return [r for r in self.rows if start_ms <= r.transact_time_ms <= self.end_ms]


@attrs.define
class _Batch:
    """Lookups waiting for one scan; open to joiners until it begins."""

    start_ms: int
    done: anyio.Event = attrs.field(factory=anyio.Event)
    scan: LedgerScan | None = None
    error: Exception | None = None


_Key = tuple[str, str, str]  # venue, account, currency


class LedgerReads:
    """One client's ledger reader: coalesced scans, and the cached spot account ids."""

    def __init__(self, *, transport: Transport, timeout: float) -> None:
        self._transport = transport
        self._timeout = timeout
        self._spot_accounts: dict[LedgerVenue, str] = {}
        self._open: dict[_Key, _Batch] = {}  # not begun: lookups may join
        self._running: dict[_Key, anyio.Event] = {}  # set when the scan on the wire ends

    async def read(
        self, venue: LedgerVenue, server_clock: ServerClock, currency: str, start_ms: int
    ) -> LedgerScan:
        """The ledger of ``currency`` from ``start_ms`` to a time after this call began.

        Raises what reading the clock or the ledger raised (`SendError`, `ValueError`, ...).
        """
        key = (venue.name, venue.account, currency)
        while True:
            batch = self._open.get(key)
            if batch is None:
                return await self._run(key, venue, server_clock, currency, start_ms)
            batch.start_ms = min(batch.start_ms, start_ms)
            await batch.done.wait()
            if batch.error is not None:
                raise batch.error
            if batch.scan is not None:
                return batch.scan
            # Its runner was cancelled before the scan ended: read again.

    async def _run(
        self,
        key: _Key,
        venue: LedgerVenue,
        server_clock: ServerClock,
        currency: str,
        start_ms: int,
    ) -> LedgerScan:
        """Open a batch, let concurrent lookups join it, and scan for all of them."""
        batch = _Batch(start_ms)
        self._open[key] = batch
        try:
            await anyio.lowlevel.checkpoint()  # lookups asking at the same moment join
            running = self._running.get(key)
            if running is not None:
                await running.wait()  # lookups arriving meanwhile join this batch
            del self._open[key]  # begun: from now on a lookup may need rows it misses
            ended = anyio.Event()
            self._running[key] = ended
            try:
                batch.scan = await self._scan(venue, server_clock, currency, batch.start_ms)
            finally:
                del self._running[key]
                ended.set()
        except Exception as exc:
            batch.error = exc
            raise
        finally:
            if self._open.get(key) is batch:
                del self._open[key]
            batch.done.set()
        assert batch.scan is not None  # noqa: S101 - set when the scan returned
        return batch.scan

    async def _scan(
        self, venue: LedgerVenue, server_clock: ServerClock, currency: str, start_ms: int
    ) -> LedgerScan:
        # The ledger is in the venue's time. Measure it afresh: its offset may have moved since
        # the send, and a stale offset could end the search before the transfer's row.
        await server_clock.resync(seen_generation=server_clock.generation)
        margin_ms = venue.ledger_margin_seconds * 1000
        end_ms = int(server_clock.bounds_ms()[1] + margin_ms)
        start_ms = max(start_ms, end_ms - LEDGER_MAX_AGE_MS)  # older lookups cannot tell
        rows = await self._rows(venue, server_clock, currency, start_ms, end_ms)
        return LedgerScan(
            rows=tuple(rows),
            start_ms=start_ms,
            end_ms=end_ms,
            offset_ms=server_clock.offset_ms or 0.0,
        )

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
