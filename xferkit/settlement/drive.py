"""The engine's loop on a venue without idempotency keys (HTX): never a blind resend.

Before its first send an intent takes its movement's turn (`movements`). After an attempt that
may have executed, the ledger decides (`ledger`): a matching row settles it, absence proven
after the settle window (counted from the latest its attempts can have ended, `windows`) allows
one more send, anything else leaves it ambiguous for `resume()`. The engine (`xferkit._engine`)
keeps the state machine around it: claims, attempts, classification and records.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from datetime import datetime

import attrs

from .._clock import Clock
from .._drive_state import Exhausted, Progress, VenueRuntime, sync_clock, utc
from .._models import TransferStatus
from .._outcomes import Ambiguous, Outcome, Succeeded
from .._transport import Transport
from ..journal._base import Intent, Journal
from ..observe import Emitter, Reconciled
from ..venues._base import LedgerVenue
from .ledger import Absent, Found, Reconciler, Unclear
from .movements import free as free_turn
from .movements import take_turn
from .windows import before_send, legacy_bound, local_time, on_stop

__all__ = ["LedgerDrive", "Send"]

_log = logging.getLogger("xferkit.settlement")

Send = Callable[[VenueRuntime, Progress, str, "float | None"], Awaitable["Outcome | Exhausted"]]
"""The engine's attempts (`Engine._attempts`): send until one settles or the policy runs out."""


_RESULTS: dict[type, str] = {Found: "found", Absent: "absent", Unclear: "unclear"}


def _words(found: Found | Absent | Unclear) -> str:
    """What a ledger lookup found, as a log line says it."""
    if isinstance(found, Found):
        return f"found in the ledger (row {found.ledger_id}): it executed"
    if isinstance(found, Absent):
        return "not in the ledger after the settle window: it did not execute"
    return f"the ledger cannot tell yet: {found.reason}"


class LedgerDrive:
    """Drives intents on venues that reconcile through their ledger; one per engine."""

    def __init__(
        self,
        *,
        emitter: Emitter,
        journal: Journal,
        transport: Transport,
        clock: Clock,
        timeout: float,
        lease_seconds: float,
        max_attempts: int,
        send: Send,
    ) -> None:
        self._emitter = emitter
        self._journal = journal
        self._clock = clock
        self._timeout = timeout
        self._lease_seconds = lease_seconds
        self._max_attempts = max_attempts
        self._send = send
        self._reconciler = Reconciler(
            journal=journal, transport=transport, clock=clock, timeout=timeout
        )

    async def run(
        self, runtime: VenueRuntime, progress: Progress, owner: str, deadline_at: float | None
    ) -> Outcome | Exhausted:
        """Send on a venue without idempotency keys: reconcile before any resend.

        At most one intent per (account, accounts, currency, amount) is unresolved in the
        whole journal, so a ledger row matches one intent only: a new one takes its
        movement's turn first, waiting while an identical one is unresolved (`movements`).
        The turn is freed when the drive ends, starting the spacing that keeps the next
        identical movement's ledger window clear of this one's row.
        """
        venue = runtime.venue
        assert isinstance(venue, LedgerVenue)  # noqa: S101 - RECONCILE venues read a ledger
        if progress.intent.status is TransferStatus.PENDING:
            await take_turn(
                self._journal,
                self._clock,
                progress.intent,
                owner=owner,
                lease_seconds=self._lease_seconds,
                deadline_at=deadline_at,
                wait_for_parked=not progress.sweep,
            )
        try:
            return await self._settle_or_send(runtime, venue, progress, owner, deadline_at)
        finally:
            spacing = 2 * (venue.ledger_margin_seconds + runtime.server_clock.uncertainty_ms / 1000)
            await free_turn(self._journal, progress.intent, owner=owner, spacing_seconds=spacing)

    async def _settle_or_send(
        self,
        runtime: VenueRuntime,
        venue: LedgerVenue,
        progress: Progress,
        owner: str,
        deadline_at: float | None,
    ) -> Outcome | Exhausted:
        """Read the ledger whenever an attempt may have executed; send only once it proved
        the transfer absent."""
        spec = progress.spec
        while True:
            if progress.maybe_executed:
                ended_at = utc(self._clock)
                if venue.can_reconcile(spec):  # else find answers at once, unasked
                    ended_at = await self._attempts_ended_at(runtime, progress)
                found = await self._reconciler.find(
                    venue,
                    runtime.server_clock,
                    progress.intent,
                    spec,
                    owner=owner,
                    lease_seconds=self._lease_seconds,
                    deadline_at=deadline_at,
                    attempt_ended_at=ended_at,
                )
                result = _RESULTS[type(found)]
                _log.info(
                    "transfer %s on %s: %s",
                    progress.intent.key,
                    venue.name,
                    _words(found),
                    extra={"xferkit_key": progress.intent.key, "venue": venue.name},
                )
                if self._emitter:
                    self._emitter.emit(
                        Reconciled(venue=venue.name, key=progress.intent.key, result=result)
                    )
                if isinstance(found, Found):
                    progress.intent = attrs.evolve(progress.intent, ledger_ref=found.ledger_id)
                    return Succeeded(found.ledger_id)
                if isinstance(found, Unclear):
                    return Ambiguous(reason=found.reason)
                progress.maybe_executed = False  # provably absent: sending is safe
            if progress.sent_this_call >= self._max_attempts:
                return Exhausted(Ambiguous(reason="attempts exhausted"))
            outcome = await self._send(runtime, progress, owner, deadline_at)
            if not isinstance(outcome, Ambiguous):
                return outcome

    def bound_before_send(self, runtime: VenueRuntime, intent: Intent) -> int | None:
        """`Intent.attempts_end_venue_ms` as written with the journal entry before a send
        (`windows.before_send`)."""
        return before_send(
            intent,
            venue_now_high_ms=runtime.server_clock.bounds_ms()[1],
            lease_seconds=self._lease_seconds,
            timeout=self._timeout,
        )

    @staticmethod
    def stopped(runtime: VenueRuntime, progress: Progress, intent: Intent) -> Intent:
        """``intent`` as a drive that stops without settling leaves it: with the latest its
        attempts can have ended (`windows.on_stop`)."""
        end_ms = on_stop(
            intent,
            inherited_ms=progress.inherited_end_ms,
            sent=progress.sent_this_call > 0,
            ended_ms=progress.attempt_ended_venue_ms,
            venue_now_high_ms=runtime.server_clock.bounds_ms()[1],
        )
        return attrs.evolve(intent, attempts_end_venue_ms=end_ms)

    async def _attempts_ended_at(self, runtime: VenueRuntime, progress: Progress) -> datetime:
        """When (UTC, this host) every attempt that may have executed has ended at the latest:
        this call's, and an earlier call's or process's as the journal bounds it."""
        if progress.inherited_end_ms is not None or progress.bound_missing:
            await sync_clock(runtime)  # the bound is in the venue's time
        if progress.bound_missing:
            progress.inherited_end_ms = legacy_bound(
                venue_now_high_ms=runtime.server_clock.bounds_ms()[1], timeout=self._timeout
            )
            progress.bound_missing = False
        now = utc(self._clock)
        ends = []
        if progress.sent_this_call and progress.attempt_ended_at is not None:
            ends.append(progress.attempt_ended_at)
        if progress.inherited_end_ms is not None:
            ends.append(
                local_time(
                    progress.inherited_end_ms,
                    now=now,
                    venue_now_low_ms=runtime.server_clock.bounds_ms()[0],
                )
            )
        return max(ends) if ends else now
