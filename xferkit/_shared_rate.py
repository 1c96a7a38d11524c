"""A rate budget shared by every process of a fleet: one GCRA row per venue account.

Venues limit per account (HTX: transfers per UID, over all its API keys), not per process, so a
fleet's workers take their send slots from one budget kept where they all meet: the journal's
PostgreSQL database (`PostgresBudget`), or Redis (`xferkit._redis_rate`). Each slot is one
short ``UPDATE`` of the account's row (no lock is held across HTTP), judged by the database's
clock, so hosts whose clocks disagree still space their requests by the same timeline. The
in-process `RateLimiter` remains for SQLite and memory journals, and the shapes are the same:
GCRA with a burst of one, AIMD on a venue's refusal.

Not pyrate-limiter or ``limits``: their PostgreSQL / Redis buckets use their own connections
and the host's clock (a skewed host would overspend the budget), they have no adaptive rate
or hold-off for ``Retry-After`` stored with the bucket, and their waits sleep on the real clock
rather than refusing a caller whose slot falls after its deadline.

Within one process callers queue for the head (as in `RateLimiter`), and only the head holds a
reservation, so a slowdown or a hold-off reaches the fleet within a slot or two. A slot taken
is a slot spent: a worker that dies (or a caller cancelled) while waiting for its reserved
slot costs the fleet that one slot, never a send skipped or doubled.

`throttled` and `pause_until` are called by the engine synchronously after a response; they
are recorded here and written to the row first thing in this process's next `acquire` (the
retry after a refusal is one), so the fleet halves once for the episode: the row remembers
when it last halved, by the database clock.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable
from typing import Any, Protocol, runtime_checkable

import anyio

from ._clock import Clock
from ._ratelimit import _pause

__all__ = ["Budget", "Limiter", "PostgresBudget", "RateStore", "SharedLimiter"]

# How far under the venue's limit a fleet aims: 10%, against one process's 3% (`HEADROOM`).
# The budget spaces slots evenly by the database's clock, but each worker's request then
# reaches the venue after its own delays (event loop, scheduling, network, another host), and
# a venue counting a sliding second refuses the one that lands early behind a late one. Four
# workers on two busy cores were refused a request now and then at 3%; at 10% a request
# may arrive 20 ms late, a second's gaps adding up to 100 ms, before the venue sees too many.
FLEET_HEADROOM = 0.9
DECREASE = 0.5  # as RateLimiter: halve on a refusal for rate
RECOVERY_PER_SECOND = 0.1  # share of the configured rate regained per refusal-free second
FLOOR = 0.05  # never below 5% of the configured rate


class Limiter(Protocol):
    """What the engine asks of a rate limiter, in process or shared."""

    async def acquire(self, deadline_at: float | None = None) -> bool:
        """Wait for this caller's slot; ``False`` (not sent) if none before ``deadline_at``."""

    def throttled(self, retry_after: float | None, *, cap: float | None = None) -> None:
        """The venue refused for rate: slow down and hold off for ``retry_after``."""

    def pause_until(self, seconds_from_now: float, *, cap: float | None = None) -> None:
        """The venue's quota is spent for ``seconds_from_now``: start nothing before."""


@runtime_checkable
class RateStore(Protocol):
    """Somewhere a fleet keeps its rate budgets (a `PostgresJournal` is one)."""

    def rate_limiter(self, venue: str, account: str, rate: float, clock: Clock) -> Limiter:
        """The limiter for ``(venue, account)``, aiming at ``rate`` requests a second."""


class Budget(Protocol):
    """One account's shared budget in a store; times are the store's clock, in seconds."""

    async def take(self, rate: float, max_wait: float | None) -> float | None:
        """Take the next slot at most ``rate``/s; the seconds until it starts, or ``None``
        (nothing taken) if it would start more than ``max_wait`` seconds from now."""

    async def report(self, rate: float, *, halve: bool, pause: float | None) -> None:
        """Record a refusal for rate (``halve``) or a quota pause, with its hold-off."""

    async def state(self) -> tuple[float, float]:
        """The rate allowed now, and the seconds until the hold-off ends (negative: none)."""


