"""VirtualClock: time moves only when slept on or advanced, and sleeping never really waits."""

from __future__ import annotations

import time

import anyio
import pytest

from xferkit._clock import SIGN_EARLY_MS, ServerClock
from xferkit.testing import VirtualClock


def test_starts_at_the_given_time() -> None:
    """A new clock reports its start as wall time and zero as monotonic time."""
    clock = VirtualClock(start=1000.0)
    assert clock.time() == 1000.0
    assert clock.monotonic() == 0.0


async def test_drives_xferkit_server_clock() -> None:
    """xferkit's ServerClock on a virtual clock signs in virtual time plus the measured offset."""
    clock = VirtualClock(start=1000.0)

    async def fetch_server_ms() -> int:
        await clock.sleep(0.5)  # the round trip takes virtual time, as a real one would
        return 1_005_000

    server = ServerClock(clock, fetch_server_ms)
    await server.ensure_synced()
    assert server.offset_ms == 1_005_000 - 1_000_250  # server time minus the round trip's midpoint
    assert server.timestamp_ms() == int(clock.time() * 1000 + server.offset_ms) - SIGN_EARLY_MS


async def test_sleep_moves_time_without_waiting() -> None:
    """Sleeping an hour moves virtual time by an hour and takes no real time."""
    clock = VirtualClock()
    before, real_before = clock.time(), time.monotonic()
    await clock.sleep(3600)
    assert clock.time() == before + 3600
    assert clock.monotonic() == 3600
    assert time.monotonic() - real_before < 1.0


async def test_concurrent_sleeps_overlap() -> None:
    """Two tasks sleeping one second at once cost one virtual second, not two."""
    clock = VirtualClock()
    async with anyio.create_task_group() as tasks:
        tasks.start_soon(clock.sleep, 1.0)
        tasks.start_soon(clock.sleep, 1.0)
    assert clock.monotonic() == 1.0


async def test_sleep_is_cancellable_and_then_leaves_time_alone() -> None:
    """A sleep cancelled at its checkpoint raises cancellation and does not move time."""
    clock = VirtualClock()
    with anyio.CancelScope() as scope:
        scope.cancel()
        await clock.sleep(10)
    assert scope.cancelled_caught
    assert clock.monotonic() == 0.0


async def test_negative_sleep_is_a_checkpoint_only() -> None:
    """Sleeping a negative duration yields but never moves time back."""
    clock = VirtualClock()
    clock.advance(5)
    await clock.sleep(-3)
    assert clock.monotonic() == 5


def test_advance_moves_both_clocks() -> None:
    """advance() moves wall and monotonic time together."""
    clock = VirtualClock(start=0.0)
    clock.advance(2.5)
    assert (clock.time(), clock.monotonic()) == (2.5, 2.5)


def test_advance_refuses_to_go_back() -> None:
    """A clock never goes back: advance() with a negative value raises ValueError."""
    with pytest.raises(ValueError, match="cannot go back"):
        VirtualClock().advance(-1)
