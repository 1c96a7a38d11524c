"""An in-memory journal, for tests only: it does not survive a crash or a restart."""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime, timedelta, timezone

import anyio
import attrs

from .._clock import SYSTEM_CLOCK, Clock
from .._models import TransferStatus
from ._base import (
    LEGACY_ACCOUNT,
    UNRESOLVED_STATUSES,
    Claim,
    Intent,
    IntentId,
    MovementHold,
    MovementTurn,
    decide_claim,
    decide_save,
    in_accounts,
    lease_lost,
    movement_of,
    movement_turn,
    reopened,
    sweep_order,
    takeable,
    with_lease,
)

__all__ = ["MemoryJournal"]


class MemoryJournal:
    """Keeps intents in a dict. FOR TESTS ONLY: everything is lost when the process ends.

    It follows the same contract as the durable journals (the shared contract tests prove it),
    so engine tests can run without disk I/O.
    """

    def __init__(self, *, clock: Clock = SYSTEM_CLOCK) -> None:
        self._clock = clock
        self._intents: dict[IntentId, Intent] = {}
        self._movements: dict[tuple[str, str, str], MovementHold] = {}

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self._clock.time(), tz=timezone.utc)

    async def open(self) -> None:
        """Nothing to open."""

    async def aclose(self) -> None:
        """Nothing to close; the intents stay readable."""

    async def claim(self, intent: Intent, *, owner: str, lease_seconds: float) -> Claim:
        """Record ``intent`` unless its key exists; take the lease if free."""
        await anyio.lowlevel.checkpoint()
        claim, row = decide_claim(
            self._intents.get(intent.id),
            intent,
            owner=owner,
            now=self._now(),
            lease_seconds=lease_seconds,
        )
        if row is not None:
            self._intents[row.id] = row
        return claim

    async def take(
        self, listed: Intent, attempt: Intent, *, owner: str, lease_seconds: float
    ) -> Intent | None:
        """Lease ``listed`` and record ``attempt`` if the stored row still is ``listed``."""
        await anyio.lowlevel.checkpoint()
        now = self._now()
        if not takeable(self._intents.get(listed.id), listed, now):
            return None
        row = with_lease(attempt, owner=owner, now=now, lease_seconds=lease_seconds)
        self._intents[row.id] = row
        return row

    async def save(self, intent: Intent, *, owner: str, lease_seconds: float | None) -> None:
        """Write the intent if ``owner`` holds its lease."""
        await anyio.lowlevel.checkpoint()
        stored = self._intents.get(intent.id)
        row = decide_save(stored, intent, owner=owner, now=self._now(), lease_seconds=lease_seconds)
        self._intents[row.id] = row

    async def release(self, intent_id: IntentId, *, owner: str) -> None:
        """Give up the lease if ``owner`` holds it."""
        await anyio.lowlevel.checkpoint()
        stored = self._intents.get(intent_id)
        if stored is not None and stored.lease_owner == owner:
            self._intents[intent_id] = decide_save(
                stored, stored, owner=owner, now=self._now(), lease_seconds=None
            )

    async def reopen(
        self, intent_id: IntentId, *, owner: str, lease_seconds: float
    ) -> Intent | None:
        """Reopen a ``FAILED`` intent whose key was not spent."""
        await anyio.lowlevel.checkpoint()
        row = reopened(
            self._intents.get(intent_id), owner=owner, now=self._now(), lease_seconds=lease_seconds
        )
        if row is not None:
            self._intents[intent_id] = row
        return row

    async def claim_ledger_ref(self, intent_id: IntentId, *, owner: str, ref: str) -> bool:
        """Give ledger row ``ref`` to the intent unless another of its account has it."""
        await anyio.lowlevel.checkpoint()
        stored = self._intents.get(intent_id)
        if stored is None or stored.lease_owner != owner:
            return False
        if any(
            (i.venue, i.account) == (stored.venue, stored.account)
            and i.ledger_ref == ref
            and i.key != stored.key
            for i in self._intents.values()
        ):
            return False
        self._intents[intent_id] = attrs.evolve(stored, ledger_ref=ref)
        return True

    async def adopt(self, intent_id: IntentId, *, account: str) -> Intent | None:
        """Give a legacy row to ``account``."""
        await anyio.lowlevel.checkpoint()
        stored = self._intents.get(intent_id)
        if stored is None or stored.account != LEGACY_ACCOUNT:
            return None
        adopted = attrs.evolve(stored, account=account)
        if adopted.id in self._intents:
            return None
        del self._intents[intent_id]
        self._intents[adopted.id] = adopted
        return adopted

    async def take_movement(
        self, intent: Intent, *, owner: str, lease_seconds: float
    ) -> MovementTurn:
        """Take the turn to send ``intent``'s movement; no await between check and mark."""
        await anyio.lowlevel.checkpoint()
        stored = self._intents.get(intent.id)
        if stored is None:
            raise lease_lost(intent.key, None, owner)
        now = self._now()
        movement = (stored.venue, stored.account, movement_of(stored.params))
        unresolved = [
            other.key
            for other in self._intents.values()
            if (other.venue, other.account) == movement[:2]
            and other.status in UNRESOLVED_STATUSES
            and movement_of(other.params) == movement[2]
        ]
        hold = self._movements.get(movement)
        holder = None
        if hold is not None and hold.holder_key is not None:
            holder = self._intents.get(IntentId(stored.venue, stored.account, hold.holder_key))
        turn = movement_turn(
            stored, owner=owner, unresolved=unresolved, hold=hold, holder=holder, now=now
        )
        self._intents[stored.id] = with_lease(
            stored, owner=owner, now=now, lease_seconds=lease_seconds
        )
        if turn.taken:
            self._movements[movement] = MovementHold(
                holder_key=stored.key,
                holder_owner=owner,
                free_at=None if hold is None else hold.free_at,
            )
        return turn

    async def free_movement(self, intent: Intent, *, owner: str, spacing_seconds: float) -> None:
        """End ``intent``'s turn and space the next identical movement."""
        await anyio.lowlevel.checkpoint()
        now = self._now()
        for past in [
            m
            for m, h in self._movements.items()
            if h.holder_key is None and h.free_at is not None and h.free_at <= now
        ]:
            del self._movements[past]  # one entry per movement ever sent would never shrink
        movement = (intent.venue, intent.account, movement_of(intent.params))
        hold = self._movements.get(movement, MovementHold())
        free_at = now + timedelta(seconds=spacing_seconds)
        if hold.free_at is not None:
            free_at = max(free_at, hold.free_at)
        mine = (hold.holder_key, hold.holder_owner) == (intent.key, owner)
        self._movements[movement] = MovementHold(
            holder_key=None if mine else hold.holder_key,
            holder_owner=None if mine else hold.holder_owner,
            free_at=free_at,
        )

    async def get(self, intent_id: IntentId) -> Intent | None:
        """The intent under ``intent_id``."""
        await anyio.lowlevel.checkpoint()
        return self._intents.get(intent_id)

    async def find(self, key: str) -> list[Intent]:
        """Every intent under ``key``."""
        await anyio.lowlevel.checkpoint()
        return sorted(
            (i for i in self._intents.values() if i.key == key),
            key=lambda i: (i.created_at, i.venue, i.account),
        )

    async def prune(self, *, finished_before: datetime) -> int:
        """Delete settled intents finished before ``finished_before``."""
        await anyio.lowlevel.checkpoint()
        old = [
            intent_id
            for intent_id, intent in self._intents.items()
            if intent.status.is_terminal
            and intent.finished_at is not None
            and intent.finished_at < finished_before
        ]
        for intent_id in old:
            del self._intents[intent_id]
        return len(old)

    async def list_page(
        self,
        *,
        statuses: Collection[TransferStatus],
        accounts: Collection[tuple[str, str]],
        after: Intent | None,
        limit: int,
    ) -> list[Intent]:
        """Up to ``limit`` intents after ``after`` in sweep order."""
        await anyio.lowlevel.checkpoint()
        rows = sorted(
            (
                i
                for i in self._intents.values()
                if i.status in statuses
                and in_accounts(i, accounts)
                and (after is None or sweep_order(i) > sweep_order(after))
            ),
            key=sweep_order,
        )
        return rows[:limit]

    async def list(
        self,
        *,
        statuses: Collection[TransferStatus] | None = None,
        accounts: Collection[tuple[str, str]] | None = None,
        limit: int | None = None,
    ) -> list[Intent]:
        """Intents oldest first, optionally filtered by status and account."""
        await anyio.lowlevel.checkpoint()
        rows = sorted(self._intents.values(), key=lambda i: (i.created_at, i.key))
        rows = [i for i in rows if in_accounts(i, accounts)]
        if statuses is not None:
            rows = [i for i in rows if i.status in statuses]
        return rows[:limit] if limit is not None else rows
