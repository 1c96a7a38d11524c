"""Group commit: concurrent journal writes share one transaction and one fsync.

Writes that arrive while a commit is in progress wait and then go out together in the next
one, so with many transfers in flight the journal pays one fsync per group instead of one per
write, and needs no artificial delay. Nothing is weakened: a write returns only after the
commit that holds it, and one refused write (a lost lease, a ledger row already claimed) never
undoes its neighbours: SQLite runs such a group write by write, each write in one statement
that it undoes alone on failure; PostgreSQL refuses a lost lease without a database error and
claims a ledger row in a savepoint of its own.

The caller that finds no commit in progress runs the next one (shielded: a cancellation
never leaves the others waiting); when it is done it hands the job to the oldest waiter.
Hand-written because it is a few dozen lines tied to anyio's cancellation rules.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Generic, TypeVar

import anyio
import attrs

from .._exceptions import JournalError

__all__ = ["GroupCommit", "Write"]

_T = TypeVar("_T")


@attrs.define(eq=False)
class Write(Generic[_T]):
    """One write waiting for a commit: what to run, and what came of it."""

    run: Callable[[Any], _T]
    key: str = ""
    wake: anyio.Event = attrs.field(factory=anyio.Event)
    finished: bool = False
    elected: bool = False
    value: Any = None
    error: BaseException | None = None


RunBatch = Callable[[list[Write[Any]]], Awaitable[None]]
"""Runs a batch in one transaction; sets each write's ``value`` or ``error`` and, only once
the commit succeeded, nothing else (the group marks writes finished)."""


class GroupCommit:
    """Funnels writes into shared commits. ``commits`` and ``writes`` count what it did."""

    def __init__(self, run_batch: RunBatch) -> None:
        self._run_batch = run_batch
        self._pending: list[Write[Any]] = []
        self._busy = False
        self.commits = 0
        self.writes = 0

    async def submit(self, run: Callable[[Any], _T], *, key: str = "") -> _T:
        """Run ``run`` in the next commit and return its result once that commit is durable.

        Writes in a commit run in ``key`` order, so concurrent commits (other processes on a
        shared database) lock rows in one order and cannot deadlock each other.
        """
        write: Write[_T] = Write(run, key)
        self._pending.append(write)
        if not self._busy:
            self._busy = True
            await self._flush()
        else:
            try:
                await write.wake.wait()
            except BaseException:
                if write.elected and not write.finished:
                    await self._flush()  # ours to run even when cancelled: others wait on it
                elif write in self._pending:
                    self._pending.remove(write)  # never started: withdrawn with the caller
                raise
            if not write.finished:  # woken to run the next commit, which holds our write
                await self._flush()
        if write.error is not None:
            raise write.error
        return write.value  # type: ignore[no-any-return]

    async def _flush(self) -> None:
        with anyio.CancelScope(shield=True):
            batch, self._pending = sorted(self._pending, key=lambda w: w.key), []
            try:
                await self._run_batch(batch)
            except Exception as exc:  # noqa: BLE001 - the commit failed: no write in it is durable
                failed = exc if isinstance(exc, JournalError) else JournalError(str(exc))
                for write in batch:
                    write.value, write.error = None, failed
            except BaseException:  # interrupted (KeyboardInterrupt...): fail the batch, go on up
                for write in batch:
                    write.value, write.error = None, JournalError("journal commit interrupted")
                raise
            finally:
                # The next commit's runner wakes first: woken after this batch's writers, it
                # would wait for all of them to run on before the journal works again.
                if self._pending:
                    successor = self._pending[0]
                    successor.elected = True
                    successor.wake.set()
                else:
                    self._busy = False
                for write in batch:
                    write.finished = True
                    write.wake.set()
                self.commits += 1
                self.writes += len(batch)