# Runs a statement in the store: ``run(sql, *args)`` returns the rows (as mappings).
Execute = Callable[..., Awaitable[list[Any]]]


def budget_table_sql(table: str) -> str:
    """The table of rate budgets: one row per venue account."""
    return f"""CREATE TABLE IF NOT EXISTS {table} (
        venue         text NOT NULL,
        account       text NOT NULL,
        tat           timestamptz NOT NULL DEFAULT '-infinity',
        hold_until    timestamptz NOT NULL DEFAULT '-infinity',
        rate          double precision NOT NULL,
        last_change   timestamptz NOT NULL DEFAULT now(),
        last_decrease timestamptz NOT NULL DEFAULT '-infinity',
        PRIMARY KEY (venue, account)
    )"""


def _take_sql(table: str) -> str:
    # $3: this worker's configured rate (a ceiling: workers may be configured differently);
    # $4: the longest wait this caller accepts, in seconds (NULL: any). The rate first
    # recovers for every whole refusal-free second since it last changed; the slot is the
    # later of the theoretical arrival time, the hold-off and now; the row moves on only if
    # the slot is soon enough, so a refused caller takes nothing. Under READ COMMITTED a
    # concurrent update makes PostgreSQL re-evaluate this row's expressions on the new
    # version, so every taker sees its predecessor's slot.
    quiet = "floor(extract(epoch FROM clock_timestamp() - last_change))"
    recovered = f"""CASE WHEN rate < $3 AND clock_timestamp() - last_change >= interval '1 second'
        THEN least($3::float8, rate + $3 * {RECOVERY_PER_SECOND} * {quiet})
        ELSE least(rate, $3::float8) END"""
    slot = "greatest(tat, hold_until, clock_timestamp())"
    return f"""UPDATE {table} SET
            last_change = CASE WHEN rate < $3
                AND clock_timestamp() - last_change >= interval '1 second'
                THEN clock_timestamp() ELSE last_change END,
            rate = {recovered},
            tat = {slot} + make_interval(secs => 1.0 / ({recovered}))
        WHERE venue = $1 AND account = $2
            AND ($4::float8 IS NULL OR {slot} <= clock_timestamp() + make_interval(secs => $4))
        RETURNING extract(epoch FROM tat - make_interval(secs => 1.0 / rate)) AS slot,
            extract(epoch FROM clock_timestamp()) AS now"""  # noqa: S608 - checked identifier


def _throttle_sql(table: str) -> str:
    # $3 configured rate; $4 halve (a refusal for rate) or not (a quota pause); $5 hold-off
    # seconds (NULL: one slot's spacing after a refusal, nothing after a quota pause). The
    # fleet halves at most once a second by the database's clock: every worker that was
    # refused in one episode reports it, and only the first halves.
    halve = "$4 AND last_decrease <= clock_timestamp() - interval '1 second'"
    return f"""UPDATE {table} SET
            rate = CASE WHEN {halve}
                THEN greatest($3 * {FLOOR}, least(rate, $3::float8) * {DECREASE})
                ELSE rate END,
            last_decrease = CASE WHEN {halve} THEN clock_timestamp() ELSE last_decrease END,
            hold_until = greatest(hold_until, clock_timestamp() + make_interval(
                secs => coalesce($5::float8, CASE WHEN $4 THEN 1.0 / least(rate, $3::float8)
                                          ELSE 0 END))),
            last_change = CASE WHEN $4 THEN greatest(last_change, clock_timestamp()
                + make_interval(secs => coalesce($5::float8, 1.0 / least(rate, $3::float8))))
                ELSE last_change END
        WHERE venue = $1 AND account = $2"""  # noqa: S608 - checked identifier


