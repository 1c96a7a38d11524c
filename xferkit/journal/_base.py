"""The journal's contract: the intent record and the operations every backend provides.

An intent is written (claimed) before its first send and updated after every state change.
A lease (owner, expiry) says which worker drives it; only the owner may write it, and another
worker may take it over only once the lease has expired or been released.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Collection, Mapping
from datetime import datetime, timedelta, timezone
from decimal import Decimal, InvalidOperation
from typing import Any, Protocol, runtime_checkable

import attrs

from .._exceptions import VENUE_ERROR_TYPES, JournalError, TransferRejectedError, VenueError
from .._models import TransferStatus

__all__ = [
    "LEGACY_ACCOUNT",
    "UNRESOLVED_STATUSES",
    "Claim",
    "Intent",
    "IntentId",
    "Journal",
    "LeaseLostError",
    "MovementHold",
    "MovementTurn",
    "Settlement",
    "StoredError",
    "SweepJournal",
    "decide_claim",
    "decide_save",
    "from_timestamp",
    "in_accounts",
    "intent_from_row",
    "lease_available",
    "lease_lost",
    "movement_of",
    "movement_turn",
    "reopened",
    "sweep_order",
    "takeable",
    "to_timestamp",
    "with_lease",
]

UNRESOLVED_STATUSES = (TransferStatus.IN_FLIGHT, TransferStatus.UNKNOWN)
"""States in which an intent may have executed without xferkit knowing: its ledger row, if
any, is unaccounted for, so no identical movement may be sent beside it
(`Journal.take_movement`)."""


class LeaseLostError(JournalError):
    """This worker no longer owns the intent's lease (it expired and another worker took it)."""


