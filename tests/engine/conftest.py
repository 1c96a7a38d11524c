"""Engine fixtures: a fake XT with a fault plan, wired to a real Client on a virtual clock."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import httpx
import pytest

import xferkit
from xferkit.journal import IntentId, Journal
from xferkit.testing import FakeTransport, FakeXT, FaultPlan, VirtualClock

API_KEY = "test-api-key-0001"
SECRET = "test-secret-do-not-leak-7d1c9e"
HTX_ACCESS_KEY = "htx-access-key-0001"  # test_htx_engine's credentials
HTX_SECRET = "htx-secret-do-not-leak-4b2a"

MakeClient = Callable[..., AbstractAsyncContextManager[xferkit.Client]]


def xt_id(key: str, api_key: str = API_KEY) -> IntentId:
    """The journal id of the intent a client with the fixtures' XT credentials records."""
    return IntentId("xt", xferkit.XT(api_key, SECRET).account, key)


def request_biz_id(xt: xferkit.XT, request: xferkit.TransferRequest) -> str:
    """The bizId xferkit sends for ``request`` (which has a key) with ``xt``'s API key."""
    assert request.key is not None
    return xt.biz_id(
        request.key,
        currency=request.currency,
        amount=request.amount,
        from_account=request.from_account,
        to_account=request.to_account,
        symbol=request.symbol,
    )


def htx_id(key: str, access_key: str = HTX_ACCESS_KEY) -> IntentId:
    """The journal id of the intent a client with the HTX test credentials records."""
    return IntentId("htx", xferkit.HTX(access_key, HTX_SECRET).account, key)


@pytest.fixture
def plan() -> FaultPlan:
    """A fault plan with no random faults; tests force or enable what they need."""
    return FaultPlan(seed=1)


@pytest.fixture
def fake_xt(clock: VirtualClock, plan: FaultPlan) -> FakeXT:
    """The simulated XT venue, on the test's virtual clock."""
    return FakeXT(api_key=API_KEY, secret=SECRET, clock=clock, faults=plan)


@pytest.fixture
def xt() -> xferkit.XT:
    """XT credentials the fake accepts; a high rate limit so tests are not throttled."""
    return xferkit.XT(API_KEY, SECRET, rate_limit=10_000)


@pytest.fixture
def make_client(
    xt: xferkit.XT, fake_xt: FakeXT, clock: VirtualClock, journal: Journal
) -> MakeClient:
    """Build a Client on the fake XT; keyword arguments override the Client's defaults."""

    @asynccontextmanager
    async def make(**overrides: Any) -> AsyncIterator[xferkit.Client]:
        options: dict[str, Any] = {
            "journal": journal,
            "clock": clock,
            "retry": xferkit.RetryPolicy(max_attempts=8, deadline=None),
        }
        options.update(overrides)
        async with (
            httpx.AsyncClient(transport=FakeTransport(fake_xt)) as http_client,
            xferkit.Client(xt, http_client=http_client, **options) as client,
        ):
            yield client

    return make


def transfer_args(**overrides: Any) -> dict[str, Any]:
    """The arguments of a typical transfer, spot to USDT futures."""
    args: dict[str, Any] = {
        "currency": "usdt",
        "amount": "10",
        "from_account": "spot",
        "to_account": "usdt_futures",
    }
    args.update(overrides)
    return args
