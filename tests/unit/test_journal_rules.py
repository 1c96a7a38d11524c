"""The journal's pure claim and save rules (decide_claim, decide_save) that every backend runs."""

from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone

import attrs
import pytest

from xferkit import JournalError, TransferStatus
from xferkit.journal._base import (
    Intent,
    LeaseLostError,
    decide_claim,
    decide_save,
    from_timestamp,
    to_timestamp,
)

NOW = datetime(2026, 11, 21, 12, 0, 0, tzinfo=timezone.utc)
LEASE = 30.0
UNFINISHED = [TransferStatus.PENDING, TransferStatus.IN_FLIGHT, TransferStatus.UNKNOWN]
TERMINAL = [TransferStatus.SUCCEEDED, TransferStatus.FAILED]


def intent(**overrides: object) -> Intent:
    fields: dict[str, object] = {
        "key": "k-1",
        "venue": "xt",
        "account": "acct-a",
        "fingerprint": "fp-1",
        "params": "{}",
        "token": "biz-1",
        "body": '{"bizId":"biz-1"}',
        "created_at": NOW - timedelta(minutes=5),
    }
    fields.update(overrides)
    return Intent(**fields)  # type: ignore[arg-type]


def stored(status: TransferStatus, owner: str | None, expires_in: float | None) -> Intent:
    expires = None if expires_in is None else NOW + timedelta(seconds=expires_in)
    return intent(
        status=status,
        attempts=2,
        body='{"bizId":"stored"}',
        lease_owner=owner,
        lease_expires_at=expires,
    )


# -- decide_claim -------------------------------------------------------------------------------


def test_new_key_is_created_and_owned() -> None:
    """A key with no stored row is recorded and leased to the caller for lease_seconds."""
    claim, row = decide_claim(None, intent(), owner="w1", now=NOW, lease_seconds=LEASE)
    assert claim.created is True
    assert claim.owned is True
    assert row is not None
    assert row.lease_owner == "w1"
    assert row.lease_expires_at == NOW + timedelta(seconds=LEASE)
    assert row.status is TransferStatus.PENDING
    assert claim.intent == row
    assert attrs.evolve(row, lease_owner=None, lease_expires_at=None) == intent()


@pytest.mark.parametrize("status", UNFINISHED)
@pytest.mark.parametrize("expires_in", [-0.001, -3600.0, 0.0], ids=["just", "long", "exactly"])
def test_unfinished_with_expired_lease_is_taken_over(
    status: TransferStatus, expires_in: float
) -> None:
    """An unfinished intent whose lease has run out is leased to the new caller."""
    old = stored(status, owner="w0", expires_in=expires_in)
    claim, row = decide_claim(old, intent(), owner="w1", now=NOW, lease_seconds=LEASE)
    assert claim.created is False
    assert claim.owned is True
    assert row is not None
    assert row.lease_owner == "w1"
    assert row.lease_expires_at == NOW + timedelta(seconds=LEASE)


@pytest.mark.parametrize("status", UNFINISHED)
def test_unfinished_with_released_lease_is_taken(status: TransferStatus) -> None:
    """An unfinished intent with no lease holder is leased to the caller."""
    old = stored(status, owner=None, expires_in=None)
    claim, row = decide_claim(old, intent(), owner="w1", now=NOW, lease_seconds=LEASE)
    assert claim.owned is True
    assert claim.created is False
    assert row is not None
    assert row.lease_owner == "w1"


def test_taking_over_keeps_the_stored_state() -> None:
    """A takeover keeps the stored row's status, attempts and body, not the caller's new intent."""
    old = stored(TransferStatus.IN_FLIGHT, owner="w0", expires_in=-1.0)
    claim, row = decide_claim(
        old, intent(body='{"bizId":"new"}'), owner="w1", now=NOW, lease_seconds=LEASE
    )
    assert row is not None
    assert row.status is TransferStatus.IN_FLIGHT
    assert row.attempts == 2
    assert row.body == '{"bizId":"stored"}'
    assert claim.intent == row


@pytest.mark.parametrize("status", UNFINISHED)
@pytest.mark.parametrize("holder", ["w0", "w1"], ids=["other owner", "same owner name"])
def test_live_lease_is_not_owned(status: TransferStatus, holder: str) -> None:
    """An unfinished intent under a live lease is not leased again and nothing is written."""
    old = stored(status, owner=holder, expires_in=0.001)
    claim, row = decide_claim(old, intent(), owner="w1", now=NOW, lease_seconds=LEASE)
    assert claim.owned is False
    assert claim.created is False
    assert row is None
    assert claim.intent == old


@pytest.mark.parametrize("status", TERMINAL)
@pytest.mark.parametrize(("owner", "expires_in"), [(None, None), ("w0", -60.0), ("w0", 60.0)])
def test_terminal_is_never_owned(
    status: TransferStatus, owner: str | None, expires_in: float | None
) -> None:
    """A settled intent is never leased, whatever its lease fields say."""
    old = stored(status, owner=owner, expires_in=expires_in)
    claim, row = decide_claim(old, intent(), owner="w1", now=NOW, lease_seconds=LEASE)
    assert claim.owned is False
    assert claim.created is False
    assert row is None
    assert claim.intent == old


# -- decide_save --------------------------------------------------------------------------------


def test_save_by_another_owner_raises_lease_lost() -> None:
    """A worker that does not hold the lease may not write the intent."""
    old = stored(TransferStatus.IN_FLIGHT, owner="w0", expires_in=30.0)
    with pytest.raises(LeaseLostError):
        decide_save(old, old, owner="w1", now=NOW, lease_seconds=LEASE)


