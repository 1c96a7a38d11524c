"""The public Client: lifecycle, validation, and the entry points of the engine."""

from __future__ import annotations

import enum
import logging
import math
import os
import random
import uuid
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Iterable
from datetime import datetime, timezone
from os import PathLike
from types import TracebackType
from typing import get_args

import anyio
import anyio.abc
import attrs
from anyio.streams.memory import MemoryObjectSendStream

from ._clock import SYSTEM_CLOCK, Clock, ServerClock
from ._engine import DEFAULT_LEASE_SECONDS, Engine, VenueRuntime
from ._exceptions import (
    ClientClosedError,
    IdempotencyConflictError,
    InvalidRequestError,
    JournalError,
    TransferOutcomeUnknownError,
    VenueError,
    XferError,
)
from ._models import Amount, Receipt, TransferRequest, TransferStatus
from ._ratelimit import RateLimiter
from ._redis_rate import RedisRateStore
from ._retry import DEFAULT_RETRY_POLICY, RetryBudget, RetryPolicy
from ._settle import abandon_intent, default_settler, settle_intent
from ._shared_rate import Limiter, RateStore
from ._transport import Backend, HttpClient, Transport
from ._validation import check_key
from ._verdicts import receipt_from_intent
from .journal import (
    DEFAULT_JOURNAL_PATH,
    LEGACY_ACCOUNT,
    Intent,
    IntentId,
    Journal,
    PostgresJournal,
    SqliteJournal,
    SweepJournal,
)
from .observe import Emitter, Observer
from .settlement.sweep import SweepSlot, enter_slot
from .venues._base import Venue

__all__ = ["DEFAULT_TIMEOUT", "Client"]

_log = logging.getLogger("xferkit.client")

DEFAULT_TIMEOUT = 10.0
JOURNAL_ENV = "XFERKIT_JOURNAL"
_UNFINISHED = (TransferStatus.PENDING, TransferStatus.IN_FLIGHT, TransferStatus.UNKNOWN)
# A sweep's two passes: intents that may have been sent, then those never sent (IN_FLIGHT is
# durable before any send).
_SWEEP_PASSES = (
    (TransferStatus.IN_FLIGHT, TransferStatus.UNKNOWN),
    (TransferStatus.PENDING,),
)


DEFAULT_RESUME_CONCURRENCY = 16
"""Intents a `Client.resume` sweep drives at once (the venues' rate limits still apply)."""

SWEEP_PAGE = 500
"""Intents a `Client.resume` sweep reads from the journal at a time (`SweepJournal`), so that
its memory does not grow with the journal: a page is a few hundred kB, and one query."""


def _positive_seconds(value: object) -> bool:
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and value > 0
        and math.isfinite(value)
    )


@attrs.frozen
class _BatchAborted:
    """Iterating the caller's requests failed: the batch stops and the error is re-raised."""

    error: Exception


_BatchItem = Receipt | Exception | _BatchAborted


def _journal_order(receipt: Receipt) -> tuple[datetime, str, str]:
    return (receipt.created_at, receipt.key, receipt.venue)


async def _each(
    requests: Iterable[TransferRequest] | AsyncIterable[TransferRequest],
) -> AsyncIterator[TransferRequest]:
    if isinstance(requests, AsyncIterable):
        async for request in requests:
            yield request
    else:
        for request in requests:
            yield request
            await anyio.lowlevel.checkpoint()  # a long plain list must not starve the loop


class _Default(enum.Enum):
    """The sentinel for "the client's default" where ``None`` means "none"."""

    BUDGET = "budget"


class _State(enum.Enum):
    UNOPENED = "unopened"
    OPEN = "open"
    CLOSED = "closed"


