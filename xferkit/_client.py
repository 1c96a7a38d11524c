"""The public Client: lifecycle, validation, and the entry points of the engine."""

from __future__ import annotations

import enum
import math
import random
import uuid
from collections.abc import Awaitable, Callable
from os import PathLike
from types import TracebackType

import anyio

from ._clock import SYSTEM_CLOCK, Clock, ServerClock
from ._engine import DEFAULT_LEASE_SECONDS, Engine, VenueRuntime, receipt_from_intent
from ._exceptions import (
    ClientClosedError,
    InvalidRequestError,
    TransferOutcomeUnknownError,
    VenueError,
)
from ._models import Amount, Receipt, TransferStatus
from ._ratelimit import RateLimiter
from ._retry import DEFAULT_RETRY_POLICY, RetryPolicy
from ._transport import HttpClient, Transport
from ._validation import check_key
from .journal import DEFAULT_JOURNAL_PATH, Journal, PostgresJournal, SqliteJournal
from .venues._base import Venue

__all__ = ["DEFAULT_TIMEOUT", "Client"]

DEFAULT_TIMEOUT = 10.0
_UNFINISHED = (TransferStatus.PENDING, TransferStatus.IN_FLIGHT, TransferStatus.UNKNOWN)


def _positive_seconds(value: object) -> bool:
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and value > 0
        and math.isfinite(value)
    )


class _State(enum.Enum):
    UNOPENED = "unopened"
    OPEN = "open"
    CLOSED = "closed"


def open_journal(journal: str | PathLike[str] | Journal | None, clock: Clock) -> Journal:
    """Turn ``Client(journal=...)`` into a journal object: a path, a DSN, or a journal."""
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
        journal: where intents are made durable: a SQLite path (the default is
            ``~/.xferkit/journal.sqlite3``), a ``postgresql://`` DSN (`PostgresJournal`, for
            fleets of workers) or a journal object.
        retry: the retry policy (attempts, backoff, deadline).
        timeout: seconds each HTTP attempt may take.
        http_client: an ``httpx.AsyncClient`` to send with; it is not closed by the client.
        clock: the source of time and sleep (tests pass a virtual clock).
        rng: randomness for backoff jitter and generated keys.
        lease_seconds: how long a worker's claim on an intent lasts without renewal.
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
        self._policy = retry
        self._timeout = float(timeout)
        self._http_client = http_client
        self._clock = clock
        self._rng = rng or random.Random()
        self._lease_seconds = lease_seconds
        self._state = _State.UNOPENED
        self._transport: Transport | None = None
        self._engine: Engine | None = None
        self._runtimes: dict[str, VenueRuntime] = {}

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
        transport = Transport(self._http_client)
        self._transport = transport
        self._engine = Engine(
            journal=self._journal,
            transport=transport,
            clock=self._clock,
            rng=self._rng,
            policy=self._policy,
            timeout=self._timeout,
            lease_seconds=self._lease_seconds,
        )
        for name, venue in self._venues.items():
            self._runtimes[name] = VenueRuntime(
                venue=venue,
                server_clock=ServerClock(self._clock, self._server_time_reader(venue, transport)),
                limiter=RateLimiter(venue.rate_limit, self._clock),
            )
        self._state = _State.OPEN
        return self

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
        with anyio.CancelScope(shield=True):
            if self._transport is not None:
                await self._transport.aclose()
            await self._journal.aclose()

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
        if key is None:
            key = f"auto-{uuid.UUID(int=self._rng.getrandbits(128), version=4)}"
        else:
            key = check_key(key)
        if deadline is not None and not _positive_seconds(deadline):
            raise InvalidRequestError(
                f"deadline must be a positive number of seconds, not {deadline!r}"
            )
        return await engine.transfer(runtime, spec, key, deadline)

    async def resume(self) -> list[Receipt]:
        """Drive every unfinished intent in the journal to an outcome.

        Intents whose lease another live worker holds are skipped (that worker settles them);
        expired leases are taken over. Refusals come back as ``FAILED`` receipts; intents still
        ambiguous stay ``UNKNOWN`` (their receipts say so) for a later ``resume()``.
        """
        engine = self._open_engine()
        receipts: list[Receipt] = []
        for intent in await self._journal.list(statuses=_UNFINISHED):
            runtime = self._runtimes.get(intent.venue)
            if runtime is None:
                continue  # a venue this client has no credentials for
            try:
                receipt = await engine.resume(runtime, intent)
            except (VenueError, TransferOutcomeUnknownError):
                stored = await self._journal.get(intent.key)
                if stored is not None:
                    receipts.append(receipt_from_intent(stored, replayed=False))
                continue
            if receipt is not None:
                receipts.append(receipt)
        return receipts