def test_save_after_takeover_raises_lease_lost_for_the_old_owner() -> None:
    """Once another worker took the expired lease, the old owner's save is refused."""
    old = stored(TransferStatus.IN_FLIGHT, owner="w0", expires_in=-1.0)
    _, taken = decide_claim(old, old, owner="w1", now=NOW, lease_seconds=LEASE)
    assert taken is not None
    late = attrs.evolve(old, status=TransferStatus.SUCCEEDED)
    with pytest.raises(LeaseLostError):
        decide_save(taken, late, owner="w0", now=NOW, lease_seconds=None)


def test_save_of_a_missing_row_raises_lease_lost() -> None:
    """Saving an intent that was never claimed raises LeaseLostError (a JournalError)."""
    with pytest.raises(LeaseLostError) as excinfo:
        decide_save(None, intent(), owner="w1", now=NOW, lease_seconds=LEASE)
    assert isinstance(excinfo.value, JournalError)


def test_save_of_a_released_row_raises_lease_lost() -> None:
    """After the lease was released, a save by its former owner is refused."""
    old = stored(TransferStatus.UNKNOWN, owner=None, expires_in=None)
    with pytest.raises(LeaseLostError):
        decide_save(old, old, owner="w1", now=NOW, lease_seconds=LEASE)


def test_owner_save_writes_the_state_and_extends_the_lease() -> None:
    """The lease holder's save writes its intent and renews the lease from now."""
    old = stored(TransferStatus.PENDING, owner="w1", expires_in=1.0)
    new = attrs.evolve(old, status=TransferStatus.IN_FLIGHT, attempts=3)
    row = decide_save(old, new, owner="w1", now=NOW, lease_seconds=LEASE)
    assert row.status is TransferStatus.IN_FLIGHT
    assert row.attempts == 3
    assert row.lease_owner == "w1"
    assert row.lease_expires_at == NOW + timedelta(seconds=LEASE)


def test_owner_may_save_after_its_own_lease_expired_if_nobody_took_it() -> None:
    """An expired lease still held by the saver (nobody took over) does not block its save."""
    old = stored(TransferStatus.IN_FLIGHT, owner="w1", expires_in=-10.0)
    row = decide_save(old, old, owner="w1", now=NOW, lease_seconds=LEASE)
    assert row.lease_owner == "w1"
    assert row.lease_expires_at == NOW + timedelta(seconds=LEASE)


@pytest.mark.parametrize("status", TERMINAL)
@pytest.mark.parametrize("lease_seconds", [LEASE, None])
def test_terminal_save_clears_the_lease(
    status: TransferStatus, lease_seconds: float | None
) -> None:
    """Saving a settled state releases the lease, even when a renewal was asked for."""
    old = stored(TransferStatus.IN_FLIGHT, owner="w1", expires_in=10.0)
    done = attrs.evolve(old, status=status, finished_at=NOW)
    row = decide_save(old, done, owner="w1", now=NOW, lease_seconds=lease_seconds)
    assert row.status is status
    assert row.lease_owner is None
    assert row.lease_expires_at is None
    assert row.finished_at == NOW


@pytest.mark.parametrize("status", UNFINISHED)
def test_save_without_lease_seconds_releases(status: TransferStatus) -> None:
    """lease_seconds=None writes the state and frees the lease for resume()."""
    old = stored(TransferStatus.IN_FLIGHT, owner="w1", expires_in=10.0)
    row = decide_save(
        old, attrs.evolve(old, status=status), owner="w1", now=NOW, lease_seconds=None
    )
    assert row.status is status
    assert row.lease_owner is None
    assert row.lease_expires_at is None
    claim, _ = decide_claim(row, row, owner="w2", now=NOW, lease_seconds=LEASE)
    assert claim.owned is True


# -- stored times -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "moment",
    [
        NOW,
        NOW.astimezone(timezone(timedelta(hours=5, minutes=30))),
        NOW.astimezone(timezone(timedelta(0))),  # UTC, but not the timezone.utc object
        NOW.replace(microsecond=7),
    ],
)
def test_a_time_is_stored_as_fixed_width_utc_text_and_read_back(moment: datetime) -> None:
    """Whatever zone a time comes in, it is stored in UTC with microseconds and a ``Z``, so
    text order is time order, and it reads back as the same instant."""
    text = to_timestamp(moment)
    assert text is not None
    assert len(text) == len("2026-11-21T12:00:00.000000Z")
    assert text.endswith("Z")
    assert text[:19] == "2026-11-21T12:00:00"
    assert from_timestamp(text) == moment


def test_a_naive_time_is_read_as_local_time(monkeypatch: pytest.MonkeyPatch) -> None:
    """A naive time is local time (as ``astimezone`` reads it), not UTC: checked in a zone
    five and a half hours from UTC, so that reading it as UTC would fail."""
    monkeypatch.setenv("TZ", "Asia/Kolkata")
    time.tzset()
    try:
        local = NOW.astimezone().replace(tzinfo=None)
        assert local.hour == 17  # 12:00 UTC is 17:30 in Kolkata: the zone took effect
        assert to_timestamp(local) == to_timestamp(NOW)
    finally:
        monkeypatch.undo()
        time.tzset()


def test_stored_times_sort_as_the_instants_do() -> None:
    moments = [NOW + timedelta(microseconds=n) for n in (0, 1, 10, 999_999, 1_000_000)]
    moments.append(NOW.astimezone(timezone(timedelta(hours=-3))) + timedelta(seconds=2))
    texts = [to_timestamp(m) for m in moments]
    assert sorted(texts, key=str) == [to_timestamp(m) for m in sorted(moments)]