def open_journal(journal: str | PathLike[str] | Journal | None, clock: Clock) -> Journal:
    """Turn ``Client(journal=...)`` into a journal object: a path, a DSN, or a journal.

    ``None`` means ``XFERKIT_JOURNAL`` when it is set (as the CLI reads it), else the default
    file: a transfer made from Python must land in the journal the CLI shows and resumes.
    """
    if journal is None:
        journal = os.environ.get(JOURNAL_ENV) or None
    if journal is None:
        return SqliteJournal(DEFAULT_JOURNAL_PATH, clock=clock)
    if isinstance(journal, str) and journal.startswith(("postgresql://", "postgres://")):
        return PostgresJournal(journal)
    if isinstance(journal, str | PathLike):
        return SqliteJournal(journal, clock=clock)
    if isinstance(journal, Journal):
        return journal
    raise InvalidRequestError(
        f"journal must be a path, a postgresql:// DSN or a journal object, not {journal!r}"
    )


class Client:
    """Moves funds between your own accounts, exactly once, on the venues you pass.

    Use it as an async context manager; it opens the journal and the HTTP client on entry and
    closes both on exit. A closed client cannot be reopened.

    Args:
        *venues: configured venues, e.g. ``XT(api_key, secret)``; one per venue name.
        journal: where intents are made durable: a SQLite path, a ``postgresql://`` DSN
            (`PostgresJournal`, for fleets of workers) or a journal object. The default is
            ``XFERKIT_JOURNAL`` when set, else ``~/.xferkit/journal.sqlite3``.
        retry: the retry policy (attempts, backoff, deadline).
        timeout: seconds each HTTP attempt may take.
        http_client: an ``httpx.AsyncClient`` to send with; it is not closed by the client.
        clock: the source of time and sleep (tests pass a virtual clock).
        rng: randomness for backoff jitter only. Generated keys always come from the OS
            (``uuid4``): two runs seeded alike must never generate the same key.
        lease_seconds: how long a worker's claim on an intent lasts without renewal.
        retry_budget: the client-wide retry allowance (a `RetryBudget` token bucket, shared
            by every transfer of this client); ``None`` for none.
        transport: what runs under httpx when xferkit builds the HTTP client: ``"auto"``
            (aiohttp-backed when the ``fast`` extra is installed and asyncio runs, else
            httpx's own), ``"httpx"`` or ``"aiohttp"``.
        observers: called with each `xferkit.observe` event (attempts, transfers, ledger
            lookups, limiter waits, journal writes), e.g.
            `xferkit.otel.OpenTelemetryObserver`; one that raises never disturbs a transfer.
        rate_store: where the venues' rate budgets live. ``"journal"`` (the default): in the
            journal when it can hold them (`PostgresJournal`: one budget per venue account
            for the whole fleet), else in this process; a ``redis://`` URL: in Redis (the
            ``redis`` extra); ``None``: always in this process; or a `RateStore`.
    """

    def __init__(
        self,
        *venues: object,
        journal: str | PathLike[str] | Journal | None = None,
        retry: RetryPolicy = DEFAULT_RETRY_POLICY,
        timeout: float = DEFAULT_TIMEOUT,
        http_client: HttpClient | None = None,
        clock: Clock = SYSTEM_CLOCK,
        rng: random.Random | None = None,
        lease_seconds: float = DEFAULT_LEASE_SECONDS,
        retry_budget: RetryBudget | _Default | None = _Default.BUDGET,
        transport: Backend = "auto",
        observers: Iterable[Observer] = (),
        rate_store: RateStore | str | None = "journal",
    ) -> None:
        if not venues:
            raise InvalidRequestError("pass at least one venue, e.g. Client(XT(key, secret))")
        self._venues: dict[str, Venue] = {}
        for venue in venues:
            if not isinstance(venue, Venue):
                raise InvalidRequestError(f"{venue!r} is not a venue such as xferkit.XT(...)")
            if venue.name in self._venues:
                raise InvalidRequestError(f"venue {venue.name!r} was passed twice")
            self._venues[venue.name] = venue
        if not _positive_seconds(timeout):
            raise InvalidRequestError(
                f"timeout must be a positive number of seconds, not {timeout!r}"
            )
        if not _positive_seconds(lease_seconds) or lease_seconds <= timeout:
            raise InvalidRequestError(
                f"lease_seconds must be a number of seconds above timeout ({timeout}), "
                f"not {lease_seconds!r}: a lease that lapses mid-attempt lets a second worker in"
            )
        if not isinstance(retry, RetryPolicy):
            raise InvalidRequestError(f"retry must be a xferkit.RetryPolicy, not {retry!r}")
        self._journal = open_journal(journal, clock)
        # A Redis store made from a URL here is closed with the client.
        self._owned_store: RedisRateStore | None = None
        if rate_store == "journal":
            rate_store = self._journal if isinstance(self._journal, RateStore) else None
        elif isinstance(rate_store, str) and rate_store.startswith(("redis://", "rediss://")):
            rate_store = self._owned_store = RedisRateStore(rate_store)
        elif rate_store is not None and not isinstance(rate_store, RateStore):
            raise InvalidRequestError(
                'rate_store must be "journal", a redis:// URL, None or a RateStore, '
                f"not {rate_store!r}"
            )
        self._rate_store: RateStore | None = rate_store
        self._policy = retry
        self._timeout = float(timeout)
        if transport not in get_args(Backend):
            raise InvalidRequestError(
                f"transport must be one of {', '.join(get_args(Backend))}, not {transport!r}"
            )
        if transport != "auto" and http_client is not None:
            raise InvalidRequestError(
                "transport= chooses the HTTP client xferkit builds; with http_client= the "
                "caller's client (and its transport) is used as given"
            )
        self._transport_backend: Backend = transport
        self._http_client = http_client
        self._clock = clock
        self._rng = rng or random.Random()
        self._lease_seconds = lease_seconds
        self._budget = RetryBudget() if retry_budget is _Default.BUDGET else retry_budget
        self._emitter = Emitter(observers)
        self._state = _State.UNOPENED
        self._transport: Transport | None = None
        self._engine: Engine | None = None
        self._runtimes: dict[str, VenueRuntime] = {}
        self._tasks: anyio.abc.TaskGroup | None = None
        # (venue, key) of journal rows from xferkit 0.1 whose account cannot be established:
        # a transfer under such a key is refused (it may be the same transfer, executed).
        self._unowned: set[tuple[str, str]] = set()

    def __repr__(self) -> str:
        venues = list(self._venues)
        return f"Client(venues={venues}, journal={self._journal!r}, state={self._state.value})"

    @property
    def journal(self) -> Journal:
        """The journal this client records intents in."""
        return self._journal

    # -- lifecycle --------------------------------------------------------------------------

    async def __aenter__(self) -> Client:
        if self._state is not _State.UNOPENED:
            raise ClientClosedError(f"a client can be opened once; this one is {self._state.value}")
        await self._journal.open()
        try:
            await self._adopt_legacy_rows()
        except BaseException:
            await self._journal.aclose()
            raise
        transport = Transport(self._http_client, backend=self._transport_backend)
        self._transport = transport
        self._engine = Engine(
            journal=self._journal,
            transport=transport,
            clock=self._clock,
            rng=self._rng,
            policy=self._policy,
            timeout=self._timeout,
            lease_seconds=self._lease_seconds,
            budget=self._budget,
            emitter=self._emitter,
        )
        for name, venue in self._venues.items():
            self._runtimes[name] = VenueRuntime(
                venue=venue,
                server_clock=ServerClock(self._clock, self._server_time_reader(venue, transport)),
                limiter=self._limiter(venue),
            )
        # Batches run their workers here, so no task outlives the client (and none is
        # started inside an async generator, whose cancel scopes cannot span a yield).
        tasks = anyio.create_task_group()
        await tasks.__aenter__()
        self._tasks = tasks
        self._state = _State.OPEN
        return self

    def _limiter(self, venue: Venue) -> Limiter:
        """The venue's rate limiter: the fleet's shared budget for its account, if any."""
        if self._rate_store is None:
            return RateLimiter(venue.rate_limit, self._clock)
        return self._rate_store.rate_limiter(
            venue.name, venue.account, venue.rate_limit, self._clock
        )

    async def _adopt_legacy_rows(self) -> None:
        """Give this client's accounts the rows from xferkit 0.1 (no account) they can prove.

        On XT the stored bizId was derived from the API key, so it proves whose a row is:
        such rows are adopted. Nothing proves an HTX row's account: its key is refused (the
        transfer under it may have executed) until a person adopts it
        (``xferkit journal adopt``); ``resume()`` leaves it alone, and ``xferkit journal
        settle`` can close it if it is unfinished.
        """
        legacy = await self._journal.list(
            accounts=[(name, LEGACY_ACCOUNT) for name in self._venues]
        )
        for intent in legacy:
            venue = self._venues[intent.venue]
            token = venue.legacy_token(intent.key)
            if token is not None and intent.token == token:
                adopted = await self._journal.adopt(intent.id, account=venue.account)
                if adopted is not None:
                    _log.info("journal: adopted %s on %s (xferkit 0.1)", intent.key, intent.venue)
                    continue
            if token is None:
                self._unowned.add((intent.venue, intent.key))
        if self._unowned:
            _log.warning(
                "journal: %d intent(s) from xferkit 0.1 have no account and cannot be shown to "
                "be this client's; their keys are refused until adopted (xferkit journal adopt)",
                len(self._unowned),
            )

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the HTTP client (if the client created it) and the journal."""
        if self._state is _State.CLOSED:
            return
        self._state = _State.CLOSED
        if self._tasks is not None:
            # Exited first, and outside the shield below: a task group must be left as the
            # innermost cancel scope of the task that entered it.
            tasks, self._tasks = self._tasks, None
            tasks.cancel_scope.cancel()
            await tasks.__aexit__(None, None, None)
        with anyio.CancelScope(shield=True):
            if self._transport is not None:
                await self._transport.aclose()
            await self._journal.aclose()
            if self._owned_store is not None:
                await self._owned_store.aclose()

    def _server_time_reader(
        self, venue: Venue, transport: Transport
    ) -> Callable[[], Awaitable[int]]:
        async def read() -> int:
            response = await transport.send(venue.time_request(), timeout=self._timeout)
            if response.status != 200:
                raise ValueError(f"time endpoint answered HTTP {response.status}")
            return venue.parse_server_time(response)

        return read

    def _open_engine(self) -> Engine:
        if self._state is not _State.OPEN or self._engine is None:
            raise ClientClosedError(
                f"the client is {self._state.value}; use it inside 'async with Client(...)'"
            )
        return self._engine

    def _runtime(self, venue: object) -> VenueRuntime:
        if not isinstance(venue, str) or venue.lower() not in self._runtimes:
            known = ", ".join(sorted(self._runtimes))
            raise InvalidRequestError(f"venue {venue!r} is not configured; this client has {known}")
        return self._runtimes[venue.lower()]

    # -- transfers --------------------------------------------------------------------------

    async def transfer(
        self,
        venue: str,
        *,
        currency: str,
        amount: Amount,
        from_account: str,
        to_account: str,
        symbol: str | None = None,
        margin_account: str | None = None,
        key: str | None = None,
        deadline: float | None = None,
    ) -> Receipt:
        """Move ``amount`` of ``currency`` between two of your accounts on ``venue``, once.

        Args:
            venue: ``"xt"`` or ``"htx"`` (a venue passed to this client).
            currency: currency code, any case (``"usdt"``).
            amount: ``Decimal``, ``str`` or ``int``; a ``float`` is refused.
            from_account: the source account: a unified name (``spot``, ``margin``,
                ``finance``, ``usdt_futures``, ``coin_futures``, ``otc``) or the venue's own.
            to_account: the destination account, named the same way.
            symbol: the trading pair for margin (XT ``LEVER``) transfers, e.g. ``"btc_usdt"``.
            margin_account: HTX's margin account for ``linear-swap`` transfers.
            key: idempotency key (1..100 printable characters). The same key with the same
                parameters returns the stored receipt without network I/O; with different
                parameters it raises `IdempotencyConflictError`. Generated if omitted.
            deadline: seconds this call may take in all; defaults to the retry policy's.

        Returns:
            The `Receipt` of the settled transfer.

        Raises:
            InvalidRequestError: bad input, before any I/O.
            IdempotencyConflictError: ``key`` was used for a different transfer.
            VenueError: a definitive refusal (a subclass says which); nothing moved.
            TransferOutcomeUnknownError: still ambiguous after retries; ``resume()`` settles it.
            JournalError: the intent could not be recorded; nothing was sent.
        """
        engine = self._open_engine()
        runtime = self._runtime(venue)
        spec = runtime.venue.validate(
            currency=currency,
            amount=amount,
            from_account=from_account,
            to_account=to_account,
            symbol=symbol,
            margin_account=margin_account,
        )
        # A generated key comes from OS randomness, never from the (seedable) jitter rng.
        key = f"auto-{uuid.uuid4()}" if key is None else check_key(key)
        if (runtime.venue.name, key) in self._unowned:
            raise IdempotencyConflictError(
                key,
                f"idempotency key {key!r} on {runtime.venue.name} has a journal row from "
                "xferkit 0.1, which did not record accounts: it may be this very transfer, "
                "executed; if it is this account's, `xferkit journal adopt` gives it to this "
                "account (then the key replays it); else use a new key",
            )
        if deadline is not None and not _positive_seconds(deadline):
            raise InvalidRequestError(
                f"deadline must be a positive number of seconds, not {deadline!r}"
            )
        return await engine.transfer(runtime, spec, key, deadline)

    async def transfer_many(
        self,
        requests: Iterable[TransferRequest] | AsyncIterable[TransferRequest],
        *,
        concurrency: int = 16,
    ) -> AsyncIterator[Receipt | Exception]:
        """Run many transfers, at most ``concurrency`` at once, yielding each as it finishes.

        Requests are read lazily and at most ``concurrency`` are in flight or waiting to be
        consumed, so memory stays flat however long the batch. Each request yields exactly one
        outcome: its `Receipt`, or the exception it raised (an `XferError`, with
        ``error.request`` set to the request); one failure never stops the batch. Venue rate
        limits apply as for single transfers.
        Closing the iterator early (``async with contextlib.aclosing(client.transfer_many(...))``
        makes that deterministic; a bare ``break`` leaves it to garbage collection) cancels the
        transfers still running and returns once they have recorded their state: their
        intents are then free for `resume()`.

        Raises:
            InvalidRequestError: ``concurrency`` is not a positive int.
            Exception: whatever iterating ``requests`` raised (the batch stops there).
        """
        self._open_engine()
        if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
            raise InvalidRequestError(f"concurrency must be an int >= 1, not {concurrency!r}")
        assert self._tasks is not None  # noqa: S101 - set whenever the client is open
        send, receive = anyio.create_memory_object_stream[_BatchItem](concurrency)
        batch = anyio.CancelScope()
        stopped = anyio.Event()
        self._tasks.start_soon(self._run_batch, requests, concurrency, send, batch, stopped)
        try:
            async with receive:
                async for item in receive:
                    if isinstance(item, _BatchAborted):
                        raise item.error
                    yield item
        finally:
            batch.cancel()
            # Wait for the cancelled transfers to finish recording: once the iterator is
            # closed, the journal is consistent and resume() finds their leases free.
            with anyio.CancelScope(shield=True):
                await stopped.wait()

    async def _run_batch(
        self,
        requests: Iterable[TransferRequest] | AsyncIterable[TransferRequest],
        concurrency: int,
        send: MemoryObjectSendStream[_BatchItem],
        batch: anyio.CancelScope,
        stopped: anyio.Event,
    ) -> None:
        slots = anyio.Semaphore(concurrency)
        try:
            await self._feed_workers(requests, slots, send, batch)
        finally:
            stopped.set()

    async def _feed_workers(
        self,
        requests: Iterable[TransferRequest] | AsyncIterable[TransferRequest],
        slots: anyio.Semaphore,
        send: MemoryObjectSendStream[_BatchItem],
        batch: anyio.CancelScope,
    ) -> None:
        with batch:
            async with send, anyio.create_task_group() as workers:
                try:
                    async for request in _each(requests):
                        await slots.acquire()
                        workers.start_soon(self._run_one, request, slots, send.clone())
                except Exception as exc:  # noqa: BLE001 - the caller's iterable failed
                    with anyio.CancelScope(shield=True):
                        await send.send(_BatchAborted(exc))

    async def _run_one(
        self,
        request: TransferRequest,
        slots: anyio.Semaphore,
        send: MemoryObjectSendStream[_BatchItem],
    ) -> None:
        async with send:
            outcome: Receipt | Exception
            try:
                if not isinstance(request, TransferRequest):
                    raise InvalidRequestError(  # noqa: TRY301 - reported like any other failure
                        f"transfer_many takes TransferRequest values, not {request!r}"
                    )
                outcome = await self.transfer(
                    request.venue,
                    currency=request.currency,
                    amount=request.amount,
                    from_account=request.from_account,
                    to_account=request.to_account,
                    symbol=request.symbol,
                    margin_account=request.margin_account,
                    key=request.key,
                    deadline=request.deadline,
                )
            except XferError as exc:
                exc.request = request
                outcome = exc
            except Exception as exc:  # noqa: BLE001 - a bug must not truncate the batch silently
                _log.exception("transfer_many: unexpected error for %r", request)
                outcome = exc
            try:
                await send.send(outcome)
            finally:
                slots.release()  # only after delivery: at most `concurrency` outcomes held

    async def settle(
        self,
        key: str,
        *,
        status: TransferStatus,
        venue: str | None = None,
        transfer_id: str | None = None,
        reason: str = "",
        by: str | None = None,
    ) -> Receipt:
        """Record what a person found in the venue's records, for an intent software cannot
        settle (a venue that no longer answers, a closed account).

        ``status`` is ``SUCCEEDED`` (it moved, once; ``transfer_id`` if known) or ``FAILED``
        (nothing moved; ``reason`` required). The journal keeps who (``by``, default
        ``user@host``), when and why; the receipt's ``confirmed_by`` is ``OPERATOR``.

        Raises:
            SettlementRefusedError: the intent is settled already, or another worker is
                driving it now; nothing was changed.
        """
        self._open_engine()
        intent = await settle_intent(
            self._journal,
            self._own_id(key, venue),
            status=status,
            transfer_id=transfer_id,
            reason=reason,
            by=by or default_settler(),
            now=self._now(),
        )
        return receipt_from_intent(intent, replayed=False)

    async def abandon(
        self, key: str, *, reason: str, venue: str | None = None, by: str | None = None
    ) -> Receipt:
        """Make an intent that was never sent ``FAILED`` for good, so ``resume()`` never
        executes it: for a cancelled call whose effect the caller has compensated for.

        Raises:
            SettlementRefusedError: the intent may have been sent (only `settle` can close
                it, after checking the venue), is settled, or is being driven now.
        """
        self._open_engine()
        intent = await abandon_intent(
            self._journal,
            self._own_id(key, venue),
            reason=reason,
            by=by or default_settler(),
            now=self._now(),
        )
        return receipt_from_intent(intent, replayed=False)

    def _own_id(self, key: str, venue: str | None) -> IntentId:
        """The id of this client's intent under ``key`` (on its only venue if not given)."""
        if venue is None:
            if len(self._runtimes) != 1:
                raise InvalidRequestError("this client has several venues: pass venue=")
            [runtime] = self._runtimes.values()
        else:
            runtime = self._runtime(venue)
        return IntentId(runtime.venue.name, runtime.venue.account, key)

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self._clock.time(), tz=timezone.utc)

    async def intent(self, venue: str, key: str) -> Intent | None:
        """The journal's intent under ``key`` on ``venue`` for this client's account, if any.

        Another account's intent under the same key is not this client's to see.
        """
        return await self._journal.get(self._own_id(key, venue))

    async def resume(
        self,
        *,
        concurrency: int = DEFAULT_RESUME_CONCURRENCY,
        deadline: float | None = None,
        on_receipt: Callable[[Receipt], object] | None = None,
    ) -> list[Receipt]:
        """Drive every unfinished intent of this client's accounts to an outcome.

        Up to ``concurrency`` intents at once, under the venues' rate limits (an HTX intent
        waiting out its settle window does not count: the waits overlap); ``deadline``
        (seconds) bounds the whole sweep, and defaults to none: the per-call
        ``RetryPolicy.deadline`` does not apply, so a short call deadline never keeps
        recovery from settling. Intents whose lease another live worker holds are skipped
        (that worker settles them); expired leases are taken over. Refusals come back as
        ``FAILED`` receipts; intents still ambiguous stay ``UNKNOWN`` (their receipts say so,
        with the reason) for a later ``resume()``. One intent's unexpected error never stops
        the others. Receipts come in the journal's order (oldest first); ``on_receipt`` is
        called with each as it comes, for progress (it must not block).
        """
        if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
            raise InvalidRequestError(f"concurrency must be a positive int, not {concurrency!r}")
        if deadline is not None and not _positive_seconds(deadline):
            raise InvalidRequestError(
                f"deadline must be a positive number of seconds, not {deadline!r}"
            )
        engine = self._open_engine()
        deadline_at = None if deadline is None else self._clock.monotonic() + deadline
        receipts: list[Receipt | None] = []
        # `concurrency` intents are driven at once (`gate`). A slot is taken before a task
        # starts, so a sweep of 100,000 intents holds at most twice as many tasks (and one
        # page of intents), not one per intent: those waiting at the gate have recorded
        # their next attempt already (`Engine.resume`). An HTX intent that only waits out its
        # settle window gives both up meanwhile (`settlement.sweep`).
        gate = anyio.Semaphore(concurrency)
        slots = anyio.Semaphore(2 * concurrency)

        async def settle(index: int, intent: Intent) -> None:
            slot = SweepSlot(slots)
            enter_slot(slot)  # this task's context only
            try:
                receipt = await self._resume_one(engine, intent, deadline_at, gate)
                receipts[index] = receipt
                if receipt is not None and on_receipt is not None:
                    on_receipt(receipt)
            finally:
                slot.release()

        # Intents that may have been sent start first: a never-sent HTX intent waits for an
        # identical one only while somebody drives it, so the latter must be under way.
        async with anyio.create_task_group() as tasks:
            for statuses in _SWEEP_PASSES:
                after: Intent | None = None
                more = True
                while more:
                    page, more = await self._unfinished(statuses, after)
                    for intent in page:
                        await slots.acquire()
                        receipts.append(None)
                        tasks.start_soon(settle, len(receipts) - 1, intent)
                    after = page[-1] if page else None
        # In the journal's order (oldest first), whichever pass drove them.
        return sorted((r for r in receipts if r is not None), key=_journal_order)

    async def _unfinished(
        self, statuses: tuple[TransferStatus, ...], after: Intent | None
    ) -> tuple[list[Intent], bool]:
        """The next page of this client's intents in ``statuses`` (oldest first) after
        ``after``, and whether more may follow: a page at a time from a `SweepJournal`, else
        all at once.
        """
        mine = [(name, venue.account) for name, venue in self._venues.items()]
        if not isinstance(self._journal, SweepJournal):
            return await self._journal.list(statuses=statuses, accounts=mine), False
        page = await self._journal.list_page(
            statuses=statuses, accounts=mine, after=after, limit=SWEEP_PAGE
        )
        return page, len(page) == SWEEP_PAGE

    async def _resume_one(
        self, engine: Engine, intent: Intent, deadline_at: float | None, gate: anyio.Semaphore
    ) -> Receipt | None:
        """One intent of a sweep: its receipt, or ``None`` if another worker drives it."""
        try:
            return await engine.resume(self._runtimes[intent.venue], intent, deadline_at, gate=gate)
        except (VenueError, TransferOutcomeUnknownError):
            return await self._stored_receipt(intent)
        except Exception as exc:  # noqa: BLE001 - one poisoned intent must not stop the sweep
            _log.exception(
                "resume: transfer %s on %s could not be driven; it stays open",
                intent.key,
                intent.venue,
            )
            stored = await self._stored_receipt(intent)
            return attrs.evolve(
                stored, reason=f"resume() could not drive it: {type(exc).__name__}: {exc}"
            )

    async def _stored_receipt(self, intent: Intent) -> Receipt:
        """The journal's latest word on ``intent`` (``intent`` itself if it cannot be read)."""
        try:
            stored = await self._journal.get(intent.id)
        except JournalError:
            _log.exception("resume: could not read transfer %s back", intent.key)
            stored = None
        return receipt_from_intent(stored or intent, replayed=False)
