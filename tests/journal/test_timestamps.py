"""Journal times: UTC text with a ``Z`` that reads back as the same instant, on Python 3.10 too."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from xferkit.journal import _base
from xferkit.journal._base import from_timestamp, to_timestamp

UTC_TIMES = [
    datetime(2026, 11, 21, 10, 0, tzinfo=timezone.utc),
    datetime(2026, 11, 21, 10, 0, 0, 1, tzinfo=timezone.utc),
    datetime(2026, 12, 31, 23, 59, 59, 999_999, tzinfo=timezone.utc),
    datetime(1970, 1, 1, tzinfo=timezone.utc),
]


class _Python310Datetime(datetime):
    """``datetime`` whose ``fromisoformat`` refuses a ``Z`` suffix, as Python 3.10's does."""

    @classmethod
    def fromisoformat(cls, date_string: str) -> _Python310Datetime:
        if date_string.endswith("Z"):
            raise ValueError(f"Invalid isoformat string: {date_string!r}")
        parsed = datetime.fromisoformat(date_string)
        return cls.combine(parsed.date(), parsed.timetz())


@pytest.mark.parametrize("moment", UTC_TIMES, ids=str)
def test_a_utc_time_reads_back_as_the_same_time(moment: datetime) -> None:
    """A UTC time survives the trip through the journal's text unchanged, microseconds and all."""
    assert from_timestamp(to_timestamp(moment)) == moment


@given(st.datetimes(timezones=st.just(timezone.utc)))
def test_every_utc_time_reads_back_as_the_same_time(moment: datetime) -> None:
    """Any UTC time, from year 1 to 9999, reads back equal to what was stored."""
    assert from_timestamp(to_timestamp(moment)) == moment


def test_a_time_read_back_is_in_utc() -> None:
    """A stored time reads back aware and at offset zero, never naive."""
    moment = from_timestamp(to_timestamp(UTC_TIMES[0]))
    assert moment is not None
    assert moment.utcoffset() == timedelta(0)


def test_a_z_suffix_is_read_as_utc() -> None:
    """Text ending in ``Z`` (what the journal writes) is read as UTC."""
    assert from_timestamp("2026-11-21T10:00:00.250000Z") == datetime(
        2026, 11, 21, 10, 0, 0, 250_000, tzinfo=timezone.utc
    )


def test_an_explicit_offset_is_read_too() -> None:
    """Text with ``+00:00`` instead of ``Z`` names the same instant."""
    assert from_timestamp("2026-11-21T10:00:00.000000+00:00") == UTC_TIMES[0]


def test_no_time_stays_no_time() -> None:
    """``None`` (a time not reached yet, such as ``finished_at``) is stored and read as ``None``."""
    assert to_timestamp(None) is None
    assert from_timestamp(None) is None


def test_a_z_suffix_is_read_where_fromisoformat_refuses_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """With a ``fromisoformat`` that refuses ``Z`` (Python 3.10's), a stored time still reads
    back: the ``Z`` is rewritten to ``+00:00`` before parsing."""
    monkeypatch.setattr(_base, "datetime", _Python310Datetime)
    with pytest.raises(ValueError, match="Invalid isoformat"):
        _Python310Datetime.fromisoformat("2026-11-21T10:00:00.000000Z")
    for moment in UTC_TIMES:
        assert from_timestamp(to_timestamp(moment)) == moment