class PostgresBudget:
    """A `Budget` in a PostgreSQL table (`budget_table_sql`), one row per venue account."""

    def __init__(self, execute: Execute, *, table: str, venue: str, account: str) -> None:
        self._execute = execute
        self._table = table
        self._key = (venue, account)
        self._created = False

    async def _ensure(self, rate: float) -> None:
        if not self._created:
            await self._execute(
                f"INSERT INTO {self._table} (venue, account, rate) VALUES ($1, $2, $3) "  # noqa: S608
                "ON CONFLICT DO NOTHING",
                *self._key,
                rate,
            )
            self._created = True

    async def take(self, rate: float, max_wait: float | None) -> float | None:
        """One ``UPDATE`` of the row (`_take_sql`); the wait, or ``None`` if refused."""
        await self._ensure(rate)
        rows = await self._execute(_take_sql(self._table), *self._key, rate, max_wait)
        if not rows:
            return None
        return float(rows[0]["slot"]) - float(rows[0]["now"])

    async def report(self, rate: float, *, halve: bool, pause: float | None) -> None:
        """One ``UPDATE`` of the row (`_throttle_sql`)."""
        await self._ensure(rate)
        await self._execute(_throttle_sql(self._table), *self._key, rate, halve, pause)

    async def state(self) -> tuple[float, float]:
        """The row's rate and the seconds until its hold-off ends."""
        rows = await self._execute(
            f"SELECT rate, CASE WHEN isfinite(hold_until) THEN "  # noqa: S608
            "extract(epoch FROM hold_until - clock_timestamp()) END AS hold "
            f"FROM {self._table} WHERE venue = $1 AND account = $2",
            *self._key,
        )
        hold = rows[0]["hold"]
        return float(rows[0]["rate"]), -math.inf if hold is None else float(hold)


class SharedLimiter:
    """A `Limiter` whose budget is shared by the fleet in a store (a database row).

    Args:
        budget: the account's budget in the store.
        rate: this worker's configured ceiling, requests a second (less `FLEET_HEADROOM`).
        clock: the client's clock, on which ``deadline_at`` is given and waits are slept.
    """

    def __init__(self, budget: Budget, *, rate: float, clock: Clock) -> None:
        self._budget = budget
        self._configured = rate * FLEET_HEADROOM
        self._clock = clock
        # (halve, hold-off seconds or None) reported since the last write to the store.
        self._pending: list[tuple[bool, float | None]] = []
        self._queue = anyio.Lock()

    @property
    def configured_rate(self) -> float:
        """The ceiling this worker aims at: its ``rate_limit`` less the headroom."""
        return self._configured

    async def acquire(self, deadline_at: float | None = None) -> bool:
        """Take the fleet's next slot and wait for it; ``True`` once it has come.

        With ``deadline_at`` (on the client's clock), a caller whose slot would start after
        it takes none and gets ``False`` at once, as does one still queued behind this
        process's other callers when the deadline comes.
        """
        if deadline_at is None:
            await self._queue.acquire()
        else:
            with anyio.move_on_after(max(0.0, deadline_at - self._clock.monotonic())) as scope:
                await self._queue.acquire()
            if scope.cancelled_caught:  # the deadline came while queued: nothing taken
                return False
        try:
            await self._flush()
            max_wait = None
            if deadline_at is not None:
                max_wait = deadline_at - self._clock.monotonic()
                if max_wait < 0:
                    return False
            wait = await self._budget.take(self._configured, max_wait)
            if wait is None:
                return False
            if wait > 0:
                await self._clock.sleep(wait)
            return True
        finally:
            self._queue.release()

    def throttled(self, retry_after: float | None, *, cap: float | None = None) -> None:
        """The venue refused for rate: halve the fleet's rate (once an episode) and hold off.

        Written to the store at this process's next `acquire`.
        """
        self._pending.append((True, _pause(retry_after, cap)))

    def pause_until(self, seconds_from_now: float, *, cap: float | None = None) -> None:
        """The venue's quota is spent for now: the fleet starts nothing before it refills."""
        pause = _pause(seconds_from_now, cap)
        if pause is not None:
            self._pending.append((False, pause))

    async def _flush(self) -> None:
        """Write the refusals reported since last time."""
        while self._pending:
            halve, pause = self._pending[0]
            await self._budget.report(self._configured, halve=halve, pause=pause)
            del self._pending[0]

    async def state(self) -> dict[str, float]:
        """The budget as the fleet sees it: ``rate`` and the seconds until the hold-off ends."""
        await self._flush()
        rate, hold = await self._budget.state()
        return {"rate": rate, "hold": hold}