@attrs.frozen(kw_only=True)
class StoredError:
    """A venue's refusal as kept in the journal, so it can be raised again exactly.

    On a ``FAILED`` intent it is the refusal that settled it; ``reusable`` says that no
    attempt reached the venue's processing, so the key is not spent (`Journal.reopen`). On an
    ``UNKNOWN`` intent it is the last refusal, kept as the reason it is still open: a refusal
    after an attempt that may have executed settles nothing.
    """

    kind: str
    message: str
    code: str | None = None
    http_status: int | None = None
    reusable: bool = False

    @classmethod
    def from_exception(cls, error: VenueError) -> StoredError:
        """Capture a venue error (its class name, code, message and HTTP status)."""
        return cls(
            kind=type(error).__name__,
            message=error.message,
            code=error.code,
            http_status=error.http_status,
            reusable=error.key_reusable,
        )

    def to_exception(self, venue: str) -> VenueError:
        """Rebuild the venue error that was raised when the refusal happened."""
        cls = VENUE_ERROR_TYPES.get(self.kind, TransferRejectedError)
        return cls(
            self.message,
            venue=venue,
            code=self.code,
            http_status=self.http_status,
            key_reusable=self.reusable,
        )

    def describe(self) -> str:
        """One line for a person: the code (if any) and the message."""
        return self.message if self.code is None else f"{self.code}: {self.message}"

    def to_json(self) -> str:
        """Serialise for a text column."""
        return json.dumps(attrs.asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> StoredError:
        """Inverse of `to_json`."""
        return cls(**json.loads(text))


@attrs.frozen(kw_only=True)
class Settlement:
    """Who settled an intent by hand (`xferkit.Client.settle`, ``xferkit journal settle``),
    when and why: the record an audit asks for when software could not tell."""

    by: str
    at: datetime
    reason: str

    def to_json(self) -> str:
        """Serialise for a text column."""
        return json.dumps(
            {"by": self.by, "at": to_timestamp(self.at), "reason": self.reason}, sort_keys=True
        )

    @classmethod
    def from_json(cls, text: str) -> Settlement:
        """Inverse of `to_json`."""
        fields = json.loads(text)
        at = from_timestamp(fields["at"])
        if at is None:
            raise JournalError(f"a settlement without a time: {text!r}")
        return cls(by=fields["by"], at=at, reason=fields["reason"])


LEGACY_ACCOUNT = ""
"""The account of a row recorded before intents had accounts (journal schema 1): unknown.

Such a row is never sent under credentials that cannot be shown to own it (on XT its stored
bizId proves ownership, see `xferkit.Client`); the rest wait for an operator
(``xferkit journal settle``).
"""


@attrs.frozen
class IntentId:
    """What identifies an intent: the same key under two accounts is two intents.

    ``account`` is the venue module's non-secret fingerprint of the API key
    (`LEGACY_ACCOUNT` for a row from before accounts were recorded).
    """

    venue: str
    account: str
    key: str

    def text(self) -> str:
        """One unambiguous text form (a JSON array), the journals' row id."""
        return json.dumps([self.venue, self.account, self.key], ensure_ascii=False)


@attrs.frozen(kw_only=True)
class Intent:
    """One transfer as the journal keeps it.

    Attributes:
        key: the idempotency key; with the venue and account, unique in a journal (`id`).
        venue: the venue's name.
        account: the non-secret fingerprint of the API key it is sent with
            (`LEGACY_ACCOUNT` if it was recorded before accounts were).
        fingerprint: hash of the canonical parameters; a reused key must match it.
        params: the canonical parameters as JSON (``TransferSpec.canonical_json``).
        token: the venue-side idempotency token (XT ``bizId``), if the venue has one.
        body: the exact request body; every send, including after a crash, uses these bytes.
        status: where it stands.
        attempts: requests sent so far.
        transfer_id: the venue's id once known.
        error: the stored refusal of a ``FAILED`` intent, or on an ``UNKNOWN`` one the refusal
            that left it open (see `StoredError`).
        ledger_ref: the venue ledger row claimed by this intent (HTX reconciliation).
        created_at: when it was recorded (UTC).
        first_sent_at: when the first request was sent, or ``None``.
        first_sent_venue_ms: the venue's clock (Unix ms) just before the first send, as the
            client measured it then: where a ledger search for this transfer starts.
        last_sent_at: when the latest request was sent, or ``None``.
        finished_at: when it was settled, or ``None``.
        lease_owner: the worker driving it, or ``None``.
        lease_expires_at: until when that worker's lease holds.
        settlement: who settled it by hand, when and why (``None``: the venue's answer did).
        attempts_end_venue_ms: the venue's clock (Unix ms) by which every attempt sent so far
            has ended, as the worker that last wrote the intent could prove it; ``None`` if
            never sent on a venue that reconciles, or written before the field existed. A
            venue may commit a transfer until its attempt ends, so a ledger's settle window
            counts from here when the sends were another call's or process's. In the venue's
            time, which every worker measures alike, not in a worker's own clock
            (`xferkit.settlement.windows`).
    """

    key: str
    venue: str
    account: str
    fingerprint: str
    params: str
    token: str | None
    body: str
    status: TransferStatus = TransferStatus.PENDING
    attempts: int = 0
    transfer_id: str | None = None
    error: StoredError | None = None
    ledger_ref: str | None = None
    created_at: datetime
    first_sent_at: datetime | None = None
    first_sent_venue_ms: int | None = None
    last_sent_at: datetime | None = None
    finished_at: datetime | None = None
    lease_owner: str | None = None
    lease_expires_at: datetime | None = None
    settlement: Settlement | None = None
    attempts_end_venue_ms: int | None = None

    @property
    def id(self) -> IntentId:
        """This intent's identity in the journal."""
        return IntentId(self.venue, self.account, self.key)


@attrs.frozen(kw_only=True)
class MovementTurn:
    """What `Journal.take_movement` found.

    ``taken``: the intent now holds its movement's turn and may be sent. Otherwise
    ``blocker`` is the key of the identical intent that is unresolved or holds the turn, or
    ``wait_seconds`` how long the previous identical movement's spacing still runs.
    """

    taken: bool
    blocker: str | None = None
    wait_seconds: float = 0.0


@attrs.frozen(kw_only=True)
class MovementHold:
    """A movement's row as a journal stores it: who holds its turn, and when it is free."""

    holder_key: str | None = None
    holder_owner: str | None = None
    free_at: datetime | None = None


def movement_of(params: str) -> str:
    """The identical-movement key of an intent, from its canonical parameters (`Intent.params`).

    Two transfers of one account with the same key look alike in a ledger (the same accounts,
    currency and amount, as ``TransferSpec.same_movement``), so at most one of them may be
    unresolved at a time. Derived from what every journal already stores, so intents written
    before movements were tracked take part as they are. The amount is normalised (``25`` and
    ``25.0`` are one movement).
    """
    try:
        fields = json.loads(params)
        amount = fields.get("amount")
        normal = f"{Decimal(amount).normalize():f}" if amount is not None else None
    except (ValueError, TypeError, AttributeError, InvalidOperation):
        return json.dumps(["unreadable", params])  # a movement of its own
    return json.dumps(
        [fields.get("from_account"), fields.get("to_account"), fields.get("currency"), normal],
        ensure_ascii=False,
    )


def movement_turn(
    intent: Intent,
    *,
    owner: str,
    unresolved: Collection[str],
    hold: MovementHold | None,
    holder: Intent | None,
    now: datetime,
) -> MovementTurn:
    """Decide `Journal.take_movement` from what the backend read in its transaction.

    ``unresolved`` are the keys of the account's other unresolved intents of the same
    movement; ``hold`` the movement's row and ``holder`` the intent it names. A hold counts
    while its intent is unresolved (sent: `UNRESOLVED_STATUSES`; a backend that reads
    ``holder`` after ``unresolved`` may see it sent only here), or ``PENDING`` and leased to
    the same drive (``holder_owner``) with a live lease: a drive that crashed or gave up before
    sending leaves a hold nobody honours.
    """
    if intent.lease_owner != owner:
        raise lease_lost(intent.key, intent.lease_owner, owner)
    blockers = sorted(k for k in unresolved if k != intent.key)
    if blockers:
        return MovementTurn(taken=False, blocker=blockers[0])
    if (
        hold is not None
        and holder is not None
        and hold.holder_key is not None
        and hold.holder_key != intent.key
        and (holder.status in UNRESOLVED_STATUSES or _live_pending(holder, hold, now))
    ):
        return MovementTurn(taken=False, blocker=hold.holder_key)
    if hold is not None and hold.free_at is not None and hold.free_at > now:
        return MovementTurn(taken=False, wait_seconds=(hold.free_at - now).total_seconds())
    return MovementTurn(taken=True)


def _live_pending(holder: Intent, hold: MovementHold, now: datetime) -> bool:
    """Whether ``holder``, not sent yet, is still being driven by the drive that took the turn."""
    return (
        holder.status is TransferStatus.PENDING
        and holder.lease_owner == hold.holder_owner
        and holder.lease_expires_at is not None
        and holder.lease_expires_at > now
    )


@attrs.frozen(kw_only=True)
class Claim:
    """What `Journal.claim` found.

    ``created`` is true when this call recorded the intent; ``owned`` when the caller now holds
    its lease (always for a new intent; for a stored one only if it is unfinished and its lease
    was free or expired).
    """

    intent: Intent
    created: bool
    owned: bool


@runtime_checkable
class Journal(Protocol):
    """A durable store of intents. Every method is safe to call concurrently."""

    async def open(self) -> None:
        """Connect and create or migrate the schema."""

    async def aclose(self) -> None:
        """Release connections and threads."""

    async def claim(self, intent: Intent, *, owner: str, lease_seconds: float) -> Claim:
        """Record ``intent`` under its id unless the id exists; take the lease if free.

        Durable when it returns: nothing is sent for an intent before its claim returns.
        """

    async def save(self, intent: Intent, *, owner: str, lease_seconds: float | None) -> None:
        """Write the intent's state if ``owner`` still holds its lease.

        Extends the lease by ``lease_seconds``; ``None`` releases it (as does a terminal state).
        Raises `LeaseLostError` if another worker owns it now.
        """

    async def release(self, intent_id: IntentId, *, owner: str) -> None:
        """Give up the lease if ``owner`` holds it; the state is left as it is."""

    async def claim_ledger_ref(self, intent_id: IntentId, *, owner: str, ref: str) -> bool:
        """Record that ledger row ``ref`` is this intent's, unless another intent of the same
        venue and account already claimed it (or ``owner`` lost the lease). True if this call
        recorded it.
        """

    async def reopen(
        self, intent_id: IntentId, *, owner: str, lease_seconds: float
    ) -> Intent | None:
        """Turn a ``FAILED`` intent whose key was not spent back into ``PENDING``, leased.

        Only an intent whose stored error is ``reusable`` (no attempt reached the venue's
        processing) is reopened; atomically, so two callers cannot both reopen it. Returns the
        reopened intent, or ``None`` if the stored intent is anything else.
        """

    async def adopt(self, intent_id: IntentId, *, account: str) -> Intent | None:
        """Give the `LEGACY_ACCOUNT` row ``intent_id`` to ``account``, atomically.

        The caller has proved the row is that account's (on XT: the stored bizId). Returns the
        row as now stored, or ``None`` if ``intent_id`` is not a legacy row or ``account`` already
        has an intent under its key.
        """

    async def take_movement(
        self, intent: Intent, *, owner: str, lease_seconds: float
    ) -> MovementTurn:
        """Take the turn to send ``intent``'s movement (`movement_of`), atomically.

        For a venue without an idempotency key (HTX), where a ledger row must be one intent's:
        taken only if no other intent of the same venue, account and movement is unresolved
        (`UNRESOLVED_STATUSES`, or ``PENDING`` and holding the turn under a live lease) and the
        previous identical movement's spacing (`free_movement`) has passed. Then the intent
        holds the turn until `free_movement`. The check and the mark are one transaction, so two
        processes on one journal never both take it. ``owner`` must hold the intent's lease,
        which is renewed for ``lease_seconds`` (`LeaseLostError` otherwise).
        """

    async def free_movement(self, intent: Intent, *, owner: str, spacing_seconds: float) -> None:
        """End ``intent``'s turn (if ``owner``'s drive holds it), and keep its movement from
        being taken for ``spacing_seconds`` from now (the journal's clock), so the next
        identical movement's ledger window cannot hold this one's row."""

    async def get(self, intent_id: IntentId) -> Intent | None:
        """The intent stored under ``intent_id``, if any."""

    async def find(self, key: str) -> list[Intent]:
        """Every intent under ``key``, whatever its venue and account (for operators)."""

    async def prune(self, *, finished_before: datetime) -> int:
        """Delete settled (``SUCCEEDED``/``FAILED``) intents finished before the given time.

        Unsettled intents are never deleted, whatever their age. Returns how many were deleted.
        A pruned key is forgotten: reusing it later starts a new transfer.
        """

    async def list(
        self,
        *,
        statuses: Collection[TransferStatus] | None = None,
        accounts: Collection[tuple[str, str]] | None = None,
        limit: int | None = None,
    ) -> list[Intent]:
        """Intents (oldest first), optionally only those in ``statuses`` and of ``accounts``
        (``(venue, account)`` pairs)."""


@runtime_checkable
class SweepJournal(Protocol):
    """What a journal offers `xferkit.Client.resume` beyond `Journal`, to sweep fast.

    Optional: the engine checks for it once and, without it, lists everything at once and
    claims before recording each attempt (two writes per intent instead of one).
    """

    async def take(
        self, listed: Intent, attempt: Intent, *, owner: str, lease_seconds: float
    ) -> Intent | None:
        """Lease an unfinished intent and record its next attempt, in one durable write.

        ``listed`` is the intent as the caller read it; ``attempt`` is it with the next
        attempt recorded (status, attempts, send times). Written only if the stored row
        still says what ``listed`` does (`takeable`) and its lease is free or expired;
        atomically, so two workers cannot both take it. Returns ``attempt`` leased to
        ``owner`` as stored, or ``None`` if nothing was written (the caller then claims).
        """

    async def list_page(
        self,
        *,
        statuses: Collection[TransferStatus],
        accounts: Collection[tuple[str, str]],
        after: Intent | None,
        limit: int,
    ) -> list[Intent]:
        """Up to ``limit`` intents in ``statuses`` of ``accounts`` that come after ``after``
        in `sweep_order` (from the first if ``None``), in that order.

        Keyset paging: an intent that changes status while a sweep pages on is neither seen
        twice nor makes another one skipped, as an offset would.
        """


def sweep_order(intent: Intent) -> tuple[datetime, str, str, str]:
    """The order `SweepJournal.list_page` pages in: oldest first, as `Journal.list`, with
    the whole id as tie-break, so a page boundary between two equal times is exact."""
    return (intent.created_at, intent.key, intent.venue, intent.account)


def takeable(stored: Intent | None, listed: Intent, now: datetime) -> bool:
    """Whether `SweepJournal.take` may write: the stored row still is ``listed`` as far as
    an attempt is concerned (status, attempts, last send, stored error), and its lease is free.

    Every change a worker makes to an intent's sending history moves one of these, so a
    write decided from ``listed`` cannot overwrite a later attempt or a settlement.
    """
    return (
        stored is not None
        and stored.status is listed.status
        and stored.attempts == listed.attempts
        and stored.last_sent_at == listed.last_sent_at
        and stored.error == listed.error
        and lease_available(stored, now)
    )


def intent_from_row(row: Mapping[str, Any], read_time: Callable[[Any], datetime | None]) -> Intent:
    """Build an intent from a database row; ``read_time`` turns a stored time into a datetime."""
    created_at = read_time(row["created_at"])
    if created_at is None:
        raise JournalError(f"intent {row['key']!r} has no creation time")
    return Intent(
        key=row["key"],
        venue=row["venue"],
        account=row["account"],
        fingerprint=row["fingerprint"],
        params=row["params"],
        token=row["token"],
        body=row["body"],
        status=TransferStatus(row["status"]),
        attempts=row["attempts"],
        transfer_id=row["transfer_id"],
        error=StoredError.from_json(row["error"]) if row["error"] else None,
        ledger_ref=row["ledger_ref"],
        created_at=created_at,
        first_sent_at=read_time(row["first_sent_at"]),
        first_sent_venue_ms=row["first_sent_venue_ms"],
        last_sent_at=read_time(row["last_sent_at"]),
        finished_at=read_time(row["finished_at"]),
        lease_owner=row["lease_owner"],
        lease_expires_at=read_time(row["lease_expires_at"]),
        settlement=Settlement.from_json(row["settlement"]) if row["settlement"] else None,
        attempts_end_venue_ms=row["attempts_end_venue_ms"],
    )


def lease_available(intent: Intent, now: datetime) -> bool:
    """Whether a worker may take the intent's lease: unfinished, and unowned or expired."""
    if intent.status.is_terminal:
        return False
    return intent.lease_expires_at is None or intent.lease_expires_at <= now


def decide_claim(
    stored: Intent | None, intent: Intent, *, owner: str, now: datetime, lease_seconds: float
) -> tuple[Claim, Intent | None]:
    """Decide a claim from the stored row: the answer, and the row to write (if any).

    Backends that hold a row lock or a single writer run this between their read and write, so
    the rules live in one place.
    """
    until = now + timedelta(seconds=lease_seconds)
    if stored is None:
        new = attrs.evolve(intent, lease_owner=owner, lease_expires_at=until)
        return Claim(intent=new, created=True, owned=True), new
    if not lease_available(stored, now):
        return Claim(intent=stored, created=False, owned=False), None
    taken = attrs.evolve(stored, lease_owner=owner, lease_expires_at=until)
    return Claim(intent=taken, created=False, owned=True), taken


def reopened(
    stored: Intent | None, *, owner: str, now: datetime, lease_seconds: float
) -> Intent | None:
    """The row `Journal.reopen` writes for ``stored``, or ``None`` if it may not be reopened."""
    if (
        stored is None
        or stored.status is not TransferStatus.FAILED
        or stored.error is None
        or not stored.error.reusable
    ):
        return None
    return attrs.evolve(
        stored,
        status=TransferStatus.PENDING,
        finished_at=None,
        lease_owner=owner,
        lease_expires_at=now + timedelta(seconds=lease_seconds),
    )


def decide_save(
    stored: Intent | None, intent: Intent, *, owner: str, now: datetime, lease_seconds: float | None
) -> Intent:
    """The row `Journal.save` writes, or `LeaseLostError` if ``owner`` lost it."""
    if stored is None or stored.lease_owner != owner:
        raise lease_lost(intent.key, None if stored is None else stored.lease_owner, owner)
    return with_lease(intent, owner=owner, now=now, lease_seconds=lease_seconds)


def with_lease(intent: Intent, *, owner: str, now: datetime, lease_seconds: float | None) -> Intent:
    """``intent`` as `Journal.save` stores it: leased on, or released (terminal or ``None``)."""
    if lease_seconds is None or intent.status.is_terminal:
        if intent.lease_owner is None and intent.lease_expires_at is None:
            return intent  # released already (the engine settles with the lease dropped)
        return attrs.evolve(intent, lease_owner=None, lease_expires_at=None)
    return attrs.evolve(
        intent, lease_owner=owner, lease_expires_at=now + timedelta(seconds=lease_seconds)
    )


def lease_lost(key: str, holder: str | None, owner: str) -> LeaseLostError:
    """The error a save by ``owner`` meets when ``holder`` (or nobody) has the lease."""
    return LeaseLostError(f"intent {key!r} is leased to {holder or 'nobody'}, not {owner}")


def in_accounts(intent: Intent, accounts: Collection[tuple[str, str]] | None) -> bool:
    """Whether ``intent`` belongs to one of ``accounts`` (every account when ``None``)."""
    return accounts is None or (intent.venue, intent.account) in accounts


def to_timestamp(value: datetime | None) -> str | None:
    """Store a UTC time as fixed-width ISO text, so text order is time order.

    ``2026-11-21T10:00:00.000000Z``: always with microseconds (``timespec``), which
    ``isoformat`` writes several times faster than ``strftime`` (journals write several per
    transfer). A time already in `timezone.utc` (every time xferkit makes) is written as is.
    """
    if value is None:
        return None
    if value.tzinfo is not timezone.utc:
        if value.tzinfo is None or value.utcoffset():
            value = value.astimezone(timezone.utc)  # a naive time is local, as astimezone reads it
        value = value.replace(tzinfo=timezone.utc)
    return value.isoformat(timespec="microseconds")[:-6] + "Z"  # "+00:00" -> "Z"


def from_timestamp(value: str | None) -> datetime | None:
    """Inverse of `to_timestamp`.

    ``fromisoformat`` reads the ``Z`` only since Python 3.11; before, it needs ``+00:00``.
    """
    if value is None:
        return None
    if value.endswith("Z"):
        value = value[:-1] + "+00:00"
    return datetime.fromisoformat(value)
