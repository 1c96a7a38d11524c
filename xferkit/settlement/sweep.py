"""A `Client.resume` sweep's slots, and how an intent that only waits gives its slot up.

A sweep drives at most ``concurrency`` intents at once, so a sweep of 100,000 intents holds
that many tasks, not one per intent. An HTX intent sent by an earlier call may have to wait
out its settle window before its absence is proven; it does nothing meanwhile but renew its
lease. Holding a slot through that wait would run the sweep in rounds of ``concurrency``
windows, so the wait gives the slot to the next intent (`release_sweep_slot`): every waiting
intent then shares, in effect, one settle window. Only HTX intents that wait are held beyond
``concurrency``, each a sleeping task.

The slot is not taken back after the wait: the intent then only reads the ledger once more
(a shared scan, `reads`) and at most resends under the venue's rate limiter, and a waiter
queued for a slot again would hold its identical movement's turn (`movements`) while intents
holding slots may wait for that turn.

The slot travels in a context variable, set in the sweep's task for each intent: the
reconciler deep in the engine finds it there without every layer passing it along, and a
transfer outside a sweep finds none.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from contextvars import ContextVar

import anyio

__all__ = ["SweepSlot", "enter_slot", "hold_gate", "release_sweep_slot"]


class SweepSlot:
    """One intent's places in a sweep: its task's slot, and its drive's place at the gate
    once it has one (`hold_gate`); all given up at once, at most once each."""

    def __init__(self, slots: anyio.Semaphore) -> None:
        self._held = [slots]

    def add(self, gate: anyio.Semaphore) -> None:
        """Count ``gate``, just acquired, among the places to give up."""
        self._held.append(gate)

    def release(self, only: anyio.Semaphore | None = None) -> None:
        """Give ``only`` (default: every place still held) to the next intent."""
        for held in [h for h in self._held if only is None or h is only]:
            self._held.remove(held)
            held.release()


_current: ContextVar[SweepSlot | None] = ContextVar("xferkit_sweep_slot", default=None)


def enter_slot(slot: SweepSlot) -> None:
    """Make ``slot`` the current task's (a sweep's task does this first, for its intent)."""
    _current.set(slot)


def release_sweep_slot() -> None:
    """The current intent only waits from now on: let the sweep start another one.

    Outside a sweep, nothing.
    """
    slot = _current.get()
    if slot is not None:
        slot.release()


@asynccontextmanager
async def hold_gate(gate: anyio.Semaphore | None) -> AsyncIterator[None]:
    """Drive one intent once ``gate`` (the sweep's bound on intents driven at once) lets it;
    a wait that gives the sweep slot up (`release_sweep_slot`) gives this place up too."""
    if gate is None:
        yield
        return
    await gate.acquire()
    slot = _current.get()
    if slot is None:
        try:
            yield
        finally:
            gate.release()
        return
    slot.add(gate)
    try:
        yield
    finally:
        slot.release(gate)
