"""The fleet's rate budget in Redis: one budget per venue account, by the server's clock."""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import AsyncIterator

import anyio
import pytest

import xferkit
from xferkit._clock import SYSTEM_CLOCK
from xferkit._redis_rate import RedisRateStore
from xferkit._shared_rate import FLEET_HEADROOM as HEADROOM
from xferkit._shared_rate import SharedLimiter

pytestmark = pytest.mark.anyio

REDIS_URL = os.environ.get("XFERKIT_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


@pytest.fixture
def anyio_backend() -> str:
    """redis-py's client runs on asyncio."""
    return "asyncio"


@pytest.fixture
async def prefix() -> AsyncIterator[str]:
    """A key prefix of this test's own, its keys deleted afterwards; skips without Redis."""
    import redis.asyncio  # noqa: PLC0415

    client = redis.asyncio.from_url(REDIS_URL)
    try:
        await client.ping()
    except (OSError, redis.RedisError) as exc:
        await client.aclose()
        pytest.skip(f"no Redis at {REDIS_URL}: {exc}")
    name = f"xferkit-test:{uuid.uuid4().hex[:12]}"
    try:
        yield name
    finally:
        keys = [key async for key in client.scan_iter(f"{name}:*")]
        if keys:
            await client.delete(*keys)
        await client.aclose()


async def test_stores_taking_from_one_budget_never_exceed_its_rate(prefix: str) -> None:
    """Four stores (four workers' connections) taking 10 slots each at once at 20/s: no
    one-second window admits more than the rate, and the takes span the whole budget."""
    stores = [RedisRateStore(REDIS_URL, prefix=prefix) for _ in range(4)]
    granted: list[float] = []

    async def worker(store: RedisRateStore) -> None:
        limiter = store.rate_limiter("htx", "acct", 20.0, SYSTEM_CLOCK)
        for _ in range(10):
            assert await limiter.acquire()
            granted.append(time.monotonic())

    try:
        async with anyio.create_task_group() as tg:
            for store in stores:
                tg.start_soon(worker, store)
    finally:
        for store in stores:
            await store.aclose()
    times = sorted(granted)
    allowed = 20.0 * HEADROOM
    for i, start in enumerate(times):
        assert sum(1 for t in times[i:] if t < start + 1.0) <= allowed + 1
    assert times[-1] - times[0] >= (len(times) - 1) / allowed - 0.1


async def test_a_refusal_halves_the_fleet_rate_once_and_holds_it(prefix: str) -> None:
    """Four workers refused in one episode halve the Redis budget's rate once, and hold it
    for the Retry-After, capped."""
    store = RedisRateStore(REDIS_URL, prefix=prefix)
    try:
        limiters = [store.rate_limiter("htx", "acct", 10.0, SYSTEM_CLOCK) for _ in range(4)]
        assert await limiters[0].acquire()
        for limiter in limiters:
            limiter.throttled(3600.0, cap=0.3)
        for limiter in limiters:
            await limiter._flush()
        state = await limiters[0].state()
        assert abs(state["rate"] - 10.0 * HEADROOM * 0.5) < 1e-9
        assert 0.1 < state["hold"] <= 0.3
        started = time.monotonic()
        assert await limiters[3].acquire()
        assert time.monotonic() - started >= state["hold"] - 0.02
    finally:
        await store.aclose()


async def test_a_caller_past_its_deadline_takes_no_redis_slot(prefix: str) -> None:
    """A caller whose slot would come after its deadline is refused at once, taking none:
    the next caller's slot is where it would have been."""
    store = RedisRateStore(REDIS_URL, prefix=prefix)
    try:
        first = store.rate_limiter("htx", "acct", 2.0, SYSTEM_CLOCK)
        other = store.rate_limiter("htx", "acct", 2.0, SYSTEM_CLOCK)
        assert await first.acquire()  # the next slot is ~0.5 s away
        started = time.monotonic()
        assert not await other.acquire(deadline_at=time.monotonic() + 0.1)
        assert time.monotonic() - started < 0.1
        assert await other.acquire(deadline_at=time.monotonic() + 0.6)
        assert time.monotonic() - started < 0.6
    finally:
        await store.aclose()


async def test_a_client_takes_a_redis_url_as_its_rate_store(prefix: str) -> None:
    """Client(rate_store="redis://...") takes its slots from Redis, whatever its journal, and
    closes its connections with it."""
    import redis.asyncio  # noqa: PLC0415

    xt = xferkit.XT("fleet-key", "fleet-secret")
    client = xferkit.Client(xt, journal=xferkit.MemoryJournal(), rate_store=REDIS_URL)
    try:
        async with client:
            limiter = client._runtimes["xt"].limiter
            assert isinstance(limiter, SharedLimiter)
            assert await limiter.acquire()
        assert client._owned_store is not None
        assert client._owned_store._redis is None  # closed with the client
    finally:
        cleanup = redis.asyncio.from_url(REDIS_URL)
        await cleanup.delete(f"xferkit:rate:xt:{xt.account}")
        await cleanup.aclose()
    assert "6379" not in repr(RedisRateStore(REDIS_URL))
