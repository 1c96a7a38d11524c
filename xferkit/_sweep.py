"""A `Client.resume` sweep's slots, and how an intent that only waits gives its slot up.

A sweep drives at most ``concurrency`` intents at once, so a sweep of 100,000 intents holds
that many tasks, not one per intent. An HTX intent sent by an earlier call may have to wait
out its settle window before its absence is proven; it does nothing meanwhile but renew its
lease. Holding a slot through that wait would run the sweep in rounds of ``concurrency``
windows, so the wait gives the slot to the next intent (`release_sweep_slot`): every waiting
intent then shares, in effect, one settle window. Only HTX intents that wait are held beyond
``concurrency``, each a sleeping task.

The slot is not taken back after the wait: the intent then only reads the ledger once more (a
shared scan, `xferkit._ledger_reads`) and at most resends under the venue's rate limiter, and
a waiter queued for a slot again would hold its identical movement's turn (`_movement`) while
intents holding slots may wait for that turn.

The slot travels in a context variable, set in the sweep's task for each intent: the
reconciler deep in the engine finds it there without every layer passing it along, and a
transfer outside a sweep finds none.
"""

from __future__ import annotations

from contextvars import ContextVar

import anyio

__all__ = ["SweepSlot", "enter_slot", "release_sweep_slot"]


class SweepSlot:
    """One intent's place among a sweep's running intents; released at most once."""

    def __init__(self, slots: anyio.Semaphore) -> None:
        self._slots = slots
        self._held = True

    def release(self) -> None:
        """Give the place to the next intent (again: nothing)."""
        if self._held:
            self._held = False
            self._slots.release()


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
