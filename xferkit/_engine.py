"""One transfer's state machine: claim, attempts, classification, record.

The order is the safety argument (design.md §2)::

    claim (durable) -> [limiter -> sign this attempt -> send -> classify]* -> record (shielded)

* Nothing is sent before the intent's claim is on disk, and nothing is sent for the first time
  before the intent is durably ``IN_FLIGHT``: a crash can only leave an intent that resume()
  treats as "may have executed", never one that executed unrecorded.
* Every attempt is signed afresh; the body (and XT's bizId) are the journal's bytes.
* Ambiguous attempts are resent only on venues that de-duplicate (XT); elsewhere they settle
  by reconciliation, never by a blind resend.
* Writes after a send run shielded from cancellation.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import random
import socket
import uuid
from collections.abc import Coroutine, Iterator
from typing import Any, NoReturn

import anyio
import attrs
import tenacity

from ._clock import Clock
from ._drive_state import Exhausted, Progress, VenueRuntime, reconciles, sync_clock, utc
from ._exceptions import (
    IdempotencyConflictError,
    JournalError,
    RateLimitError,
    TransferOutcomeUnknownError,
    VenueError,
    VenueUnavailableError,
)
from ._models import Receipt, TransferStatus
from ._outcomes import Ambiguous, Duplicate, NotProcessed, Outcome, Succeeded, outcome_class
from ._retry import RetryBudget, RetryPolicy, backoff_wait, deadline_stop
from ._transport import SendError, Transport
from ._verdicts import (
    UNPROVEN_DUPLICATE,
    definitive_refusal,
    duplicate_proves_execution,
    late_refusal,
    receipt_from_intent,
)
from .journal._base import Intent, IntentId, Journal, LeaseLostError, StoredError, SweepJournal
from .observe import AttemptFinished, Emitter, JournalWritten, LimiterWaited, TransferFinished
from .settlement.drive import LedgerDrive
from .settlement.sweep import hold_gate
from .venues._base import AmbiguityPolicy, TransferSpec, fingerprint

__all__ = ["Engine", "VenueRuntime"]

_log = logging.getLogger("xferkit.engine")

DEFAULT_LEASE_SECONDS = 60.0
_UNRESOLVED = (TransferStatus.IN_FLIGHT, TransferStatus.UNKNOWN)  # may have been sent
_ATTEMPT_WORDS = {
    "success": "succeeded",
    "duplicate": "was answered as a duplicate",
    "rejected": "was refused",
    "not_processed": "was not processed",
    "ambiguous": "may or may not have executed",
}
_WAIT_POLL_MAX = 1.0  # longest pause between journal reads while another worker drives a key


class _NoSlot(Exception):  # noqa: N818 - control flow inside the engine, never raised to callers
    """The rate limiter has no slot for this attempt before the call's deadline: not sent."""


def _no_slot(venue: str) -> NotProcessed:
    """What a call whose first send found no slot before its deadline ends with."""
    return NotProcessed(
        error=RateLimitError(
            "not sent: the rate limit leaves no slot for it before the call's deadline",
            venue=venue,
        )
    )


def _last_outcome(state: tenacity.RetryCallState) -> NotProcessed | Ambiguous:
    assert state.outcome is not None  # noqa: S101 - tenacity asks only after an attempt
    outcome = state.outcome.result()
    assert isinstance(outcome, NotProcessed | Ambiguous)  # noqa: S101 - only these retry
    return outcome


def _retry_after(state: tenacity.RetryCallState) -> float | None:
    return _last_outcome(state).retry_after


def _exhausted(state: tenacity.RetryCallState) -> Exhausted:
    return Exhausted(_last_outcome(state))


class _BudgetStop(tenacity.stop.stop_base):
    """Stop retrying when the client-wide retry budget cannot pay for one more retry."""

    def __init__(self, budget: RetryBudget | None, progress: Progress) -> None:
        self._budget = budget
        self._progress = progress

    def __call__(self, retry_state: tenacity.RetryCallState) -> bool:
        budget = self._budget
        if budget is None:
            return False
        ambiguous = isinstance(_last_outcome(retry_state), Ambiguous)
        cost = budget.ambiguous_cost if ambiguous else budget.retry_cost
        if not budget.try_spend(cost):
            _log.warning(
                "transfer %s on %s: retry budget exhausted; not retrying",
                self._progress.intent.key,
                self._progress.intent.venue,
            )
            return True
        self._progress.budget_spent += cost
        return False


class Engine:
    """Drives transfers for one client: shared journal, transport, clock and policy."""

    def __init__(
        self,
        *,
        journal: Journal,
        transport: Transport,
        clock: Clock,
        rng: random.Random,
        policy: RetryPolicy,
        timeout: float,
        lease_seconds: float = DEFAULT_LEASE_SECONDS,
        budget: RetryBudget | None = None,
        emitter: Emitter | None = None,
    ) -> None:
        self._journal = journal
        # Checked once: a journal that can take an intent and record its attempt in one write.
        self._sweeper = journal if isinstance(journal, SweepJournal) else None
        self._budget = budget
        self._transport = transport
        self._clock = clock
        self._rng = rng
        self._policy = policy
        self._timeout = timeout
        self._lease_seconds = lease_seconds
        self._owner_prefix = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._drives = itertools.count(1)
        self._driving: dict[IntentId, anyio.Event] = {}
        self._drive_deadlines: dict[IntentId, float | None] = {}  # deadline_at of each drive above
        self._emitter = emitter or Emitter()
        self._ledger = LedgerDrive(
            emitter=self._emitter,
            journal=journal,
            transport=transport,
            clock=clock,
            timeout=timeout,
            lease_seconds=lease_seconds,
            max_attempts=policy.max_attempts,
            send=self._attempts,
        )

    def _new_owner(self) -> str:
        # One owner id per drive, not per client: two tasks of one client must not share a lease.
        return f"{self._owner_prefix}:{next(self._drives)}"

    def _deadline_at(self, deadline: float | None) -> float | None:
        seconds = deadline if deadline is not None else self._policy.deadline
        return None if seconds is None else self._clock.monotonic() + seconds

    # -- entry points -----------------------------------------------------------------------

    async def transfer(
        self, runtime: VenueRuntime, spec: TransferSpec, key: str, deadline: float | None
    ) -> Receipt:
        """Claim ``key`` for ``spec`` and drive it to an outcome (or replay the stored one)."""
        venue = runtime.venue
        params = spec.canonical_json()
        params_fingerprint = fingerprint(params)
        token = venue.idempotency_token(key, params_fingerprint)
        now = utc(self._clock)
        # On a venue that de-duplicates, the claim also records the first attempt (IN_FLIGHT,
        # counted), which has to be durable before the send anyway: one journal write fewer
        # per transfer. A ledger venue's claim stays PENDING: until it is sent, it must not
        # hold back identical movements (`settlement.movements`).
        first_attempt = venue.ambiguity_policy is AmbiguityPolicy.RESEND
        intent = Intent(
            key=key,
            venue=venue.name,
            account=venue.account,
            fingerprint=params_fingerprint,
            params=params,
            token=token,
            body=venue.transfer_body(spec, token),
            created_at=now,
            status=TransferStatus.IN_FLIGHT if first_attempt else TransferStatus.PENDING,
            attempts=1 if first_attempt else 0,
            first_sent_at=now if first_attempt else None,
            last_sent_at=now if first_attempt else None,
        )
        drive = self._claim_and_drive(runtime, intent, spec, self._deadline_at(deadline))
        receipt = await self._observed("transfer", intent, drive)
        assert receipt is not None  # noqa: S101 - a transfer call always ends with a receipt
        return receipt

    async def resume(
        self,
        runtime: VenueRuntime,
        intent: Intent,
        deadline_at: float | None,
        *,
        gate: anyio.Semaphore | None = None,
    ) -> Receipt | None:
        """Drive a stored unfinished intent; ``None`` if another worker holds its lease
        (`_resume`)."""
        return await self._observed(
            "resume", intent, self._resume(runtime, intent, deadline_at, gate=gate)
        )

    async def _observed(
        self, operation: str, intent: Intent, drive: Coroutine[Any, Any, Receipt | None]
    ) -> Receipt | None:
        """Await ``drive``, reporting how it ended to the observers (`xferkit.observe`)."""
        if not self._emitter:
            return await drive
        started = self._clock.time()
        status: TransferStatus | None = None
        attempts, replayed, error = intent.attempts, False, None
        try:
            receipt = await drive
        except VenueError as exc:
            status, error = TransferStatus.FAILED, type(exc).__name__
            raise
        except TransferOutcomeUnknownError as exc:
            status, error = TransferStatus.UNKNOWN, type(exc).__name__
            raise
        except BaseException as exc:
            error = type(exc).__name__
            raise
        else:
            if receipt is not None:
                status, attempts, replayed = receipt.status, receipt.attempts, receipt.replayed
            return receipt
        finally:
            self._emitter.emit(
                TransferFinished(
                    venue=intent.venue,
                    key=intent.key,
                    operation=operation,
                    status=status,
                    attempts=attempts,
                    replayed=replayed,
                    started_at=started,
                    finished_at=self._clock.time(),
                    error=error,
                )
            )

    async def _resume(
        self,
        runtime: VenueRuntime,
        intent: Intent,
        deadline_at: float | None,
        *,
        gate: anyio.Semaphore | None = None,
    ) -> Receipt | None:
        """Drive a stored unfinished intent; ``None`` if another worker holds its lease.

        ``deadline_at`` is the sweep's own (monotonic), not the per-call retry policy's: a
        trading engine's short call deadline must not keep recovery from settling anything.
        ``gate`` bounds how many intents are driven at once. An XT intent is taken (`_take`)
        before it waits there: the takes of the intents waiting share commits, and a slot
        that frees goes straight to a send, so a resend waits for one fsync (its record), not
        two, as a forward transfer does (claim, record).
        """
        owner = self._new_owner()
        taken = await self._take(runtime, intent, owner)
        if taken is not None:
            return await self._drive_taken(
                runtime, taken, owner, deadline_at, listed=intent, gate=gate
            )
        async with hold_gate(gate):
            # Shielded as in _claim_and_drive.
            with anyio.CancelScope(shield=True), self._journal_timer("claim"):
                claim = await self._journal.claim(
                    intent, owner=owner, lease_seconds=self._lease_seconds
                )
            if claim.intent.status.is_terminal:
                return self._replay(claim.intent)
            if not claim.owned:
                return None
            try:
                return await self._drive(runtime, claim.intent, owner, deadline_at, sweep=True)
            except LeaseLostError:
                return None  # taken over by another worker, which settles it

    async def _drive_taken(
        self,
        runtime: VenueRuntime,
        taken: Intent,
        owner: str,
        deadline_at: float | None,
        *,
        listed: Intent,
        gate: anyio.Semaphore | None,
    ) -> Receipt | None:
        """Drive an intent `_take` leased, once ``gate`` lets it; cancelled before that, it
        goes back to the journal as listed (nothing was sent), its lease freed."""
        taken_at = self._clock.monotonic()
        driving = False
        try:
            async with hold_gate(gate):
                driving = True
                return await self._drive(
                    runtime,
                    taken,
                    owner,
                    deadline_at,
                    unsent=listed,
                    recorded_at=taken_at,
                    sweep=True,
                )
        except LeaseLostError:
            return None  # taken over by another worker, which settles it
        finally:
            if not driving:
                await self._record(listed, owner, adopt=False)

    async def _take(self, runtime: VenueRuntime, intent: Intent, owner: str) -> Intent | None:
        """Lease a listed XT intent and record its next attempt in one journal write.

        As `transfer` folds the first attempt into its claim: the resend has to be durable
        (counted, its send time) before it goes out anyway. Only for an intent that may have been
        sent (IN_FLIGHT or UNKNOWN) on a venue that de-duplicates: whatever else, or a row that
        changed since it was listed (``None``), goes through the ordinary claim.
        """
        if (
            self._sweeper is None
            or runtime.venue.ambiguity_policy is not AmbiguityPolicy.RESEND
            or intent.status not in _UNRESOLVED
        ):
            return None
        # The attempt as `_attempt` records one for an intent sent before: counted, its send
        # time, the status as it was.
        attempt = attrs.evolve(intent, attempts=intent.attempts + 1, last_sent_at=utc(self._clock))
        with anyio.CancelScope(shield=True):  # as a claim: never leave a lease held
            taken = await self._sweeper.take(
                intent, attempt, owner=owner, lease_seconds=self._lease_seconds
            )
        return taken  # noqa: RET504 - mypy: a shielded scope may swallow the return

    async def _claim_and_drive(
        self, runtime: VenueRuntime, intent: Intent, spec: TransferSpec, deadline_at: float | None
    ) -> Receipt:
        joined = False  # whether this call waited for another worker's drive of the same key
        while True:
            owner = self._new_owner()
            # Shielded: a cancellation landing mid-claim must not leave a lease held (and
            # every other caller of this key waiting) until it expires. _drive frees it.
            with anyio.CancelScope(shield=True), self._journal_timer("claim"):
                claim = await self._journal.claim(
                    intent, owner=owner, lease_seconds=self._lease_seconds
                )
            stored = claim.intent
            if stored.fingerprint != intent.fingerprint:
                raise IdempotencyConflictError(intent.key)
            if not claim.owned and stored.error is not None and stored.error.reusable:
                # FAILED, but no attempt reached the venue's processing: the key was not
                # spent, so this call tries again (resume() never does so on its own).
                reopened = await self._reopen(stored, owner)
                if reopened is not None:
                    claim, stored = attrs.evolve(claim, intent=reopened, owned=True), reopened
            if stored.status.is_terminal:
                _log.debug(
                    "transfer %s on %s: replayed %s", stored.key, stored.venue, stored.status.value
                )
                # A caller that joined a drive in progress gets that drive's receipt as is;
                # ``replayed`` means the transfer was settled before this call began.
                return self._replay(stored, replayed=not joined)
            if claim.owned:
                try:
                    return await self._drive(
                        runtime, stored, owner, deadline_at, fresh=claim.created, spec=spec
                    )
                except LeaseLostError:
                    # Our lease lapsed and another worker took the intent over: it settles it
                    # (resend with the same bizId, or the ledger); we wait for its answer.
                    stored = await self._journal.get(intent.id) or stored
                    if stored.status.is_terminal:
                        return self._replay(stored, replayed=False)
            await self._wait_for_owner(stored, deadline_at)
            joined = True

    async def _reopen(self, intent: Intent, owner: str) -> Intent | None:
        with anyio.CancelScope(shield=True):  # as the claim: never leave a lease held
            reopened = await self._journal.reopen(
                intent.id, owner=owner, lease_seconds=self._lease_seconds
            )
        if reopened is not None:
            _log.info(
                "transfer %s on %s: trying again; no earlier attempt reached the venue",
                intent.key,
                intent.venue,
            )
        return reopened

    def _replay(self, intent: Intent, *, replayed: bool = True) -> Receipt:
        if intent.status is TransferStatus.FAILED and intent.error is not None:
            raise intent.error.to_exception(intent.venue)
        return receipt_from_intent(intent, replayed=replayed)

    async def _wait_for_owner(self, intent: Intent, deadline_at: float | None) -> None:
        """Wait until the worker driving ``intent`` finishes or its lease runs out."""
        _log.debug("transfer %s on %s: waiting for lease holder", intent.key, intent.venue)
        if deadline_at is not None and self._clock.monotonic() >= deadline_at:
            raise TransferOutcomeUnknownError(
                intent.key, intent.venue, "another worker is still driving it"
            )
        local = self._driving.get(intent.id)
        if local is not None:
            until = self._drive_deadlines.get(intent.id)
            if deadline_at is None or (until is not None and until <= deadline_at):
                await local.wait()  # that drive ends by its own deadline, no later than ours
                return
            # That drive may outlast our deadline: look again at the pace below, up to it.
        pause = _WAIT_POLL_MAX
        if intent.lease_expires_at is not None:
            left = (intent.lease_expires_at - utc(self._clock)).total_seconds()
            pause = min(pause, max(left, 0.01))
        if deadline_at is not None:
            pause = min(pause, deadline_at - self._clock.monotonic())
        await self._clock.sleep(pause)

    # -- one drive --------------------------------------------------------------------------

    async def _drive(
        self,
        runtime: VenueRuntime,
        intent: Intent,
        owner: str,
        deadline_at: float | None,
        *,
        fresh: bool = False,
        spec: TransferSpec | None = None,
        unsent: Intent | None = None,
        recorded_at: float | None = None,
        sweep: bool = False,
    ) -> Receipt:
        """Drive a claimed intent; ``fresh`` if this call's claim created it (nothing sent).

        ``spec`` is the intent's parsed ``params``, when the caller has it at hand. ``unsent``
        is the intent before its claim recorded the next attempt (`_take`), if it did, and
        ``recorded_at`` when (monotonic) that claim was written. ``sweep`` if `resume()`
        drives it.
        """
        done = anyio.Event()
        self._driving[intent.id] = done
        self._drive_deadlines[intent.id] = deadline_at
        # PENDING is never sent (IN_FLIGHT is durable before the first send); anything later
        # may have reached the venue in an earlier call or process, unless this call created
        # it already IN_FLIGHT (`transfer`).
        progress = Progress(
            intent=intent,
            spec=spec or TransferSpec.from_canonical_json(intent.params),
            maybe_executed=not fresh and intent.status is not TransferStatus.PENDING,
            sweep=sweep,
            attempt_recorded_at=(
                recorded_at
                if recorded_at is not None
                else self._clock.monotonic()
                if fresh and intent.status is TransferStatus.IN_FLIGHT
                else None
            ),
            unsent=unsent,
        )
        settled = False
        try:
            if progress.maybe_executed and reconciles(runtime):
                progress.inherited_end_ms = intent.attempts_end_venue_ms
                progress.bound_missing = intent.attempts_end_venue_ms is None
            if runtime.venue.ambiguity_policy is AmbiguityPolicy.RESEND:
                outcome = await self._attempts(runtime, progress, owner, deadline_at)
            else:
                outcome = await self._ledger.run(runtime, progress, owner, deadline_at)
            settled = True
            return await self._settle(runtime, progress, owner, outcome)
        except LeaseLostError:
            settled = True  # the intent is another worker's now: nothing of ours to record
            raise
        except JournalError as exc:
            if progress.maybe_executed:
                # "Nothing moved" is what JournalError promises; here it may have.
                raise TransferOutcomeUnknownError(
                    intent.key, intent.venue, f"the journal failed after a send: {exc}"
                ) from exc
            # "Nothing moved" must stay true after the caller moves on (perhaps under a new
            # key): the intent may not stay where resume() would send it. FAILED, key unspent.
            unsent = attrs.evolve(
                self._known(progress, fresh),
                status=TransferStatus.FAILED,
                error=StoredError(kind="JournalError", message=str(exc), reusable=True),
                finished_at=utc(self._clock),
            )
            settled = await self._record(unsent, owner, adopt=False)
            if not settled:
                raise TransferOutcomeUnknownError(
                    intent.key,
                    intent.venue,
                    f"not sent, but the journal failed ({exc}) and still holds the transfer "
                    "open, so resume() may send it later: call again with the same key, or "
                    "abandon it",
                ) from exc
            raise
        finally:
            if not settled:
                # Cancelled or failed mid-drive: keep what we know and free the lease so
                # resume() (or the same key again) can continue at once.
                await self._record(self._stopped(runtime, progress, fresh), owner, adopt=False)
            del self._driving[intent.id]
            del self._drive_deadlines[intent.id]
            done.set()

    def _before_send(self, runtime: VenueRuntime, intent: Intent) -> int | None:
        """`Intent.attempts_end_venue_ms` as written before a send; only a venue that
        reconciles needs it (`settlement.windows`)."""
        if not reconciles(runtime):
            return intent.attempts_end_venue_ms
        return self._ledger.bound_before_send(runtime, intent)

    def _stopped(self, runtime: VenueRuntime, progress: Progress, fresh: bool) -> Intent:
        """What a drive that stops without settling leaves: `_known`, with (on a venue that
        reconciles) the latest its attempts can have ended."""
        intent = self._known(progress, fresh)
        if not reconciles(runtime):
            return intent
        return LedgerDrive.stopped(runtime, progress, intent)

    @staticmethod
    def _known(progress: Progress, fresh: bool) -> Intent:
        """What an interrupted drive leaves in the journal.

        A fresh intent that was recorded IN_FLIGHT but never sent goes back to PENDING, so
        the journal keeps saying "never sent" only of what never was.
        """
        intent = progress.intent
        if progress.unsent is not None and not progress.sent_this_call:
            return progress.unsent  # a taken intent's recorded attempt was never sent
        if fresh and not progress.sent_this_call and intent.status is TransferStatus.IN_FLIGHT:
            return attrs.evolve(
                intent,
                status=TransferStatus.PENDING,
                attempts=0,
                first_sent_at=None,
                last_sent_at=None,
            )
        return intent

    async def _attempts(
        self,
        runtime: VenueRuntime,
        progress: Progress,
        owner: str,
        deadline_at: float | None,
    ) -> Outcome | Exhausted:
        """Send until an attempt settles, or attempts, deadline or retry budget run out.

        The first attempt runs before tenacity is involved: a tenacity controller costs ~40 µs
        to build and run (it inspects every stop, wait and retry callable on each call), a
        tenth of a transfer's CPU at 32 callers (timed in isolation against a no-op call), and most
        transfers settle on their first attempt. When it asks for a retry, tenacity takes
        over with that outcome replayed as its attempt 1, so every wait and stop is tenacity's.
        """
        resend_ambiguous = runtime.venue.ambiguity_policy is AmbiguityPolicy.RESEND

        def retryable(outcome: Outcome) -> bool:
            return isinstance(outcome, NotProcessed) or (
                resend_ambiguous and isinstance(outcome, Ambiguous)
            )

        allowed = self._policy.max_attempts - progress.sent_this_call
        try:
            first = await self._attempt(runtime, progress, owner, deadline_at)
        except _NoSlot:
            return Exhausted(_no_slot(runtime.venue.name))
        if not retryable(first):
            return first
        replay = [first]
        latest = [first]  # the outcome being retried, should the next send find no slot

        async def attempt() -> Outcome:
            if replay:
                return replay.pop()
            outcome = await self._attempt(runtime, progress, owner, deadline_at)
            latest[0] = outcome
            return outcome

        retrying = tenacity.AsyncRetrying(
            stop=(
                tenacity.stop_after_attempt(allowed)
                | deadline_stop(self._clock, deadline_at)
                | _BudgetStop(self._budget, progress)  # last: spends only for a real retry
            ),
            wait=backoff_wait(self._policy, self._rng, _retry_after),
            retry=tenacity.retry_if_result(retryable),  # never exceptions: bugs, cancellation
            sleep=self._clock.sleep,
            retry_error_callback=_exhausted,
        )
        try:
            result: Outcome | Exhausted = await retrying(attempt)
        except _NoSlot:
            # As when a backoff would outlast the deadline (`deadline_stop`): the call ends
            # with the outcome it was retrying.
            last = latest[0]
            assert isinstance(last, NotProcessed | Ambiguous)  # noqa: S101 - only these retry
            return Exhausted(last)
        return result

    async def _attempt(
        self,
        runtime: VenueRuntime,
        progress: Progress,
        owner: str,
        deadline_at: float | None,
    ) -> Outcome:
        venue = runtime.venue
        await sync_clock(runtime)
        intent = before = progress.intent
        claimed = progress.attempt_recorded_at is not None
        # The journal describes this attempt before it is sent (IN_FLIGHT, counted, its send
        # time): after a crash mid-send, resume() must treat it as sent. Not shielded: if
        # cancelled here, nothing has been sent.
        if progress.attempt_recorded_at is not None:
            # The claim wrote it (`transfer`), before the clock read above: the lease dates
            # from then.
            saved_at, progress.attempt_recorded_at = progress.attempt_recorded_at, None
            self._log_state(intent)
        else:
            now = utc(self._clock)
            if intent.status is TransferStatus.PENDING:
                intent = attrs.evolve(
                    intent,
                    status=TransferStatus.IN_FLIGHT,
                    first_sent_at=now,
                    # The earliest the venue's clock can read now, before the write: the send
                    # (and so the transfer's ledger row) cannot be earlier. The ledger search
                    # starts here.
                    first_sent_venue_ms=runtime.server_clock.bounds_ms()[0],
                )
                self._log_state(intent)
            intent = attrs.evolve(
                intent,
                attempts=intent.attempts + 1,
                last_sent_at=now,
                attempts_end_venue_ms=self._before_send(runtime, intent),
            )
            with self._journal_timer("save"):
                await self._journal.save(intent, owner=owner, lease_seconds=self._lease_seconds)
            saved_at = self._clock.monotonic()
        # The limiter comes after the write, right before the send: a journal write of varying
        # length between a granted slot and the wire would bunch requests at the venue.
        if not await self._slot(runtime, deadline_at):
            # No slot before the deadline: not sent, and the journal must not say it was.
            progress.intent = before
            if claimed:
                progress.intent = self._known(progress, fresh=True)
            raise _NoSlot
        progress.intent = attrs.evolve(intent, last_sent_at=utc(self._clock))  # the real send
        if self._clock.monotonic() - saved_at > self._lease_seconds / 2:
            # A long wait for the slot (HTX allows 1/s), or for the clock read after a claim,
            # could outlast the lease, and another worker could have taken the intent over:
            # renew it, which also proves it is still ours (LeaseLostError otherwise), before
            # anything is sent. The renewed lease moves the latest end of this send with it.
            progress.intent = attrs.evolve(
                progress.intent,
                attempts_end_venue_ms=self._before_send(runtime, progress.intent),
            )
            await self._journal.save(
                progress.intent, owner=owner, lease_seconds=self._lease_seconds
            )
        progress.sent_this_call += 1
        progress.attempt_ended_at = progress.attempt_ended_venue_ms = None  # on the wire
        clock_generation = runtime.server_clock.generation
        request = venue.transfer_request(progress.intent.body, runtime.server_clock.timestamp_ms())
        started = self._clock.time()
        try:
            response = await self._transport.send(
                request, timeout=self._attempt_timeout(deadline_at)
            )
        except SendError as exc:
            progress.attempt_ended_at = utc(self._clock)
            progress.attempt_ended_venue_ms = runtime.server_clock.bounds_ms()[1]
            outcome: Outcome = (
                Ambiguous(reason=exc.reason)
                if exc.sent
                else NotProcessed(error=VenueUnavailableError(exc.reason, venue=venue.name))
            )
        else:
            progress.attempt_ended_at = utc(self._clock)
            progress.attempt_ended_venue_ms = runtime.server_clock.bounds_ms()[1]
            outcome = venue.classify_transfer(response)
            if isinstance(outcome, NotProcessed) and isinstance(outcome.error, RateLimitError):
                runtime.limiter.throttled(outcome.retry_after, cap=self._policy.max_retry_after)
            pause = venue.quota_pause(response)
            if pause is not None:
                runtime.limiter.pause_until(pause, cap=self._policy.max_retry_after)
        self._report_attempt(progress.intent, outcome, started)
        if isinstance(outcome, NotProcessed) and outcome.resync_clock:
            await sync_clock(runtime, seen_generation=clock_generation)
        elif isinstance(outcome, Ambiguous):
            progress.maybe_executed = True
        return outcome

    async def _slot(self, runtime: VenueRuntime, deadline_at: float | None) -> bool:
        """Wait for the venue's rate limiter; ``False`` if it has no slot before the deadline."""
        waited_from = self._clock.monotonic()
        granted = await runtime.limiter.acquire(deadline_at)
        if self._emitter:
            seconds = self._clock.monotonic() - waited_from
            self._emitter.emit(LimiterWaited(venue=runtime.venue.name, seconds=seconds))
        return granted

    def _report_attempt(self, intent: Intent, outcome: Outcome, started: float) -> None:
        """Log an attempt's outcome and hand it to the observers."""
        self._log_attempt(intent, outcome)
        if self._emitter:
            self._emitter.emit(
                AttemptFinished(
                    venue=intent.venue,
                    key=intent.key,
                    attempt=intent.attempts,
                    outcome=outcome_class(outcome),
                    started_at=started,
                    finished_at=self._clock.time(),
                )
            )

    def _attempt_timeout(self, deadline_at: float | None) -> float:
        if deadline_at is None:
            return self._timeout
        return max(0.05, min(self._timeout, deadline_at - self._clock.monotonic()))

    # -- settling ---------------------------------------------------------------------------

    async def _settle(
        self,
        runtime: VenueRuntime,
        progress: Progress,
        owner: str,
        outcome: Outcome | Exhausted,
    ) -> Receipt:
        """Record the outcome (shielded) and return the receipt or raise the caller's error."""
        intent, venue = progress.intent, runtime.venue.name
        now = utc(self._clock)
        if isinstance(outcome, Duplicate):
            if not duplicate_proves_execution(progress, runtime.venue):
                return await self._unproven_duplicate(outcome, progress, owner, venue)
            outcome = Succeeded(None)  # the venue holds our bizId: this transfer executed
        if isinstance(outcome, Succeeded):
            if self._budget is not None:
                # As in AWS standard mode: retries that ended in success cost nothing.
                self._budget.refund(progress.budget_spent or self._budget.success_refund)
            final = attrs.evolve(
                intent,
                status=TransferStatus.SUCCEEDED,
                transfer_id=outcome.transfer_id,
                error=None,  # a refusal kept as an UNKNOWN's reason is history now
                finished_at=now,
                lease_owner=None,  # a settled intent has no lease: the save needs no copy
                lease_expires_at=None,
            )
            # Even unrecorded, the caller must learn it executed (or it may retry with a new
            # key); the journal's IN_FLIGHT row then settles to the same answer on resume().
            await self._record(final, owner)
            return receipt_from_intent(final, replayed=False, spec=progress.spec)
        refusal = definitive_refusal(outcome, progress.maybe_executed)
        if refusal is None:
            last = outcome.last if isinstance(outcome, Exhausted) else outcome
            late = late_refusal(outcome)
            if isinstance(last, Ambiguous):
                reason = last.reason
            elif late is not None:
                reason = (
                    f"a later attempt was refused ({late}), which says nothing about an "
                    "earlier attempt that may have executed"
                )
            else:
                reason = "retries exhausted"
            unknown = attrs.evolve(
                self._stopped(runtime, progress, fresh=False),
                status=TransferStatus.UNKNOWN,
                error=StoredError.from_exception(late) if late is not None else intent.error,
            )
            await self._record(unknown, owner)
            raise TransferOutcomeUnknownError(intent.key, venue, reason)
        final = attrs.evolve(
            intent,
            status=TransferStatus.FAILED,
            error=StoredError.from_exception(refusal),
            finished_at=now,
        )
        if not await self._record(final, owner):
            # The journal still says IN_FLIGHT, so resume() would send again: telling the
            # caller "refused" now could lead to a retry under a new key and a double move.
            raise TransferOutcomeUnknownError(
                intent.key, venue, f"refused ({refusal}) but the refusal could not be recorded"
            ) from refusal
        raise refusal

    async def _unproven_duplicate(
        self, outcome: Duplicate, progress: Progress, owner: str, venue: str
    ) -> NoReturn:
        """UNKNOWN for good: not FAILED, for it may be this very transfer that executed, and
        not SUCCEEDED, for it may have been another; a person settles it. The stored error
        marks it, so that a later resend's duplicate answer does not pass for a proof."""
        error = outcome.error
        reason = (
            f"{error.code}: XT already holds this intent's bizId, which xferkit 0.1 derived "
            "from the key alone, though this journal never sent it: a transfer under this key "
            "executed, perhaps with other parameters; check the account history and settle it "
            "(`xferkit journal settle`)"
        )
        stored = StoredError(
            kind=UNPROVEN_DUPLICATE, message=reason, code=error.code, http_status=error.http_status
        )
        unknown = attrs.evolve(progress.intent, status=TransferStatus.UNKNOWN, error=stored)
        await self._record(unknown, owner)
        raise TransferOutcomeUnknownError(progress.intent.key, venue, reason)

    async def _record(self, intent: Intent, owner: str, *, adopt: bool = True) -> bool:
        """Write a post-send state and free the lease, shielded from cancellation.

        Returns whether it was written. A failure is logged, not raised: the caller must still
        learn what the venue said; the journal keeps its earlier state, which resume() settles.
        Except when another worker has taken the intent over (our lease lapsed): then
        `LeaseLostError` is raised (if ``adopt``), and the caller adopts that worker's answer,
        so every caller of the key reports the same receipt.
        """
        with anyio.CancelScope(shield=True):
            try:
                with self._journal_timer("record"):
                    await self._journal.save(intent, owner=owner, lease_seconds=None)
            except LeaseLostError:
                if adopt:
                    raise
                return False
            except JournalError as exc:
                _log.error(
                    "transfer %s on %s: could not record %s: %s",
                    intent.key,
                    intent.venue,
                    intent.status.value,
                    exc,
                )
                return False
        self._log_state(intent)
        return True

    @contextlib.contextmanager
    def _journal_timer(self, operation: str) -> Iterator[None]:
        """Report how long the journal write inside took (`xferkit.observe.JournalWritten`)."""
        began = self._clock.monotonic()
        try:
            yield
        finally:
            if self._emitter:
                self._emitter.emit(
                    JournalWritten(operation=operation, seconds=self._clock.monotonic() - began)
                )

    # -- logging ----------------------------------------------------------------------------

    @staticmethod
    def _log_state(intent: Intent) -> None:
        if _log.isEnabledFor(logging.INFO):
            _log.info(
                "transfer %s on %s: %s",
                intent.key,
                intent.venue,
                intent.status.value,
                extra={
                    "xferkit_key": intent.key,
                    "venue": intent.venue,
                    "status": intent.status.value,
                },
            )

    @staticmethod
    def _log_attempt(intent: Intent, outcome: Outcome) -> None:
        if _log.isEnabledFor(logging.INFO):
            kind = outcome_class(outcome)
            detail = getattr(outcome, "reason", None) or getattr(
                getattr(outcome, "error", None), "code", None
            )
            _log.info(
                "transfer %s on %s: attempt %d %s%s",
                intent.key,
                intent.venue,
                intent.attempts,
                _ATTEMPT_WORDS[kind],
                f" ({detail})" if detail else "",
                extra={
                    "xferkit_key": intent.key,
                    "venue": intent.venue,
                    "attempt": intent.attempts,
                    "outcome": kind,
                },
            )
